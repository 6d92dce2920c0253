"""The OpenAPI 3.1 document of the dashboard's API, generated from the response models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.dashboard.model import (
    STATUS_GROUPS,
    Problem,
    RequestDetail,
    RequestPage,
    RequestSummary,
    TaskCompletion,
    TaskRecorded,
)
from schemas.events import REQUEST_ID_PATTERN, SYSTEM_NAME_PATTERN, RequestStatus, RequestType

_MODELS: tuple[type[BaseModel], ...] = (
    RequestPage,
    RequestSummary,
    RequestDetail,
    TaskCompletion,
    TaskRecorded,
    Problem,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(Problem, description)


_UNAUTHORISED = _problem("No or a wrong token.")
_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
}
_NOT_READY = _problem(
    "The dashboard is still reading the status topic after a start; retry after Retry-After."
)


@cache
def openapi_document(version: str) -> dict[str, Any]:
    """The document served at /api/openapi.json."""
    _, schemas = models_json_schema(
        [(m, "serialization" if m is not TaskCompletion else "validation") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    statuses = [*STATUS_GROUPS, *(s.value for s in RequestStatus)]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dsr-orchestrator dashboard API",
            "version": version,
            "description": "Data-subject requests as the status topic shows them: what is open, "
            "what is late, which system is stuck, and the documents of finished requests. "
            "No personal data: requests are known by their id.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/requests": {
                "get": {
                    "summary": "Requests, most urgent first (overdue, then by deadline).",
                    "operationId": "listRequests",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Statuses, comma-separated or repeated; "
                            "'open' and 'finished' stand for groups of them.",
                            "schema": {"type": "array", "items": {"enum": statuses}},
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "type",
                            "in": "query",
                            "description": "Request types, comma-separated or repeated.",
                            "schema": {
                                "type": "array",
                                "items": {"enum": [t.value for t in RequestType]},
                            },
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "overdue",
                            "in": "query",
                            "description": "true: only overdue requests; false: none of them.",
                            "schema": {"type": "boolean"},
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "Part of the request id.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 10000,
                                "default": 1000,
                            },
                        },
                    ],
                    "responses": {
                        "200": _json(RequestPage, "The filtered list with totals."),
                        "400": _problem("A filter value is not understood."),
                        "401": _UNAUTHORISED,
                        "503": _NOT_READY,
                    },
                }
            },
            "/api/requests/{request_id}": {
                "get": {
                    "summary": "One request: each system's outcome, the timeline, documents.",
                    "operationId": "getRequest",
                    "parameters": [_REQUEST_ID],
                    "responses": {
                        "200": _json(RequestDetail, "The request."),
                        "401": _UNAUTHORISED,
                        "404": _problem("The status topic never mentioned this request."),
                        "503": _NOT_READY,
                    },
                }
            },
            "/api/requests/{request_id}/tasks/{system}/complete": {
                "post": {
                    "summary": "Record that a person carried out a manual task "
                    "(as `dsr tasks complete`).",
                    "operationId": "completeTask",
                    "parameters": [
                        _REQUEST_ID,
                        {
                            "name": "system",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": SYSTEM_NAME_PATTERN},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(TaskCompletion)}},
                    },
                    "responses": {
                        "202": _json(
                            TaskRecorded,
                            "Published; the status changes once the orchestrator processed it.",
                        ),
                        "400": _problem("The evidence is missing, too long or personal."),
                        "401": _UNAUTHORISED,
                        "404": _problem("No such request or system."),
                        "409": _problem("The task is not waiting for a person."),
                        "415": _problem("The body is not JSON."),
                        "503": _NOT_READY,
                    },
                }
            },
            "/api/requests/{request_id}/files/{name}": {
                "get": {
                    "summary": "A document of a finished request, as a download.",
                    "operationId": "downloadFile",
                    "parameters": [
                        _REQUEST_ID,
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "description": "A `name` from the request's `files`.",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The file (Content-Disposition: attachment).",
                            "content": {"application/octet-stream": {}},
                        },
                        "302": {
                            "description": "The export: a link that expires in five minutes "
                            "(exports are encrypted at rest; the link decrypts as it streams)."
                        },
                        "401": _UNAUTHORISED,
                        "404": _problem("No such document."),
                    },
                }
            },
            "/api/downloads/{token}": {
                "get": {
                    "summary": "An export, decrypted as it streams, through an expiring link.",
                    "operationId": "downloadExport",
                    "parameters": [
                        {
                            "name": "token",
                            "in": "path",
                            "required": True,
                            "description": "From the redirect of the export's file link.",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The export ZIP (Content-Disposition: attachment).",
                            "content": {"application/zip": {}},
                        },
                        "401": _UNAUTHORISED,
                        "404": _problem("The link is not valid, or the export is gone."),
                        "410": _problem("The link has expired; ask for a new one."),
                    },
                }
            },
            "/api/events": {
                "get": {
                    "summary": "Server-sent events: `request` (data: a RequestSummary) for every "
                    "change, `reload` when the client should fetch the list again.",
                    "operationId": "streamEvents",
                    "responses": {
                        "200": {
                            "description": "An event stream.",
                            "content": {"text/event-stream": {"schema": _ref(RequestSummary)}},
                        },
                        "401": _UNAUTHORISED,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {}},
                        },
                        "401": _UNAUTHORISED,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (no token needed).",
                    "operationId": "healthz",
                    "security": [],
                    "responses": {"200": {"description": "Alive."}, "503": {"description": "Not."}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the status topic was read to its end (no token needed).",
                    "operationId": "readyz",
                    "security": [],
                    "responses": {"200": {"description": "Ready."}, "503": {"description": "Not."}},
                }
            },
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "DSR_DASHBOARD_TOKEN",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "dsr_dashboard"},
            },
        },
    }


__all__ = ["openapi_document"]
