"""Other people's data in a copy: redacted, or the record held for an officer's review.

A connector marks, in `Record.others`, the values of a record that concern other people (a
co-participant's name and messages in a shared conversation, a CC's e-mail address). The
right to a copy "shall not adversely affect the rights and freedoms of others" (Art. 15(4)
GDPR), and those values are the other people's personal data (Art. 4(1)), not the subject's.
EDPB Guidelines 01/2022 on the right of access (version 2.1, section 6.2 on Art. 15(4)):
the limit does not justify refusing the copy altogether; the controller leaves out or makes
illegible what would affect others and gives the rest. So the default replaces each marked
value by a marker that says something was withheld, and keeps the subject's own data and the
context needed to read it. A register may instead hold such records back ("hold") until an
officer has looked at them.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from schemas.events import Record

#: What a withheld value reads as, per document language.
MARKERS = {
    "nl": "[afgeschermd: gegevens van een ander]",
    "en": "[withheld: another person's data]",
}

_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")  # RFC 6901: an array index has no leading zeros


def protect(
    record: Record, mode: Literal["redact", "hold"], language: Literal["nl", "en"]
) -> Record | None:
    """The record as it may go into the subject's copy (Art. 15(3), 15(4) GDPR).

    Unchanged when nothing in it concerns other people; with `mode` "redact" a copy whose
    marked values (a pointer to an object or list: the whole of it) read as the language's
    marker, `others` cleared; with "hold", None: the record waits for an officer's review.
    A pointer that does not resolve is ignored.
    """
    if not record.others:
        return record
    if mode == "hold":
        return None
    data: dict[str, Any] = copy.deepcopy(record.data)
    for pointer in record.others:
        _replace(data, _tokens(pointer), MARKERS[language])
    return record.model_copy(update={"data": data, "others": []})


def _tokens(pointer: str) -> list[str] | None:
    """The reference tokens of an RFC 6901 pointer, unescaped; None when malformed."""
    if not pointer.startswith("/"):
        return None
    tokens = pointer[1:].split("/")
    if any(re.search(r"~(?![01])", t) for t in tokens):
        return None  # "~" must be followed by 0 or 1
    # Order matters (RFC 6901 section 4): "~01" is the key "~1", not "/".
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _replace(document: Any, tokens: list[str] | None, marker: str) -> None:
    """Replace the value `tokens` point at in `document` with `marker`, if it is there."""
    if not tokens:
        return
    parent = document
    for token in tokens[:-1]:
        parent = _child(parent, token)
        if parent is None:
            return
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        parent[last] = marker
    elif isinstance(parent, list) and _INDEX.match(last) and int(last) < len(parent):
        parent[int(last)] = marker


def _child(value: Any, token: str) -> Any:
    if isinstance(value, dict):
        return value.get(token)
    if isinstance(value, list) and _INDEX.match(token) and int(token) < len(value):
        return value[int(token)]
    return None


__all__ = ["MARKERS", "protect"]
