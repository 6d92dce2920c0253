"""The root of every error dsr-orchestrator raises on purpose: `DsrError`.

Each package derives its errors from it (register, envelope, sealing, connectors, configuration,
the CLI's own), so one handler in the CLI turns any of them into a clear message and an exit
code. Messages name the input and the fix, and never carry personal data.
"""

from __future__ import annotations


class DsrError(Exception):
    """An error a user or operator can act on: its message says what is wrong and the fix."""

    #: The process exit code the CLI uses for this kind of error.
    exit_code: int = 1


__all__ = ["DsrError"]
