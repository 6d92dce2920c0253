"""Finding and masking identifiers (email addresses, phone numbers, BSNs) in free text.

Status events carry no identifiers by design, but their free text (a connector's reason, a
person's evidence) is written by people and vendors. The dashboard masks what slips through,
and manual-task evidence that contains an identifier is refused before it reaches the topic.
"""

from __future__ import annotations

import re

from schemas.events import passes_bsn_check

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# International (+31 6 1234 5678) or national (06-12345678) numbers: + or 0, a non-zero digit,
# then 7-14 digits with the usual separators. Dates, counts and most job ids do not match.
_PHONE = re.compile(r"(?<![\w+])(?:\+[1-9]|0[1-9])(?:[\s\-./()]?\d){7,14}(?!\w)")
# Nine digits as people write a BSN: 123456782, or grouped 3-3-3 or 4-2-3 (123.456.782,
# 1234 56 782) with dots, spaces or hyphens. Letters may touch it (bsn123456782); a digit, or a
# digit joined by a dot or hyphen, may not: that is a longer number. Fixed groupings keep a
# date and time (22-11-2026 9:30) out. Only candidates passing the 11-proef count (Art. 46
# UAVG: see `schemas.events`).
_BSN_CANDIDATE = re.compile(
    r"(?<![\d+])(?<!\d[.\-])"
    r"(?:\d{9}|\d{3}([ .\-])\d{3}\1\d{3}|\d{4}([ .\-])\d{2}\2\d{3})"
    r"(?![.\-]?\d)"
)


def identifier_kinds(text: str) -> list[str]:
    """The kinds of identifier found in `text` ('email address', 'phone number', 'BSN')."""
    kinds = []
    if _EMAIL.search(text):
        kinds.append("email address")
    if any(_is_bsn(m) for m in _BSN_CANDIDATE.finditer(text)):
        kinds.append("BSN")
    if _PHONE.search(_BSN_CANDIDATE.sub(_mask_bsn, text)):
        kinds.append("phone number")
    return kinds


def mask_identifiers(text: str) -> str:
    """`text` with email addresses, BSNs and phone numbers masked, keeping a hint of their shape.

    A BSN is masked whole (`*********`): even its last digits narrow down who it is.
    """
    text = _EMAIL.sub(_mask_email, text)
    text = _BSN_CANDIDATE.sub(_mask_bsn, text)
    return _PHONE.sub(_mask_phone, text)


def _is_bsn(match: re.Match[str]) -> bool:
    return passes_bsn_check(re.sub(r"\D", "", match.group(0)))


def _mask_bsn(match: re.Match[str]) -> str:
    return "*********" if _is_bsn(match) else match.group(0)


def _mask_email(match: re.Match[str]) -> str:
    local, _, domain = match.group(0).partition("@")
    return f"{local[:1]}***@***.{domain.rsplit('.', 1)[-1]}"


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"{match.group(0)[:1] if match.group(0).startswith('+') else ''}***{digits[-2:]}"


__all__ = ["identifier_kinds", "mask_identifiers"]
