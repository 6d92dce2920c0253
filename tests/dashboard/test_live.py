"""The dashboard in headless Chromium against a running system: live updates, overdue
highlighting, a request's detail with every system's outcome, and a manual task completed
from the page. Screenshots of the list and the detail land in test-artifacts/."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from schemas.events import RequestType
from tests.browser import artifacts_dir, chromium
from tests.dashboard.conftest import TOKEN, DashboardSystem, status_event

pytestmark = [pytest.mark.broker, pytest.mark.browser]

VIEWPORT = {"width": 1280, "height": 900}


def _record(name: str, seconds: float) -> None:
    """Keep a measured time next to the screenshots (and print it for -s runs)."""
    path = artifacts_dir() / "dashboard-timings.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    found[name] = round(seconds, 2)
    path.write_text(json.dumps(found, indent=2))
    print(f"{name}: {seconds:.2f}s")


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(60_000)
    page.goto(f"{url}&token={TOKEN}" if "?" in url else f"{url}?token={TOKEN}")
    assert "token=" not in page.url  # signed in, and the token left the address bar
    page.wait_for_selector("#live[data-state=live]")
    return page


def test_a_submitted_request_appears_and_completes_without_a_reload(
    dashboard_system: DashboardSystem,
) -> None:
    with chromium() as browser:
        page = _open(browser, f"{dashboard_system.url}/")
        page.evaluate("window.notReloaded = true")
        started = time.monotonic()
        dashboard_system.submit("live-access-1", RequestType.ACCESS, ["crm", "newsletter"])
        row = 'tr[data-request-id="live-access-1"]'
        page.wait_for_selector(row)
        _record("live_update_row_appeared", time.monotonic() - started)
        page.wait_for_selector(f'{row} td.status[data-status="completed"]')
        _record("live_update_completed_shown", time.monotonic() - started)
        assert page.evaluate("window.notReloaded") is True  # same document: no reload
        assert page.inner_text(f"{row} td.systems .count") == "2/2"
        page.wait_for_function(
            "() => document.querySelector('#totals .total:last-child strong').textContent !== '0'"
        )
        page.screenshot(path=str(artifacts_dir() / "dashboard-list.png"), full_page=True)


def test_an_overdue_request_is_highlighted(dashboard_system: DashboardSystem) -> None:
    dashboard_system.publish_status(
        status_event("overdue-1", received_days_ago=45),
        status_event("due-soon-1", received_days_ago=26, kind=RequestType.ACCESS),
    )
    with chromium() as browser:
        page = _open(browser, f"{dashboard_system.url}/")
        late = page.wait_for_selector('tr[data-request-id="overdue-1"]')
        assert "overdue" in (late.get_attribute("class") or "").split()
        assert late.query_selector(".badge.overdue") is not None
        assert int(late.query_selector(".days-left").inner_text()) < 0
        background = late.evaluate("row => getComputedStyle(row).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
        soon = page.wait_for_selector('tr[data-request-id="due-soon-1"]')
        assert "due-soon" in (soon.get_attribute("class") or "").split()
        assert "overdue" not in (soon.get_attribute("class") or "").split()
        # Overdue comes first, and the filter shows only the overdue ones.
        ids = page.eval_on_selector_all(
            "#requests tbody tr", "rows => rows.map(r => r.dataset.requestId)"
        )
        assert ids.index("overdue-1") < ids.index("due-soon-1")
        page.screenshot(
            path=str(artifacts_dir() / "dashboard-list-highlighted.png"), full_page=True
        )
        page.check("#filters input[name=overdue]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#requests tbody tr')]"
            ".every(r => r.classList.contains('overdue'))"
        )
        assert page.inner_text("#totals .total.overdue strong") != "0"
        assert "overdue=true" in page.url


def test_detail_shows_every_system_and_completes_a_manual_task(
    dashboard_system: DashboardSystem,
) -> None:
    request_id = "detail-erasure-1"
    dashboard_system.submit(
        request_id, RequestType.ERASURE, ["crm", "newsletter", "archive", "broken"]
    )
    dashboard_system.wait_status(request_id, {"action_required"})
    with chromium() as browser:
        page = _open(browser, f"{dashboard_system.url}/requests/{request_id}")
        page.wait_for_selector('article.system[data-system="archive"] form.task')
        statuses = page.eval_on_selector_all(
            "article.system", "cards => cards.map(c => [c.dataset.system, c.dataset.status])"
        )
        assert dict(statuses) == {
            "archive": "manual_action_required",
            "broken": "failed",
            "crm": "completed",
            "newsletter": "not_found",
        }
        assert "injected fatal failure" in page.inner_text('article[data-system="broken"] .reason')
        assert "deleted 1" in page.inner_text('article[data-system="crm"] .counts')
        assert page.inner_text('article[data-system="archive"] .instructions')
        assert page.locator("#d-timeline tbody tr").count() >= 2

        started = time.monotonic()
        form = 'article[data-system="archive"] form.task'
        page.fill(f"{form} textarea[name=evidence]", "contract folder shredded, box 12")
        page.fill(f"{form} input[name=by]", "officer-7")
        with page.expect_response(lambda r: r.url.endswith("/complete")) as answer:
            page.click(f"{form} button")
        assert answer.value.status == 202
        page.wait_for_selector('article.system[data-system="archive"][data-status="completed"]')
        _record("manual_task_completed_shown", time.monotonic() - started)
        page.wait_for_selector('#d-title .status[data-status="partially_completed"]')
        evidence = page.inner_text('article[data-system="archive"] .evidence')
        assert "contract folder shredded, box 12" in evidence and "officer-7" in evidence
        # The certificate is offered for download, to the signed-in browser only.
        link = page.wait_for_selector("a[data-file=certificate]")
        download = page.request.get(dashboard_system.url + (link.get_attribute("href") or ""))
        assert download.status == 200
        assert download.headers["content-disposition"].startswith("attachment")
        assert json.loads(download.body())["certificate"]["request_id"] == request_id
        page.screenshot(path=str(artifacts_dir() / "dashboard-detail.png"), full_page=True)
