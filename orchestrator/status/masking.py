"""Finding and masking identifiers (email addresses, phone numbers) in free text.

Status events carry no identifiers by design, but their free text (a connector's reason, a
person's evidence) is written by people and vendors. The dashboard masks what slips through,
and manual-task evidence that contains an identifier is refused before it reaches the topic.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# International (+31 6 1234 5678) or national (06-12345678) numbers: + or 0, a non-zero digit,
# then 7-14 digits with the usual separators. Dates, counts and most job ids do not match.
_PHONE = re.compile(r"(?<![\w+])(?:\+[1-9]|0[1-9])(?:[\s\-./()]?\d){7,14}(?!\w)")


def identifier_kinds(text: str) -> list[str]:
    """The kinds of identifier found in `text` ('email address', 'phone number'), if any."""
    kinds = []
    if _EMAIL.search(text):
        kinds.append("email address")
    if _PHONE.search(text):
        kinds.append("phone number")
    return kinds


def mask_identifiers(text: str) -> str:
    """`text` with email addresses and phone numbers masked, keeping a hint of their shape."""
    text = _EMAIL.sub(_mask_email, text)
    return _PHONE.sub(_mask_phone, text)


def _mask_email(match: re.Match[str]) -> str:
    local, _, domain = match.group(0).partition("@")
    return f"{local[:1]}***@***.{domain.rsplit('.', 1)[-1]}"


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"{match.group(0)[:1] if match.group(0).startswith('+') else ''}***{digits[-2:]}"


__all__ = ["identifier_kinds", "mask_identifiers"]
