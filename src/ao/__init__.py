"""ao: run a fleet of AI coding agents on a real codebase."""

import logging

__version__ = "0.1.0"

# module loggers under "ao" say nothing unless a face sets a handler (the daemon: logs/
# daemon.log; any other command: logs/ao.log, `logs.to_file`)
logging.getLogger("ao").addHandler(logging.NullHandler())
