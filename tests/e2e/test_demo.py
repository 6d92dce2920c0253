"""`dsr demo`: the newcomer's first command, run exactly as the README says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.fakes import hubspot
from orchestrator.runtime import demo

pytestmark = pytest.mark.broker

#: Everything that identifies the demo subject, in the forms it may take.
IDENTIFIERS = [
    demo.DEMO_EMAIL,
    demo.DEMO_PHONE,
    demo.DEMO_PHONE.lstrip("+"),
    "Anna de Vries",
    "devries",
]


def test_demo_runs_end_to_end_and_logs_no_personal_data(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    paths = [
        Path(p) for p in re.findall(r"^\s+(?:access|erasure)\s+(\S+\.json)$", proc.stdout, re.M)
    ]
    assert len(paths) == 2 and all(p.exists() for p in paths), proc.stdout
    certificate = Path(json.loads(paths[1].read_text())["certificate"])
    assert certificate.exists() and certificate.with_suffix(".nl.html").exists()
    verified = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "verify", str(certificate),
         "--dir", str(out / "keys")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0 and "valid" in verified.stdout, (
        verified.stdout + verified.stderr
    )
    certificate_text = certificate.read_text() + certificate.with_suffix(".en.html").read_text()

    access, erasure = (json.loads(p.read_text()) for p in paths)
    import zipfile

    # The export is sealed at rest; the demo says how to open it, and that works.
    assert access["export"].endswith(".zip.enc")
    opened = tmp_path / "export.zip"
    command = re.search(r"open it:\s+dsr (export open .+)$", proc.stdout, re.M)
    assert command, proc.stdout
    args = command.group(1).split()
    args[args.index("--out") + 1] = str(opened)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(opened) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        contents = {name: archive.read(name).decode("utf-8", "replace") for name in names}
    # Art. 15(4) GDPR: the HubSpot deal and e-mail and the Intercom conversation the subject
    # shares with Jan Jansen are in the copy, but none of Jan's identifiers or messages are.
    for name, text in contents.items():
        for other in (hubspot.OTHER_EMAIL, hubspot.OTHER_NAME, hubspot.OTHER_PHONE, "jan.jansen"):
            assert other.lower() not in text.lower(), f"{other!r} appears in {name}"
    shared = contents["data/hubspot/deals.json"] + contents["data/intercom/conversations.json"]
    assert "[afgeschermd: gegevens van een ander]" in shared
    assert demo.DEMO_EMAIL in contents["data/hubspot/contacts.json"]  # the subject's own data
    assert "report.html" in names and any(n.startswith("data/hubspot/") for n in names)
    assert manifest["request_id"] == access["request_id"]
    assert access["type"] == "access" and access["status"] == "completed"
    assert set(access["systems"]) == {
        "hubspot", "activecampaign", "intercom", "freshdesk", "orders"
    }  # fmt: skip
    assert all(s["collections"] for s in access["systems"].values())
    order_files = {f.get("collection") for f in manifest["files"] if f.get("system") == "orders"}
    assert order_files == {"orders", "invoices", "customers"}
    # Records went through the record store, not Kafka; the export holds them now.
    assert not any((out / "records").rglob("*.jsonl"))
    assert erasure["type"] == "erasure" and erasure["status"] == "completed"
    assert all(s["counts"]["deleted"] > 0 for s in erasure["systems"].values())

    # The certificate keeps the invoices (and the order administration) under fiscal
    # retention, with legal basis and until-date; everything else is deleted or not found.
    signed = json.loads(certificate.read_text())["certificate"]
    orders = signed["systems"]["orders"]
    retained = {item["collection"]: item for item in orders["retained"]}
    assert set(retained) == {"invoices", "orders"}
    for item in retained.values():
        assert item["count"] == 2 and "AWR" in item["legal_basis"]
        assert item["until"] == "2032-12-31"  # newest kept record: 2025 + 7 years
    assert orders["deleted"] == 3  # the customer row and the 2017 order and invoice
    for name, system in signed["systems"].items():
        assert system["status"] in ("completed", "not_found"), name
        assert system["deleted"] + system["anonymised"] > 0 or system["not_found"], name
    assert re.search(r"retained\s+orders/invoices: 2 until 2032-12-31", proc.stdout)

    # Art. 17(1), 5(2) GDPR: the certificate states what was erased per collection, records
    # the vendor removed along with their parent included: Freshdesk's hard delete of the
    # contact takes its tickets and conversations, and every collection access found is
    # counted (issue 14: "found 1, deleted 1" undersold it).
    found = access["systems"]["freshdesk"]["collections"]
    assert {"contacts", "tickets", "conversations"} <= set(found), found
    erased = {
        item["collection"]: item["count"]
        for item in signed["systems"]["freshdesk"]["collections"]
        if item["action"] == "deleted"
    }
    assert erased == found
    page = certificate.with_suffix(".nl.html").read_text()
    table = page.split('<table data-collections="freshdesk">')[1].split("</table>")[0]
    for collection, count in found.items():
        row = table.split(f'data-collection="{collection}"')[1].split("</tr>")[0]
        assert f"<td>{count}</td>" in row, (collection, row)

    # The demo's own output and every worker's log: none of the subject's identifiers.
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "certificate": certificate_text}
    texts |= {str(p): p.read_text(errors="replace") for p in (out / "logs").glob("*.log")}
    assert len(texts) >= 5  # stdout, stderr, broker, orchestrator, connectors
    assert "found" in proc.stdout and "deleted" in proc.stdout
    for where, text in texts.items():
        for identifier in IDENTIFIERS:
            assert identifier.lower() not in text.lower(), f"{identifier!r} appears in {where}"


def test_demo_fails_clearly_on_bad_configuration(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "demo",
            "--out",
            str(tmp_path),
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DSR_DEADLINE_POLICY": "one fortnight"},
    )
    assert proc.returncode != 0
    assert "DSR_DEADLINE_POLICY" in proc.stderr and "e.g. '1 month'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sql_demo_erases_from_the_databases(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "demo", "--sql", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import sqlite3

    for db in (out / "systems").glob("*.db"):
        with sqlite3.connect(db) as conn:
            tables = [
                t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            dump = "".join(str(list(conn.execute(f"SELECT * FROM {t}"))) for t in tables)
        assert "bram.jansen@example.nl" in dump
        if db.name != "orders.db":
            assert demo.DEMO_EMAIL not in dump.lower(), db.name
    # The order database keeps only what fiscal law requires: the 2024 and 2025 orders and
    # invoices; the customer record and the 2017 order and invoice are gone.
    with sqlite3.connect(out / "systems" / "orders.db") as conn:
        email = demo.DEMO_EMAIL
        kept = {
            table: sorted(
                d for (d,) in conn.execute(f"SELECT {col} FROM {table} WHERE {key} = ?", (email,))
            )
            for table, col, key in (
                ("customers", "id", "email"),
                ("orders", "ordered_at", "customer_email"),
                ("invoices", "invoice_date", "email"),
            )
        }
    assert kept == {
        "customers": [],
        "orders": ["2024-03-12", "2025-11-04"],
        "invoices": ["2024-03-12", "2025-11-04"],
    }
