"""The request page in Chromium with JavaScript off: fill in, submit, click the mailed link,
confirm, and the request is on the bus."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from schemas.events import RequestSubmitted, VerificationMethod
from schemas.kafka import KafkaSettings
from tests.browser import artifacts_dir, chromium
from tests.gateway.test_public_page import (
    CONTROLLER,
    ServedPage,
    link_in,
    request_id_in,
    serving,
    submitted,
    unique_address,
)

VIEWPORT = {"width": 900, "height": 1400}


@pytest.fixture(scope="module")
def page_served(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedPage]:
    """The page with no minimum form time: a browser driven by a test fills in at once."""
    root = tmp_path_factory.mktemp("public-browser")
    with serving(kafka_settings, root, DSR_PUBLIC_MIN_FORM_SECONDS="0") as served:
        yield served


def test_public_page_works_in_chromium_without_javascript(
    page_served: ServedPage, kafka_settings: KafkaSettings
) -> None:
    address = unique_address("browser")
    shots = artifacts_dir()
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT, locale="nl-NL")
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        tab.goto(f"{page_served.url}/")
        assert tab.url.endswith("/nl/") and CONTROLLER in tab.inner_text("h1")
        assert not tab.is_visible("#website")  # the honeypot is hidden by the style sheet

        tab.click("button[type=submit]")  # nothing filled in: the errors, by field
        assert "Kies welk recht u wilt gebruiken." in tab.inner_text("#right-error")
        assert tab.get_attribute("#email", "aria-invalid") == "true"
        tab.screenshot(path=str(shots / "public-page-errors.png"), full_page=True)

        tab.get_by_label("Bezwaar").check()
        tab.get_by_label("Uw e-mailadres").fill(address)
        tab.get_by_label("Klantnummer (niet verplicht)").fill("KL-1234")
        tab.screenshot(path=str(shots / "public-page-form.png"), full_page=True)
        tab.click("button[type=submit]")
        assert "Kijk in uw e-mail" in tab.inner_text("h1")
        # Playwright's loop runs in this thread: read the topic from another one.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(submitted, kafka_settings, email=address).result() == []

        [mail] = page_served.inbox.to(address)
        tab.goto(link_in(mail))
        assert "Bevestig uw verzoek" in tab.inner_text("h1")
        tab.get_by_role("button", name="Ja, ik bevestig mijn verzoek").click()
        assert "Uw verzoek is ontvangen" in tab.inner_text("h1")
        tab.screenshot(path=str(shots / "public-page-confirmed.png"), full_page=True)
        rid = request_id_in(tab.content())
        context.close()

    [(_, envelope)] = submitted(kafka_settings, request_id=rid)
    assert isinstance(envelope.body, RequestSubmitted)
    assert envelope.body.subject.first("customer_id") == "KL-1234"
    assert envelope.body.verification.method == VerificationMethod.EMAIL_CONFIRMATION
