"""The record of processing activities (Art. 30(1) GDPR) as a standalone HTML document.

`dsr register export` writes it from the register alone, in Dutch or English
(`templates/register.html`, texts in `register.texts.yaml`): per system and purpose everything
Art. 30(1)(a)-(g) asks, and the profiling the register states (Art. 15(1)(h)). Nothing in it
is hard-coded: a fact missing from the register is missing from the record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

from orchestrator.artifacts.render import Language, render_document
from schemas.register import Recipient, Register, System, load_register


def recipients_of(register: Register, system: System) -> list[Recipient]:
    """The register's recipients (besides the processor) that receive this system's data: those
    naming the system, and those tied to no system (Art. 30(1)(d) GDPR)."""
    return [r for r in register.recipients if not r.systems or system.name in r.systems]


def render_register(register: Register, language: Language, *, today: date | None = None) -> str:
    """The record of processing activities of `register` in `language`, as one HTML page."""
    return render_document(
        "register",
        language,
        register=register,
        controller=register.controller,
        systems=[(system, recipients_of(register, system)) for system in register.systems],
        today=today or date.today(),
    )


class _SecretsLeftOut(Mapping[str, str]):
    """The environment for `${VAR}` in settings, with a placeholder for what is not set: the
    record prints no settings, so it can be made where the connectors' secrets are not."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, name: str) -> str:
        return self._env.get(name, "(not set)")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def load_for_export(path: str | Path, env: Mapping[str, str]) -> Register:
    """The register at `path`, validated as usual, without needing the connectors' secrets."""
    return load_register(path, _SecretsLeftOut(env))


__all__ = ["load_for_export", "recipients_of", "render_register"]
