"""An officer's decisions from the dashboard in headless Chromium, on a running system: refuse
with a reason code, and verify an identity, each seen to change the request's status.

Screenshots go to the test's tmp dir and to test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from schemas.events import RequestType
from tests.browser import artifacts_dir, chromium
from tests.dashboard.conftest import DashboardSystem
from tests.dashboard.test_live import _open

pytestmark = [pytest.mark.broker, pytest.mark.browser]


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, artifacts_dir() / name)


def test_art_12_5_refuse_from_the_page_refuses_the_request(
    dashboard_system: DashboardSystem, tmp_path: Path
) -> None:
    request_id = "officer-refuse-1"
    dashboard_system.submit(request_id, RequestType.ACCESS, ["crm"], verified=False)
    dashboard_system.wait_status(request_id, {"awaiting_verification"})
    with chromium() as browser:
        page = _open(browser, f"{dashboard_system.url}/requests/{request_id}")
        page.wait_for_selector('#d-next .next[data-step="verify"]')
        assert (
            page.inner_text("#d-next .next")
            == "Waiting for identity verification: verify or refuse"
        )
        form = 'form.decision[data-action="refuse"]'
        page.select_option(f"{form} select[name=reason_code]", "manifestly_unfounded")
        _screenshot(page, tmp_path, "dashboard-officer-before-refuse.png")
        with page.expect_response(lambda r: r.url.endswith("/decisions")) as answer:
            page.click(f"{form} button")
        assert answer.value.status == 202
        page.wait_for_selector('#d-title .status[data-status="refused"]')
        # Art. 12(3): the refusal is an answer too, and counts once the requester has it.
        page.wait_for_selector('#d-next .next[data-step="deliver"]')
        deliver = 'form.decision[data-action="deliver"]'
        assert page.locator("form.decision").count() == 1  # only the delivery is left
        reasons = page.inner_text("#d-timeline")
        assert "manifestly_unfounded" in reasons and "by officer" in reasons
        _screenshot(page, tmp_path, "dashboard-officer-refused.png")
        page.select_option(f"{deliver} select[name=channel]", "post")
        with page.expect_response(lambda r: r.url.endswith("/deliveries")) as answer:
            page.click(f"{deliver} button")
        assert answer.value.status == 202
        page.wait_for_selector('#d-title .status[data-status="delivered"]')
        page.wait_for_selector('#d-next .next[data-step="none"]')
        assert page.locator("form.decision").count() == 0  # nothing left to do
        _screenshot(page, tmp_path, "dashboard-officer-delivered.png")


def test_art_12_6_verify_from_the_page_fans_the_request_out(
    dashboard_system: DashboardSystem, tmp_path: Path
) -> None:
    request_id = "officer-verify-1"
    dashboard_system.submit(request_id, RequestType.ERASURE, ["crm", "newsletter"], verified=False)
    dashboard_system.wait_status(request_id, {"awaiting_verification"})
    with chromium() as browser:
        page = _open(browser, f"{dashboard_system.url}/requests/{request_id}")
        form = 'form.decision[data-action="verify"]'
        page.wait_for_selector(form)
        methods = page.eval_on_selector_all(
            f"{form} select[name=method] option", "os => os.map(o => o.value)"
        )
        assert methods == ["id_document", "authenticated_session", "in_person"]
        assert page.locator('form.decision[data-action="extend"]').count() == 1  # before it
        page.select_option(f"{form} select[name=method]", "id_document")
        page.check(f"{form} input[name=copy_destroyed]")
        with page.expect_response(lambda r: r.url.endswith("/verifications")) as answer:
            page.click(f"{form} button")
        assert answer.value.status == 202
        page.wait_for_selector('#d-title .status[data-status="completed"]', timeout=60_000)
        assert page.inner_text("#d-facts").count("—") <= 1  # "identity verified" has a time
        _screenshot(page, tmp_path, "dashboard-officer-verified.png")
