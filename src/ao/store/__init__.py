"""The one SQLite file (`state.db`, WAL) and the only package that runs SQL.

`Store` is built in layers, each a module: the connection and its migrations
(connection.py, schema.py), projects and tasks, sessions, the queue (attempts, messages,
events), the local forge's records, and the named reads of the faces (reads.py). The
records it hands out are in records.py.
"""

from __future__ import annotations

from sqlite3 import OperationalError as StoreError

from .reads import Reads
from .records import AtCapacity, Session, TaskBusy
from .schema import MIGRATIONS

# what a store that cannot be written (a full disk, a read-only file, a lock held too long)
# raises, for callers outside this package
__all__ = ["MIGRATIONS", "AtCapacity", "Session", "Store", "StoreError", "TaskBusy"]


class Store(Reads):
    """Everything ao remembers, in one SQLite file; safe for several processes."""
