"""examples/curl-publish.sh: openssl and curl alone sign a request the intake API accepts,
and the request completes through the whole product on the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.gateway.settings import IntakeSettings
from orchestrator.intake.publishers import IssuedKey
from orchestrator.runtime import demo
from schemas.events import RequestStatus
from schemas.primitives.signing import ED25519
from schemas.topics import DEFAULT_PUBLISHER_EVENTS, IDENTITY_VERIFIED_EVENT_TYPE
from tests.e2e.conftest import DEMO_SYSTEMS, System
from tests.gateway.conftest import ROOT, ServedGateway, _publisher, gateway_settings, serve

pytestmark = pytest.mark.broker

SCRIPT = ROOT / "examples" / "curl-publish.sh"


@pytest.fixture(scope="module")
def portal(running: System) -> IssuedKey:
    """A customer portal (Ed25519) that checks identities itself before it submits."""
    return _publisher(
        running.signing.keys_file,
        "api-portal",
        ED25519,
        [*DEFAULT_PUBLISHER_EVENTS, IDENTITY_VERIFIED_EVENT_TYPE],
    )


@pytest.fixture(scope="module")
def system_gateway(
    running: System,
    intake_key: IssuedKey,
    portal: IssuedKey,
    officer_tool: IssuedKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedGateway]:
    """An intake process beside the `running` stack, checking callers against its keys."""
    settings = gateway_settings(
        running.kafka,
        running.signing.keys_file,
        tmp_path_factory.mktemp("intake"),
        register=running.stack.settings.register_file,
    )
    with serve(settings, IntakeSettings(port=0), intake_key) as served:
        yield served


def curl(
    gateway: ServedGateway, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the example script as a user would, with only the variables it documents."""
    return subprocess.run(
        [str(SCRIPT), *args],
        env={"PATH": os.environ["PATH"], "DSR_INTAKE_URL": gateway.url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def access_request(tmp_path: Path, *, verified: bool) -> tuple[str, Path]:
    request_id = f"curl-{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC).isoformat()
    body: dict[str, object] = {
        "request_id": request_id,
        "type": "access",
        "subject": {"identifiers": [{"type": "email", "value": demo.DEMO_EMAIL}]},
        "received_at": now,
        "requested_by": "customer-portal",
        "scope": DEMO_SYSTEMS,
    }
    if verified:
        body["verification"] = {"verified": True, "method": "id_document", "verified_at": now}
    path = tmp_path / f"{request_id}.json"
    path.write_text(json.dumps(body, indent=2))
    return request_id, path


def test_signed_curl_request_creates_a_request_that_completes(
    running: System, system_gateway: ServedGateway, portal: IssuedKey, tmp_path: Path
) -> None:
    request_id, body = access_request(tmp_path, verified=True)
    # Key id derived by the script from the key, as documented.
    env = {"DSR_PUBLISHER_KEY_FILE": str(portal.key_file)}
    sent = curl(system_gateway, env, str(body))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    answer = json.loads(sent.stdout)
    assert answer == {
        "request_id": request_id,
        "status_url": f"{system_gateway.url}/v1/requests/{request_id}",
    }
    final = running.wait_final(request_id)
    assert final.status == RequestStatus.COMPLETED
    status = curl(system_gateway, env, "--status", request_id)
    assert status.returncode == 0, status.stdout + status.stderr
    state = json.loads(status.stdout)
    assert state["status"]["request_id"] == request_id
    assert demo.DEMO_EMAIL not in status.stdout


def test_curl_with_an_hmac_key(
    system_gateway: ServedGateway, officer_tool: IssuedKey, tmp_path: Path
) -> None:
    request_id, body = access_request(tmp_path, verified=False)
    key_file = officer_tool.key_file
    sent = curl(system_gateway, {"DSR_PUBLISHER_KEY_FILE": str(key_file)}, str(body))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert json.loads(sent.stdout)["request_id"] == request_id
    # The same request sent again: the same answer.
    again = curl(system_gateway, {"DSR_PUBLISHER_KEY_FILE": str(key_file)}, str(body))
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(sent.stdout)


def test_curl_without_a_known_key_gets_the_401_json(
    system_gateway: ServedGateway, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.secret"
    stranger.write_text("s" * 40)
    _, body = access_request(tmp_path, verified=False)
    sent = curl(system_gateway, {"DSR_PUBLISHER_KEY_FILE": str(stranger)}, str(body))
    assert sent.returncode != 0
    assert json.loads(sent.stdout)["error"]["code"] == "unknown_keyid"
