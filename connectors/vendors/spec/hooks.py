"""Hooks: small Python functions for what a spec cannot declare.

A spec names a module (`hooks: connectors.specs.zendesk_hooks`) or a file beside it
(`hooks: acme_hooks.py`). The module defines any of the hook points below, by name; each is
optional, and the engine's default applies where a module leaves one out. They play the part
of the Singer SDK's overridable stream methods (`get_child_context`, `post_process`) and of
Fides' SaaS request overrides: the declaration stays the connector, the hook only the odd
vendor rule.

Hook points (plain or `async` functions):

- `prepare_context(context: HookContext) -> None`: before the search; may add values that
  templates use to `context.values` (e.g. a mailbox list read from a directory).
- `match(record: dict, subject: Subject[, context: HookContext]) -> bool | None`: whether a
  search result is the subject's; None leaves it to the exact match of `find.match`. With a
  third parameter it gets the context, and its client (e.g. to read a user's other addresses).
- `child_context(collection: str, record: dict, values: dict) -> dict | None`: extra values
  for the listings below one related record (e.g. a ticket's requester for its comments).
- `post_process(collection: str, record: dict, context: HookContext) -> Record | dict | None`:
  the record as exported: a `Record` (e.g. with `others` pointers, Art. 15(4) GDPR), a
  changed dict, or None to leave it out.
- `erase_record(found: FoundRecord, context: HookContext) -> bool`: erase one found record
  yourself (True) or leave it to the `erase` steps (False). Count in `context.erasure`.
  `context.related` holds the record's related records, listed once for the hook and the
  steps: a value the hook adds to one's `values` is what the steps' conditions see (e.g.
  `when: {shared: false}`).
- `after_erase(found: FoundRecord, context: HookContext) -> None`: after the erase steps of
  one found record, e.g. to read the vendor's deletion status into `context.evidence`.
- any other function named in a condition (`when: {hook: not_shared}`): `(values: dict) ->
  bool`, e.g. whether a ticket is shared with other people.

Hooks get personal data (records, the subject): they must not log it or put it in an
exception's message, as everywhere in connectors.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from connectors.base import ConnectorConfigError
from connectors.http import HttpClient
from connectors.vendors.base import Erasure
from schemas.events import Evidence, Subject

#: The hook points a module may define (conditions may have any other name).
HOOK_POINTS = (
    "prepare_context",
    "match",
    "child_context",
    "post_process",
    "erase_record",
    "after_erase",
)


@dataclass
class HookContext:
    """What a hook may use: the system, its HTTP client, the subject, the template values."""

    system: str
    client: HttpClient | None
    subject: Subject | None
    values: dict[str, Any]
    settings: Mapping[str, Any]
    #: The erasure under way (erase hooks count what they did here).
    erasure: Erasure = field(default_factory=lambda: Erasure(set()))
    #: Every main record the task found (e.g. all of the subject's user accounts).
    found: list[FoundRecord] = field(default_factory=list)
    #: The related records of the found record being exported or erased (collection,
    #: record, values, parent each), in the spec's order.
    related: list[Any] = field(default_factory=list)
    #: Evidence the hooks add to the erasure's result (never personal data).
    evidence: list[Evidence] = field(default_factory=list)
    #: The hooks' own memo for one task (e.g. which people are staff).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FoundRecord:
    """One main record of the subject and the values its templates see (`{id}`, `{record.x}`)."""

    record: dict[str, Any]
    values: dict[str, Any]
    #: Unique among the found records: the id, after the fan-out parent's id if any.
    key: str = ""


class Hooks:
    """The hook functions of one spec (none: every default applies)."""

    def __init__(self, module: ModuleType | None = None, source: str = "") -> None:
        self.module = module
        self.source = source

    def get(self, name: str) -> Callable[..., Any] | None:
        """The module's function `name`, or None."""
        found = getattr(self.module, name, None) if self.module is not None else None
        return found if callable(found) else None

    def condition(self, name: str) -> Callable[[dict[str, Any]], Any]:
        """The condition function `name`; a missing one is a configuration error."""
        found = self.get(name)
        if found is None:
            raise ConnectorConfigError(
                f"{self.source or 'spec'}: a condition names hook {name!r}, which the hook "
                "module does not define"
            )
        return found

    async def call(self, name: str, *args: Any, context: HookContext | None = None) -> Any:
        """Call hook `name` if defined (awaiting it if async); None when it is not. A
        `context` is passed last to a function that takes a parameter more than `args`."""
        function = self.get(name)
        if function is None:
            return None
        if context is not None and _takes(function, len(args) + 1):
            args = (*args, context)
        result = function(*args)
        return await result if inspect.isawaitable(result) else result


def _takes(function: Callable[..., Any], count: int) -> bool:
    """Whether `function` can be called with `count` positional arguments."""
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    return True


def load_hooks(name: str | None, spec_path: Path | None) -> Hooks:
    """The hooks a spec names: a module path, or a `.py` file beside the spec file."""
    if not name:
        return Hooks()
    if name.endswith(".py"):
        base = spec_path.parent if spec_path is not None else Path.cwd()
        file = (base / name).resolve()
        loader = importlib.util.spec_from_file_location(f"dsr_spec_hooks_{file.stem}", file)
        if loader is None or loader.loader is None or not file.is_file():
            raise ConnectorConfigError(f"{spec_path}: hooks: file {name!r} not found beside it")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConnectorConfigError(
                f"{spec_path}: hooks: cannot import {name!r} ({exc.msg})"
            ) from None
    return Hooks(module, str(spec_path or name))


__all__ = ["HOOK_POINTS", "FoundRecord", "HookContext", "Hooks", "load_hooks"]
