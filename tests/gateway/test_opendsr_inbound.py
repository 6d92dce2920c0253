"""OpenDSR inbound: a controller sends us requests as its processor (Art. 28(3)(e) GDPR).

A real stack (orchestrator and a memory connector worker) on the session broker, a real
intake process, a test controller speaking OpenDSR 2.0 with httpx, and its callback endpoint
(aiohttp) that verifies nothing itself: the tests check every signature against the
certificate the intake serves, with the same primitive our OpenDSR connector uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from orchestrator.gateway.server import Gateway
from orchestrator.gateway.settings import IntakeSettings
from orchestrator.intake.publishers import IssuedKey
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from schemas.primitives.opendsr import DOMAIN_HEADER, SIGNATURE_HEADER, ProcessorCertificate
from tests.gateway.conftest import ServedGateway

pytestmark = pytest.mark.broker

TOKEN = "acme-controller-token-0123456789abcdef"
OTHER_TOKEN = "other-controller-token-0123456789abcdef"
EMAIL = "jan.jansen@example.nl"
V1 = "/opendsr/v1"


@dataclass
class CallbackEndpoint:
    """The controller's callback endpoint: records every call; `/flaky` fails twice first."""

    calls: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    failures_left: int = 2
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.calls.setdefault(request.path, []).append((dict(request.headers), raw))
        if request.path.endswith("/flaky") and self.failures_left > 0:
            self.failures_left -= 1
            return web.Response(status=503)
        return web.Response(status=204)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks/{name}"

    def statuses(self, name: str) -> list[str]:
        return [
            json.loads(raw)["request_status"] for _, raw in self.calls.get(f"/callbacks/{name}", [])
        ]


@pytest.fixture(scope="module")
def callbacks() -> Iterator[CallbackEndpoint]:
    endpoint = CallbackEndpoint()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_post("/callbacks/{name}", endpoint.handle)
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        endpoint.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield endpoint
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _register() -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "crm",
                "kind": "crm",
                "connector": "memory",
                "settings": {
                    "records": [
                        {"collection": "customers", "data": {"email": "Jan.Jansen@Example.nl"}},
                        {"collection": "customers", "data": {"email": "piet@example.nl"}},
                    ]
                },
                "data_categories": ["contact details"],
                "purposes": ["service"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 year",
            }
        ]
    }


def _controllers(path: Path, callbacks: CallbackEndpoint) -> Path:
    document = {
        "controllers": [
            {
                "id": "acme",
                "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                "callback_url_prefixes": [f"http://127.0.0.1:{callbacks.port}/callbacks/"],
            },
            {"id": "other", "token_sha256": hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()},
        ]
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def processor(
    test_publisher: IssuedKey,
    intake_key: IssuedKey,
    callbacks: CallbackEndpoint,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedGateway]:
    """Orchestrator, worker and intake process on their own embedded broker (their policy
    accepts the controller's verification; the session's other stacks keep the default, and
    two orchestrators of one group would split the requests between them); erasure waits for
    approval (stays pending)."""
    root = tmp_path_factory.mktemp("opendsr")
    register = root / "register.yaml"
    register.write_text(yaml.safe_dump(_register()))
    settings = Settings(
        register_file=register,
        data_dir=root / "data",
        retry_delay_seconds=0.2,
        tick_interval_seconds=0.5,
        publisher_keys=test_publisher.keys_file,
        approval_required="erasure",
        # The controller verified its subject; a processor deployment accepts its word.
        verification_policy=";".join(
            f"{right}=id_document,authenticated_session,in_person,other"
            for right in ("access", "portability", "erasure")
        ),
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "DSR_OPENDSR_CONTROLLERS", str(_controllers(root / "controllers.yaml", callbacks))
        )
        env.setenv("DSR_OPENDSR_CALLBACK_BACKOFF_SECONDS", "0.05")
        env.setenv("DSR_OPENDSR_POLL_SECONDS", "0.1")
        with Stack(settings, log_dir=root / "logs") as stack:
            served = ServedGateway(
                Gateway(stack.settings, IntakeSettings(port=0), signer=intake_key.signer())
            )
            served.start()
            try:
                yield served
            finally:
                served.stop()


def _call(
    processor: ServedGateway, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )
    if content is not None:
        headers["Content-Type"] = "application/json"
    return httpx.request(method, processor.url + path, headers=headers, content=content, timeout=30)


def _certificate(processor: ServedGateway) -> ProcessorCertificate:
    discovery = _call(processor, "GET", f"{V1}/discovery", token=None).json()
    pem = httpx.get(discovery["processor_certificate"], timeout=10).content
    return ProcessorCertificate.from_pem(pem)


def _request(kind: str, identities: list[dict[str, str]], urls: list[str]) -> dict[str, Any]:
    return {
        "regulation": "gdpr",
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": kind,
        "subject_identities": identities,
        "submitted_time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "api_version": "2.0",
        "status_callback_urls": urls,
    }


def _signed_by(certificate: ProcessorCertificate, response: httpx.Response) -> bool:
    return certificate.verifies(response.headers[SIGNATURE_HEADER], response.content)


def _until(condition: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_discovery_says_what_we_support_and_serves_the_certificate(
    processor: ServedGateway,
) -> None:
    response = _call(processor, "GET", f"{V1}/discovery", token=None)
    assert response.status_code == 200
    body = response.json()
    assert body["api_version"] == "2.0"
    assert sorted(body["supported_subject_request_types"]) == ["access", "erasure", "portability"]
    pairs = {(i["identity_type"], i["identity_format"]) for i in body["supported_identities"]}
    # The memory connector matches hashes, so every format is offered for both types.
    assert {("email", f) for f in ("raw", "sha256", "md5", "sha1")} <= pairs
    assert ("controller_customer_id", "raw") in pairs
    certificate = _certificate(processor)
    assert certificate.issued_for(response.headers[DOMAIN_HEADER])
    assert _signed_by(certificate, response)


def test_processor_assists_with_access_by_hashed_email_signed_receipt_and_callbacks(
    processor: ServedGateway, callbacks: CallbackEndpoint
) -> None:
    """Art. 28(3)(e) GDPR: the controller's access request is carried out; the 201 is a
    signed receipt; every status change reaches both callback URLs, signed, the flaky one
    after it failed twice."""
    digest = hashlib.sha256(EMAIL.encode()).hexdigest()
    identities = [{"identity_type": "email", "identity_value": digest, "identity_format": "sha256"}]
    body = _request("access", identities, [callbacks.url("ok"), callbacks.url("flaky")])
    raw = json.dumps(body).encode()
    response = _call(processor, "POST", f"{V1}/requests", raw)
    assert response.status_code == 201, response.text
    answer = response.json()
    certificate = _certificate(processor)
    assert base64.b64decode(answer["encoded_request"]) == raw
    assert certificate.verifies(answer["processor_signature"], answer["encoded_request"].encode())
    assert _signed_by(certificate, response)
    assert answer["controller_id"] == "acme"
    assert answer["subject_request_id"] == body["subject_request_id"]

    _until(
        lambda: (
            "completed" in callbacks.statuses("ok") and "completed" in callbacks.statuses("flaky")
        )
    )
    for name in ("ok", "flaky"):
        calls = callbacks.calls[f"/callbacks/{name}"]
        for headers, payload in calls:
            assert certificate.verifies(headers[SIGNATURE_HEADER], payload)
            assert headers[DOMAIN_HEADER] == response.headers[DOMAIN_HEADER]
            assert json.loads(payload)["status_callback_url"] == callbacks.url(name)
        order = ["pending", "in_progress", "completed"]
        seen = [order.index(s) for s in callbacks.statuses(name)]
        assert seen == sorted(seen) and callbacks.statuses(name)[-1] == "completed"
    assert len(callbacks.calls["/callbacks/flaky"]) >= 3  # two failures, then acknowledged

    status = _call(processor, "GET", f"{V1}/requests/{body['subject_request_id']}")
    assert status.status_code == 200 and _signed_by(certificate, status)
    assert status.json()["request_status"] == "completed"
    assert status.json()["results_count"] == 1  # the hashed address matched one record

    again = _call(processor, "POST", f"{V1}/requests", raw)
    assert again.status_code == 201 and again.json() == answer
    other = _call(processor, "POST", f"{V1}/requests", {**body, "subject_request_type": "erasure"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == 409
    late = _call(processor, "DELETE", f"{V1}/requests/{body['subject_request_id']}")
    assert late.status_code == 400  # only a pending request can be cancelled
    assert (
        _call(
            processor, "GET", f"{V1}/requests/{body['subject_request_id']}", token=OTHER_TOKEN
        ).status_code
        == 404
    )


def test_controller_may_cancel_a_pending_request(
    processor: ServedGateway, callbacks: CallbackEndpoint
) -> None:
    identities = [
        {"identity_type": "email", "identity_value": "piet@example.nl", "identity_format": "raw"}
    ]
    body = _request("erasure", identities, [callbacks.url("cancel")])
    rid = body["subject_request_id"]
    assert _call(processor, "POST", f"{V1}/requests", body).status_code == 201

    def extension_status() -> str:
        obj = _call(processor, "GET", f"{V1}/requests/{rid}").json()
        return next(iter(obj["extensions"].values()))["status"]

    _until(lambda: extension_status() == "awaiting_approval")  # pending: waits for an officer
    assert _call(processor, "GET", f"{V1}/requests/{rid}").json()["request_status"] == "pending"
    response = _call(processor, "DELETE", f"{V1}/requests/{rid}")
    assert response.status_code == 202, response.text
    certificate = _certificate(processor)
    answer = response.json()
    signature = answer.pop("processor_signature")
    core = json.dumps(answer, separators=(",", ":"), sort_keys=True).encode()
    assert certificate.verifies(signature, core) and _signed_by(certificate, response)
    assert _call(processor, "GET", f"{V1}/requests/{rid}").json()["request_status"] == "cancelled"
    _until(lambda: extension_status() == "refused")  # the orchestrator stopped it
    _until(lambda: callbacks.statuses("cancel")[-1:] == ["cancelled"])
    assert _call(processor, "DELETE", f"{V1}/requests/{rid}").status_code == 202  # idempotent


def test_wrong_or_missing_token_is_401(processor: ServedGateway) -> None:
    body = _request(
        "access",
        [{"identity_type": "email", "identity_value": EMAIL, "identity_format": "raw"}],
        [],
    )
    for token in ("not-a-known-token", None):
        response = _call(processor, "POST", f"{V1}/requests", body, token=token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject_request_id": None}, "subject_request_id"),
        ({"subject_request_id": "a7551968-d5d6-14b2-9831-815ac9017798"}, "subject_request_id"),
        ({"regulation": "ccpa"}, "regulation"),
        ({"submitted_time": "2026-05-01 12:00"}, "submitted_time"),
        ({"status_callback_urls": ["http://controller.example/cb"]}, "status_callback_urls[0]"),
        (
            {
                "subject_identities": [
                    {
                        "identity_type": "email",
                        "identity_value": "not-an-address",
                        "identity_format": "raw",
                    }
                ]
            },
            "subject_identities[0].identity_value",
        ),
        (
            {
                "subject_identities": [
                    {
                        "identity_type": "roku_advertising_id",
                        "identity_value": "x",
                        "identity_format": "raw",
                    }
                ]
            },
            "subject_identities[0].identity_type",
        ),
        (
            {
                "subject_identities": [
                    {"identity_type": "email", "identity_value": "abc", "identity_format": "md5"}
                ]
            },
            "subject_identities[0]",
        ),
    ],
)
def test_bad_body_is_400_in_opendsr_error_format_naming_the_field(
    processor: ServedGateway, change: dict[str, Any], field: str
) -> None:
    body = _request(
        "access",
        [{"identity_type": "email", "identity_value": EMAIL, "identity_format": "raw"}],
        [],
    )
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = _call(processor, "POST", f"{V1}/requests", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["message"].startswith(field)
    assert {"domain", "reason", "message"} <= set(error["errors"][0])
    assert "not-an-address" not in response.text and EMAIL not in response.text
