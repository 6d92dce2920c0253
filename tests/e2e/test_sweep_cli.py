"""`dsr sweep`: start, approve and follow retention sweeps from a terminal (issue 15).

The first tests stop at the publishing boundary (`orchestrator.cli.sweeps._publish` and
`read_sweeps`) and need no broker; the last runs the whole path on a real embedded broker:
the CLI starts a dry run, approves it, the orchestrator and the SQL connector sweep, and the
certificate verifies.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli import main
from orchestrator.cli import sweeps as sweep_cli
from orchestrator.runtime import demo
from schemas.sweeps import (
    SweepApproved,
    SweepRequested,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)
from tests.orchestrator.test_sweep_certificate import completed_sweep

REGISTER = demo.sql_register_path()
BOOTSTRAP = ["--bootstrap", "127.0.0.1:1"]  # never dialled: publishing is stubbed


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The events the CLI would publish, in order."""
    sent: list[Any] = []
    monkeypatch.setattr(sweep_cli, "_publish", lambda bootstrap, event: sent.append(event))
    return sent


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_sweep_system_publishes_a_dry_run_and_prints_the_sweep_id(published: list[Any]) -> None:
    result = _run("sweep", "orders", "--register", str(REGISTER), "--by", "anna", *BOOTSTRAP)
    assert result.exit_code == 0, result.output
    [event] = published
    assert isinstance(event, SweepRequested)
    assert (event.system, event.dry_run, event.trigger) == ("orders", True, SweepTrigger.MANUAL)
    assert event.requested_by == "anna"
    assert result.output.strip() == event.sweep_id
    assert event.sweep_id.startswith("sweep-orders-")


def test_no_dry_run_on_a_system_that_needs_approval_says_it_will_wait(
    published: list[Any],
) -> None:
    result = _run("sweep", "start", "chat", "--no-dry-run", "--register", str(REGISTER), *BOOTSTRAP)
    assert result.exit_code == 0, result.output
    assert published[0].dry_run is False
    assert "requires approval for chat" in result.output
    assert f"dsr sweep approve {published[0].sweep_id}" in result.output


@pytest.mark.parametrize(
    ("system", "message"),
    [
        ("nosuch", "system 'nosuch' is not in the register"),
        ("crm", "system 'crm' has no sweep policy in the register"),
    ],
)
def test_unknown_system_or_no_sweep_policy_is_refused_before_publishing(
    published: list[Any], system: str, message: str
) -> None:
    result = _run("sweep", system, "--register", str(REGISTER), *BOOTSTRAP)
    assert result.exit_code != 0
    assert message in result.output
    assert "orders" in result.output  # what the user can sweep instead
    assert published == []


def test_a_bad_sweep_id_is_refused_with_the_field(published: list[Any]) -> None:
    result = _run("sweep", "orders", "--id", "no spaces", "--register", str(REGISTER), *BOOTSTRAP)
    assert result.exit_code != 0
    assert "invalid sweep" in result.output and "sweep_id" in result.output
    assert published == []


def test_approve_publishes_the_officers_approval(published: list[Any]) -> None:
    result = _run("sweep", "approve", "sweep-orders-1", "--by", "officer-anna", *BOOTSTRAP)
    assert result.exit_code == 0, result.output
    [event] = published
    assert isinstance(event, SweepApproved)
    assert (event.sweep_id, event.approved_by) == ("sweep-orders-1", "officer-anna")
    missing = _run("sweep", "approve", "sweep-orders-1", *BOOTSTRAP)
    assert missing.exit_code != 0 and "--by" in missing.output


def test_status_and_list_show_counts_per_collection_and_the_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = completed_sweep(
        sweep_id="sweep-orders-2", certificate="/data/sweeps/sweep-orders-2.json"
    )
    waiting = completed_sweep(
        sweep_id="sweep-orders-1",
        status=SweepStatus.AWAITING_APPROVAL,
        counts=[],
        retained=[],
        approved_by=None,
        approved_at=None,
        finished_at=None,
        requested_at=datetime(2026, 11, 29, 2, 0, tzinfo=UTC),
    )
    known = {s.sweep_id: s for s in (done, waiting)}
    monkeypatch.setattr(sweep_cli, "read_sweeps", lambda kafka, **_: known)

    detail = _run("sweep", "status", "sweep-orders-2", *BOOTSTRAP)
    assert detail.exit_code == 0, detail.output
    assert "sweep-orders-2: shop completed (schedule" in detail.output
    assert "dry run  orders (before 2024-11-30, 2 years): 12 expired" in detail.output
    assert "swept    orders (before 2024-11-30, 2 years): 12 expired, 9 deleted, 3 kept" in (
        detail.output
    )
    assert "swept    chats (before 2026-06-03, 180 days): 4 expired, 4 anonymised" in detail.output
    assert "kept     orders: 3 until 2031-12-31 (artikel 52 AWR" in detail.output
    assert "approved 2026-11-30 09:15 by officer-anna" in detail.output
    assert "certificate: /data/sweeps/sweep-orders-2.json" in detail.output

    listed = _run("sweep", "list", "--json", *BOOTSTRAP)
    assert [s["sweep_id"] for s in json.loads(listed.output)] == [
        "sweep-orders-2",
        "sweep-orders-1",
    ]
    table = CliRunner().invoke(main, ["sweep", "status", *BOOTSTRAP], env={"COLUMNS": "200"})
    assert "awaiting_approval" in table.output and "completed" in table.output

    unknown = _run("sweep", "status", "sweep-nosuch", *BOOTSTRAP)
    assert unknown.exit_code != 0 and "no status events for sweep 'sweep-nosuch'" in unknown.output


# -- on a real broker ---------------------------------------------------------------------------


def _orders(systems_dir: Path) -> list[str]:
    with sqlite3.connect(systems_dir / "orders.db") as conn:
        return sorted(row[0] for row in conn.execute("SELECT ordered_at FROM orders"))


def _expected(dates: list[str], rule: str, duty: str, today: date) -> tuple[int, int, int]:
    """(expired, deleted, kept) of records with these dates under the register's rule and
    retention duty for `collection`, on `today`."""
    from schemas.register import load_register

    orders = load_register(REGISTER, {"DSR_DEMO_DIR": "/"}).get("orders")
    assert orders.sweep is not None
    cutoff = next(c for c in orders.sweep.collections if c.collection == rule).cutoff(today)
    keep_from = next(r for r in orders.retention_rules if r.collection == duty).cutoff(today)
    expired = [d for d in dates if date.fromisoformat(d[:10]) < cutoff]
    kept = [d for d in expired if date.fromisoformat(d[:10]) >= keep_from]
    return len(expired), len(expired) - len(kept), len(kept)


def _wait(kafka: Any, sweep_id: str, statuses: set[str]) -> SweepStatusChanged:
    def arrived(sweeps: dict[str, SweepStatusChanged]) -> bool:
        found = sweeps.get(sweep_id)
        return found is not None and found.status.value in statuses

    found = sweep_cli.read_sweeps(kafka, until=arrived, timeout=120).get(sweep_id)
    assert found is not None and found.status.value in statuses, (
        f"sweep {sweep_id} is {found.status if found else 'unknown'}, expected {statuses}"
    )
    return found


@pytest.mark.broker
def test_art_5_1_e_sweep_cli_end_to_end_dry_run_approve_certificate(tmp_path: Path) -> None:
    """`dsr sweep orders` counts and deletes nothing; `dsr sweep approve` deletes the orders
    past the register's two years whose fiscal retention duty (Art. 52 AWR, 7 years from the
    end of the book year) has run out, keeps the rest as retained (Art. 17(3)(b) GDPR), and the
    signed certificate says so and passes `dsr verify`."""
    from orchestrator.runtime.config import Settings
    from orchestrator.runtime.stack import Stack

    systems_dir = demo.seed(tmp_path / "systems", only=["orders.db"])
    data = yaml.safe_load(REGISTER.read_text())
    data["systems"] = [s for s in data["systems"] if s["name"] == "orders"]
    data["recipients"] = []
    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump(data, allow_unicode=True))
    before = _orders(systems_dir)
    expired, deleted, kept = _expected(before, "orders", "orders", datetime.now(UTC).date())
    assert deleted > 0 and kept > 0  # the demo data shows both
    settings = Settings(register_file=register, data_dir=tmp_path / "data")
    env = {"DSR_DEMO_DIR": str(systems_dir)}
    runner = CliRunner()
    with Stack(settings, log_dir=tmp_path / "logs", extra_env=env) as stack:
        assert stack.local_publisher is not None  # the CLI signs with it, as `dsr up` sets up
        kafka = stack.settings.kafka
        assert kafka.bootstrap
        cli = {"env": stack.local_publisher.env()}
        start = ["sweep", "orders", "--register", str(register), "--by", "anna"]
        started = runner.invoke(main, [*start, "--bootstrap", kafka.bootstrap], **cli)
        assert started.exit_code == 0, started.output
        sweep_id = started.output.strip()

        counted = _wait(kafka, sweep_id, {"awaiting_approval"})
        assert _orders(systems_dir) == before  # a dry run deletes nothing
        orders = next(c for c in counted.dry_run_counts if c.collection == "orders")
        assert orders.expired == expired

        status = runner.invoke(main, ["sweep", "status", sweep_id, "--bootstrap", kafka.bootstrap])
        assert "awaiting_approval" in status.output and "orders (before" in status.output
        approve = ["sweep", "approve", sweep_id, "--by", "officer-anna"]
        approved = runner.invoke(main, [*approve, "--bootstrap", kafka.bootstrap], **cli)
        assert approved.exit_code == 0, approved.output

        done = _wait(kafka, sweep_id, {"completed", "failed"})
    assert done.status == SweepStatus.COMPLETED, done.reason
    after = _orders(systems_dir)
    assert len(before) - len(after) == deleted  # the certificate's count is what went
    swept = next(c for c in done.counts if c.collection == "orders")
    assert (swept.expired, swept.deleted, swept.kept) == (expired, deleted, kept)
    assert done.approved_by == "officer-anna"

    assert done.certificate
    certificate = Path(done.certificate)
    body = json.loads(certificate.read_text())["certificate"]
    row = next(c for c in body["collections"] if c["collection"] == "orders")
    assert (row["deleted"], row["kept"]) == (deleted, kept)
    assert body["retained"] and body["retained"][0]["legal_basis"].startswith("Art. 52 AWR")
    verified = runner.invoke(
        main, ["verify", str(certificate), "--dir", str(tmp_path / "data" / "keys")]
    )
    assert verified.exit_code == 0, verified.output
    assert f"valid: sweep certificate for sweep {sweep_id}" in verified.output


def _rows(database: Path, table: str) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.mark.broker
def test_demo_sweep_runs_dry_run_approval_and_sweep_and_prints_the_certificates(
    tmp_path: Path,
) -> None:
    """`dsr demo --sweep --sql`: each system with a sweep policy is counted, approved and swept;
    the printed counts are the certificate's, the rows gone are the certificate's deleted, each
    certificate verifies, and the demo subject appears nowhere (sweeps carry no identifiers)."""
    import re
    import subprocess
    import sys

    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "demo", "--sweep", "--sql", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Approved sweep-orders-" in proc.stdout and "Approved sweep-chat-" in proc.stdout
    paths = [Path(p) for p in re.findall(r"^\s+certificate (\S+\.json)$", proc.stdout, re.M)]
    assert {p.name.split("-")[1] for p in paths} == {"chat", "orders"}, proc.stdout
    seeded = demo.seed(tmp_path / "fresh")  # what the demo started from
    demo.seed_expired(seeded)
    for path in paths:
        body = json.loads(path.read_text())["certificate"]
        database = {"orders": "orders.db", "chat": "chat.db"}[body["system"]["name"]]
        for row in body["collections"]:
            gone = _rows(seeded / database, row["collection"]) - _rows(
                out / "systems" / database, row["collection"]
            )
            assert gone == row["deleted"], (body["system"], row)
            assert f"{row['collection']}: {row['expired']} expired, {row['deleted']} deleted" in (
                proc.stdout
            )
        verified = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "verify", str(path),
             "--dir", str(out / "keys")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert verified.returncode == 0 and "valid: sweep certificate" in verified.stdout
    orders = next(json.loads(p.read_text())["certificate"] for p in paths if "orders" in p.name)
    assert orders["totals"]["deleted"] > 0 and orders["totals"]["kept"] > 0
    written = proc.stdout + proc.stderr
    written += "".join(p.read_text(errors="replace") for p in (out / "logs").glob("*.log"))
    written += "".join(p.read_text() for p in (out / "sweeps").iterdir())
    for identifier in (demo.DEMO_EMAIL, demo.DEMO_PHONE, "Anna de Vries", "bram.jansen"):
        assert identifier not in written
