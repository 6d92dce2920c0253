"""The dashboard API's JSON answers: a model, or a problem naming what is wrong and the fix."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from orchestrator.dashboard.model import Problem


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """A model as the JSON body."""
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def problem(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: `{"error": ...}`, which says what to do (never personal data)."""
    return web.Response(
        text=Problem(error=error).model_dump_json(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


__all__ = ["json_response", "problem"]
