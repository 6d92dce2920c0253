"""The intake process under test: a real `Gateway` on a free port, on the session broker.

The gateway runs on an event loop of its own in a thread, so tests are plain functions that
talk HTTP to it (httpx, or curl through examples/curl-publish.sh).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from orchestrator.gateway.server import Gateway
from orchestrator.gateway.settings import IntakeSettings
from orchestrator.intake.publishers import (
    IssuedKey,
    create_publisher,
    read_keys_document,
    rotate_publisher,
)
from orchestrator.runtime.config import Settings
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import (
    ED25519,
    HMAC_SHA256,
    INTAKE_PUBLISHER,
    load_signing_key,
)
from schemas.topics import REQUEST_EVENT_TYPES

# The whole stack (`running`) for the tests that follow a request to its end.
from tests.e2e.conftest import acme_fake, running  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
REGISTER = ROOT / "examples" / "register.yaml"
#: Covered by every signed call with a body.
BODY_COMPONENTS = ("@method", "@authority", "@path", "content-type", "content-digest")


def _publisher(keys_file: Path, name: str, algorithm: str, events: list[str] | None) -> IssuedKey:
    """A publisher in the shared keys file; a new key for it when it is there already."""
    listed = {p.get("id") for p in read_keys_document(keys_file)["publishers"]}
    if name in listed:
        return rotate_publisher(keys_file, name, algorithm)
    return create_publisher(keys_file, name, algorithm, events=events)


@pytest.fixture(scope="session")
def intake_key(test_publisher: IssuedKey) -> IssuedKey:
    """The intake component's own key (publisher `intake`, every request event), in the keys
    file the orchestrator of `running` reads."""
    return _publisher(
        test_publisher.keys_file, INTAKE_PUBLISHER, ED25519, list(REQUEST_EVENT_TYPES)
    )


@pytest.fixture(scope="session")
def web_form(test_publisher: IssuedKey) -> IssuedKey:
    """An API publisher that may only submit (the default `events`), with an Ed25519 key."""
    return _publisher(test_publisher.keys_file, "api-web-form", ED25519, None)


@pytest.fixture(scope="session")
def officer_tool(test_publisher: IssuedKey) -> IssuedKey:
    """An API publisher allowed every request event, with an HMAC secret."""
    return _publisher(
        test_publisher.keys_file, "api-officer-tool", HMAC_SHA256, list(REQUEST_EVENT_TYPES)
    )


class ServedGateway:
    """A `Gateway` serving on its own event loop in a thread."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.gateway.url

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if httpx.get(f"{self.url}/readyz").status_code == 200:
                return
            time.sleep(0.1)
        raise AssertionError("the gateway did not become ready (status and intake topics)")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def serve(settings: Settings, intake: IntakeSettings, signer: IssuedKey) -> Iterator[ServedGateway]:
    """A running gateway signing with `signer`'s key."""
    served = ServedGateway(Gateway(settings, intake, signer=signer.signer()))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def gateway_settings(
    kafka: KafkaSettings, keys_file: Path, data_dir: Path, register: Path = REGISTER
) -> Settings:
    """Settings of an intake process on `kafka` that checks callers against `keys_file`."""
    return Settings(
        register_file=register, data_dir=data_dir, kafka=kafka, publisher_keys=keys_file
    )


@pytest.fixture(scope="module")
def gateway(
    kafka_settings: KafkaSettings,
    test_publisher: IssuedKey,
    intake_key: IssuedKey,
    web_form: IssuedKey,
    officer_tool: IssuedKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedGateway]:
    """An intake process on the session broker (1 MiB bodies, 120 calls a minute)."""
    settings = gateway_settings(
        kafka_settings, test_publisher.keys_file, tmp_path_factory.mktemp("gateway")
    )
    with serve(settings, IntakeSettings(port=0), intake_key) as served:
        yield served


def sign(
    request: httpx.Request,
    key: IssuedKey,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
    components: tuple[str, ...] | None = None,
    key_id: str | None = None,
) -> httpx.Request:
    """`request` signed (RFC 9421) with a publisher's key, as a client of the API would."""
    signing = load_signing_key(key.key_file)
    algorithm = algorithms.ED25519 if signing.algorithm == ED25519 else algorithms.HMAC_SHA256
    material: Any = signing.secret if signing.secret is not None else signing.private_key
    kid = key_id or key.key_id
    signer = HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={kid: material}),
    )
    body = request.content
    signer.sign(
        request,
        key_id=kid,
        created=created or datetime.now(UTC),
        nonce=nonce or uuid.uuid4().hex,
        label="dsr",
        covered_component_ids=components
        or (BODY_COMPONENTS[:3] if not body else BODY_COMPONENTS[:4]),
        body=body or None,
    )
    return request


def send(
    served: ServedGateway,
    method: str,
    path: str,
    key: IssuedKey | None,
    *,
    json_body: bytes | None = None,
    **signing: Any,
) -> httpx.Response:
    """One call to the API, signed with `key` unless None."""
    headers = {"Content-Type": "application/json"} if json_body is not None else {}
    request = httpx.Request(method, served.url + path, headers=headers, content=json_body)
    if key is not None:
        sign(request, key, **signing)
    with httpx.Client(timeout=30) as client:
        return client.send(request)
