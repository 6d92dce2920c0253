"""Each feature of the connector spec on its own, against the strict fake Deskly.

Every test writes a small spec (one feature beside the least it needs), builds the `rest`
connector from it as a register entry would, and checks what the fake saw and kept.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.base import ConnectorConfigError, ConnectorError
from connectors.conformance import run_task
from connectors.declarative import DeclarativeConnector, load_spec
from connectors.fakes import specfake
from connectors.http import JobPolling
from connectors.metadata import collection_info
from connectors.vendors.spec import JobSpec, SpecRunner
from connectors.vendors.spec.expressions import ExpressionError, evaluate, parse
from schemas.events import FieldChange, Identifier, OutcomeStatus, RequestType, Subject
from schemas.register import System

FAKE = specfake.Deskly
SUBJECT = Subject(
    identifiers=[
        Identifier(type="email", value=specfake.SUBJECT_EMAIL),
        Identifier(type="phone", value=specfake.SUBJECT_PHONE),
    ]
)
BY_EMAIL = Subject(identifiers=[Identifier(type="email", value=specfake.SUBJECT_EMAIL)])
_names = itertools.count(1)

USERS: dict[str, Any] = {
    "path": "/users",
    "records_path": "users",
    "collection": "users",
    "params": {"email": "{email}"},
}
TICKETS: dict[str, Any] = {
    "collection": "tickets",
    "path": "/users/{id}/tickets",
    "records_path": "tickets",
    "paging": {"type": "page", "page_size": 2},
}
CONVERSATIONS: dict[str, Any] = {
    "collection": "conversations",
    "path": "/tickets/{item.id}/conversations",
    "records_path": "conversations",
}
JOB: dict[str, Any] = {"id_path": "job.id", "poll": "/jobs/{job_id}", "interval_seconds": 0.01}


@pytest.fixture
def deskly(fake: specfake.Deskly) -> specfake.Deskly:
    """The module's fake, seeded afresh."""
    fake.reset()
    return fake


def spec(tmp_path: Path, **keys: Any) -> Path:
    """A spec file: a name, fast retries, the users search, and `keys`."""
    data: dict[str, Any] = {
        "name": "deskly-test",
        "auth": {"type": "bearer", "token": "{credentials.token}"},
        "retry": {"attempts": 3, "backoff_seconds": 0.01},
        "rights": ["access"],
        "find": USERS,
    }
    data.update(keys)
    path = tmp_path / f"spec-{next(_names)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def connect(fake: specfake.Deskly, path: Path, **settings: Any) -> DeclarativeConnector:
    """The `rest` connector for the spec file, on the fake; a fresh system name each."""
    return DeclarativeConnector(
        f"deskly-{next(_names)}",
        {
            "spec": str(path),
            "base_url": f"{fake.url}/api",
            "credentials": {"token": specfake.TOKEN},
            **settings,
        },
    )


def collections(result: Any) -> dict[str, int]:
    """Records per collection."""
    return dict(Counter(r.collection for r in result.records))


def task(connector: DeclarativeConnector, action: RequestType, subject: Subject = SUBJECT) -> Any:
    """One task as a worker runs it."""
    return run_task(connector, connector.system, action, subject)


# ---------------------------------------------------------------------------- finding


def test_several_find_queries_per_identifier_type_active_and_soft_deleted(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    find = {
        **USERS,
        "queries": [
            {"params": {"email": "{email}"}},
            {"params": {"email": "{email}", "state": "deleted"}},
            {"params": {"mobile": "{phone}"}},
        ],
        "match": {"email": "email", "mobile": "phone"},
    }
    crm = connect(deskly, spec(tmp_path, find=find))
    found = task(crm, RequestType.ACCESS)
    assert sorted(r.data["id"] for r in found.records) == [1, 2, 3]
    # A query whose identifier the subject lacks is skipped, not a manual task.
    by_email = task(connect(deskly, spec(tmp_path, find=find)), RequestType.ACCESS, BY_EMAIL)
    assert sorted(r.data["id"] for r in by_email.records) == [1, 2]
    queries = [c.query for c in deskly.calls("GET", "/api/users")]
    assert any(q.endswith("&state=deleted") for q in queries)
    assert any(q.startswith("mobile=") for q in queries)


def test_art_5_1_f_partial_search_results_are_dropped_by_the_exact_match(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """The fake's search finds `xfemke@example.nl` for `femke@example.nl`: not the subject."""
    crm = connect(deskly, spec(tmp_path))
    found = task(crm, RequestType.ACCESS)
    assert [r.data["id"] for r in found.records] == [1]
    assert any("xfemke" in str(u["email"]) for u in deskly.data["users"])


def test_a_subject_without_any_searched_identifier_is_a_manual_task(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    crm = connect(deskly, spec(tmp_path, find={**USERS, "params": {"phone": "{phone}"}}))
    outcome = task(crm, RequestType.ACCESS, BY_EMAIL)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert specfake.SUBJECT_EMAIL not in (outcome.instructions or "")


# ---------------------------------------------------------------------------- related


def test_nested_related_collections_see_their_parent_as_item(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    related = [{**TICKETS, "related": [CONVERSATIONS]}]
    outcome = task(connect(deskly, spec(tmp_path, related=related)), RequestType.ACCESS)
    assert collections(outcome) == {"users": 1, "tickets": 4, "conversations": 7}
    assert len(deskly.calls("GET", "/api/users/1/tickets")) == 3  # two full pages, one empty
    assert {c.path for c in deskly.calls("GET", "/api/tickets/")} == {
        f"/api/tickets/{t}/conversations" for t in (10, 11, 12, 20)
    }


def test_exact_match_filter_on_related_records_drops_other_peoples(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """The listing holds tickets the subject is only CC'd on: `where` keeps her own."""
    related = [{**TICKETS, "where": {"item.requester_id": "{id}"}, "related": [CONVERSATIONS]}]
    outcome = task(connect(deskly, spec(tmp_path, related=related)), RequestType.ACCESS)
    assert sorted(r.data["id"] for r in outcome.records if r.collection == "tickets") == [
        10,
        11,
        12,
    ]
    assert collections(outcome)["conversations"] == 6  # not those of Jan's ticket 20


# ---------------------------------------------------------------------- computed values


def test_computed_values_are_a_small_safe_expression_set() -> None:
    values = {"email": "Femke@Example.nl", "settings": {"user": "u", "key": "k"}}
    assert evaluate(parse("md5(lower(email))"), values) == specfake.member_hash("femke@example.nl")
    assert evaluate(parse("urlencode(email)"), values) == "Femke%40Example.nl"
    assert evaluate(parse("base64(concat(settings.user, ':', settings.key))"), values) == "dTpr"
    assert evaluate(parse("digits('+31 (0)6-1234')"), values) == "31061234"
    assert evaluate(parse("md5(phone)"), values) is None  # no phone: the value is absent
    for bad in ("__import__('os')", "lower(email", "md5(lower(email)) x", ""):
        with pytest.raises(ExpressionError):
            parse(bad)


def test_an_unknown_function_is_refused_at_load_naming_it(tmp_path: Path) -> None:
    path = spec(tmp_path, computed={"hash": "eval(email)"})
    with pytest.raises(ConnectorConfigError, match=r"computed: hash: .*unknown function 'eval'"):
        load_spec(path)


MAILING: dict[str, Any] = {
    "computed": {"hash": "md5(lower(email))"},
    "rights": ["access", "erasure"],
    "find": {
        "each": {"as": "list", "path": "/lists", "records_path": "lists"},
        "path": "/lists/{list.id}/members/{hash}",
        "records_path": "",
        "collection": "members",
        "match": {"email_address": "email"},
    },
    "erase": [
        {
            "method": "POST",
            "path": "/lists/{list.id}/members/{hash}/actions/delete-permanent",
            "expect": [204],
        }
    ],
}


def test_fan_out_over_every_listed_parent_with_a_computed_member_id(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """Mailchimp style: the member id is md5(lower(email)), asked in every audience; the same
    id in two audiences is two records."""
    crm = connect(deskly, spec(tmp_path, **MAILING))
    found = task(crm, RequestType.ACCESS)
    assert collections(found) == {"members": 2}
    hashed = specfake.member_hash(specfake.SUBJECT_EMAIL)
    assert {c.path for c in deskly.calls("GET", "/api/lists/")} == {
        f"/api/lists/{a}/members/{hashed}" for a in ("a1", "b2", "c3")
    }
    erased = task(connect(deskly, spec(tmp_path, **MAILING)), RequestType.ERASURE)
    assert erased.status == OutcomeStatus.COMPLETED and erased.counts.deleted == 2
    assert sorted(deskly.forgotten) == [("a1", hashed), ("c3", hashed)]


# ---------------------------------------------------------------------------- erasure

ERASE_TICKETS: dict[str, Any] = {
    "rights": ["access", "erasure"],
    "related": [{**TICKETS, "where": {"item.requester_id": "{id}"}, "related": [CONVERSATIONS]}],
    "erase": [
        {
            "over": "tickets",
            "unless": {"item.cc_ids": {"present": True}},
            "path": "/tickets/{item.id}",
            "expect": [202],
            "removes": ["conversations"],
            "job": JOB,
        },
        {"path": "/users/{id}"},
    ],
}


def test_erase_steps_over_related_records_poll_the_vendor_job(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    outcome = task(connect(deskly, spec(tmp_path, **ERASE_TICKETS)), RequestType.ERASURE)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    evidence = [(e.kind, e.value) for e in outcome.evidence]
    assert ("tickets_deleted", "2") in evidence and ("conversations_deleted", "4") in evidence
    assert [v for k, v in evidence if k == "vendor_job_id"] == ["job-1", "job-2"]
    assert len(deskly.calls("GET", "/api/jobs/")) == 4
    assert outcome.counts.deleted == 7  # the user, two tickets and their four messages


def test_conditional_step_keeps_the_ticket_shared_with_another_person(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """Art. 17(1) reaches the subject's data only: a ticket Jan is on is not deleted."""
    task(connect(deskly, spec(tmp_path, **ERASE_TICKETS)), RequestType.ERASURE)
    assert sorted(t["id"] for t in deskly.data["tickets"]) == [12, 20, 21]
    assert [c.path for c in deskly.calls("DELETE", "/api/tickets/")] == [
        "/api/tickets/10",
        "/api/tickets/11",
    ]


def test_job_polling_is_the_http_layers_one_implementation() -> None:
    """The spec's job is the HTTP layer's `JobPolling`, polled by `HttpClient.wait_for_job`,
    the same as the Python vendors use (Zendesk)."""
    assert issubclass(JobSpec, JobPolling)
    assert "wait_for_job" in SpecRunner._call.__code__.co_names


def test_a_failed_vendor_job_fails_the_task_retryably(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    deskly.job_polls = 10**6
    job = {**JOB, "attempts": 3, "timeout_seconds": None}
    steps = [{**ERASE_TICKETS["erase"][0], "job": job}]
    crm = connect(deskly, spec(tmp_path, **{**ERASE_TICKETS, "erase": steps}))
    try:
        with pytest.raises(ConnectorError) as caught:
            asyncio.run(crm.erase(SUBJECT))
    finally:
        deskly.job_polls = 2
    assert caught.value.retryable and "not done in time" in str(caught.value)


# ---------------------------------------------------------------------------- actions

ACTIONS: dict[str, Any] = {
    "actions": {
        "objection": {
            "evidence": "users_unsubscribed",
            "steps": [
                {
                    "when": {"record.subscribed": True},
                    "method": "POST",
                    "path": "/users/{id}/unsubscribe",
                }
            ],
        },
        "consent_withdrawal": "objection",
        "restriction": {
            "count_as": "updated",
            "steps": [
                {"method": "PUT", "path": "/users/{id}", "body": {"user": {"restricted": True}}}
            ],
        },
        "rectification": {
            "count_as": "updated",
            "fields": {"name": "name", "phone": "phone"},
            "steps": [{"method": "PUT", "path": "/users/{id}", "body": {"user": "{changes}"}}],
        },
    }
}


def test_art_21_objection_step_runs_only_where_its_condition_holds(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    crm = connect(deskly, spec(tmp_path, **ACTIONS))
    assert RequestType.OBJECTION in crm.capabilities
    outcome = task(crm, RequestType.OBJECTION, BY_EMAIL)
    assert outcome.counts.suppressed == 1 and deskly.unsubscribed == [1]
    again = task(connect(deskly, spec(tmp_path, **ACTIONS)), RequestType.CONSENT_WITHDRAWAL)
    assert again.status == OutcomeStatus.COMPLETED and again.counts.suppressed == 0
    assert deskly.calls("DELETE") == []


def test_art_18_restriction_marks_the_record(deskly: specfake.Deskly, tmp_path: Path) -> None:
    outcome = task(connect(deskly, spec(tmp_path, **ACTIONS)), RequestType.RESTRICTION, BY_EMAIL)
    assert outcome.counts.updated == 1
    assert deskly.updates == [(1, {"restricted": True})]


def test_art_16_rectification_sends_known_fields_and_names_the_others(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    crm = connect(deskly, spec(tmp_path, **ACTIONS))
    changes = [
        FieldChange(field="name", value="Femke van Dijk"),
        FieldChange(field="shoe_size", value="39"),
    ]
    result = asyncio.run(crm.rectify(BY_EMAIL, changes))
    assert deskly.updates == [(1, {"name": "Femke van Dijk"})]
    assert result.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    assert "shoe_size" in (result.instructions or "") and "39" not in (result.instructions or "")


# ----------------------------------------------------------------- manual, settings, hooks

MANUAL: dict[str, Any] = {
    "rights": [],
    "find": None,
    "settings": {"portal": {"default": "https://portal.deskly.example"}},
    "manual": {
        "reason": "no API for this",
        "before": ["Sign in to {settings.portal}."],
        "erasure": [
            "Delete the requester's account.",
            {"text": "Also empty the archive.", "when": {"settings.portal": {"present": True}}},
        ],
    },
}


def test_manual_task_entries_carry_numbered_instructions_without_identifiers(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    crm = connect(deskly, spec(tmp_path, **MANUAL))
    assert crm.capabilities == {RequestType.ERASURE}
    outcome = task(crm, RequestType.ERASURE)
    assert outcome.status == OutcomeStatus.MANUAL_ACTION_REQUIRED
    text = outcome.instructions or ""
    assert text.startswith("1. Sign in to https://portal.deskly.example. 2. Delete")
    assert "3. Also empty the archive." in text
    assert specfake.SUBJECT_EMAIL not in text and specfake.SUBJECT_PHONE not in text
    assert deskly.requests == []


def test_declared_settings_are_typed_bounded_and_fill_the_spec(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    settings = {"page_size": {"type": "integer", "default": 2, "minimum": 1, "maximum": 2}}
    related = [{**TICKETS, "paging": {"type": "page", "page_size": "{settings.page_size}"}}]
    path = spec(tmp_path, settings=settings, related=related)
    task(connect(deskly, path, page_size=1), RequestType.ACCESS)
    assert len(deskly.calls("GET", "/api/users/1/tickets")) == 5  # four tickets, one a page
    with pytest.raises(ConnectorConfigError, match="page_size"):
        connect(deskly, path, page_size=3)
    with pytest.raises(ConnectorConfigError, match="colour"):
        connect(deskly, path, colour="blue")


def test_per_vendor_rate_limit_and_retry_policy(deskly: specfake.Deskly, tmp_path: Path) -> None:
    path = spec(tmp_path, rate_limit={"requests": 3, "per_seconds": 1}, related=[TICKETS])
    deskly.faults.rate_limit_every = 2
    outcome = task(connect(deskly, path), RequestType.ACCESS)
    assert outcome.status == OutcomeStatus.COMPLETED, outcome.reason
    assert any(r.status == 429 for r in deskly.requests)  # refused, then retried
    assert deskly.max_in_window(1.0) <= 3
    deskly.faults.fail_5xx = 10**6
    failed = task(connect(deskly, path), RequestType.ACCESS)
    assert failed.status == OutcomeStatus.FAILED and failed.retryable
    assert len(deskly.calls()) - len(deskly.calls(path_prefix="/api/users/")) >= 3


def test_field_glossary_of_the_spec_reaches_the_export(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    glossary = {
        "users": {"title": {"nl": "Gebruikers", "en": "Users"}, "fields": {"email": "E-mail"}}
    }
    crm = connect(deskly, spec(tmp_path, collections=glossary))
    system = System(
        name=crm.system,
        kind="support_desk",
        connector="rest",
        data_categories=["contact details"],
        purposes=["support"],
        legal_basis=["contract"],
        profiling="none",
        retention="1 year",
    )
    info = collection_info(system, crm)["users"]
    assert info.heading("users", "nl") == "Gebruikers" and info.label("email", "en") == "E-mail"


HOOKS = '''
from connectors.base import Result
from schemas.events import Record


def match(record, subject):
    """Users 3 are the subject by their work address too (a vendor rule)."""
    return True if record.get("id") == 3 else None


def post_process(collection, record, context):
    if collection == "tickets" and record.get("cc_ids"):
        return Record(collection=collection, data=record, others=["/cc_ids"])
    return record


def not_shared(values):
    return not values["item"].get("cc_ids")
'''


def test_hooks_beside_the_spec_decide_matches_mark_others_and_conditions(
    deskly: specfake.Deskly, tmp_path: Path
) -> None:
    """Hooks, not forks: `match`, `post_process` (Art. 15(4) GDPR: others' ids marked) and a
    condition function; the YAML stays the connector."""
    (tmp_path / "deskly_hooks.py").write_text(HOOKS)
    keys = {
        **ERASE_TICKETS,
        "hooks": "deskly_hooks.py",
        "find": {**USERS, "params": {"email": "{email}"}},
    }
    keys["erase"] = [{**keys["erase"][0], "unless": {}, "when": {"hook": "not_shared"}}]
    path = spec(tmp_path, **keys)
    found = task(connect(deskly, path), RequestType.ACCESS)
    shared = [r for r in found.records if r.collection == "tickets" and r.data["id"] == 12]
    assert shared[0].others == ["/cc_ids"]
    task(connect(deskly, path), RequestType.ERASURE)
    assert sorted(t["id"] for t in deskly.data["tickets"]) == [12, 20, 21]


def test_a_hook_module_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    path = spec(tmp_path, hooks="connectors.specs.no_such_hooks")
    with pytest.raises(ConnectorConfigError, match="hooks: cannot import"):
        DeclarativeConnector(
            "x",
            {"spec": str(path), "base_url": "http://127.0.0.1:9", "credentials": {"token": "t"}},
        )


def test_dsr_connectors_list_shows_specs_with_their_source_and_rights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from orchestrator.cli.connectors import connectors_group

    (tmp_path / "deskly.yaml").write_text(
        (Path(__file__).parents[2] / "examples" / "connectors" / "deskly.yaml").read_text()
    )
    monkeypatch.setenv("DSR_CONNECTOR_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    shown = CliRunner().invoke(connectors_group, ["list"])
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): line for line in shown.output.splitlines() if "│" in line}
    assert "built-in spec" in rows["activecampaign"]
    assert "connectors/specs/activecampaign.yaml" in rows["activecampaign"]
    assert "objection" in rows["activecampaign"]
    assert "built-in spec" in rows["tawkto"] and "rectification" in rows["tawkto"]
    assert "declarative" in rows["deskly"] and str(tmp_path) in rows["deskly"]
    assert "built-in" in rows["sql"] and "spec" not in rows["sql"]
