"""The pure decisions: the plan and its graph, the scheduler, reactions, the merge gate,
activity, attention, steps, limits, placement, overlap, pickup, what a session waits for, the
bisection of a red main, and the composed messages and prompts. Plain data in, a decision
out: no adapter, no service, no I/O."""
