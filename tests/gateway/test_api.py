"""The intake API for publishers: signatures, idempotency, permissions, limits, errors."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from orchestrator.gateway.openapi import Error
from orchestrator.gateway.settings import IntakeSettings
from orchestrator.intake.publishers import IssuedKey
from schemas.envelope import TYPE_OF
from schemas.events import DecisionRecorded, RequestSubmitted
from schemas.kafka import KafkaSettings
from schemas.topics import REQUESTS
from tests.e2e.conftest import read_topic
from tests.gateway.conftest import ServedGateway, gateway_settings, send, serve, sign

pytestmark = pytest.mark.broker

EMAIL = "anna.api-subject@example.nl"
PHONE = "+31 6 98765432"


def submission(request_id: str | None = None, *, verified: bool = False, **extra: object) -> dict:
    """A RequestSubmitted body as a web form would post it."""
    body: dict[str, object] = {
        "request_id": request_id or f"api-{uuid.uuid4().hex[:12]}",
        "type": "access",
        "subject": {
            "identifiers": [{"type": "email", "value": EMAIL}, {"type": "phone", "value": PHONE}]
        },
        "received_at": datetime.now(UTC).isoformat(),
        "requested_by": "web-form",
        **extra,
    }
    if verified:
        body["verification"] = {
            "verified": True,
            "method": "email_confirmation",
            "verified_at": datetime.now(UTC).isoformat(),
        }
    return body


def dumps(body: dict) -> bytes:
    return json.dumps(body).encode()


def error_of(response: httpx.Response, status: int) -> dict:
    """The JSON error of `response`, which must have `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return Error.model_validate(response.json()).error.model_dump()


def submitted_on_topic(kafka: KafkaSettings, request_id: str) -> list[RequestSubmitted]:
    return [
        envelope.body
        for _, envelope in read_topic(kafka, REQUESTS.name)
        if envelope is not None
        and isinstance(envelope.body, RequestSubmitted)
        and envelope.body.request_id == request_id
    ]


# -- authentication ------------------------------------------------------------------------------


def test_unsigned_request_is_refused_with_401_json(gateway: ServedGateway) -> None:
    response = send(gateway, "POST", "/v1/requests", None, json_body=dumps(submission()))
    error = error_of(response, 401)
    assert error["code"] == "signature_missing"
    assert "Signature-Input" in error["message"]
    assert "Signature" in response.headers["WWW-Authenticate"]
    assert '"content-digest"' in response.headers["Accept-Signature"]


def test_signature_by_another_key_is_refused(
    gateway: ServedGateway, web_form: IssuedKey, officer_tool: IssuedKey, tmp_path: Path
) -> None:
    from orchestrator.intake.publishers import create_publisher

    stranger = create_publisher(tmp_path / "keys.yaml", "stranger")
    body = dumps(submission())
    forged = send(gateway, "POST", "/v1/requests", stranger, json_body=body, key_id=web_form.key_id)
    assert error_of(forged, 401)["code"] == "bad_signature"
    unknown = send(gateway, "POST", "/v1/requests", stranger, json_body=body)
    assert error_of(unknown, 401)["code"] == "unknown_keyid"


def test_body_changed_after_signing_is_refused(gateway: ServedGateway, web_form: IssuedKey) -> None:
    request = httpx.Request(
        "POST",
        gateway.url + "/v1/requests",
        headers={"Content-Type": "application/json"},
        content=dumps(submission()),
    )
    sign(request, web_form)
    tampered = httpx.Request(
        "POST",
        gateway.url + "/v1/requests",
        headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
        content=dumps(submission(type="erasure")),
    )
    response = httpx.Client().send(tampered)
    assert error_of(response, 401)["code"] == "digest_mismatch"


def test_signature_must_cover_the_body_digest_and_type(
    gateway: ServedGateway, web_form: IssuedKey
) -> None:
    response = send(
        gateway,
        "POST",
        "/v1/requests",
        web_form,
        json_body=dumps(submission()),
        components=("@method", "@path"),
    )
    error = error_of(response, 401)
    assert error["code"] == "components_missing"
    assert "@authority" in error["message"] and "content-type" in error["message"]


def test_stale_created_is_refused(gateway: ServedGateway, web_form: IssuedKey) -> None:
    stale = datetime.now(UTC) - timedelta(seconds=301)
    response = send(
        gateway, "POST", "/v1/requests", web_form, json_body=dumps(submission()), created=stale
    )
    error = error_of(response, 401)
    assert error["code"] == "signature_expired"
    assert error["field"] == "Signature-Input.created"


def test_replayed_nonce_is_refused(gateway: ServedGateway, web_form: IssuedKey) -> None:
    """A captured request sent again (same signature, same nonce) is a replay."""
    request = httpx.Request(
        "POST",
        gateway.url + "/v1/requests",
        headers={"Content-Type": "application/json"},
        content=dumps(submission()),
    )
    sign(request, web_form)
    with httpx.Client() as client:
        assert client.send(request).status_code == 202
        again = client.send(request)
    assert error_of(again, 401)["code"] == "nonce_replayed"


# -- submitting ---------------------------------------------------------------------------------


def test_same_request_twice_is_one_request(
    gateway: ServedGateway, web_form: IssuedKey, kafka_settings: KafkaSettings
) -> None:
    body = submission()
    first = send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(body))
    assert first.status_code == 202, first.text
    # The same request with other key order and spacing is the same request (RFC 8785).
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    second = send(gateway, "POST", "/v1/requests", web_form, json_body=reordered)
    assert second.status_code == 202, second.text
    assert first.json() == second.json()
    request_id = body["request_id"]
    assert first.json() == {
        "request_id": request_id,
        "status_url": f"{gateway.url}/v1/requests/{request_id}",
    }
    assert first.headers["Location"] == first.json()["status_url"]
    assert len(submitted_on_topic(kafka_settings, str(request_id))) == 1


def test_different_body_under_the_same_id_is_409(
    gateway: ServedGateway, web_form: IssuedKey, officer_tool: IssuedKey
) -> None:
    body = submission()
    assert send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(body)).status_code == 202
    changed = {**body, "type": "erasure"}
    conflict = send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(changed))
    error = error_of(conflict, 409)
    assert error["code"] == "request_id_conflict"
    assert error["field"] == "request_id"
    # Another publisher cannot take the id either, not even with the same body.
    other = send(gateway, "POST", "/v1/requests", officer_tool, json_body=dumps(body))
    assert error_of(other, 409)["field"] == "request_id"


def test_2mb_body_is_413(gateway: ServedGateway, web_form: IssuedKey) -> None:
    body = dumps(submission(requested_by="x" * (2 * 1024 * 1024)))
    response = send(gateway, "POST", "/v1/requests", web_form, json_body=body)
    error = error_of(response, 413)
    assert error["code"] == "body_too_large"
    assert "DSR_INTAKE_MAX_BODY_BYTES" in error["message"]


def test_invalid_body_is_422_naming_the_field(gateway: ServedGateway, web_form: IssuedKey) -> None:
    body = submission(type="everything")
    response = send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(body))
    error = error_of(response, 422)
    assert error["code"] == "invalid_body"
    assert error["field"] == "type"
    not_json = send(gateway, "POST", "/v1/requests", web_form, json_body=b"{not json")
    assert error_of(not_json, 422)["code"] == "invalid_body"


def test_web_form_may_not_claim_a_verified_identity(
    gateway: ServedGateway, web_form: IssuedKey
) -> None:
    """Art. 12(6) GDPR: only a publisher allowed to verify identities may say it did."""
    body = dumps(submission(verified=True))
    response = send(gateway, "POST", "/v1/requests", web_form, json_body=body)
    error = error_of(response, 403)
    assert error["field"] == "verification.verified"


# -- status --------------------------------------------------------------------------------------


def test_status_only_for_the_submitting_publisher(
    gateway: ServedGateway, web_form: IssuedKey, officer_tool: IssuedKey
) -> None:
    body = submission()
    assert send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(body)).status_code == 202
    path = f"/v1/requests/{body['request_id']}"
    mine = send(gateway, "GET", path, web_form)
    assert mine.status_code == 200, mine.text
    assert mine.json()["request_id"] == body["request_id"]
    assert set(mine.json()) == {"request_id", "accepted_at", "status"}
    assert error_of(send(gateway, "GET", path, officer_tool), 404)["code"] == "not_found"
    assert error_of(send(gateway, "GET", path, None), 401)["code"] == "signature_missing"


# -- officers' steps -----------------------------------------------------------------------------


def decision(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "decision": "refuse",
        "reason_code": "manifestly_unfounded",
        "decided_by": "officer-7",
        "decided_at": datetime.now(UTC).isoformat(),
    }


def test_publisher_without_the_decision_permission_gets_403(
    gateway: ServedGateway,
    web_form: IssuedKey,
    officer_tool: IssuedKey,
    kafka_settings: KafkaSettings,
) -> None:
    request_id = f"api-{uuid.uuid4().hex[:12]}"
    path = f"/v1/requests/{request_id}/decisions"
    refused = send(gateway, "POST", path, web_form, json_body=dumps(decision(request_id)))
    error = error_of(refused, 403)
    assert TYPE_OF[DecisionRecorded] in error["message"]
    allowed = send(gateway, "POST", path, officer_tool, json_body=dumps(decision(request_id)))
    assert allowed.status_code == 202, allowed.text
    assert allowed.json()["event"] == TYPE_OF[DecisionRecorded]
    published = [
        (record, envelope)
        for record, envelope in read_topic(kafka_settings, REQUESTS.name)
        if envelope is not None
        and isinstance(envelope.body, DecisionRecorded)
        and envelope.body.request_id == request_id
    ]
    assert len(published) == 1
    assert published[0][1].source == "http:api-officer-tool"


def test_step_request_id_must_match_the_path(
    gateway: ServedGateway, officer_tool: IssuedKey
) -> None:
    body = dumps(decision("api-some-other-id"))
    response = send(
        gateway, "POST", "/v1/requests/api-this-one/decisions", officer_tool, json_body=body
    )
    assert error_of(response, 422)["field"] == "request_id"


# -- limits and the document ---------------------------------------------------------------------


def test_publisher_over_its_rate_limit_gets_429(
    kafka_settings: KafkaSettings,
    test_publisher: IssuedKey,
    intake_key: IssuedKey,
    web_form: IssuedKey,
    tmp_path: Path,
) -> None:
    settings = gateway_settings(kafka_settings, test_publisher.keys_file, tmp_path)
    with serve(settings, IntakeSettings(port=0, publisher_rate="2/minute"), intake_key) as small:
        statuses = [
            send(small, "GET", "/v1/requests/api-x", web_form).status_code for _ in range(3)
        ]
        assert statuses[:2] == [404, 404]
        limited = send(small, "GET", "/v1/requests/api-x", web_form)
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_signature_for_another_host_is_refused(
    kafka_settings: KafkaSettings,
    test_publisher: IssuedKey,
    intake_key: IssuedKey,
    web_form: IssuedKey,
    tmp_path: Path,
) -> None:
    """With DSR_INTAKE_SIGNATURE_AUTHORITIES a call signed for another host does not count."""
    settings = gateway_settings(kafka_settings, test_publisher.keys_file, tmp_path)
    intake = IntakeSettings(port=0, signature_authorities=["dsr.example.nl"])
    with serve(settings, intake, intake_key) as strict:
        response = send(strict, "GET", "/v1/requests/api-x", web_form)
    error = error_of(response, 401)
    assert (error["code"], error["field"]) == ("wrong_authority", "Host")


def test_openapi_document_describes_the_signature_and_every_error(gateway: ServedGateway) -> None:
    document = httpx.get(f"{gateway.url}/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    scheme = document["components"]["securitySchemes"]["httpSignature"]
    assert "RFC 9421" in scheme["description"] and "content-digest" in scheme["description"]
    submit = document["paths"]["/v1/requests"]["post"]
    assert set(submit["responses"]) == {
        "202",
        "401",
        "403",
        "409",
        "413",
        "415",
        "422",
        "429",
        "503",
    }
    schema = document["components"]["schemas"]["RequestSubmitted"]
    assert schema["required"] == RequestSubmitted.model_json_schema()["required"]
    for step in ("verifications", "decisions", "extensions", "deliveries"):
        assert f"/v1/requests/{{request_id}}/{step}" in document["paths"]


# -- personal data -------------------------------------------------------------------------------


def test_no_personal_data_in_error_bodies_or_logs(
    gateway: ServedGateway,
    web_form: IssuedKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Our loggers at every level; libraries at INFO (aiokafka's DEBUG dumps whole records).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="dsr")
    body = submission()
    answers = [
        send(gateway, "POST", "/v1/requests", None, json_body=dumps(body)),
        send(gateway, "POST", "/v1/requests", web_form, json_body=dumps({**body, "type": EMAIL})),
        send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(submission(verified=True))),
        send(gateway, "POST", "/v1/requests", web_form, json_body=dumps(body)),
        send(
            gateway,
            "POST",
            "/v1/requests",
            web_form,
            json_body=dumps({**body, "jurisdiction": "BE"}),
        ),
        send(
            gateway,
            "POST",
            "/v1/requests",
            web_form,
            json_body=dumps(
                {**body, "subject": {"identifiers": [{"type": "email", "value": 7}]}, "x": PHONE}
            ),
        ),
    ]
    assert [a.status_code for a in answers] == [401, 422, 403, 202, 409, 422]
    for answer in answers:
        assert EMAIL not in answer.text and PHONE not in answer.text
    assert caplog.records, "the intake logs what it refuses and publishes"
    assert EMAIL not in caplog.text and PHONE not in caplog.text
