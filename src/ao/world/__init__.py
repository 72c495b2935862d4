"""The adapters to the world outside: tmux, git and worktree safety, hosts and their
channel, the agent CLIs (agents/), the forges (forge/), cron, memory, and the agents' own
records (hooks, usage)."""
