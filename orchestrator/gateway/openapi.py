"""The intake API's answers (pydantic models) and its OpenAPI 3.1 document, generated from them.

The request bodies are the events themselves (`RequestSubmitted`, `IdentityVerified`,
`DecisionRecorded`, `DeadlineExtended`, `DeliveryRecorded`): their JSON Schema is the API's
schema, written once in `schemas/events.py`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from orchestrator.gateway.signatures import BODY_COMPONENTS, COMPONENTS, MAX_AGE_SECONDS
from schemas.envelope import TYPE_OF
from schemas.events import (
    REQUEST_ID_PATTERN,
    DeadlineExtended,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    RequestStatusChanged,
    RequestSubmitted,
)

#: The routes `POST /v1/requests/{request_id}/<step>` and the event each publishes.
STEPS: dict[str, type[BaseModel]] = {
    "verifications": IdentityVerified,
    "decisions": DecisionRecorded,
    "extensions": DeadlineExtended,
    "deliveries": DeliveryRecorded,
}


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accepted(_Answer):
    """A request accepted: Kafka acknowledged it; follow it at `status_url`."""

    request_id: str
    status_url: str = Field(description="GET it (signed) for the latest status.")


class StepAccepted(_Answer):
    """A verification, decision, extension or delivery published (Kafka acknowledged it)."""

    request_id: str
    event: str = Field(description="The CloudEvents type published.")
    status_url: str


class RequestState(_Answer):
    """A request as the intake API knows it: when accepted, and its latest status (if any)."""

    request_id: str
    accepted_at: AwareDatetime
    status: RequestStatusChanged | None = Field(
        description="The latest status from the status topic (no personal data); null until "
        "the orchestrator processed the request."
    )


class ErrorDetail(_Answer):
    """What was wrong; never a value that was sent."""

    code: str = Field(examples=["bad_signature", "invalid_body", "request_id_conflict"])
    message: str
    field: str | None = Field(
        default=None, description="The body field, header or parameter at fault."
    )
    errors: list[dict[str, str]] | None = Field(
        default=None, description="invalid_body: every field at fault, `{field, message}`."
    )


class Error(_Answer):
    """Every rejection: `{"error": {...}}`."""

    error: ErrorDetail


_MODELS: tuple[type[BaseModel], ...] = (
    RequestSubmitted,
    *STEPS.values(),
    Accepted,
    StepAccepted,
    RequestState,
    Error,
)
_BODIES = frozenset({RequestSubmitted, *STEPS.values()})

_SIGNATURE = (
    "HTTP Message Signatures (RFC 9421) with a publisher key from the publisher keys file. "
    f"Cover {', '.join(f'`{c}`' for c in COMPONENTS)} and, for a request with a body, "
    f"{', '.join(f'`{c}`' for c in BODY_COMPONENTS)} (RFC 9530, sha-256). Parameters: "
    '`keyid` (the publisher\'s key id), `alg` (`"ed25519"` or `"hmac-sha256"`, as the key), '
    f"`created` (within {MAX_AGE_SECONDS} s of the server's clock) and a fresh `nonce` "
    "(8-128 characters; a nonce seen before is refused). Example: `Signature-Input: "
    'dsr=("@method" "@authority" "@path" "content-type" "content-digest");'
    'created=1767225600;keyid="ed25519-Xy";alg="ed25519";nonce="3f9a..."`, `Signature: '
    "dsr=:<base64>:`. examples/curl-publish.sh signs with openssl."
)
_SECURITY_SCHEMES = {
    "httpSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": _SIGNATURE,
    }
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _error(description: str) -> dict[str, Any]:
    return _json(Error, description)


_LOCATION = {"Location": {"description": "The status URL.", "schema": {"type": "string"}}}
_RETRY = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
_COMMON = {
    "401": _error(
        "Not signed, or the signature does not hold: `signature_missing`, "
        "`signature_malformed`, `keyid_missing`, `unknown_keyid`, `wrong_algorithm`, "
        "`created_missing`, `signature_expired`, `signature_in_future`, `components_missing`, "
        "`nonce_missing`, `digest_missing`, `digest_mismatch`, `bad_signature`, "
        "`nonce_replayed`, `wrong_authority`."
    ),
    "429": {**_error("Over the publisher's rate limit (`rate_limited`)."), "headers": _RETRY},
    "503": _error(
        "Kafka did not acknowledge (`not_published`), the status topic is still being read "
        "(`starting`), or no publisher keys are configured (`not_configured`)."
    ),
}
_WITH_BODY = {
    "403": _error(
        "The publisher's `events` in the publisher keys file do not allow this event type, or "
        "a submission claims `verification.verified: true` without the identity-verification "
        "permission (`forbidden`)."
    ),
    "413": _error("The body is larger than DSR_INTAKE_MAX_BODY_BYTES (`body_too_large`)."),
    "415": _error("The body is not `application/json` (`unsupported_media_type`)."),
    "422": _error("The body is not valid JSON or not a valid event (`invalid_body`)."),
}
_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
}


def _operation(
    summary: str,
    operation_id: str,
    responses: dict[str, Any],
    *,
    body: type[BaseModel] | None = None,
    path_id: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "operationId": operation_id}
    if path_id:
        operation["parameters"] = [_REQUEST_ID]
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
        responses = {**responses, **_WITH_BODY}
    operation["responses"] = dict(sorted({**responses, **_COMMON}.items()))
    return operation


def _paths() -> dict[str, Any]:
    submit = _operation(
        "Submit a data-subject request (the RequestSubmitted event's JSON). Idempotent on "
        "`request_id`: the same body again gets the same answer.",
        "submitRequest",
        {
            "202": {
                **_json(Accepted, "Published and acknowledged by Kafka."),
                "headers": _LOCATION,
            },
            "409": _error(
                "`request_id` is taken by a different body or another publisher "
                "(`request_id_conflict`)."
            ),
        },
        body=RequestSubmitted,
    )
    get = _operation(
        "The latest status of a request this publisher submitted (signed GET).",
        "getRequest",
        {
            "200": _json(RequestState, "The request's latest status."),
            "404": _error("No request with this id from this publisher (`not_found`)."),
        },
        path_id=True,
    )
    paths: dict[str, Any] = {
        "/v1/requests": {"post": submit},
        "/v1/requests/{request_id}": {"get": get},
    }
    for step, model in STEPS.items():
        paths[f"/v1/requests/{{request_id}}/{step}"] = {
            "post": _operation(
                f"Publish a {TYPE_OF[model]} for the request (its `request_id` must be the "
                "path's); only for publishers whose `events` list the type.",
                f"post{step.capitalize()}",
                {
                    "202": {
                        **_json(StepAccepted, "Published and acknowledged by Kafka."),
                        "headers": _LOCATION,
                    }
                },
                body=model,
                path_id=True,
            )
        }
    paths["/v1/openapi.json"] = {
        "get": {
            "summary": "This document (not signed).",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1."}},
        }
    }
    return paths


@cache
def openapi_document(version: str) -> dict[str, Any]:
    """The document served at /v1/openapi.json."""
    _, schemas = models_json_schema(
        [(m, "validation" if m in _BODIES else "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dsr-orchestrator intake API",
            "version": version,
            "description": "Submit data-subject requests, and publish identity verifications, "
            "decisions, deadline extensions and deliveries, over HTTP: each becomes the same "
            "signed event on the requests topic as a Kafka publisher's. Every call is signed "
            "with the publisher's key (RFC 9421); answers carry no personal data.",
        },
        "security": [{"httpSignature": []}],
        "paths": _paths(),
        "components": {"schemas": schemas["$defs"], "securitySchemes": _SECURITY_SCHEMES},
    }


__all__ = [
    "STEPS",
    "Accepted",
    "Error",
    "ErrorDetail",
    "RequestState",
    "StepAccepted",
    "openapi_document",
]
