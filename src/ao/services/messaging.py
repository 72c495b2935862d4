"""Typing into agents: clear, paste through a named buffer, wait, Enter, confirm.

A message is `delivered` only when the agent is seen to take it (its hook fires, or the draft
leaves its input); `queued` when the agent is busy or blocked on a permission prompt (pasting
then would lose the text, or worse, answer the prompt); `failed` otherwise, with why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ao import paths
from ao.errors import BadInput
from ao.record.events import Event, emit
from ao.record.state import LIVE, Activity
from ao.sanitize import clean
from ao.services import message_text
from ao.world import agents, tmux

if TYPE_CHECKING:
    from ao.record.store import Session
    from ao.services.ending import Ending

MESSAGE_TTL = 3600.0  # a queued message older than this is dropped (with an event), not sent
CONFIRM_TIMEOUT = 5.0
ENTER_RETRIES = 2
BUSY_WAIT = 60.0  # seconds a paste may wait in a busy agent's input buffer to show


@dataclass(frozen=True)
class SendResult:
    status: str  # delivered | queued | failed
    detail: str = ""
    message_id: int | None = None


class Messenger:
    def __init__(self, fleet: Ending) -> None:  # a Fleet, or any layer from Ending up
        self.fleet = fleet
        self.store = fleet.store

    def prepare(self, s: Session, text: str) -> str:
        """Sanitize; put a long message in a file and send a pointer to it instead."""
        return message_text.prepare(self.fleet, s, text)

    def send(self, sid: str, text: str, now: bool = False, source: str = "user",
             raw: bool = False) -> SendResult:
        s = self.store.session(sid)
        refused = message_text.refusal(s, text, raw)
        if refused is not None:
            return SendResult("failed", refused)
        activity = self.fleet.observe(s)
        if activity is Activity.EXITED:
            return SendResult("failed", f"the agent has exited; `ao session restore {sid}`")
        if activity is Activity.UNREACHABLE:
            # kept whole: a long one goes to its file on the host when it is delivered
            return self._queue(s, clean(text).strip("\n"), source,
                               f"host {s.host} is unreachable; it is delivered when the host "
                               "answers again")
        body = self.prepare(s, text)
        why = self._why_hold(s, activity, now)
        if now and why == TYPING:
            raise BadInput(f"someone is typing in {sid}'s input; --now would clear or glue "
                           "their draft", "send without --now: it waits until the draft is "
                           "sent or cleared")
        if why is None and not self.store.messages(sid, "queued"):
            return self.deliver(s, body, source)
        r = self._queue(s, body, source, why or "earlier messages first")
        if why is not None:
            return r
        # behind earlier messages, which go first, now: how this one went, if it went
        went = {x.message_id: x for x in self.deliver_queued(sid)}
        return went.get(r.message_id, r)

    def _why_hold(self, s: Session, activity: Activity, now: bool) -> str | None:
        """Why the message must wait in the queue instead of being typed now."""
        profile = agents.get(s.agent or "command")
        if activity is Activity.WAITING_INPUT:
            return "waiting on a permission prompt"
        if (s.limited_until or 0) > time.time() and not now:
            # parked at its agent's usage limit: a message would only run into the wall
            return f"usage limit until {time.strftime('%H:%M', time.localtime(s.limited_until))}"
        # a draft in the input means a human is typing there: never clear or glue it, wait
        if profile.clear_only_drafts:
            screen = tmux.capture(self.fleet.server(s), s.id)
            if profile.draft_pending(screen, "") and not self._leftover(s, profile, screen) \
                    and not self._put_back(s, profile, screen):
                return TYPING
        # --now types into a working agent only where Enter queues there (not codex, aider)
        if activity is Activity.ACTIVE and not (now and profile.enter_while_busy):
            return "busy"
        return None

    def _queue(self, s: Session, body: str, source: str, why: str) -> SendResult:
        mid = self.store.queue_message(s.id, body, source)
        emit(Event("message.queued", s.project, s.id, s.task, {"id": mid, "why": why,
                                                              "source": source}), self.store)
        return SendResult("queued", why, mid)

    def deliver_queued(self, sid: str) -> list[SendResult]:
        """Deliver held messages in order while the agent is idle; stop at the first that
        cannot go."""
        results = []
        for m in self.store.messages(sid, "queued"):
            s = self.store.session(sid)
            if time.time() - float(m["created_at"]) > MESSAGE_TTL:
                # stale advice is worse than none: the agent has moved on since
                self.store.set_message(m["id"], "failed", "expired before the agent was free")
                emit(Event("message.expired", s.project, sid, s.task,
                           {"id": m["id"], "source": m["source"]}), self.store)
                continue
            activity = self.fleet.observe(s)
            if activity in (Activity.ACTIVE, Activity.WAITING_INPUT, Activity.EXITED,
                            Activity.UNREACHABLE):
                break
            body = m["body"]
            if m["source"] == "user" and len(body) > message_text.INLINE_LIMIT:
                # queued whole while its host was away: its file is written now
                body = self.prepare(s, body)
                self.store.set_message_body(m["id"], body)
            r = self.deliver(s, body, m["source"], message_id=m["id"])
            results.append(r)
            if r.status != "delivered":
                break
        return results

    def deliver(self, s: Session, body: str, source: str,
                message_id: int | None = None) -> SendResult:
        # one sender per session: clear, paste, Enter and confirm happen under this lock, so
        # two senders (two `ao send`, or a user and the daemon) never glue messages together
        with paths.locked(paths.send_lock(s.id)):
            if message_id is None:
                # made already claimed, under the lock: nobody else can take it first
                mid = self.store.queue_message(s.id, body, source, status="sending")
            else:
                mid = message_id
                # pasted before and left in the input (an Enter that was not pressed)
                own = any(m["id"] == mid and m.get("stage") in ("pasted", "entered")
                          for m in self.store.messages(s.id, "queued"))
                if not self.store.claim_message(mid):
                    return SendResult("failed", "another process is delivering this message",
                                      mid)
            return self._deliver(s, body, source, mid, own if message_id is not None else False)

    def _draft(self, s: Session, profile: agents.Profile, screen: str, body: str,
               own: bool) -> tuple[str, str]:
        """What the text in the agent's input is, and so what ao may do about it: ("clear",
        "") for ao's own unsent paste of this message; ("", screen) when the input has
        emptied (the message just submitted, whose box clears a moment after the agent's
        hook fired); ("hold", why) for anything else: a person's draft is theirs."""
        if own and profile.draft_is(screen, body):
            return "clear", ""
        if self._put_back(s, profile, screen):
            return "clear", ""
        last = self.store.messages(s.id, "delivered")[-1:]
        if last and profile.draft_is(screen, str(last[0]["body"])):
            # never Escape on it: that interrupts the turn it just started
            after = tmux.wait_screen(self.fleet.server(s), s.id,
                                     lambda sc: not profile.draft_pending(sc, ""), 3.0)
            if after is not None:
                return "", after
            return "hold", "the last message is still in the agent's input"
        # ao's own text left in the box by a delivery that gave up (Enter not taken, a paste
        # that showed late, a held message that expired): ao's to clear, or every later
        # message would wait behind it as if a person were typing
        if self._leftover(s, profile, screen):
            return "clear", ""
        return "hold", TYPING

    def _leftover(self, s: Session, profile: agents.Profile, screen: str) -> bool:
        """The input holds ao's own paste of a message that was never delivered."""
        typed = [m for m in self.store.messages(s.id)[-20:]
                 if m["status"] != "delivered" and m.get("stage") in ("pasted", "entered")]
        return any(profile.draft_is(screen, str(m["body"])) for m in typed)

    def _put_back(self, s: Session, profile: agents.Profile, screen: str) -> bool:
        """The input holds the prompt whose turn ao itself cut off (spending.py records it
        when it parks a busy session at a usage limit; Claude Code puts an interrupted
        prompt back in its box): ao's own text, while it is the last message delivered."""
        cut = self.store.attempts(s.id, "interrupted")
        last = self.store.messages(s.id, "delivered")[-1:]
        return bool(cut and last) and json.loads(cut[-1]["data"] or "{}").get("message") == \
            last[0]["id"] and profile.draft_is(screen, str(last[0]["body"]))

    def _deliver(self, s: Session, body: str, source: str, mid: int,
                 own: bool = False) -> SendResult:
        srv = self.fleet.server(s)
        profile = agents.get(s.agent or "command")
        # a human scrolled back (copy mode) would eat the keys: left first, with the look
        before = tmux.fresh_screen(srv, s.id)
        clear = not profile.clear_only_drafts
        if profile.clear_only_drafts and profile.draft_pending(before, ""):
            what, said = self._draft(s, profile, before, body, own)
            if what == "hold":
                self.store.set_message(mid, "queued")
                self._requeue(s, mid, said)
                return SendResult("queued", said, mid)
            clear = what == "clear"
            before = said or before
        if clear:
            for i, key in enumerate(profile.clear_keys):
                if i and profile.clear_gap:
                    time.sleep(profile.clear_gap)
                tmux.send_keys(srv, s.id, key)
            before = tmux.capture(srv, s.id)
            if profile.clear_only_drafts and profile.draft_pending(before, ""):
                # never paste behind text that stayed: the two would go as one message
                gone = tmux.wait_screen(srv, s.id, lambda sc: not profile.draft_pending(
                    sc, ""), timeout=2.0)
                if gone is None:
                    return self._failed(s, mid, "ao's earlier text stayed in the agent's "
                                        "input after the clear keys")
                before = gone
        tmux.paste(srv, s.id, body)
        # the agent shows the draft once it has taken the paste; then its own settle delay
        # (a line-oriented program: any change; its echo and output interleave)
        def drawn(sc: str) -> bool:
            return sc != before if profile.line_oriented else profile.draft_pending(sc, body)

        shown = tmux.wait_screen(srv, s.id, drawn, timeout=3.0)
        doing = self.fleet.observe(self.store.session(s.id)) if shown is None else None
        if doing is Activity.ACTIVE:
            # it turned busy between the look and the paste: the text waits in its input
            # buffer and shows when it gets back to its prompt; that is not a failure
            shown = tmux.wait_screen(srv, s.id, drawn, timeout=BUSY_WAIT)
        if shown is None:
            if doing is Activity.WAITING_INPUT:
                # a prompt came up under us: the paste went to it and was dropped. Enter was
                # not pressed, so nothing was answered; keep the message for later.
                self.store.set_message(mid, "queued")
                self._requeue(s, mid, "a permission prompt appeared")
                return SendResult("queued", "a permission prompt appeared", mid)
            return self._failed(s, mid, "the paste did not show in the agent's input")
        self.store.set_stage(mid, "pasted")
        time.sleep(profile.submit_delay)
        mark = self.store.last_event_id()
        self.store.set_stage(mid, "entered", mark)
        if profile.line_oriented:
            before = tmux.capture(srv, s.id)  # what Enter must change
        return self._enter(s, profile, before, body, source, mid, mark)

    def _enter(self, s: Session, profile: agents.Profile, before: str, body: str, source: str,
               mid: int, mark: int, recovered: bool = False) -> SendResult:
        srv = self.fleet.server(s)
        # a line-oriented program takes every Enter as a line: it gets exactly one
        for attempt in range(1 if profile.line_oriented else 1 + ENTER_RETRIES):
            blocked = self._blocked(s, profile)
            if blocked:
                # an Enter now would steer a running turn (codex), be replayed as the answer
                # to the next question (aider) or answer a prompt: the draft waits, and the
                # next delivery clears it and pastes again
                self.store.set_message(mid, "queued")
                self._requeue(s, mid, blocked)
                return SendResult("queued", blocked, mid)
            tmux.send_keys(srv, s.id, "Enter")
            how = self._confirm(s, profile, before, body, mark)
            if how:
                self.store.set_message(mid, "delivered")
                emit(Event("message.delivered", s.project, s.id, s.task,
                           {"id": mid, "source": source, "chars": len(body),
                            "confirmed_by": how, "enters": attempt + 1,
                            **({"recovered": True} if recovered else {})}), self.store)
                return SendResult("delivered", how, mid)
            if not profile.draft_pending(tmux.capture(srv, s.id), body):
                break  # the draft left the input but nothing confirmed: don't press again
        return self._failed(s, mid, "the agent did not take the message (no hook, no change)")

    def _blocked(self, s: Session, profile: agents.Profile) -> str:
        """Why Enter must not be pressed now, from what the agent itself shows (its title,
        or a screen the profile recognises; never the stillness rule, which a paste trips)."""
        srv = self.fleet.server(s)
        p = tmux.pane(srv, s.id)
        seen = profile.title_activity(p.title) if p is not None else None
        if seen is None:
            seen = profile.activity(tmux.capture(srv, s.id))
        if seen is Activity.WAITING_INPUT:
            return "a permission prompt appeared"
        return "busy" if seen is Activity.ACTIVE and not profile.enter_while_busy else ""

    def _confirm(self, s: Session, profile: agents.Profile, before: str, body: str,
                 mark: int) -> str:
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        extended = False
        while time.monotonic() < deadline:
            if profile.uses_hooks and self.fleet.hook_seen(s, "UserPromptSubmit", mark):
                return "hook"
            screen = tmux.capture(self.fleet.server(s), s.id)
            if profile.uses_hooks and not extended and \
                    profile.activity(screen) is Activity.ACTIVE and \
                    not profile.draft_pending(screen, body):
                # Enter reached an agent already in a turn: it keeps the message and submits
                # it (its hook fires then) when the turn ends; that is not a lost message
                deadline, extended = time.monotonic() + BUSY_WAIT, True
            if profile.line_oriented:
                if screen != before:
                    return "screen"  # the program took the line (echo, output, prompt)
            elif profile.draft_pending(screen, body):
                # still in the input: give the agent a moment, then the caller presses again
                if time.monotonic() > deadline - CONFIRM_TIMEOUT + 1.0:
                    return ""
            elif (not profile.uses_hooks or body.lstrip().startswith(("/", "!"))) and \
                    profile.submitted(before, screen, body):
                # a slash command or a `!` shell command (--raw) is the agent's own: it fires
                # no prompt hook, its effect shows on the screen
                return "screen"
            time.sleep(0.05)
        return ""

    def recover(self, sid: str | None = None) -> list[tuple[int, str]]:
        """Finish or escalate deliveries whose sender died (its send lock is free while the
        message is still `sending`), by how far each got:
        - claimed, or pasted with the draft gone: nothing was submitted; queued again;
        - pasted or entered with the draft still in the input: Enter, and confirm;
        - entered, the draft gone: taken, if the agent's hook says so (or, for an agent
          without hooks, by the draft having left the input after Enter);
        - otherwise unknown: failed, and the session escalates with an event and a
          notification. Nothing is pasted twice."""
        done: list[tuple[int, str]] = []
        for m in self.store.sending(sid):
            with paths.try_locked(paths.send_lock(m["session"])) as free:
                if not free:
                    continue  # its sender is alive and at it
                # read again under the lock: its sender may have finished just before
                now = next((x for x in self.store.messages(m["session"])
                            if x["id"] == m["id"]), None)
                if now is None or now["status"] != "sending":
                    continue
                s = self.store.session(m["session"])
                done.append((now["id"], self._recover_one(s, now)))
        return done

    def _recover_one(self, s: Session, m: dict[str, object]) -> str:
        if not self.fleet.reachable(s.host):
            return "waiting"  # its host is away: the delivery is looked at when it is back
        srv = self.fleet.server(s)
        mid, body, source = int(str(m["id"])), str(m["body"]), str(m["source"])
        stage, mark = m.get("stage"), int(str(m["mark"])) if m.get("mark") is not None else 0
        profile = agents.get(s.agent or "command")
        pane = tmux.pane(srv, s.id)
        if s.state not in LIVE or pane is None or pane.dead:
            self._failed(s, mid, "delivery interrupted and the agent is gone")
            return "failed"
        screen = tmux.capture(srv, s.id)
        draft = profile.draft_pending(screen, body)
        if stage in (None, "claimed") or (stage == "pasted" and not draft):
            self.store.set_message(mid, "queued")
            self._requeue(s, mid, "delivery interrupted before it was submitted")
            return "queued"
        if draft:
            r = self._enter(s, profile, screen, body, source, mid, mark or
                            self.store.last_event_id(), recovered=True)
            return r.status
        if not profile.uses_hooks or self.fleet.hook_seen(s, "UserPromptSubmit", mark):
            self.store.set_message(mid, "delivered")
            emit(Event("message.delivered", s.project, s.id, s.task,
                       {"id": mid, "source": source, "chars": len(body), "recovered": True,
                        "confirmed_by": "hook" if profile.uses_hooks else "screen"}),
                 self.store)
            return "delivered"
        self._failed(s, mid, "delivery interrupted; whether the agent has it is unknown")
        reason = (f"a {source} message's delivery was interrupted and the agent shows no sign "
                  f"of it; check, then `ao send {s.id}` it again or `ao session resume {s.id}`")
        self.fleet.escalate(s, f"escalate:delivery:{mid}", reason)
        return "escalated"

    def _requeue(self, s: Session, mid: int, why: str) -> None:
        emit(Event("message.queued", s.project, s.id, s.task, {"id": mid, "why": why}),
             self.store)

    def _failed(self, s: Session, mid: int, why: str) -> SendResult:
        self.store.set_message(mid, "failed", why)
        emit(Event("message.failed", s.project, s.id, s.task, {"id": mid, "why": why}),
             self.store)
        return SendResult("failed", why, mid)


TYPING = "someone is typing in the agent's input"
