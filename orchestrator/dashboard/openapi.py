"""The OpenAPI 3.1 document of the dashboard's API, generated from the response models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.dashboard.audit import AuditPage
from orchestrator.dashboard.model import (
    STATUS_GROUPS,
    DecisionBody,
    DeliveryBody,
    EventPublished,
    ExtensionBody,
    Problem,
    RequestDetail,
    RequestPage,
    RequestSummary,
    TaskCompletion,
    TaskRecorded,
    VerificationBody,
)
from orchestrator.dashboard.sweeps import (
    SweepApprovalBody,
    SweepDetail,
    SweepPage,
    SweepPublished,
    SweepStartBody,
    SweepSummary,
)
from schemas.events import REQUEST_ID_PATTERN, SYSTEM_NAME_PATTERN, RequestStatus, RequestType

_MODELS: tuple[type[BaseModel], ...] = (
    AuditPage,
    RequestPage,
    RequestSummary,
    RequestDetail,
    TaskCompletion,
    TaskRecorded,
    DecisionBody,
    VerificationBody,
    DeliveryBody,
    ExtensionBody,
    EventPublished,
    SweepPage,
    SweepSummary,
    SweepDetail,
    SweepStartBody,
    SweepApprovalBody,
    SweepPublished,
    Problem,
)
#: Request bodies: their schemas describe what is accepted (validation mode).
_BODIES: frozenset[type[BaseModel]] = frozenset(
    {
        TaskCompletion,
        DecisionBody,
        VerificationBody,
        ExtensionBody,
        DeliveryBody,
        SweepStartBody,
        SweepApprovalBody,
    }
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(
    description: str, media_type: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "content": {media_type: {} if schema is None else {"schema": schema}},
    }


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return _content(description, "application/json", _ref(model))


def _problem(description: str) -> dict[str, Any]:
    return _json(Problem, description)


def _path(
    name: str, *, pattern: str | None = None, description: str | None = None
) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description:
        parameter["description"] = description
    parameter["schema"] = (
        {"type": "string"} if pattern is None else {"type": "string", "pattern": pattern}
    )
    return parameter


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query"}
    if description:
        parameter["description"] = description
    parameter["schema"] = schema
    if schema.get("type") == "array":  # repeated (?type=a&type=b), as forms send them
        parameter.update(style="form", explode=True)
    return parameter


def _operation(
    summary: str,
    operation_id: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """One operation; `public` ones need no token."""
    operation: dict[str, Any] = {"summary": summary, "operationId": operation_id}
    if public:
        operation["security"] = []
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    operation["responses"] = responses
    return operation


_UNAUTHORISED = _problem("No or a wrong token.")
_REQUEST_ID = _path("request_id", pattern=REQUEST_ID_PATTERN)
_NOT_READY = _problem(
    "The dashboard is still reading the status topic after a start; retry after Retry-After."
)
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "DSR_DASHBOARD_TOKEN"},
    "session": {"type": "apiKey", "in": "cookie", "name": "dsr_dashboard"},
}


def _enums(values: list[str]) -> dict[str, Any]:
    return {"type": "array", "items": {"enum": values}}


def _list_requests() -> dict[str, Any]:
    statuses = [*STATUS_GROUPS, *(s.value for s in RequestStatus)]
    parameters = [
        _query(
            "status",
            _enums(statuses),
            "Statuses, comma-separated or repeated; "
            "'open' and 'finished' stand for groups of them.",
        ),
        _query(
            "type",
            _enums([t.value for t in RequestType]),
            "Request types, comma-separated or repeated.",
        ),
        _query(
            "overdue",
            {"type": "boolean"},
            "true: only overdue requests; false: none of them.",
        ),
        _query("q", {"type": "string"}, "Part of the request id."),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}),
    ]
    responses = {
        "200": _json(RequestPage, "The filtered list with totals."),
        "400": _problem("A filter value is not understood."),
        "401": _UNAUTHORISED,
        "503": _NOT_READY,
    }
    return _operation(
        "Requests, most urgent first (overdue, then by deadline).",
        "listRequests",
        responses,
        parameters=parameters,
    )


def _request_paths() -> dict[str, Any]:
    """The request list, one request, and completing its manual task."""
    get_request = _operation(
        "One request: each system's outcome, the timeline, documents.",
        "getRequest",
        {
            "200": _json(RequestDetail, "The request."),
            "401": _UNAUTHORISED,
            "404": _problem("The status topic never mentioned this request."),
            "503": _NOT_READY,
        },
        parameters=[_REQUEST_ID],
    )
    complete_task = _operation(
        "Record that a person carried out a manual task (as `dsr tasks complete`).",
        "completeTask",
        {
            "202": _json(
                TaskRecorded, "Published; the status changes once the orchestrator processed it."
            ),
            "400": _problem("The evidence is missing, too long or personal."),
            "401": _UNAUTHORISED,
            "404": _problem("No such request or system."),
            "409": _problem("The task is not waiting for a person."),
            "415": _problem("The body is not JSON."),
            "503": _NOT_READY,
        },
        parameters=[_REQUEST_ID, _path("system", pattern=SYSTEM_NAME_PATTERN)],
        body=TaskCompletion,
    )
    return {
        "/api/requests": {"get": _list_requests()},
        "/api/requests/{request_id}": {"get": get_request},
        "/api/requests/{request_id}/tasks/{system}/complete": {"post": complete_task},
    }


def _officer_step(summary: str, operation_id: str, body: type[BaseModel], bad: str) -> Any:
    return _operation(
        summary,
        operation_id,
        {
            "202": _json(
                EventPublished,
                "Published, signed, on the requests topic; the status changes once the "
                "orchestrator processed it.",
            ),
            "400": _problem(bad),
            "401": _UNAUTHORISED,
            "404": _problem("No such request (or system)."),
            "409": _problem("Not possible in the request's state; the error says what is."),
            "415": _problem("The body is not JSON."),
            "503": _problem("Still reading the status topic, or Kafka did not acknowledge."),
        },
        parameters=[_REQUEST_ID],
        body=body,
    )


def _officer_paths() -> dict[str, Any]:
    """An officer's decisions, identity verification and deadline extension (as the CLI)."""
    decide = _officer_step(
        "Record an officer's decision: approve, refuse (with a reason code), refuse_system, "
        "legal_hold, fee or fee_paid (as `dsr decide`); `decided_by` is the dashboard.",
        "recordDecision",
        DecisionBody,
        "A field is missing or not allowed for the decision (e.g. reason 'other' without "
        "an explanation).",
    )
    verify = _officer_step(
        "Record that the requester's identity was verified, by a method the verification "
        "policy accepts for the right (as `dsr verify-identity`).",
        "verifyIdentity",
        VerificationBody,
        "The method does not count for this right, or the copy's destruction time is ahead.",
    )
    extend = _officer_step(
        "Extend the deadline once by 1 or 2 months, only before it has passed "
        "(Art. 12(3) GDPR; as `dsr extend`).",
        "extendDeadline",
        ExtensionBody,
        "The months or reason are invalid, or the reason holds personal data.",
    )
    deliver = _officer_step(
        "Record that the answer reached the requester and how: post, ZIVVER, in person or "
        "e-mail (Art. 12(3) GDPR: answered when delivered; as `dsr deliver`).",
        "recordDelivery",
        DeliveryBody,
        "The channel is unknown.",
    )
    return {
        "/api/requests/{request_id}/decisions": {"post": decide},
        "/api/requests/{request_id}/verifications": {"post": verify},
        "/api/requests/{request_id}/extensions": {"post": extend},
        "/api/requests/{request_id}/deliveries": {"post": deliver},
    }


def _sweep_paths() -> dict[str, Any]:
    """Retention sweeps: the list, one sweep, starting one, approving one, its certificate."""
    sweep_id = _path("sweep_id", pattern=REQUEST_ID_PATTERN)
    published = _json(
        SweepPublished,
        "Published, signed, on the requests topic; the sweep's status changes once the "
        "orchestrator processed it.",
    )
    list_sweeps = _operation(
        "Systems with a sweep policy (with a sweep awaiting approval first, then overdue ones) "
        "and the sweeps on the status topic.",
        "listSweeps",
        {
            "200": _json(SweepPage, "Systems, sweeps and totals."),
            "400": _problem("The limit is not understood."),
            "401": _UNAUTHORISED,
            "503": _NOT_READY,
        },
        parameters=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 10000})],
    )
    start = _operation(
        "Start a sweep of one system, a dry run unless `dry_run` is false (SweepRequested, "
        "trigger manual; as `dsr sweep SYSTEM`); `requested_by` is the signed-in officer.",
        "startSweep",
        {
            "202": published,
            "400": _problem("The body is not understood."),
            "401": _UNAUTHORISED,
            "404": _problem("The register has no such system."),
            "409": _problem("The system has no sweep policy, or a sweep of it is under way."),
            "415": _problem("The body is not JSON."),
            "503": _problem("Still reading the status topic, or Kafka did not acknowledge."),
        },
        body=SweepStartBody,
    )
    get_sweep = _operation(
        "One sweep: rules and cutoffs, dry-run counts and what was deleted per collection, "
        "retained duties, approver, certificate, timeline.",
        "getSweep",
        {
            "200": _json(SweepDetail, "The sweep."),
            "401": _UNAUTHORISED,
            "404": _problem("The status topic never mentioned this sweep."),
            "503": _NOT_READY,
        },
        parameters=[sweep_id],
    )
    approve = _operation(
        "Approve deleting what a sweep's dry run counted (SweepApproved; as `dsr sweep "
        "approve`); `approved_by` is the signed-in officer. The body is `{}`.",
        "approveSweep",
        {
            "202": published,
            "400": _problem("The body is not `{}`."),
            "401": _UNAUTHORISED,
            "404": _problem("No such sweep."),
            "409": _problem("The sweep is not awaiting approval."),
            "415": _problem("The body is not JSON."),
            "503": _problem("Still reading the status topic, or Kafka did not acknowledge."),
        },
        parameters=[sweep_id],
        body=SweepApprovalBody,
    )
    return {
        "/api/sweeps": {"get": list_sweeps, "post": start},
        "/api/sweeps/{sweep_id}": {"get": get_sweep},
        "/api/sweeps/{sweep_id}/approval": {"post": approve},
        "/api/sweeps/{sweep_id}/files/{name}": {"get": _sweep_download(sweep_id)},
    }


def _sweep_download(sweep_id: dict[str, Any]) -> dict[str, Any]:
    """A sweep's certificate files."""
    return _operation(
        "A sweep's certificate: `certificate` (signed JSON), `certificate-nl`, `certificate-en`.",
        "downloadSweepFile",
        {
            "200": _content(
                "The file (Content-Disposition: attachment).", "application/octet-stream"
            ),
            "401": _UNAUTHORISED,
            "404": _problem("No such sweep or document."),
        },
        parameters=[sweep_id, _path("name", description="A `name` from the sweep's `files`.")],
    )


def _download_paths() -> dict[str, Any]:
    """A finished request's documents, and the expiring links that stream its export."""
    download_file = _operation(
        "A document of a finished request, as a download.",
        "downloadFile",
        {
            "200": _content(
                "The file (Content-Disposition: attachment).", "application/octet-stream"
            ),
            "302": {
                "description": "The export: a link that expires in five minutes "
                "(exports are encrypted at rest; the link decrypts as it streams)."
            },
            "401": _UNAUTHORISED,
            "404": _problem("No such document."),
        },
        parameters=[
            _REQUEST_ID,
            _path("name", description="A `name` from the request's `files`."),
        ],
    )
    download_export = _operation(
        "An export, decrypted as it streams, through an expiring link.",
        "downloadExport",
        {
            "200": _content("The export ZIP (Content-Disposition: attachment).", "application/zip"),
            "401": _UNAUTHORISED,
            "404": _problem("The link is not valid, or the export is gone."),
            "410": _problem("The link has expired; ask for a new one."),
        },
        parameters=[_path("token", description="From the redirect of the export's file link.")],
    )
    return {
        "/api/requests/{request_id}/files/{name}": {"get": download_file},
        "/api/downloads/{token}": {"get": download_export},
    }


def _service_paths() -> dict[str, Any]:
    """Live updates, metrics and the probes."""
    events = _operation(
        "Server-sent events: `request` (data: a RequestSummary) for every change of a "
        "request, `sweep` (data: a SweepSummary) for every change of a sweep, `reload` when "
        "the client should fetch the list again.",
        "streamEvents",
        {
            "200": _content("An event stream.", "text/event-stream", _ref(RequestSummary)),
            "401": _UNAUTHORISED,
        },
    )
    metrics = _operation(
        "Prometheus metrics.",
        "metrics",
        {"200": _content("Prometheus text format.", "text/plain"), "401": _UNAUTHORISED},
    )
    probes = {
        name: _operation(
            summary,
            name,
            {"200": {"description": good}, "503": {"description": "Not."}},
            public=True,
        )
        for name, summary, good in [
            ("healthz", "Liveness (no token needed).", "Alive."),
            (
                "readyz",
                "Readiness: the status topic was read to its end (no token needed).",
                "Ready.",
            ),
        ]
    }
    audit = _operation(
        "The audit log: who downloaded, decided, verified, delivered, extended, completed or "
        "swept what, and when (no personal data of the subject).",
        "getAuditLog",
        {
            "200": _json(AuditPage, "The newest entries, oldest first."),
            "400": _problem("limit is not a whole number between 1 and 100000."),
            "401": _UNAUTHORISED,
        },
        parameters=[
            _query("request_id", {"type": "string"}, "Only entries about this request."),
            _query("sweep_id", {"type": "string"}, "Only entries about this sweep."),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000}),
        ],
    )
    return {
        "/api/audit": {"get": audit},
        "/api/events": {"get": events},
        "/metrics": {"get": metrics},
        **{f"/{name}": {"get": probe} for name, probe in probes.items()},
    }


@cache
def openapi_document(version: str) -> dict[str, Any]:
    """The document served at /api/openapi.json."""
    _, schemas = models_json_schema(
        [(m, "validation" if m in _BODIES else "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dsr-orchestrator dashboard API",
            "version": version,
            "description": "Data-subject requests as the status topic shows them: what is open, "
            "what is late, which system is stuck, and the documents of finished requests; "
            "retention sweeps, their schedules and certificates. "
            "No personal data: requests are known by their id, sweeps count per collection.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            **_request_paths(),
            **_officer_paths(),
            **_sweep_paths(),
            **_download_paths(),
            **_service_paths(),
        },
        "components": {"schemas": schemas["$defs"], "securitySchemes": _SECURITY_SCHEMES},
    }


__all__ = ["openapi_document"]
