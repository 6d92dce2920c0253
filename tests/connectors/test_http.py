"""The HTTP layer against the real fake Acme server: auth, paging, retries, limits, no leaks."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import ValidationError

from connectors.fakes.acme import SUBJECT_EMAIL, SUBJECT_PHONE, TOKEN, AcmeCRM
from connectors.http import (
    Auth,
    CursorPaging,
    HttpClient,
    HttpError,
    LinkHeaderPaging,
    NextUrlPaging,
    OffsetPaging,
    PageNumberPaging,
    PageRequest,
    RateLimit,
    RetryPolicy,
    TemplateError,
    describe,
    render,
    render_value,
    server_wait,
)

FAST_RETRY = RetryPolicy(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05)
_names = itertools.count(1)


@pytest.fixture
def acme() -> Iterator[AcmeCRM]:
    """A fresh fake Acme CRM per test (faults are set per test)."""
    with AcmeCRM() as server:
        yield server


def client(
    acme: AcmeCRM,
    *,
    token: str = TOKEN,
    limits: RateLimit | None = None,
    retry: RetryPolicy = FAST_RETRY,
) -> HttpClient:
    """A client for the fake; each gets its own system name, so limiters never mix."""
    return HttpClient(
        f"acme-{next(_names)}",
        acme.url + "/api",
        Auth(type="bearer", token=token),
        limits,
        retry,
        timeout=5.0,
    )


async def collect(http: HttpClient, path: str, **kwargs: Any) -> list[Any]:
    """Every record of a paged listing."""
    found = [r async for r in http.records("GET", path, **kwargs)]
    await http.aclose()
    return found


# ---------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (Auth(type="bearer", token="t0k"), "Authorization", "Bearer t0k"),
        (
            Auth(type="basic", username="u", password="p"),
            "Authorization",
            "Basic " + base64.b64encode(b"u:p").decode(),
        ),
        (Auth(type="api_key", header="Api-Token", key="k3y"), "Api-Token", "k3y"),
        (
            Auth(type="api_key", key="k3y", prefix="AccessKey "),
            "Authorization",
            "AccessKey k3y",
        ),
        (
            Auth(type="key_as_basic_user", key="k3y"),
            "Authorization",
            "Basic " + base64.b64encode(b"k3y:X").decode(),
        ),
        (
            Auth(type="key_as_basic_user", key="k3y", password="pw"),
            "Authorization",
            "Basic " + base64.b64encode(b"k3y:pw").decode(),
        ),
    ],
)
def test_auth_schemes_set_their_header(auth: Auth, header: str, value: str) -> None:
    assert auth.headers() == {header: value}


def test_auth_needs_its_secret_and_hides_it() -> None:
    with pytest.raises(ValidationError, match="needs token"):
        Auth(type="bearer")
    with pytest.raises(ValidationError, match="needs username, password"):
        Auth(type="basic")
    assert "s3cret" not in repr(Auth(type="bearer", token="s3cret"))
    assert Auth().headers() == {}


def test_bearer_token_reaches_the_server(acme: AcmeCRM) -> None:
    found = asyncio.run(collect(client(acme), "/contacts", records_path="contacts"))
    assert len(found) == 6


def test_rejected_credentials_are_fatal_with_a_clear_reason(acme: AcmeCRM) -> None:
    http = client(acme, token="wrong")
    with pytest.raises(HttpError) as caught:
        asyncio.run(
            http.request(
                "GET",
                "/contacts",
                path_params={"email": SUBJECT_EMAIL},
                params={"email": "{email}"},
            )
        )
    error = caught.value
    assert error.status == 401 and not error.retryable
    assert "credentials rejected (401): check the API key/token for system" in str(error)
    assert "GET /contacts?email={email}" in str(error)
    assert SUBJECT_EMAIL not in str(error)
    assert len(acme.calls()) == 1  # not retried


# -------------------------------------------------------------------------------- paging


def test_offset_paging_stops_at_the_total(acme: AcmeCRM) -> None:
    paging = OffsetPaging(page_size=2, total_path="meta.total")
    found = asyncio.run(collect(client(acme), "/contacts", records_path="contacts", paging=paging))
    assert [c["id"] for c in found] == [101, 102, 103, 104, 105, 106]
    assert len(acme.calls(path_prefix="/api/contacts")) == 3


def test_offset_paging_stops_on_a_short_page(acme: AcmeCRM) -> None:
    paging = OffsetPaging(page_size=4)
    found = asyncio.run(collect(client(acme), "/contacts", records_path="contacts", paging=paging))
    assert len(found) == 6
    assert [c.query for c in acme.calls()] == ["limit=4&offset=0", "limit=4&offset=4"]


def test_a_page_size_above_the_vendor_maximum_is_a_fatal_400(acme: AcmeCRM) -> None:
    paging = OffsetPaging(page_size=500)
    with pytest.raises(HttpError) as caught:
        asyncio.run(collect(client(acme), "/contacts", records_path="contacts", paging=paging))
    assert caught.value.status == 400 and not caught.value.retryable
    assert "-> 400 (expected 200)" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "records_path", "paging", "ids", "pages"),
    [
        (
            "/contacts/{id}/notes",
            "notes",
            CursorPaging(cursor_path="meta.next", cursor_param="after"),
            [1001, 1002, 1003, 1004, 1005],
            3,
        ),
        ("/contacts/{id}/tickets", "", LinkHeaderPaging(), [2001, 2002, 2003], 2),
        (
            "/contacts/{id}/activities",
            "activities",
            NextUrlPaging(next_path="links.next", has_more_path="meta.has_more"),
            [3001, 3002, 3003],
            2,
        ),
    ],
    ids=["cursor in the body", "Link rel=next", "links.next until has_more is false"],
)
def test_paging_follows_the_vendors_next_page(
    acme: AcmeCRM, path: str, records_path: str, paging: Any, ids: list[int], pages: int
) -> None:
    found = asyncio.run(
        collect(
            client(acme), path, path_params={"id": 101}, records_path=records_path, paging=paging
        )
    )
    assert [r["id"] for r in found] == ids
    assert len(acme.calls()) == pages


def test_page_number_paging_stops_on_a_short_page(acme: AcmeCRM) -> None:
    paging = PageNumberPaging(page_size=2)
    found = asyncio.run(
        collect(client(acme), "/contacts/{id}/tickets", path_params={"id": 101}, paging=paging)
    )
    assert [t["id"] for t in found] == [2001, 2002, 2003]
    assert [c.query for c in acme.calls()] == ["page=1&per_page=2", "page=2&per_page=2"]


def test_absent_status_means_no_records(acme: AcmeCRM) -> None:
    found = asyncio.run(
        collect(
            client(acme),
            "/contacts/{id}/notes",
            path_params={"id": 999},
            records_path="notes",
            absent=(404,),
        )
    )
    assert found == []


def test_paging_parameters_can_go_into_a_json_body() -> None:
    # HubSpot and Intercom searches page inside the POST body.
    paging = CursorPaging(
        cursor_path="pages.next.starting_after",
        cursor_param="pagination.starting_after",
        limit_param="pagination.per_page",
        page_size=50,
        send_in="body",
    )
    first = paging.first(PageRequest(json={"query": {"field": "email"}}))
    assert first.json == {"query": {"field": "email"}, "pagination": {"per_page": 50}}
    page = type("P", (), {"body": {"pages": {"next": {"starting_after": "abc"}}}, "records": [1]})
    following = paging.next(page, first)  # type: ignore[arg-type]
    assert following is not None
    assert following.json["pagination"] == {"per_page": 50, "starting_after": "abc"}


def test_a_next_page_on_another_host_is_refused(acme: AcmeCRM) -> None:
    # Following it would send our credentials to whoever the body names.
    http = client(acme)
    request = PageRequest(url="http://203.0.113.9/api/steal")
    with pytest.raises(HttpError, match="another host"):
        asyncio.run(http._send("GET", "/x", request, "/x", (200,)))


# ------------------------------------------------------------------------------ retries


def test_429_with_retry_after_is_waited_out(acme: AcmeCRM) -> None:
    acme.faults.rate_limit_every = 2
    http = client(acme)

    async def two_calls() -> float:
        await http.request("GET", "/contacts")
        started = time.monotonic()
        await http.request("GET", "/contacts")  # the fake's 2nd call is a 429, the 3rd is fine
        await http.aclose()
        return time.monotonic() - started

    waited = asyncio.run(two_calls())
    assert [c.status for c in acme.calls()] == [200, 429, 200]
    assert waited >= 0.95


def test_429_that_never_ends_is_reported_retryable(acme: AcmeCRM) -> None:
    acme.faults.rate_limit_every = 1
    http = client(acme, retry=RetryPolicy(attempts=2, max_wait_seconds=0.05))
    with pytest.raises(HttpError) as caught:
        asyncio.run(http.request("GET", "/contacts"))
    assert caught.value.status == 429 and caught.value.retryable
    assert len(acme.calls()) == 2


def test_5xx_is_retried_then_succeeds(acme: AcmeCRM) -> None:
    acme.faults.fail_5xx = 2
    response = asyncio.run(client(acme).request("GET", "/contacts"))
    assert response.status_code == 200
    assert [c.status for c in acme.calls()] == [503, 503, 200]


def test_5xx_that_persists_is_reported_retryable(acme: AcmeCRM) -> None:
    acme.faults.fail_5xx = 100
    with pytest.raises(HttpError) as caught:
        asyncio.run(client(acme).request("GET", "/contacts/{id}", path_params={"id": 7}))
    assert caught.value.status == 503 and caught.value.retryable
    assert str(caught.value).endswith("GET /contacts/{id} -> 503 server error")
    assert len(acme.calls()) == FAST_RETRY.attempts


def test_connection_errors_are_retryable_and_name_no_url() -> None:
    with AcmeCRM() as gone:
        url = gone.url
    http = HttpClient("down", url, retry=FAST_RETRY, timeout=1.0)
    with pytest.raises(HttpError) as caught:
        asyncio.run(http.request("GET", "/c/{email}", path_params={"email": SUBJECT_EMAIL}))
    assert caught.value.retryable and caught.value.status is None
    assert str(caught.value) == "down: GET /c/{email}: connection failed (ConnectError)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_server_wait_reads_retry_after_and_reset_headers() -> None:
    now = 1_800_000_000.0
    assert server_wait(_response(429, **{"Retry-After": "3"}), now) == 3.0
    http_date = "Fri, 15 Jan 2027 08:00:10 GMT"
    from email.utils import parsedate_to_datetime

    date_now = parsedate_to_datetime(http_date).timestamp() - 10
    assert server_wait(_response(503, **{"Retry-After": http_date}), date_now) == 10.0
    assert server_wait(_response(429, **{"X-RateLimit-Reset": str(int(now) + 7)}), now) == 7.0
    assert server_wait(_response(429, **{"RateLimit-Reset": "4"}), now) == 4.0
    assert (
        server_wait(_response(429, **{"X-Rate-Limit-Reset": str(int(now * 1000) + 2000)}), now)
        == 2.0
    )
    assert server_wait(_response(429, **{"X-RateLimit-Reset": str(int(now) - 5)}), now) == 0.0
    # Reset headers come on every response; only a 429 makes us wait for them.
    assert server_wait(_response(500, **{"X-RateLimit-Reset": "4"}), now) is None
    assert server_wait(_response(429), now) is None


def test_a_reset_header_429_is_waited_out(acme: AcmeCRM) -> None:
    acme.faults.rate_limit_every = 2
    acme.rate_limit_style = "reset_delta"
    http = client(acme)

    async def two_calls() -> float:
        await http.request("GET", "/contacts")
        started = time.monotonic()
        await http.request("GET", "/contacts")
        return time.monotonic() - started

    assert asyncio.run(two_calls()) >= 0.95


# ----------------------------------------------------------------------------- limiter


def test_limiter_keeps_rate_and_concurrency(acme: AcmeCRM) -> None:
    acme.faults.latency_seconds = 0.05
    limits = RateLimit(requests=5, per_seconds=1, concurrency=2)
    http = client(acme, limits=limits)

    async def burst() -> None:
        await asyncio.gather(*(http.request("GET", "/contacts") for _ in range(12)))
        await http.aclose()

    asyncio.run(burst())
    assert len(acme.calls()) == 12
    assert acme.max_in_window(1.0) <= 5
    assert acme.max_concurrent() <= 2


def test_without_a_limiter_the_burst_is_concurrent(acme: AcmeCRM) -> None:
    # Shows the previous test measures something: the fake sees concurrency when we allow it.
    acme.faults.latency_seconds = 0.1

    async def burst() -> None:
        http = client(acme)
        await asyncio.gather(*(http.request("GET", "/contacts") for _ in range(6)))
        await http.aclose()

    asyncio.run(burst())
    assert acme.max_concurrent() > 2


def test_limiter_is_shared_by_clients_of_one_system(acme: AcmeCRM) -> None:
    limits = RateLimit(requests=3, per_seconds=1)
    name = f"shared-{next(_names)}"
    clients = [
        HttpClient(name, acme.url + "/api", Auth(type="bearer", token=TOKEN), limits)
        for _ in range(3)
    ]

    async def burst() -> None:
        await asyncio.gather(*(c.request("GET", "/contacts") for c in clients for _ in range(2)))

    asyncio.run(burst())
    assert acme.max_in_window(1.0) <= 3


# ------------------------------------------------------------------- templates and leaks


def test_templates_render_url_encoded_in_paths_and_raw_in_data() -> None:
    values = {"email": "a+b@example.nl", "id": 5, "credentials": {"token": "t"}}
    assert render("/c/{email}/n/{id}", values, encode=True) == "/c/a%2Bb%40example.nl/n/5"
    assert render("{credentials.token}", values) == "t"
    assert render("{{literal}}", values) == "{literal}"
    assert render_value({"objectId": "{id}", "q": "e={email}"}, values) == {
        "objectId": 5,
        "q": "e=a+b@example.nl",
    }
    with pytest.raises(TemplateError, match=r"\{phone\}"):
        render("/c?p={phone}", values)
    assert describe("/contacts", {"email": "{email}"}) == "/contacts?email={email}"


def test_no_identifier_reaches_a_log_line_even_at_debug(
    acme: AcmeCRM, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "httpx", "httpcore", "httpcore.http11", "httpcore.connection"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    acme.faults.rate_limit_every = 3
    acme.rate_limit_style = "reset_delta"
    http = client(acme)
    values = {"email": SUBJECT_EMAIL, "phone": SUBJECT_PHONE}

    async def calls() -> None:
        await http.request(
            "GET", "/contacts", path_params=values, params={"email": "{email}", "phone": "{phone}"}
        )
        await http.request("GET", "/contacts/{email}", path_params=values, expected=(200, 404))
        with pytest.raises(HttpError) as caught:
            await http.request("GET", "/contacts/{email}/notes", path_params=values)
        assert SUBJECT_EMAIL not in str(caught.value)
        await http.aclose()

    asyncio.run(calls())
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (SUBJECT_EMAIL, quote(SUBJECT_EMAIL, safe=""), SUBJECT_PHONE, "devries"):
        assert secret.lower() not in text.lower()
    assert "GET /contacts?email={email}&phone={phone}" in caplog.text
    assert any("429" in r.getMessage() for r in caplog.records)  # the retry was logged
    # httpx still logs for code outside our client.
    caplog.clear()
    httpx.get(acme.url + "/api/contacts")
    assert "HTTP Request" in caplog.text
