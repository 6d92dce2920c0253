"""JSON errors of the intake process: every rejection names what was wrong, never a value."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


def json_error(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """`{"error": {"code", "message", "field"?...}}` with `status`.

    `message` must not contain personal data (it is what a caller and our logs see).
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return web.json_response({"error": error}, status=status, headers=headers)


def validation_error(exc: ValidationError, status: int = 422) -> web.Response:
    """A pydantic error as a JSON error naming each field (`errors: [{field, message}]`).

    Pydantic's messages can quote the input (`input_value=...`); only `loc` and `msg` are
    used, and `msg` of our own validators never quotes a value.
    """
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False)
    ][:20]
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    return json_error(
        status,
        "invalid_body",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=errors,
    )


__all__ = ["json_error", "validation_error"]
