"""Who an officer's step from the dashboard is recorded as: the person the authenticating proxy
names (DSR_DASHBOARD_USER_HEADER), else the token's user (DSR_DASHBOARD_OFFICER, else "officer").

Art. 5(2) GDPR (accountability) and Art. 24: the controller must be able to show who decided a
data subject's request; a shared token alone cannot. The id reaches status events, so it must
be a staff id, never an e-mail address or a BSN (Art. 5(1)(c), data minimisation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.dashboard import server
from orchestrator.runtime.config import ConfigError, load_settings
from schemas.events import DeadlineExtended, DecisionRecorded, IdentityVerified
from tests.dashboard.test_officer import Recorder, waiting
from tests.dashboard.test_server import BEARER, make, run, show

HEADER = "X-Forwarded-User"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the dashboard published, kept instead of sent."""
    Recorder.published, Recorder.fail = [], None
    monkeypatch.setattr(server, "RequestPublisher", Recorder)
    return Recorder.published


REFUSE = {"decision": "refuse", "reason_code": "manifestly_unfounded"}
EXTEND = {"months": 2, "reason": "many systems, a complex request"}


async def post(
    client: TestClient, path: str, body: Any, user: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {**BEARER, "Content-Type": "application/json"}
    if user is not None:
        headers[HEADER] = user
    response = await client.post(path, data=json.dumps(body), headers=headers)
    return response.status, await response.json()


def test_art_5_2_step_is_recorded_as_the_proxys_signed_in_officer(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path, dashboard_user_header=HEADER, dashboard_officer="desk-1")
    show(
        dashboard,
        waiting("r-1", "awaiting_verification"),
        waiting("v-1", "awaiting_verification"),
        waiting("e-1", "in_progress"),
    )

    async def scenario(client: TestClient) -> None:
        assert (await post(client, "/api/requests/r-1/decisions", REFUSE, "j.jansen"))[0] == 202
        verify = {"method": "id_document"}
        assert (await post(client, "/api/requests/v-1/verifications", verify, "p-42"))[0] == 202
        assert (await post(client, "/api/requests/e-1/extensions", EXTEND, "officer_7"))[0] == 202

    run(dashboard, scenario)
    decision, verification, extension = published
    assert isinstance(decision, DecisionRecorded) and decision.decided_by == "j.jansen"
    assert isinstance(verification, IdentityVerified) and verification.verified_by == "p-42"
    assert isinstance(extension, DeadlineExtended) and extension.extended_by == "officer_7"


def test_without_the_header_the_fixed_officer_then_the_token_user(
    tmp_path: Path, published: list[Any]
) -> None:
    fixed = make(tmp_path, dashboard_user_header=HEADER, dashboard_officer="desk-1")
    show(fixed, waiting("r-1", "awaiting_verification"))

    async def without_header(client: TestClient) -> None:
        assert (await post(client, "/api/requests/r-1/decisions", REFUSE))[0] == 202
        # An empty header is no person either.
        assert (await post(client, "/api/requests/r-1/decisions", REFUSE, " "))[0] == 202

    run(fixed, without_header)
    assert [e.decided_by for e in published] == ["desk-1", "desk-1"]
    published.clear()

    plain = make(tmp_path)  # no header configured: a client's header is ignored
    show(plain, waiting("r-1", "awaiting_verification"))

    async def ignored(client: TestClient) -> None:
        assert (await post(client, "/api/requests/r-1/decisions", REFUSE, "mallory"))[0] == 202

    run(plain, ignored)
    assert [e.decided_by for e in published] == ["officer"]  # the shared token's user


@pytest.mark.parametrize(
    ("user", "kind"),
    [
        ("anna.jansen@example.nl", "email address"),
        ("111222333", "BSN"),
        ("0612345678", "phone number"),
        ("Anna Jansen", "staff id is 1 to 64"),
        ("x" * 65, "staff id is 1 to 64"),
    ],
)
def test_art_5_1_c_personal_data_as_officer_id_refused(
    tmp_path: Path, published: list[Any], user: str, kind: str
) -> None:
    dashboard = make(tmp_path, dashboard_user_header=HEADER)
    show(dashboard, waiting("r-1", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/requests/r-1/decisions", REFUSE, user)
        assert status == 403, answer
        assert kind in answer["error"] and HEADER in answer["error"]
        assert user not in answer["error"]

    run(dashboard, scenario)
    assert published == []  # nothing recorded under a wrong name


def test_art_5_1_c_officer_setting_must_be_a_staff_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSR_DASHBOARD_OFFICER", "anna.jansen@example.nl")
    with pytest.raises(ConfigError, match="DSR_DASHBOARD_OFFICER") as raised:
        load_settings()
    assert "example.nl" not in str(raised.value)
    monkeypatch.setenv("DSR_DASHBOARD_OFFICER", "officer-7")
    monkeypatch.setenv("DSR_DASHBOARD_USER_HEADER", "X-Forwarded-User")
    settings = load_settings()
    assert (settings.dashboard_officer, settings.dashboard_user_header) == (
        "officer-7",
        "X-Forwarded-User",
    )
    monkeypatch.setenv("DSR_DASHBOARD_USER_HEADER", "X Forwarded: User")
    with pytest.raises(ConfigError, match="DSR_DASHBOARD_USER_HEADER"):
        load_settings()
