"""Spec features the Mailchimp and Freshdesk ports need, each on its own.

Page-number paging that follows a next link after a short page and stops at a capped
search's last page; a fan-out whose searches run side by side; a step's own evidence; a
capped sweep that counts the vendor's total and lists again; caveats of a sweep only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.conformance import run_task
from connectors.fakes import mailchimp as mc
from connectors.http import Page, PageNumberPaging, PageRequest
from connectors.vendors.mailchimp import MailchimpConnector
from connectors.vendors.spec.model import Step, SweepSpec
from schemas.events import OutcomeStatus, RequestType
from tests.connectors.targets import FAST_RETRY, subject

FAKE = mc.Mailchimp


def _page(records: int, link: bool) -> Page:
    headers = {"Link": '<https://vendor.example/x?page=2>; rel="next"'} if link else {}
    response = httpx.Response(200, headers=headers, request=httpx.Request("GET", "https://x"))
    return Page(response, None, [{"id": n} for n in range(records)])


@pytest.mark.parametrize(
    ("records", "link", "follow", "goes_on"),
    [
        (30, False, False, True),  # a full page: there may be more
        (12, False, False, False),  # a short page ends the listing
        (12, True, False, False),  # a link is not looked at unless asked
        (12, True, True, True),  # the vendor's page size is unknown: the link decides
        (0, True, True, False),  # an empty page always ends it
    ],
)
def test_page_paging_follows_a_next_link_after_a_short_page_when_asked(
    records: int, link: bool, follow: bool, goes_on: bool
) -> None:
    paging = PageNumberPaging(page_size=30, size_param=None, follow_link=follow)
    following = paging.next(_page(records, link), PageRequest(params={"page": 1}))
    assert (following is not None) == goes_on
    if following is not None:
        assert following.params == {"page": 2}


def test_page_paging_stops_at_a_capped_search_apis_last_page() -> None:
    paging = PageNumberPaging(page_size=30, size_param=None, last_page=10)
    assert paging.next(_page(30, False), PageRequest(params={"page": 9})) is not None
    assert paging.next(_page(30, False), PageRequest(params={"page": 10})) is None


def test_fan_out_searches_every_listed_parent_side_by_side(fresh: mc.Mailchimp) -> None:
    """Every audience is asked at once (within the connection cap), not one after another."""
    fresh.reset(extra_audiences=12)
    fresh.faults.latency_seconds = 0.05
    settings: dict[str, Any] = {"api_key": mc.API_KEY, "base_url": f"{fresh.url}/3.0"}
    connector = MailchimpConnector("fan-out", settings | {"retry": FAST_RETRY})
    outcome = run_task(connector, "fan-out", RequestType.ACCESS, subject(mc.SUBJECT_EMAIL))
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert 1 < fresh.max_concurrent() <= 5  # the spec's cap of 5 connections


def test_a_step_states_its_own_evidence_and_a_sweep_its_caveats() -> None:
    step = Step.model_validate(
        {"path": "/contacts/{id}", "evidence": {"kind": "hard_delete", "value": "{id}: {status}"}}
    )
    assert step.evidence is not None and step.evidence.kind == "hard_delete"
    sweep = SweepSpec.model_validate(
        {
            "collection": "tickets",
            "path": "/search",
            "records_path": "results",
            "date_fields": {"updated_at": {"query": "updated_at:<'{day_before_cutoff}'"}},
            "delete": [{"path": "/tickets/{id}"}],
            "total_path": "total",
            "again": True,
            "caveats": [{"kind": "vendor_note", "value": "the Trash empties after 30 days"}],
        }
    )
    assert sweep.again and sweep.total_path == "total" and sweep.caveats
