"""Art. 19 GDPR end to end: real broker, real worker processes, a real SMTP server (aiosmtpd on
loopback). An erasure tells every recipient of the register: by e-mail, by its own system's
task, or as a task for a person; the result lists them all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.artifacts.notifications import open_tasks
from orchestrator.intake.client import RequestPublisher
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Stack
from orchestrator.status.view import StatusView, read_status
from tests.e2e.test_pipeline import new_request
from tests.orchestrator.test_delivery import Inbox, smtp_server
from tests.orchestrator.test_notifications import CARRIER, recipient_entry, system_entry

pytestmark = pytest.mark.broker

EMAIL = "noor.visser@example.nl"


def _register() -> dict[str, object]:
    record = {"collection": "contacts", "data": {"email": EMAIL, "name": "Noor Visser"}}

    def system(name: str, processor: str | None = None) -> dict[str, object]:
        return system_entry(name, processor) | {"settings": {"records": [record]}}

    return {
        "controller": {"name": "Webwinkel B.V.", "contact": "privacy@webwinkel.example"},
        "systems": [system("crm", "HubSpot"), system("shop"), system("partner")],
        "recipients": [
            recipient_entry("Bezorger B.V.", "carrier", ["shop"], email=CARRIER),
            recipient_entry("Belastingdienst", "tax_authority", [], instructions="Write to them"),
            recipient_entry("Zusterbedrijf B.V.", "group_company", ["crm"], system="partner"),
        ],
    }


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


def test_art_19_erasure_notifies_every_recipient(tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    handler, smtp_port = inbox
    register = tmp_path / "register.yaml"
    register.write_text(yaml.safe_dump(_register()))
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_starttls": False}
    settings = Settings(
        register_file=register,
        data_dir=tmp_path / "data",
        tick_interval_seconds=0.5,
        smtp_from="privacy@webwinkel.example",
        **smtp,  # type: ignore[arg-type]
    )
    erasure = new_request("erasure", EMAIL, scope=None, recipients_requested=True)
    with Stack(settings, log_dir=tmp_path / "logs") as stack:
        assert stack.local_publisher is not None
        signer = stack.local_publisher.signer()
        with RequestPublisher(stack.settings.kafka, source="tests", signer=signer) as publisher:
            publisher.publish(erasure)

        def settled(view: StatusView) -> bool:
            stack.check()
            status = view.get(erasure.request_id)
            return bool(status and status.status.is_final and status.artifact)

        view = asyncio.run(read_status(stack.settings.kafka, until=settled, timeout=90))
        final = view.get(erasure.request_id)
        assert final is not None and final.artifact
        stack.check()

    # One e-mail to the carrier (the subject's answer goes to the subject, apart).
    to_carrier = [m for to, m in handler.messages if to == [CARRIER]]
    assert len(to_carrier) == 1
    assert erasure.request_id in to_carrier[0]["Subject"]
    # The manual task for the recipient with instructions exists.
    tasks = dict(open_tasks(settings.data_dir))
    assert f"{erasure.request_id}/recipient:Belastingdienst" in tasks
    # The result lists all three, and the processor told by the request.
    result = json.loads((settings.data_dir / "results" / f"{erasure.request_id}.json").read_text())
    listed = {r["name"]: r for r in result["recipients"]}
    assert (
        listed["Bezorger B.V."]["way"] == "email"
        and listed["Bezorger B.V."]["status"] == "notified"
    )
    assert listed["Bezorger B.V."]["notified_at"]
    assert listed["Zusterbedrijf B.V."]["way"] == "system"
    assert listed["Zusterbedrijf B.V."]["status"] == "notified"
    assert listed["Belastingdienst"]["status"] == "to_notify"
    assert listed["HubSpot"]["way"] == "request"
    # The subject asked who the recipients are: the letter names them.
    letter = Path(result["documents"]["recipients"]).read_text()
    assert 'data-recipient="Bezorger B.V."' in letter and CARRIER not in letter

    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*"))
    assert logs and EMAIL not in logs and CARRIER not in logs
