"""The OpenDSR connector against a strict fake processor: conformance, resumption, signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from connectors.base import ConnectorConfigError, current_task
from connectors.conformance import Seeded, dispatched
from connectors.execute import perform
from connectors.fakes import opendsr
from connectors.vendors.opendsr import OpenDsrConnector, subject_request_id
from schemas.events import OutcomeStatus, RequestType, TaskOutcome
from schemas.gateway import OpenDsrCallbackReceived
from schemas.primitives.opendsr import ProcessorCertificate
from tests.connectors.targets import builder, conformance_suite, per_second, subject

FAKE = opendsr.FakeOpenDsr
SUBJECT = subject(opendsr.SUBJECT_EMAIL)
ERASED = sum(opendsr.SUBJECT_EXPECTED.values())

build = builder(
    OpenDsrConnector,
    "processor",
    lambda fake: {
        "base_url": fake.url,
        "token": opendsr.TOKEN,
        "controller_id": opendsr.CONTROLLER_ID,
        "poll_seconds": 0.05,
        "max_poll_seconds": 0.2,
        "max_wait_seconds": 20,
    },
    rate_limit=per_second(40, concurrency=4),
)

SEEDED = Seeded(
    SUBJECT,
    expected=dict(opendsr.SUBJECT_EXPECTED),
    erased=ERASED,
    personal_values=[opendsr.SUBJECT_NAME],
)

TestOpenDsrConformance = conformance_suite(
    "processor", build, SEEDED, {"token": "not-the-token"}, (40, 1.0)
)


def _in_worker(connector: OpenDsrConnector, action: RequestType, request_id: str) -> TaskOutcome:
    """Run a task as the connector worker does: with the task as `current_task`."""
    task = dispatched(connector.system, action, SUBJECT, request_id=request_id)

    async def run() -> TaskOutcome:
        token = current_task.set(task)
        try:
            return await perform(connector, task)
        finally:
            current_task.reset(token)
            await connector.aclose()

    return asyncio.run(run())


def _until_submitted(fake: opendsr.FakeOpenDsr, request_id: str) -> None:
    """Return once the fake has received the request (fails after 10 s)."""
    for _ in range(500):
        if request_id in fake.request_ids():
            return
        time.sleep(0.02)
    raise AssertionError("the connector did not submit the request")


def test_a_retried_task_resumes_the_processor_request_instead_of_sending_a_second(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    fresh.auto_complete = False
    first = build(fresh, max_wait_seconds=0.3)
    assert isinstance(first, OpenDsrConnector)
    waited = _in_worker(first, RequestType.ERASURE, "req-resume-1")
    assert waited.status == OutcomeStatus.FAILED and waited.retryable
    assert "still pending" in (waited.reason or "")
    (request_id,) = fresh.request_ids()
    assert request_id == subject_request_id("req-resume-1", "processor", "erasure")
    fresh.complete(request_id)
    fresh.clear_log()
    again = build(fresh)  # a new worker after a restart
    assert isinstance(again, OpenDsrConnector)
    outcome = _in_worker(again, RequestType.ERASURE, "req-resume-1")
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert outcome.counts.deleted == ERASED
    assert fresh.request_ids() == [request_id]  # one processor request, not two
    assert len(fresh.calls("POST", "/v1/requests")) == 0  # the second attempt only read


def test_erasure_evidence_is_the_processors_signed_status_object(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    connector = build(fresh)
    assert isinstance(connector, OpenDsrConnector)
    outcome = _in_worker(connector, RequestType.ERASURE, "req-evidence-1")
    kinds = {e.kind: e.value for e in outcome.evidence}
    status = json.loads(kinds["opendsr_status"])
    assert status["request_status"] == "completed" and status["results_count"] == ERASED
    assert "results_url" not in status
    certificate = ProcessorCertificate.from_pem(fresh.certificate_pem)
    # The signature covers the status object exactly as the processor sent it.
    assert certificate.verifies(kinds["opendsr_status_signature"], _status_body(fresh, status))
    assert kinds["opendsr_subject_request_id"] == status["subject_request_id"]
    assert "opendsr_receipt_signature" in kinds


def _status_body(fake: opendsr.FakeOpenDsr, status: dict[str, object]) -> bytes:
    headers = {"Authorization": f"Bearer {opendsr.TOKEN}"}
    return httpx.get(
        f"{fake.url}/v1/requests/{status['subject_request_id']}", headers=headers
    ).content


def test_a_callback_wakes_the_waiting_task_before_its_next_poll(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    fresh.auto_complete = False
    fresh.send_callbacks = False
    connector = build(fresh, poll_seconds=3600, max_poll_seconds=3600, max_wait_seconds=3600)
    assert isinstance(connector, OpenDsrConnector)
    task = dispatched("processor", RequestType.ACCESS, SUBJECT, request_id="req-wake-1")
    request_id = subject_request_id("req-wake-1", "processor", "access")

    async def run() -> TaskOutcome:
        token = current_task.set(task)
        try:
            work = asyncio.create_task(perform(connector, task))
            await asyncio.to_thread(_until_submitted, fresh, request_id)
            await asyncio.sleep(0.2)  # the task is waiting on its (hour-long) poll
            await asyncio.to_thread(fresh.complete, request_id)
            connector.receive(
                OpenDsrCallbackReceived(
                    system="processor",
                    subject_request_id=request_id,
                    request_status="completed",
                    received_at=task.dispatched_at,
                )
            )
            return await asyncio.wait_for(work, 30)
        finally:
            current_task.reset(token)
            await connector.aclose()

    outcome = asyncio.run(run())
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert {r.collection for r in outcome.records} == set(opendsr.SUBJECT_EXPECTED)


def test_a_right_the_processor_does_not_list_is_a_manual_task_saying_so(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    fresh.request_types = ("erasure",)
    try:
        connector = build(fresh)
        assert isinstance(connector, OpenDsrConnector)
        outcome = _in_worker(connector, RequestType.ACCESS, "req-unsupported-1")
    finally:
        fresh.request_types = ("access", "portability", "erasure")
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert "does not support OpenDSR access" in (outcome.reason or "")
    assert fresh.request_ids() == []


def test_a_processor_cancelling_the_request_fails_the_task_with_the_reason(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    fresh.auto_complete = False
    connector = build(fresh)
    assert isinstance(connector, OpenDsrConnector)
    request_id = subject_request_id("req-cancel-1", "processor", "erasure")

    async def cancel_soon() -> None:
        await asyncio.to_thread(_until_submitted, fresh, request_id)
        await asyncio.to_thread(fresh.cancel, request_id)

    async def run() -> TaskOutcome:
        task = dispatched("processor", RequestType.ERASURE, SUBJECT, request_id="req-cancel-1")
        token = current_task.set(task)
        try:
            outcome, _ = await asyncio.gather(perform(connector, task), cancel_soon())
            return outcome
        finally:
            current_task.reset(token)
            await connector.aclose()

    outcome = asyncio.run(run())
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "cancelled" in (outcome.reason or "")


def test_a_processor_answer_signed_with_another_key_is_refused(
    fresh: opendsr.FakeOpenDsr, tmp_path: Path
) -> None:
    other = opendsr.FakeOpenDsr(domain="127.0.0.1")
    other.key = opendsr._key("forger")
    pinned = tmp_path / "other.pem"
    pinned.write_bytes(opendsr._certificate(other.key, "127.0.0.1"))
    connector = build(fresh, certificate_file=str(pinned))
    outcome = _in_worker(connector, RequestType.ERASURE, "req-forged-answer-1")  # type: ignore[arg-type]
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "not signed by the processor's certificate" in (outcome.reason or "")


def test_a_certificate_for_another_domain_is_a_configuration_error(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    connector = build(fresh, processor_domain="processor.example")
    outcome = _in_worker(connector, RequestType.ACCESS, "req-domain-1")  # type: ignore[arg-type]
    assert outcome.status == OutcomeStatus.FAILED and not outcome.retryable
    assert "not issued to 'processor.example'" in (outcome.reason or "")


def test_a_processor_taking_only_digests_gets_the_hashed_address(
    fresh: opendsr.FakeOpenDsr,
) -> None:
    fresh.identity_formats = ("sha256",)
    outcome = _in_worker(build(fresh), RequestType.ACCESS, "req-hashed-1")  # type: ignore[arg-type]
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert outcome.counts.found == sum(opendsr.SUBJECT_EXPECTED.values())
    sent = fresh.opendsr[fresh.request_ids()[0]].body["subject_identities"]
    digest = hashlib.sha256(opendsr.SUBJECT_EMAIL.encode()).hexdigest()
    assert sent == [
        {"identity_type": "email", "identity_value": digest, "identity_format": "sha256"}
    ]


def test_a_missing_pinned_certificate_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match="certificate_file cannot be read"):
        OpenDsrConnector(
            "processor",
            {
                "base_url": "https://processor.example",
                "token": "t",
                "controller_id": "c",
                "certificate_file": str(tmp_path / "missing.pem"),
            },
        )


def test_the_fake_is_strict(fresh: opendsr.FakeOpenDsr) -> None:
    headers = {"Authorization": f"Bearer {opendsr.TOKEN}"}
    good = {
        "regulation": "gdpr",
        "subject_request_id": opendsr.new_request_id(),
        "subject_request_type": "erasure",
        "subject_identities": [
            {"identity_type": "email", "identity_value": "x@example.org", "identity_format": "raw"}
        ],
        "submitted_time": "2026-01-02T03:04:05Z",
    }
    with httpx.Client(base_url=fresh.url, headers=headers) as client:
        for change, field in (
            ({"subject_request_id": "A7551968-D5D6-44B2-9831-815AC9017798"}, "subject_request_id"),
            ({"regulation": "lgpd"}, "regulation"),
            ({"submitted_time": "yesterday"}, "submitted_time"),
            ({"status_callback_urls": ["ftp://x"]}, "status_callback_urls"),
            ({"colour": "blue"}, "colour"),
        ):
            refused = client.post("/v1/requests", json={**good, **change})
            assert refused.status_code == 400, change
            error = refused.json()["error"]
            assert error["code"] == 400 and field in error["message"]
            assert error["errors"][0]["domain"] == "Validation"
        created = client.post("/v1/requests", json=good)
        assert created.status_code == 201
        receipt = created.json()
        assert base64.b64decode(receipt["encoded_request"]) == created.request.content
        again = client.post("/v1/requests", json=good)
        assert again.status_code == 400
        assert again.json()["error"]["errors"][0]["reason"] == "DuplicateRequest"
    assert httpx.post(f"{fresh.url}/v1/requests", json=good).status_code == 401
