"""The board's modal screens: a message to send, a yes or no, what an agent changed."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class SendScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="send.cancel")]

    def __init__(self, sid: str) -> None:
        super().__init__()
        self.sid = sid

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Message to {self.sid} (Enter sends, Escape cancels)")
            yield Input(placeholder="Please add tests for the login function", id="message")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "yes", "Yes", id="confirm.yes"),
                Binding("n,escape", "no", "No", id="confirm.no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class DiffScreen(ModalScreen[None]):
    """What the agent changed (changes.py): the stat, then the diff, coloured; scrolled with the
    arrows and PageUp/PageDown; Escape or q closes it."""

    BINDINGS = [Binding("escape,q,c", "close", "Close", id="diff.close")]

    def __init__(self, sid: str, text: str) -> None:
        super().__init__()
        self.sid, self.text = sid, text

    def compose(self) -> ComposeResult:
        with Vertical(id="diff-dialog"):
            yield Label(f"{self.sid}: changes against the default branch (Escape closes)")
            with VerticalScroll(id="diff-scroll"):
                yield Static(_coloured(self.text), id="diff")

    def action_close(self) -> None:
        self.dismiss(None)


def _coloured(text: str) -> Text:
    """A diff as text (never markup: it is the agent's), its lines coloured as git does."""
    out = Text()
    for line in text.splitlines():
        style = "green" if line.startswith("+") and not line.startswith("+++") else \
            "red" if line.startswith("-") and not line.startswith("---") else \
            "cyan" if line.startswith("@@") else "bold" if line.startswith("diff --git") \
            else ""
        out.append(line + "\n", style=style)
    return out
