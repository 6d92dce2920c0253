"""The dashboard's retention sweep pages: the pure model (when a sweep is due, when overdue, what
comes first), the status view folding sweep events beside requests, the API's two officer's
steps (start a dry run, approve the deletion) with the signed-in officer's attribution, the
metrics, and, in headless Chromium on a real broker, an awaiting sweep approved from the page
and an overdue system highlighted (screenshots in test-artifacts/).

Storage limitation (Art. 5(1)(e) GDPR) holds only while sweeps run on schedule; the officer's
approval is accountable (Art. 5(2)): who approved is recorded, and never anything about a
subject (counts per collection only).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import generate_latest

from orchestrator.dashboard import server
from orchestrator.dashboard.server import Dashboard
from orchestrator.dashboard.sweeps import (
    SWEEP_GRACE,
    list_sweeps,
    schedule_state,
    sweep_detail,
    system_sweeps,
)
from orchestrator.runtime.config import Settings
from orchestrator.status.view import StatusFollower, StatusView
from schemas.envelope import TYPE_OF, decode, encode
from schemas.events import RetainedItem
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import parse_publisher_keys
from schemas.register import Register, SweepPolicy, parse_register
from schemas.sweeps import (
    SweepApproved,
    SweepCount,
    SweepRequested,
    SweepStatus,
    SweepStatusChanged,
)
from schemas.topics import DECISION_EVENT_TYPES, REQUESTS, STATUS
from tests.dashboard.conftest import SYSTEMS, TOKEN
from tests.dashboard.test_attribution import HEADER, post
from tests.dashboard.test_officer import Recorder
from tests.dashboard.test_server import BEARER, make, run, show

NOW = datetime.now(UTC)
POLICY = {
    "schedule": "1 day",
    "collections": [
        {
            "collection": "orders",
            "period": "7 years",
            "counted_from": "book_year_end",
            "date_field": "ordered_at",
        },
        {
            "collection": "chats",
            "period": "180 days",
            "counted_from": "last_activity",
            "date_field": "updated_at",
        },
    ],
}


def _register(tmp_path: Path, **policies: dict[str, Any] | None) -> Path:
    """A register of the dashboard tests' systems, with sweep policies by system name."""
    systems = [
        {**system, "sweep": policies[system["name"]]} if policies.get(system["name"]) else system
        for system in SYSTEMS
    ]
    path = tmp_path / "register.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "controller": {"name": "Test B.V.", "contact": "privacy@test.example"},
                "systems": systems,
            }
        )
    )
    return path


def _parsed(path: Path) -> Register:
    return parse_register(yaml.safe_load(path.read_text()), str(path))


def sweep(
    sweep_id: str,
    system: str = "crm",
    status: str = "awaiting_approval",
    *,
    started_hours_ago: float = 1,
    sequence: int = 2,
    **extra: Any,
) -> SweepStatusChanged:
    """A sweep's status event as the orchestrator publishes it."""
    requested = NOW - timedelta(hours=started_hours_ago)
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "system": system,
        "sequence": sequence,
        "status": status,
        "trigger": "schedule",
        "rules": [
            {
                "collection": "orders",
                "date_field": "ordered_at",
                "cutoff": "2018-01-01",
                "period": "7 years",
                "counted_from": "book_year_end",
            },
            {
                "collection": "chats",
                "date_field": "updated_at",
                "cutoff": "2026-01-01",
                "period": "180 days",
                "counted_from": "last_activity",
            },
        ],
        "dry_run_counts": [
            {"collection": "orders", "expired": 12, "kept": 3},
            {"collection": "chats", "expired": 40},
        ],
        "requested_at": requested,
        "changed_at": requested + timedelta(minutes=1),
    }
    fields.update(extra)
    return SweepStatusChanged.model_validate(fields)


# -- the status view ------------------------------------------------------------------------------


def test_view_keeps_the_latest_status_per_sweep_beside_requests() -> None:
    from tests.dashboard.conftest import status_event

    view = StatusView()
    assert view.apply(sweep("s-1", status="counting", sequence=1))
    assert view.apply(sweep("s-1", status="completed", sequence=3))
    assert view.apply(sweep("s-1", status="awaiting_approval", sequence=2))  # late, older
    assert not view.apply(sweep("s-1", status="completed", sequence=3))  # a re-delivery
    assert view.apply(status_event("r-1"))
    assert view.sweep("s-1") is not None and view.sweep("s-1").status == "completed"
    assert [e.sequence for e in view.sweep_history["s-1"]] == [1, 2, 3]
    assert set(view.requests) == {"r-1"} and set(view.sweeps) == {"s-1"}


def test_a_sweep_status_on_the_topic_is_read_not_skipped() -> None:
    follower = StatusFollower(KafkaSettings(bootstrap="127.0.0.1:9"))
    message = encode(sweep("s-2"), source="orchestrator")
    follower._apply(message.value, message.headers)
    assert follower.events_read == 1 and follower.events_skipped == 0
    assert follower.view.sweep("s-2") is not None


# -- when a sweep is due, when overdue ----------------------------------------------------------


def test_art_5_1_e_sweep_not_started_within_its_schedule_is_overdue() -> None:
    """Art. 5(1)(e) GDPR: kept no longer than necessary; a daily sweep that did not start within
    a day (plus an hour's grace for a restart) is overdue."""
    policy = SweepPolicy.model_validate(POLICY)
    due, overdue = schedule_state(policy, [sweep("late", started_hours_ago=26)], now=NOW)
    assert due == NOW - timedelta(hours=2) and overdue
    within_grace = sweep("soon", started_hours_ago=24.5)
    due, overdue = schedule_state(policy, [within_grace], now=NOW)
    assert due is not None and due < NOW < due + SWEEP_GRACE and not overdue
    # The last start counts, whatever state the older ones are in.
    both = [sweep("old", started_hours_ago=72), sweep("new", "crm", "completed")]
    assert schedule_state(policy, both, now=NOW) == (NOW + timedelta(hours=23), False)


def test_art_5_1_e_system_never_swept_is_overdue() -> None:
    policy = SweepPolicy.model_validate(POLICY)
    assert schedule_state(policy, [], now=NOW) == (None, True)


def test_systems_awaiting_approval_come_first_then_overdue_then_by_next_run(
    tmp_path: Path,
) -> None:
    weekly = {**POLICY, "schedule": "1 week"}
    register = _parsed(
        _register(tmp_path, crm=POLICY, newsletter=POLICY, archive=weekly, broken=POLICY)
    )
    view = StatusView()
    for event in (
        sweep("crm-1", "crm", "completed", started_hours_ago=2, counts=[]),
        sweep("news-1", "newsletter", "awaiting_approval", started_hours_ago=3),
        sweep("archive-1", "archive", "completed", started_hours_ago=30),  # weekly: not yet due
    ):
        view.apply(event)
    rows = system_sweeps(view, register, now=NOW)
    assert [r.system for r in rows] == ["newsletter", "broken", "crm", "archive"]
    newsletter, broken, crm, archive = rows
    assert newsletter.awaiting_approval == 1 and not newsletter.can_start
    assert broken.overdue and broken.last_sweep is None and broken.next_due is None
    assert crm.can_start and not crm.overdue and archive.schedule == "1 week"
    assert archive.collections == ["orders", "chats"]


def test_sweep_list_awaiting_approval_first_then_running_then_newest() -> None:
    view = StatusView()
    for event in (
        sweep("done-old", status="completed", started_hours_ago=50),
        sweep("done-new", status="nothing_expired", started_hours_ago=1),
        sweep("running", status="sweeping", started_hours_ago=5),
        sweep("waiting", status="awaiting_approval", started_hours_ago=40),
    ):
        view.apply(event)
    page = list_sweeps(view, None, now=NOW, register_problem="no register")
    assert [s.sweep_id for s in page.sweeps] == ["waiting", "running", "done-new", "done-old"]
    assert page.totals.awaiting_approval == 1 and page.totals.running == 1
    assert page.systems == [] and page.register_problem == "no register"
    assert list_sweeps(view, None, now=NOW, limit=2).matched == 4


def test_detail_lists_each_collection_with_its_rule_cutoff_and_counts() -> None:
    view = StatusView()
    retained = RetainedItem(
        collection="orders",
        count=3,
        legal_basis="Art. 52 AWR (fiscal retention, 7 years)",
        until=date(2030, 12, 31),
        reason="invoice for jan@example.nl",
    )
    view.apply(
        sweep(
            "s-9",
            status="completed",
            sequence=4,
            counts=[
                {"collection": "orders", "deleted": 9, "kept": 3},
                {"collection": "chats", "deleted": 40},
            ],
            retained=[retained],
            approved_by="officer-7",
            approved_at=NOW,
            certificate="sweeps/s-9.json",
        )
    )
    found = sweep_detail(view, "s-9")
    assert found is not None and found.actions == [] and found.approved_by == "officer-7"
    orders, chats = found.collections
    assert orders.rule == "7 years after the end of the book year (ordered_at)"
    assert (orders.cutoff, orders.expired, orders.deleted, orders.kept) == (
        date(2018, 1, 1),
        12,
        9,
        3,
    )
    assert (chats.expired, chats.deleted, chats.anonymised) == (40, 40, 0)
    assert (found.expired, found.deleted, found.kept) == (52, 49, 3)
    assert "jan@example.nl" not in found.model_dump_json()  # free text masked on the way out
    waiting = StatusView()
    waiting.apply(sweep("s-10"))
    detail = sweep_detail(waiting, "s-10")
    assert detail is not None and detail.actions == ["approve"]
    assert detail.next_step.startswith("Waiting for approval")
    assert [c.deleted for c in detail.collections] == [None, None]  # nothing deleted yet
    assert sweep_detail(waiting, "nope") is None


# -- the API ------------------------------------------------------------------------------------


class SweepRecorder(Recorder):
    """Records sweep steps as the decisions' recorder does."""


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    Recorder.published, Recorder.fail = [], None
    monkeypatch.setattr(server, "RequestPublisher", SweepRecorder)
    monkeypatch.setattr(server, "publish_sweep_step", lambda client, event: client._keep(event))
    return Recorder.published


def test_art_5_2_approval_is_published_as_the_signed_in_officer(
    tmp_path: Path, published: list[Any]
) -> None:
    """Art. 5(2) GDPR: who approved a deletion is recorded; only an awaiting sweep can be."""
    dashboard = make(
        tmp_path, register_file=_register(tmp_path, crm=POLICY), dashboard_user_header=HEADER
    )
    show(dashboard, sweep("s-1"), sweep("s-2", status="counting", sequence=1))

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/sweeps/s-1/approval", {}, user="officer-7")
        assert status == 202 and answer["event"] == TYPE_OF[SweepApproved]
        status, answer = await post(client, "/api/sweeps/s-2/approval", {}, user="officer-7")
        assert status == 409 and "counting" in answer["error"]
        assert (await post(client, "/api/sweeps/nope/approval", {}))[0] == 404
        assert (await post(client, "/api/sweeps/s-1/approval", {"by": "x"}))[0] == 400
        status, answer = await post(client, "/api/sweeps/s-1/approval", {}, user="jan@x.nl")
        assert status == 403 and "jan@x.nl" not in answer["error"]
        text = await client.post("/api/sweeps/s-1/approval", data="{}", headers=BEARER)
        assert text.status == 415

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, SweepApproved)
    assert (event.sweep_id, event.approved_by) == ("s-1", "officer-7")


def test_start_a_dry_run_of_a_system_with_a_sweep_policy(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path, register_file=_register(tmp_path, crm=POLICY, newsletter=POLICY))
    show(dashboard, sweep("news-1", "newsletter", "sweeping"))

    async def scenario(client: TestClient) -> None:
        status, answer = await post(client, "/api/sweeps", {"system": "crm"})
        assert status == 202 and answer["sweep_id"].startswith("sweep-crm-")
        status, answer = await post(client, "/api/sweeps", {"system": "newsletter"})
        assert status == 409 and "news-1" in answer["error"]  # one at a time
        status, answer = await post(client, "/api/sweeps", {"system": "archive"})
        assert status == 409 and "no sweep policy" in answer["error"]
        status, answer = await post(client, "/api/sweeps", {"system": "nowhere"})
        assert status == 404
        assert (await post(client, "/api/sweeps", {"system": "Not A Name"}))[0] == 400

    run(dashboard, scenario)
    [event] = published
    assert isinstance(event, SweepRequested)
    assert (event.system, event.dry_run, event.trigger, event.requested_by) == (
        "crm",
        True,
        "manual",
        "officer",
    )


def test_without_a_register_the_list_says_why_and_starting_is_refused(
    tmp_path: Path, published: list[Any]
) -> None:
    dashboard = make(tmp_path, register_file=tmp_path / "missing.yaml")
    show(dashboard, sweep("s-1"))

    async def scenario(client: TestClient) -> None:
        page = await (await client.get("/api/sweeps", headers=BEARER)).json()
        assert "DSR_REGISTER" in page["register_problem"]
        assert [s["sweep_id"] for s in page["sweeps"]] == ["s-1"]
        assert (await post(client, "/api/sweeps", {"system": "crm"}))[0] == 503
        assert (await client.get("/api/sweeps?limit=x", headers=BEARER)).status == 400

    run(dashboard, scenario)
    assert published == []


def test_certificate_is_offered_from_the_data_dir_only(tmp_path: Path) -> None:
    certificates = tmp_path / "sweeps"
    certificates.mkdir()
    (certificates / "s-1.json").write_text('{"kind": "sweep"}')
    (certificates / "s-1.en.html").write_text("<html></html>")
    outside = tmp_path.parent / "elsewhere.json"
    outside.write_text("{}")
    dashboard = make(tmp_path)
    show(
        dashboard,
        sweep("s-1", status="completed", certificate="sweeps/s-1.json"),
        sweep("s-2", status="completed", certificate=str(outside)),
    )

    async def scenario(client: TestClient) -> None:
        found = await (await client.get("/api/sweeps/s-1", headers=BEARER)).json()
        assert [f["name"] for f in found["files"]] == ["certificate", "certificate-en"]
        download = await client.get(found["files"][0]["href"], headers=BEARER)
        assert download.status == 200 and await download.text() == '{"kind": "sweep"}'
        assert "attachment" in download.headers["Content-Disposition"]
        other = await (await client.get("/api/sweeps/s-2", headers=BEARER)).json()
        assert other["files"] == []
        assert (await client.get("/api/sweeps/s-2/files/certificate", headers=BEARER)).status == 404

    run(dashboard, scenario)


def test_live_events_name_changed_sweeps(tmp_path: Path) -> None:
    dashboard = make(tmp_path)
    show(dashboard, sweep("s-1", status="counting", sequence=1))

    async def scenario(client: TestClient) -> None:
        response = await client.get("/api/events", headers=BEARER)
        assert (await response.content.readuntil(b"\r\n\r\n")).startswith(b"event: hello")
        show(dashboard, sweep("s-1", sequence=2))
        message = (await asyncio.wait_for(response.content.readuntil(b"\r\n\r\n"), 5)).decode()
        lines = dict(line.split(": ", 1) for line in message.strip().split("\r\n"))
        assert lines["event"] == "sweep" and lines["id"] == "sweep:s-1@2"
        assert json.loads(lines["data"])["status"] == "awaiting_approval"
        response.close()

    run(dashboard, scenario)


def test_metrics_count_records_swept_per_system_and_collection_and_overdue_sweeps(
    tmp_path: Path,
) -> None:
    dashboard = make(tmp_path, register_file=_register(tmp_path, crm=POLICY, newsletter=POLICY))
    counts = [
        SweepCount(collection="orders", deleted=9),
        SweepCount(collection="chats", anonymised=4),
    ]
    show(
        dashboard,
        sweep("sweep-crm-1", "crm", "completed", counts=counts),
        sweep("sweep-crm-2", "crm", "completed", started_hours_ago=30, counts=counts[:1]),
        sweep("sweep-news-1", "newsletter", started_hours_ago=48),
    )
    text = generate_latest(dashboard.metrics).decode()
    assert 'dsr_sweep_records_swept_total{collection="orders",system="crm"} 18.0' in text
    assert 'dsr_sweep_records_swept_total{collection="chats",system="crm"} 4.0' in text
    assert "dsr_sweeps_overdue 1.0" in text  # newsletter: last started two days ago
    assert "dsr_sweeps_awaiting_approval 1.0" in text
    assert "sweep-crm-1" not in text and "sweep-news" not in text  # no ids as labels


def test_the_page_uses_the_documented_sweep_api() -> None:
    script = (server.STATIC / "sweeps.js").read_text()
    assert "/api/sweeps" in script and "innerHTML" not in script  # data goes in as text


# -- in Chromium, on a real broker --------------------------------------------------------------


class _Served:
    """A dashboard served from a thread of its own, as `dsr dashboard` serves it."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        self.run(self.dashboard.start())
        return self

    def run(self, coroutine: Any) -> Any:
        """Run on the dashboard's loop (Playwright's sync API holds the main thread's)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def __exit__(self, *exc: object) -> None:
        self.run(self.dashboard.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _publish_status(kafka: KafkaSettings, *events: SweepStatusChanged) -> None:
    producer = AIOKafkaProducer(**kafka.aiokafka_options())
    await producer.start()
    try:
        for event in events:
            message = encode(event, source="orchestrator")
            await producer.send_and_wait(
                STATUS.name, key=message.key, value=message.value, headers=message.headers
            )
    finally:
        await producer.stop()


async def _requests_published(kafka: KafkaSettings) -> list[Any]:
    """Every record on the requests topic: (key, value, headers)."""
    consumer = AIOKafkaConsumer(**kafka.consumer_options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(REQUESTS.name) or set()
        tps = [TopicPartition(REQUESTS.name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            found.extend((r.key, r.value, r.headers) for r in records)
        return found
    finally:
        await consumer.stop()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Served]:
    """A dashboard on a broker of its own, signing officers' steps as publisher `officers`."""
    from orchestrator.runtime.broker import EmbeddedBroker
    from orchestrator.runtime.topics import ensure_topics

    monkeypatch.setenv("DSR_PUBLISHER_ID", "officers")
    monkeypatch.setenv("DSR_PUBLISHER_SECRET", "s" * 32)
    register = _register(tmp_path, crm=POLICY, newsletter={**POLICY, "schedule": "1 day"})
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        kafka = KafkaSettings().for_embedded(broker.bootstrap)
        ensure_topics(kafka)
        settings = Settings(
            register_file=register,
            data_dir=tmp_path / "data",
            kafka=kafka,
            dashboard_port=0,
            dashboard_token=TOKEN,
            dashboard_user_header=HEADER,
        )
        with _Served(Dashboard(settings, kafka)) as running:
            yield running


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    from tests.browser import artifacts_dir

    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, artifacts_dir() / name)


@pytest.mark.broker
@pytest.mark.browser
def test_art_5_1_e_awaiting_sweep_approved_from_the_page_and_overdue_system_highlighted(
    served: _Served, tmp_path: Path
) -> None:
    from tests.browser import chromium

    url, kafka = served.dashboard.url.rstrip("/"), served.dashboard.kafka
    waiting = sweep("sweep-crm-1", "crm", trigger="manual", requested_by="officer-2")
    served.run(
        _publish_status(
            kafka,
            sweep("sweep-crm-1", "crm", "counting", sequence=1, dry_run_counts=[]),
            waiting,
            # newsletter's last sweep started three days ago on a daily schedule: overdue.
            sweep(
                "sweep-newsletter-1",
                "newsletter",
                "completed",
                started_hours_ago=72,
                counts=[{"collection": "chats", "deleted": 40}],
            ),
        )
    )
    with chromium() as browser:
        page = browser.new_page(
            viewport={"width": 1280, "height": 900}, extra_http_headers={HEADER: "officer-7"}
        )
        page.set_default_timeout(30_000)
        page.goto(f"{url}/sweeps?token={TOKEN}")
        page.wait_for_selector("#live[data-state=live]")
        page.wait_for_selector('#sweep-systems tr[data-system="newsletter"]')
        rows = page.eval_on_selector_all(
            "#sweep-systems tbody tr", "rows => rows.map(r => [r.dataset.system, r.className])"
        )
        assert rows == [["crm", "awaiting"], ["newsletter", "overdue"]]
        late = page.locator('#sweep-systems tr[data-system="newsletter"]')
        assert late.locator(".badge.overdue").count() == 1
        background = late.evaluate("row => getComputedStyle(row).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
        crm = page.locator('#sweep-systems tr[data-system="crm"]')
        assert crm.locator("td.expired").inner_text() == "52"
        assert crm.locator("form.start button").is_disabled()  # a sweep is under way
        _screenshot(page, tmp_path, "dashboard-sweeps-list.png")

        page.click('#sweep-systems tr[data-system="crm"] a')
        page.wait_for_selector('#sw-title .status[data-status="awaiting_approval"]')
        expired = page.eval_on_selector_all(
            "#sw-collections tbody tr",
            "rows => rows.map(r => [r.dataset.collection, r.querySelector('.expired').innerText])",
        )
        assert expired == [["orders", "12"], ["chats", "40"]]
        form = 'form.decision[data-action="approve-sweep"]'
        assert page.inner_text(f"{form} button") == "Approve the deletion"
        _screenshot(page, tmp_path, "dashboard-sweep-awaiting-approval.png")
        with page.expect_response(lambda r: r.url.endswith("/approval")) as answer:
            page.click(f"{form} button")
        assert answer.value.status == 202

        # The orchestrator's answer, put on the status topic as it would: the page follows.
        approved = waiting.model_copy(
            update={
                "status": SweepStatus.SWEEPING,
                "sequence": 3,
                "approved_by": "officer-7",
                "approved_at": NOW,
            }
        )
        served.run(_publish_status(kafka, approved))
        page.wait_for_selector('#sw-title .status[data-status="sweeping"]')
        assert page.locator(form).count() == 0
        assert "officer-7" in page.inner_text("#sw-facts")
        _screenshot(page, tmp_path, "dashboard-sweep-approved.png")

    # What reached the requests topic: one SweepApproved, signed, by the signed-in officer.
    keys = parse_publisher_keys(
        {
            "publishers": [
                {
                    "id": "officers",
                    "events": list(DECISION_EVENT_TYPES),
                    "keys": [{"algorithm": "hmac-sha256", "secret": "${S}"}],
                }
            ]
        },
        base_dir=tmp_path,
        source="keys.yaml",
        env={"S": "s" * 32},
    )
    [(key, value, headers)] = served.run(_requests_published(kafka))
    body = decode(value, headers, key=key, expect=REQUESTS.events, verify=keys.verify).body
    assert isinstance(body, SweepApproved)
    assert (body.sweep_id, body.approved_by, key) == ("sweep-crm-1", "officer-7", b"sweep-crm-1")
