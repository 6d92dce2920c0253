"""The subject's HTML documents from Jinja2 templates: one environment, texts in nl and en.

Each document is `templates/<document>.html` with its texts beside it in
`templates/<document>.texts.yaml` (one mapping per language, the same keys in each). Every value
is HTML-escaped (autoescape), because much of it comes from requests, the register and
connectors; a text or variable the template names but nobody gave fails loudly
(StrictUndefined) instead of leaving a gap in a letter.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

Language = Literal["nl", "en"]
#: The languages every document is written in.
LANGUAGES: tuple[Language, ...] = ("nl", "en")
_PACKAGE = "orchestrator.artifacts"  # the templates/ folder ships inside it as package data
_NO_DATE = "—"


def day(moment: datetime | date | None) -> str:
    """A moment as its ISO date (2026-02-28), or a dash when there is none."""
    if moment is None:
        return _NO_DATE
    return (moment.date() if isinstance(moment, datetime) else moment).isoformat()


def _blank(value: Any) -> Any:
    # A missing optional value (no reason, no deadline yet) prints as nothing, not "None".
    return "" if value is None else value


@cache
def environment() -> Environment:
    """The one Jinja2 environment of the documents (autoescape on, strict about names)."""
    env = Environment(
        loader=PackageLoader(_PACKAGE, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_blank,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = day
    return env


@cache
def texts(document: str) -> dict[str, dict[str, Any]]:
    """A document's texts by language, from `templates/<document>.texts.yaml`, checked."""
    name = f"{document}.texts.yaml"
    source = resources.files(_PACKAGE) / "templates" / name
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) != set(LANGUAGES):
        raise ValueError(f"{name}: expected one mapping per language ({', '.join(LANGUAGES)})")
    shapes = {language: _keys(data[language]) for language in LANGUAGES}
    if len({frozenset(keys) for keys in shapes.values()}) != 1:
        raise ValueError(f"{name}: the languages differ in which texts they have; give each all")
    return data


def _keys(texts: Any, prefix: str = "") -> set[str]:
    """Every text's dotted name; a key YAML read as something else (yes, no, 2) is an error."""
    if not isinstance(texts, dict):
        return {prefix}
    found: set[str] = set()
    for key, value in texts.items():
        if not isinstance(key, str):
            raise ValueError(f"text key {key!r} in {prefix or 'a language'} is not text; quote it")
        found |= _keys(value, f"{prefix}{key}.")
    return found


def render_document(document: str, language: Language, **context: Any) -> str:
    """`templates/<document>.html` with its texts in `language` as `t` (and `lang` unless given)."""
    template = environment().get_template(f"{document}.html")
    return template.render({"lang": language, **context, "t": texts(document)[language]})


__all__ = ["LANGUAGES", "Language", "day", "environment", "render_document", "texts"]
