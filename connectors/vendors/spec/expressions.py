"""Computed values of a spec: a small, safe expression language, never `eval`.

A spec names values computed from the subject's identifiers, a found record or the settings,
and uses them in templates like any other placeholder:

    computed:
      hash: md5(lower(email))          # Mailchimp's member id
      query: urlencode(email)
      token: base64(concat(settings.user, ":", settings.key))

An expression is a dotted name (`email`, `record.id`, `settings.user`), a string literal in
single or double quotes, or a function of expressions. The functions are the ones in
`FUNCTIONS`; anything else is refused when the spec is loaded, naming the function. A name
without a value makes the whole value absent (a template using it then names it), so a value
that needs a phone number is simply not there for a subject known by e-mail only.

Computed values are personal data when their inputs are (an MD5 of an address identifies the
person as well as the address does): the HTTP layer puts them into URLs only, never messages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors.http import lookup
from connectors.vendors.base import identifier_key


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _digest(name: str) -> Callable[[Any], str]:
    def digest(value: Any) -> str:
        return hashlib.new(name, _text(value).encode(), usedforsecurity=False).hexdigest()

    return digest


#: The functions an expression may call, each on the text of its arguments.
FUNCTIONS: dict[str, Callable[..., str]] = {
    "lower": lambda v: _text(v).lower(),
    "upper": lambda v: _text(v).upper(),
    "trim": lambda v: _text(v).strip(),
    "md5": _digest("md5"),
    "sha1": _digest("sha1"),
    "sha256": _digest("sha256"),
    "urlencode": lambda v: quote(_text(v), safe=""),
    "base64": lambda v: base64.b64encode(_text(v).encode()).decode("ascii"),
    "base64url": lambda v: base64.urlsafe_b64encode(_text(v).encode()).decode("ascii"),
    "digits": lambda v: identifier_key("phone", v) or "",
    "concat": lambda *vs: "".join(_text(v) for v in vs),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'[^']*'|\"[^\"]*\")|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)"
    r"|(?P<punct>[(),]))"
)


class ExpressionError(ValueError):
    """An expression that cannot be parsed or calls an unknown function."""


@dataclass(frozen=True, slots=True)
class _Name:
    path: str


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str


@dataclass(frozen=True, slots=True)
class _Call:
    function: str
    arguments: tuple[Expression, ...]


Expression = _Name | _Literal | _Call


def parse(text: str) -> Expression:
    """The parsed expression; an `ExpressionError` names what is wrong."""
    tokens = _tokens(text)
    expression, rest = _parse(tokens, text)
    if rest:
        raise ExpressionError(f"{text!r}: unexpected {rest[0]!r}")
    return expression


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(f"{text!r}: cannot read {text[position:].strip()!r}")
        tokens.append(match.group().strip())
        position = match.end()
    if not tokens:
        raise ExpressionError("an expression is empty")
    return tokens


def _parse(tokens: list[str], text: str) -> tuple[Expression, list[str]]:
    if not tokens:
        raise ExpressionError(f"{text!r}: ends too early")
    head, rest = tokens[0], tokens[1:]
    if head[0] in "'\"":
        return _Literal(head[1:-1]), rest
    if head in "(),":
        raise ExpressionError(f"{text!r}: unexpected {head!r}")
    if not rest or rest[0] != "(":
        return _Name(head), rest
    if head not in FUNCTIONS:
        known = ", ".join(sorted(FUNCTIONS))
        raise ExpressionError(f"{text!r}: unknown function {head!r}; known: {known}")
    rest = rest[1:]
    arguments: list[Expression] = []
    while rest and rest[0] != ")":
        argument, rest = _parse(rest, text)
        arguments.append(argument)
        if rest and rest[0] == ",":
            rest = rest[1:]
    if not rest:
        raise ExpressionError(f"{text!r}: missing ')'")
    return _Call(head, tuple(arguments)), rest[1:]


def names(expression: Expression) -> set[str]:
    """Every dotted name the expression reads."""
    if isinstance(expression, _Name):
        return {expression.path}
    if isinstance(expression, _Call):
        return set().union(*(names(a) for a in expression.arguments))
    return set()


def evaluate(expression: Expression, values: Mapping[str, Any]) -> str | None:
    """The expression's value, or None when a name it reads has no value."""
    if isinstance(expression, _Literal):
        return expression.text
    if isinstance(expression, _Name):
        found = lookup(values, expression.path)
        return None if found in (None, "") else found
    arguments = [evaluate(a, values) for a in expression.arguments]
    if any(a is None for a in arguments):
        return None
    return FUNCTIONS[expression.function](*arguments)


__all__ = ["FUNCTIONS", "Expression", "ExpressionError", "evaluate", "names", "parse"]
