"""The one SQLite file (`state.db`, WAL) and the only package that runs SQL.

`Store` is built in layers, each a module: the connection and its migrations
(connection.py, schema.py), projects and tasks, sessions, the queue (attempts, messages,
events), the local forge's records, and the named reads of the faces (reads.py). The
records it hands out are in ../rows.py (outside the package: a module that only reads them
needs no SQL).
"""

from __future__ import annotations

import errno
from sqlite3 import OperationalError as StoreError

from ao.record.rows import AtCapacity, Session, TaskBusy
from ao.record.store.connection import Connection
from ao.record.store.local_forge import LocalForgeRecords
from ao.record.store.projects import Projects
from ao.record.store.queue import Queue
from ao.record.store.reads import Reads
from ao.record.store.schema import MIGRATIONS
from ao.record.store.sessions import Sessions

# what a store that cannot be written (a full disk, a read-only file, a lock held too long)
# raises, for callers outside this package
__all__ = ["MIGRATIONS", "AtCapacity", "Session", "Store", "StoreError", "TaskBusy",
           "fault_kind"]


def fault_kind(e: BaseException) -> str | None:
    """What stops the store being written, if that is what `e` says: "full" (the disk),
    "readonly" (the file or its filesystem), "locked" (another process holds it too long);
    None for anything else. SQLite says it in its message, the filesystem in errno."""
    if isinstance(e, OSError):
        return "full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
            "readonly" if e.errno == errno.EROFS else None
    if not isinstance(e, StoreError):
        return None
    text = str(e)
    if "readonly" in text or "read-only" in text:
        return "readonly"
    if "disk" in text and "full" in text:
        return "full"
    return "locked" if "locked" in text else None


class Store(Reads, LocalForgeRecords, Queue, Sessions, Projects, Connection):
    """Everything ao remembers, in one SQLite file; safe for several processes."""
