"""The CLI's own error: what a command found wrong with what it was asked to do.

Commands import it where they raise it, so `dsr --help` does not load `schemas`.
"""

from __future__ import annotations

from schemas.errors import DsrError


class CommandError(DsrError):
    """A command cannot do what was asked; the message names the input and what to do."""


__all__ = ["CommandError"]
