"""`ao` and `python -m ao`."""

import os
import signal
import sys

# commands that start sessions on a project's hosts: `ao spawn PROJECT ...`
STARTS = ("spawn", "batch-spawn")


def main() -> None:
    # everything ao creates (state.db, logs, locks, worktrees, saved patches, ssh control
    # sockets) is the user's alone: 0600 files, 0700 folders
    os.umask(0o077)
    argv = sys.argv[1:]
    try:
        if len(argv) > 1 and argv[0] in STARTS and not argv[1].startswith("-"):
            _connect_early(argv[1])
        from ao.cli.main import run
    except KeyboardInterrupt:  # a Ctrl-C while ao starts: nothing was begun
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second one cannot cut the exit
        sys.stderr.write("ao: interrupted\n")
        sys.exit(130)
    run()


def _connect_early(project: str) -> None:
    """The project's hosts' connections begun before the rest of ao is imported (about half a
    second here): a login there runs meanwhile. Whatever is wrong (the config, the project's
    name) is the command's to say, once it runs; nothing is said or written here."""
    try:
        from ao import config
        from ao.world import hosts

        hosts.connect_early(config.load(), project)
    except Exception:  # said by the command itself, with its way out
        return


if __name__ == "__main__":
    main()
