"""The daemon's loop: observe, decide, act, record, at each tick (daemon.py runs it,
ticking.py is one project's tick, the rest its layers)."""
