"""Art. 17(1) and Art. 5(2) GDPR: an erasure states per collection what it erased, the records
a vendor removes together with their parent included, so the certificate undersells nothing."""

from __future__ import annotations

from collections import Counter

from connectors.conformance import run_task
from connectors.vendors.base import erased_per_collection
from connectors.vendors.freshdesk import FreshdeskConnector
from orchestrator.runtime.demo import DEMO_SUBJECT, vendor_fakes
from schemas.events import OutcomeStatus, RequestType, TaskOutcome
from tests.connectors.targets import FAST_RETRY, erased_counts


def test_art17_certificate_counts_per_collection_what_the_demo_freshdesk_access_found() -> None:
    with vendor_fakes() as env:
        settings = {
            "base_url": env["DSR_DEMO_FRESHDESK_URL"],
            "api_key": env["DSR_DEMO_FRESHDESK_KEY"],
            "retry": FAST_RETRY,
        }

        def task(action: RequestType) -> TaskOutcome:
            return run_task(
                FreshdeskConnector("freshdesk", settings), "freshdesk", action, DEMO_SUBJECT
            )

        access = task(RequestType.ACCESS)
        found = dict(Counter(r.collection for r in access.records))
        assert found == {"contacts": 1, "tickets": 3, "conversations": 5}

        erasure = task(RequestType.ERASURE)
        assert erasure.status == OutcomeStatus.COMPLETED
        # The hard delete of the contact took its tickets and conversations: all are counted.
        assert erased_counts(erasure) == found
        assert erasure.counts.deleted == erasure.counts.found == sum(found.values()) == 9

        # Nothing of it is left at the vendor, not even in the trash.
        assert task(RequestType.ACCESS).status == OutcomeStatus.NOT_FOUND


def test_art5_2_per_collection_evidence_names_each_collection_and_skips_empty_ones() -> None:
    evidence = erased_per_collection({"contacts": 1, "tickets": 3, "calls": 0})
    assert [(e.kind, e.value) for e in evidence] == [
        ("contacts_deleted", "1"),
        ("tickets_deleted", "3"),
    ]
