"""What ao does, each with its rollback: start, end, send, teardown, cleanup, steps,
merge, machines, notify, the planner, reverting or fixing a red main, what an agent
changed, the run report."""
