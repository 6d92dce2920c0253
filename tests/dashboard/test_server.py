"""The dashboard's HTTP side in-process, without a broker: sign-in, the API, files, OpenAPI.

The view is filled by hand here; the tests with a real system are in test_live.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from orchestrator.artifacts.store import ArtifactStore
from orchestrator.dashboard.openapi import openapi_document
from orchestrator.dashboard.server import STATIC, Dashboard
from orchestrator.dashboard.sessions import SessionSettings
from orchestrator.runtime.config import ConfigError, Settings
from schemas.events import RequestStatusChanged
from schemas.kafka import KafkaSettings
from tests.dashboard.conftest import TOKEN, status_event
from tests.orchestrator.test_downloads import REQUEST_ID, sealed_export

BEARER = {"Authorization": f"Bearer {TOKEN}"}
#: Nothing listens there: these tests never reach Kafka.
NOWHERE = KafkaSettings(bootstrap="127.0.0.1:9")


def make(tmp_path: Path, sessions: SessionSettings | None = None, **overrides: Any) -> Dashboard:
    """A dashboard on plain HTTP (the test client's): cookies without Secure unless given."""
    values: dict[str, Any] = {"data_dir": tmp_path, "kafka": NOWHERE, "dashboard_token": TOKEN}
    values.update(overrides)
    return Dashboard(Settings(**values), sessions=sessions or SessionSettings(cookie_secure=False))


def show(dashboard: Dashboard, *events: RequestStatusChanged, ready: bool = True) -> None:
    """Put events in the view as the status topic would, and tell subscribers."""
    for event in events:
        if dashboard.live.view.apply(event):
            dashboard.live._changed(event)
    if ready:
        dashboard.live.follower.caught_up.set()


def run(dashboard: Dashboard, scenario: Callable[[TestClient], Awaitable[None]]) -> None:
    async def _main() -> None:
        async with TestClient(TestServer(dashboard.app())) as client:
            await scenario(client)

    asyncio.run(_main())


def test_refuses_to_start_without_a_token_unless_anonymous_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the dashboard needs a token: set DSR_DASHBOARD_TOKEN"):
        make(tmp_path, dashboard_token=None)
    assert make(tmp_path, dashboard_token=None, dashboard_allow_anonymous=True).auth.anonymous
    with pytest.raises(ValueError, match="too short"):
        Settings(dashboard_token="short")


def test_without_the_token_page_api_and_metrics_answer_401(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    show(dashboard, status_event("r-1"))

    async def scenario(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 401
        assert 'name="token"' in await page.text()  # the sign-in form, as the 401 body
        assert (await client.get("/requests/r-1")).status == 401
        for path in ("/api/requests", "/api/requests/r-1", "/api/events", "/metrics"):
            response = await client.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error" in await response.json()
        wrong = await client.get("/api/requests", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        assert (await client.get("/static/app.js")).status == 401
        # Probes and the sign-in page need no token.
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/login")).status == 200
        ok = await client.get("/api/requests", headers=BEARER)
        assert ok.status == 200 and (await ok.json())["matched"] == 1

    run(dashboard, scenario)


def test_token_link_signs_the_browser_in_with_a_cookie_and_drops_the_token(
    tmp_path: Path,
) -> None:
    dashboard = make(tmp_path)
    show(dashboard, status_event("r-1"))

    async def scenario(client: TestClient) -> None:
        bad = await client.get("/?token=wrong", allow_redirects=False)
        assert bad.status == 401 and "not right" in await bad.text()
        signed = await client.get(f"/?status=open&token={TOKEN}", allow_redirects=False)
        assert signed.status == 303
        assert signed.headers["Location"] == "/?status=open"
        cookie = signed.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert TOKEN not in cookie  # a random session id, not the token
        # The client keeps the cookie: page and API now open.
        assert (await client.get("/")).status == 200
        assert (await client.get("/api/requests")).status == 200
        # A state-changing request on the cookie from another site is refused.
        cross = await client.post(
            "/api/requests/r-1/tasks/crm/complete",
            json={"evidence": "done"},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status == 401
        out = await client.post("/logout", allow_redirects=False)
        assert out.status == 303
        assert (await client.get("/api/requests")).status == 401

    run(dashboard, scenario)


def test_sign_in_form(tmp_path: Path) -> None:
    dashboard = make(tmp_path)

    async def scenario(client: TestClient) -> None:
        wrong = await client.post("/login", data={"token": "nope", "next": "/requests/x"})
        assert wrong.status == 401
        right = await client.post(
            "/login", data={"token": TOKEN, "next": "//evil.example/"}, allow_redirects=False
        )
        assert right.status == 303 and right.headers["Location"] == "/"  # never off-site
        assert (await client.get("/")).status == 200

    run(dashboard, scenario)


def test_anonymous_mode_serves_without_a_token(tmp_path: Path) -> None:
    dashboard = make(tmp_path, dashboard_token=None, dashboard_allow_anonymous=True)
    show(dashboard, status_event("r-1"))

    async def scenario(client: TestClient) -> None:
        assert (await client.get("/")).status == 200
        assert (await client.get("/api/requests/r-1")).status == 200

    run(dashboard, scenario)


def test_until_the_topic_is_read_the_api_says_503_and_readyz_says_why(tmp_path: Path) -> None:
    dashboard = make(tmp_path)

    async def scenario(client: TestClient) -> None:
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["status"] == "not ready"
        assert (await client.get("/healthz")).status == 200
        listing = await client.get("/api/requests", headers=BEARER)
        assert listing.status == 503 and listing.headers["Retry-After"] == "1"
        show(dashboard, status_event("r-1"))
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/api/requests", headers=BEARER)).status == 200

    run(dashboard, scenario)


def test_api_filters_and_tells_what_is_wrong(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    show(
        dashboard,
        status_event("late-1", received_days_ago=40),
        status_event("fresh-1", received_days_ago=1, kind="access"),
        status_event("done-1", received_days_ago=2, status="completed", kind="access"),
    )

    async def ids(client: TestClient, query: str) -> list[str]:
        response = await client.get(f"/api/requests?{query}", headers=BEARER)
        assert response.status == 200, await response.text()
        return [r["request_id"] for r in (await response.json())["requests"]]

    async def scenario(client: TestClient) -> None:
        assert await ids(client, "") == ["late-1", "fresh-1", "done-1"]
        assert await ids(client, "overdue=true") == ["late-1"]
        assert await ids(client, "status=open&type=access") == ["fresh-1"]
        assert await ids(client, "status=completed,in_progress&q=1&limit=2") == [
            "late-1",
            "fresh-1",
        ]
        bad = await client.get("/api/requests?status=done", headers=BEARER)
        assert bad.status == 400 and "status='done'" in (await bad.json())["error"]
        bad = await client.get("/api/requests?limit=lots", headers=BEARER)
        assert bad.status == 400 and "limit" in (await bad.json())["error"]
        missing = await client.get("/api/requests/nope", headers=BEARER)
        assert missing.status == 404

    run(dashboard, scenario)


def test_manual_task_completion_is_checked_before_anything_is_published(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    manual = {"status": "manual_action_required", "attempt": 1, "instructions": "Shred box 12"}
    show(
        dashboard,
        status_event(
            "m-1",
            status="action_required",
            systems={"archive": manual, "crm": {"status": "completed", "attempt": 1}},
        ),
    )
    url = "/api/requests/m-1/tasks/{}/complete"

    async def scenario(client: TestClient) -> None:
        async def post(system: str, body: Any, **headers: str) -> tuple[int, str]:
            response = await client.post(
                url.format(system),
                data=json.dumps(body),
                headers={**BEARER, "Content-Type": "application/json", **headers},
            )
            return response.status, (await response.json())["error"]

        assert (await post("nope", {"evidence": "done"}))[0] == 404
        status, error = await post("crm", {"evidence": "done"})
        assert status == 409 and "not waiting for a person" in error
        status, error = await post("archive", {"evidence": ""})
        assert status == 400 and "evidence" in error
        status, error = await post("archive", {"evidence": "mailed anna@example.nl"})
        assert status == 400 and "personal data (email address)" in error
        status, error = await post("archive", {"evidence": "x", "extra": 1})
        assert status == 400
        response = await client.post(url.format("archive"), data="evidence=x", headers=BEARER)
        assert response.status == 415

    run(dashboard, scenario)


def test_documents_are_served_by_name_from_the_data_dir_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "exports").mkdir(parents=True)
    (data / "certificates").mkdir()
    (data / "results").mkdir()
    export = data / "exports" / "r-1.zip"
    export.write_bytes(b"PK zip")
    certificate = data / "certificates" / "r-1.json"
    certificate.write_text("{}")
    (data / "certificates" / "r-1.nl.html").write_text("<p>nl</p>")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for download")
    result = {
        "export": str(export),
        "certificate": str(certificate),
        "documents": {"missing": str(outside)},  # a tampered result: outside the data dir
    }
    (data / "results" / "r-1.json").write_text(json.dumps(result))
    dashboard = make(data)
    show(
        dashboard,
        status_event("r-1", status="completed", finished_at=status_event("x").occurred_at),
    )

    async def scenario(client: TestClient) -> None:
        found = await (await client.get("/api/requests/r-1", headers=BEARER)).json()
        names = {f["name"]: f for f in found["files"]}
        assert set(names) == {"export", "certificate", "certificate-nl"}
        download = await client.get(names["certificate"]["href"], headers=BEARER)
        assert download.status == 200 and await download.read() == b"{}"
        assert download.headers["Content-Disposition"] == 'attachment; filename="r-1.json"'
        assert (await client.get(names["certificate"]["href"])).status == 401
        # The export (encrypted at rest) goes through an expiring link, see below.
        link = await client.get(names["export"]["href"], headers=BEARER, allow_redirects=False)
        assert link.status == 302 and link.headers["Location"].startswith("/api/downloads/")
        for name in ("letter-missing", "..%2F..%2Fsecret.txt", "results"):
            response = await client.get(f"/api/requests/r-1/files/{name}", headers=BEARER)
            assert response.status == 404, name
        other = await client.get("/api/requests/..%2Fr-1/files/export", headers=BEARER)
        assert other.status == 404

    run(dashboard, scenario)


def test_live_events_stream_summaries_of_changed_requests(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    show(dashboard, status_event("r-1"))

    async def scenario(client: TestClient) -> None:
        response = await client.get("/api/events", headers=BEARER)
        assert response.headers["Content-Type"] == "text/event-stream"
        assert (await response.content.readuntil(b"\r\n\r\n")).startswith(b"event: hello")
        show(dashboard, status_event("r-1", sequence=2, status="completed"))
        message = (await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)).decode()
        lines = dict(line.split(": ", 1) for line in message.strip().split("\r\n"))
        assert lines["event"] == "request" and lines["id"] == "r-1@2"
        assert json.loads(lines["data"])["status"] == "completed"
        response.close()

    run(dashboard, scenario)


def test_openapi_document_describes_every_api_route_with_valid_schemas(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    document = openapi_document("test")
    assert document["openapi"].startswith("3.")
    routes = {
        resource.canonical
        for resource in dashboard.app().router.resources()
        if resource.canonical.startswith("/api/") and resource.canonical != "/api/openapi.json"
    }
    assert routes <= set(document["paths"])
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]
    # The page uses the documented API and nothing else.
    script = (STATIC / "app.js").read_text()
    assert "/api/requests" in script and "/api/events" in script

    async def scenario(client: TestClient) -> None:
        served = await client.get("/api/openapi.json", headers=BEARER)
        assert (await served.json())["paths"].keys() == document["paths"].keys()

    run(dashboard, scenario)


def test_the_export_downloads_decrypted_through_an_expiring_link(tmp_path: Path) -> None:
    data_dir = sealed_export(tmp_path)
    export = ArtifactStore(data_dir).export_path(REQUEST_ID)
    (data_dir / "results").mkdir(parents=True, exist_ok=True)
    (data_dir / "results" / f"{REQUEST_ID}.json").write_text(json.dumps({"export": str(export)}))
    dashboard = make(data_dir)
    show(dashboard, status_event(REQUEST_ID, status="completed"))

    async def scenario(client: TestClient) -> None:
        href = f"/api/requests/{REQUEST_ID}/files/export"
        link = await client.get(href, headers=BEARER, allow_redirects=False)
        assert link.status == 302
        location = link.headers["Location"]
        assert (await client.get(location)).status == 401  # the link alone is not enough
        download = await client.get(location, headers=BEARER)
        assert download.status == 200
        assert download.headers["Cache-Control"] == "no-store"
        with zipfile.ZipFile(io.BytesIO(await download.read())) as archive:
            contacts = json.loads(archive.read("data/crm/contacts.json"))
        assert len(contacts) == 50
        forged = await client.get(location[:-3] + "AAA", headers=BEARER)
        assert forged.status == 404

    run(dashboard, scenario)
