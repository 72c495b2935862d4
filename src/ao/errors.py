"""The error hierarchy: every user-facing failure is an AoError with a message and a hint.

The CLI prints `ao: <message> (<hint>)` on one line and exits with `exit_code`:
1 for a failure of the world (git, tmux, the forge), 2 for bad input from the user.
"""

from __future__ import annotations


class AoError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class BadInput(AoError):
    """The user asked for something malformed or impossible; nothing was changed."""

    exit_code = 2


class ConfigError(BadInput):
    pass


class PlanError(BadInput):
    pass


class NotFound(BadInput):
    pass


class NothingToReview(BadInput):
    """A PR was asked for a branch with no commits ahead of the default branch."""

    def __init__(self, branch: str, default_branch: str) -> None:
        super().__init__(f"{branch} has no commits ahead of {default_branch}",
                         "push work to the branch first")


class StateError(AoError):
    """A lifecycle transition that the state table does not allow."""


class ExternalError(AoError):
    """git, tmux, an agent CLI or a forge failed."""


class ForgeError(ExternalError):
    """A forge answered with an HTTP error status (`status`)."""

    def __init__(self, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status
