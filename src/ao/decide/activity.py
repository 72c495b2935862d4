"""What an agent is doing, from its own hooks, its screen and time: one pure function.

The agent's hooks speak first. The screen overrules a hook only when it changed after the hook
and shows a state the profile recognises: at once for a waiting state (the prompt was answered
or dismissed, e.g. an Escape that fires no hook), after IDLE_AFTER seconds of stillness for a
working one. A prompt recognised on screen always counts as waiting. Without hooks and without
a recognised screen, a screen still for IDLE_AFTER seconds is idle.
"""

from __future__ import annotations

from ao.record.state import Activity

IDLE_AFTER = 5.0  # seconds of an unchanged screen that count as idle


def infer(seen: Activity | None, hook: Activity | None, hook_at: float | None,
          uses_hooks: bool, changed_at: float, now: float, settled: bool = False) -> Activity:
    """`seen`: what the profile reads on the screen (None: nothing it knows); `hook`: the
    latest state a hook reported, at `hook_at`; `changed_at`: when the screen last changed;
    `settled`: the screen itself says the turn ended without a hook (an Escape)."""
    if seen is Activity.WAITING_INPUT:
        return seen
    if uses_hooks and hook is not None:
        moved = seen is not None and seen is not hook and changed_at > (hook_at or 0)
        if moved and (hook is Activity.WAITING_INPUT or settled
                      or now - changed_at >= IDLE_AFTER):
            return seen  # type: ignore[return-value]
        return hook
    if seen is not None:
        return seen
    return Activity.IDLE if now - changed_at >= IDLE_AFTER else Activity.ACTIVE
