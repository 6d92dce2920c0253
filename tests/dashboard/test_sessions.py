"""Dashboard sign-in: server-side sessions per named user, cookies, the wrong-token limit,
`next`, HSTS behind a trusted proxy, and the audit log of officers' steps and downloads."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.artifacts.store import ArtifactStore
from orchestrator.dashboard import server
from orchestrator.dashboard.audit import AuditLog
from orchestrator.dashboard.auth import COOKIE
from orchestrator.dashboard.server import Dashboard
from orchestrator.dashboard.sessions import (
    FailureLimit,
    Sessions,
    SessionSettings,
    hash_token,
    safe_next,
    token_matches,
)
from orchestrator.runtime.config import ConfigError
from tests.browser import chromium
from tests.dashboard.conftest import TOKEN, status_event
from tests.dashboard.test_officer import Recorder, waiting
from tests.dashboard.test_server import make, run, show
from tests.orchestrator.test_downloads import REQUEST_ID, sealed_export

ANNA, PIET = "anna-token-0123456789abcdef", "piet-token-0123456789abcdef"
INSECURE = SessionSettings(cookie_secure=False)


def _users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    users = {"a.jansen": hash_token(ANNA), "p.devries": hash_token(PIET)}
    path.write_text(json.dumps({"users": users}))  # JSON is YAML
    return path


def _with_users(tmp_path: Path, **settings: Any) -> Dashboard:
    sessions = SessionSettings(users=_users_file(tmp_path), cookie_secure=False, **settings)
    return make(tmp_path, sessions=sessions, dashboard_token=None)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    Recorder.published, Recorder.fail = [], None
    monkeypatch.setattr(server, "RequestPublisher", Recorder)
    return Recorder.published


# -- tokens, users, sessions ---------------------------------------------------------------------


def test_token_hash_is_salted_scrypt_and_checks_only_its_token() -> None:
    first, second = hash_token(ANNA), hash_token(ANNA)
    assert first.startswith("scrypt$16384$8$1$") and first != second  # salted
    assert ANNA not in first
    assert token_matches(ANNA, first) and token_matches(ANNA, second)
    assert not token_matches(PIET, first)
    assert not token_matches(ANNA, "scrypt$broken")


def test_users_file_names_must_be_staff_ids(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(json.dumps({"users": {"anna@example.nl": hash_token(ANNA)}}))
    with pytest.raises(ConfigError, match="not a staff id") as raised:
        make(tmp_path, sessions=SessionSettings(users=path), dashboard_token=None)
    assert "anna@example.nl" in str(raised.value)  # the operator's own file, not a subject's


def test_sessions_end_when_idle_when_old_and_at_sign_out() -> None:
    now = [0.0]
    sessions = Sessions(idle=60, lifetime=300, clock=lambda: now[0])
    first, second = sessions.start("a.jansen"), sessions.start("a.jansen")
    assert first != second and len(first) >= 40
    now[0] = 50
    assert sessions.user(first) == "a.jansen"
    now[0] = 100  # first used at 50: still within a minute; second idle since 0
    assert sessions.user(first) == "a.jansen" and sessions.user(second) is None
    for t in range(150, 301, 50):
        now[0] = t
        assert sessions.user(first) == "a.jansen"
    now[0] = 301  # used every 50 s, but older than the lifetime
    assert sessions.user(first) is None
    third = sessions.start("p.devries")
    sessions.end(third)
    assert sessions.user(third) is None


def test_failure_limit_counts_per_address_in_a_sliding_minute() -> None:
    now = [0.0]
    limit = FailureLimit(10, 60, clock=lambda: now[0])
    for _ in range(10):
        assert limit.retry_after("10.0.0.1") is None
        limit.failed("10.0.0.1")
    now[0] = 15
    assert limit.retry_after("10.0.0.1") == 45
    assert limit.retry_after("10.0.0.2") is None  # another client is not locked out
    now[0] = 60.5
    assert limit.retry_after("10.0.0.1") is None


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "/\n/x", ""],
)
def test_next_stays_on_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_next_keeps_a_path_on_this_site() -> None:
    assert safe_next("/requests/r-1?status=open") == "/requests/r-1?status=open"


def test_next_with_a_tab_stays_on_site_through_sign_in(tmp_path: Path) -> None:
    dashboard = make(tmp_path)

    async def scenario(client: TestClient) -> None:
        for target in ("/\t/evil.example", "//evil", "/\\evil"):
            answer = await client.post(
                "/login", data={"token": TOKEN, "next": target}, allow_redirects=False
            )
            assert (answer.status, answer.headers["Location"]) == (303, "/"), target

    run(dashboard, scenario)


# -- cookies and sessions over HTTP --------------------------------------------------------------


def test_cookie_is_httponly_lax_and_secure_by_default(tmp_path: Path) -> None:
    dashboard = make(tmp_path, sessions=SessionSettings())

    async def scenario(client: TestClient) -> None:
        signed = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
        assert TOKEN not in cookie
        assert "Strict-Transport-Security" not in signed.headers  # plain HTTP, no proxy

    run(dashboard, scenario)


def test_hsts_and_https_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    trusted = make(tmp_path, sessions=SessionSettings(trusted_proxies="127.0.0.1"))
    untrusted = make(tmp_path, sessions=SessionSettings(trusted_proxies="10.9.9.9"))

    async def hsts(client: TestClient) -> None:
        answer = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")

    async def no_hsts(client: TestClient) -> None:
        answer = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in answer.headers

    run(trusted, hsts)
    run(untrusted, no_hsts)


def test_logout_ends_the_session_on_the_server(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"))

    async def scenario(client: TestClient) -> None:
        await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        old = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
        assert (await client.get("/api/requests")).status == 200
        await client.post("/logout", allow_redirects=False)
        # The old cookie, sent again as a thief would, opens nothing any more.
        replay = await client.get("/api/requests", cookies={COOKIE: old})
        assert replay.status == 401
        assert len(dashboard.auth.sessions) == 0

    run(dashboard, scenario)


def test_the_11th_wrong_sign_in_within_a_minute_is_refused(tmp_path: Path) -> None:
    dashboard = make(tmp_path)

    async def scenario(client: TestClient) -> None:
        for n in range(10):
            wrong = await client.post("/login", data={"token": f"wrong-{n}"})
            assert wrong.status == 401, n
        refused = await client.post("/login", data={"token": TOKEN})  # even the right one
        assert refused.status == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "Too many wrong tokens" in await refused.text()
        link = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert link.status == 429
        bearer = await client.get("/api/requests", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status == 429 and "Retry-After" in bearer.headers

    run(dashboard, scenario)


def test_each_user_signs_in_with_their_own_token_and_is_recorded_by_name(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = _with_users(tmp_path)
    show(dashboard, waiting("r-1", "awaiting_verification"), waiting("r-2", "in_progress"))
    refuse = {"decision": "refuse", "reason_code": "manifestly_unfounded"}

    async def scenario(client: TestClient) -> None:
        assert (await client.post("/login", data={"token": TOKEN})).status == 401  # no shared
        signed = await client.post("/login", data={"token": ANNA}, allow_redirects=False)
        assert signed.status == 303
        answer = await client.post("/api/requests/r-1/decisions", json=refuse)
        assert answer.status == 202
        piet = {"Authorization": f"Bearer {PIET}"}
        extend = {"months": 2, "reason": "many systems, a complex request"}
        answer = await client.post("/api/requests/r-2/extensions", json=extend, headers=piet)
        assert answer.status == 202

    run(dashboard, scenario)
    decision, extension = published
    assert decision.decided_by == "a.jansen" and extension.extended_by == "p.devries"
    entries = AuditLog.in_data_dir(tmp_path).read()
    assert [(e.who, e.action, e.request_id) for e in entries] == [
        ("a.jansen", "decision", "r-1"),
        ("p.devries", "extension", "r-2"),
    ]
    assert entries[0].detail == {"decision": "refuse"}


# -- the audit log -------------------------------------------------------------------------------


def test_art_5_2_every_download_and_completion_is_in_the_audit_log_with_the_user(
    tmp_path: Path, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Art. 5(2) and 32(1)(b) GDPR: who downloaded or completed what, when, is on record."""
    data_dir = sealed_export(tmp_path)
    export = ArtifactStore(data_dir).export_path(REQUEST_ID)
    (data_dir / "results").mkdir(parents=True, exist_ok=True)
    (data_dir / "results" / f"{REQUEST_ID}.json").write_text(json.dumps({"export": str(export)}))
    dashboard = _with_users(data_dir)
    show(dashboard, status_event(REQUEST_ID, status="completed"), waiting("t-1", "in_progress"))
    monkeypatch.setattr(server, "complete_task", lambda *a, **k: None)
    monkeypatch.setattr(server, "waiting_task", lambda *a: _Manual("t-1/crm"))

    async def scenario(client: TestClient) -> None:
        anna = {"Authorization": f"Bearer {ANNA}"}
        href = f"/api/requests/{REQUEST_ID}/files/export"
        link = await client.get(href, headers=anna, allow_redirects=False)
        download = await client.get(link.headers["Location"], headers=anna)
        assert download.status == 200
        await download.read()
        done = {"evidence": "removed by hand", "by": "p.devries", "outcome": "completed"}
        piet = {"Authorization": f"Bearer {PIET}"}
        answer = await client.post("/api/requests/t-1/tasks/crm/complete", json=done, headers=piet)
        assert answer.status == 202
        audit = await (await client.get("/api/audit", headers=piet)).json()
        assert [e["action"] for e in audit["entries"]] == ["download", "task_completion"]
        one = await client.get(f"/api/audit?request_id={REQUEST_ID}", headers=anna)
        assert [e["who"] for e in (await one.json())["entries"]] == ["a.jansen"]

    run(dashboard, scenario)
    log = AuditLog.in_data_dir(data_dir)
    download, completion = log.read()
    assert (download.who, download.action, download.request_id) == (
        "a.jansen",
        "download",
        REQUEST_ID,
    )
    assert download.detail == {"document": "export"}
    assert (completion.who, completion.request_id, completion.detail["system"]) == (
        "p.devries",
        "t-1",
        "crm",
    )
    assert "removed by hand" not in log.path.read_text()  # free text never reaches the log
    assert log.path.stat().st_mode & 0o077 == 0


class _Manual:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id


# -- two browsers ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The dashboard (shared token, plain HTTP) on a free port, served from a thread."""
    dashboard = make(tmp_path, sessions=INSECURE)
    show(dashboard, waiting("r-1", "awaiting_verification"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(dashboard.app())
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.mark.browser
def test_two_browsers_get_different_session_cookies(served: str) -> None:
    with chromium() as browser:
        cookies = []
        for _ in range(2):
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{served}/?token={TOKEN}")
            assert "token=" not in page.url
            [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            cookies.append(cookie["value"])
            context.close()
        assert cookies[0] != cookies[1]
        assert TOKEN not in cookies[0]
