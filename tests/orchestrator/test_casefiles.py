"""Our own case files under storage limitation (`orchestrator.artifacts.casefiles`), the
status topic's retention (`orchestrator.runtime.topics`) and `dsr casefiles sweep`."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.artifacts import casefiles
from orchestrator.artifacts.casefiles import KINDS, CaseFileSweep, sweep_case_files
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.cli import main
from orchestrator.lifecycle.reducer import RequestState
from orchestrator.runtime import topics
from orchestrator.runtime.topics import (
    RETENTION_MS,
    ensure_topics,
    retention_ms,
    status_topic_configs,
)
from schemas.events import OutcomeStatus, RequestStatus, RequestType, SystemProgress
from schemas.kafka import KafkaSettings
from schemas.primitives.sealing import DataKeys, bus_key
from schemas.register import CaseFiles
from schemas.topics import INTAKE, STATUS
from tests import factories

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
POLICY = CaseFiles()  # results and letters 2 years, certificates 5 years
EMAIL = "case.subject@example.nl"
YEAR = timedelta(days=366)
ANY_KAFKA = KafkaSettings(bootstrap="127.0.0.1:1")  # for the stand-in admin client


def _keys(data: Path) -> DataKeys:
    return DataKeys(data / "dek", bus_key(None, data / "keys"))


def _set_mtime(path: Path, moment: datetime) -> None:
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (moment.timestamp(), moment.timestamp()))


def _write(path: Path, text: str = "{}", *, at: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    _set_mtime(path, at)
    return path


def finished(
    data: Path,
    request_id: str,
    finished_at: datetime,
    *,
    kind: RequestType = RequestType.ACCESS,
    written_at: datetime | None = None,
) -> list[Path]:
    """A request as the orchestrator leaves it once finished: result (written by the real
    `ArtifactStore`), outcomes, letters, notification ledger, download code, export, record
    files, certificate for an erasure; and its data key. Returns every file."""
    request = factories.request(request_id, EMAIL, type=kind, received_at=finished_at)
    state = RequestState(
        request_id=request_id,
        request=request,
        status=RequestStatus.COMPLETED,
        systems={"crm": SystemProgress(status=OutcomeStatus.COMPLETED)},
        finished_at=finished_at,
    )
    _keys(data).create(request_id)
    at = written_at or finished_at
    store = ArtifactStore(data, _keys(data))
    result = store.write_result(state)  # before the outcome: it would read ours, a stand-in
    _set_mtime(result, at)
    files = [
        _write(store.outcome_path(request_id), at=at),
        _write(data / "documents" / request_id / "answer.nl.html", f"<p>{EMAIL}</p>", at=at),
        _write(data / "notifications" / f"{request_id}.json", at=at),
        _write(data / "delivery-codes" / f"{request_id}.json", at=at),
        _write(store.export_path(request_id), "sealed", at=at),
        _write(data / "records" / request_id / "crm.jsonl.enc", "sealed", at=at),
    ]
    if kind == RequestType.ERASURE:
        files += [
            _write(store.certificate_path(request_id), at=at),
            _write(data / "certificates" / f"{request_id}.nl.html", at=at),
            _write(data / "certificates" / f"{request_id}.en.html", at=at),
        ]
    return [*files, result]


def opened(data: Path, request_id: str, received_at: datetime) -> list[Path]:
    """A request still open: a letter (an extension notice) and an outcome, no result."""
    _keys(data).create(request_id)
    return [
        _write(data / "documents" / request_id / "extension.nl.html", at=received_at),
        _write(ArtifactStore(data).outcome_path(request_id), at=received_at),
    ]


def sweep(data: Path, *, now: datetime = NOW, dry_run: bool = False) -> CaseFileSweep:
    return sweep_case_files(data, POLICY, _keys(data), now=now, dry_run=dry_run)


def _counts(**counts: int) -> dict[str, int]:
    return {kind: counts.get(kind, 0) for kind in KINDS}


EVERY_KIND_ONCE = _counts(
    results=1, outcomes=1, letters=1, exports=1, records=1, notifications=1, delivery_codes=1
)


# -- what goes, what stays ---------------------------------------------------------------------


def test_art_5_1_e_case_files_removed_after_retention(tmp_path: Path) -> None:
    """Art. 5(1)(e) GDPR: our own case files are kept no longer than their purpose (showing
    that the request was answered lawfully, Art. 5(2)) needs; then they go, and the request's
    data key with them (crypto-shredding)."""
    files = finished(tmp_path, "req-old", NOW - 2 * YEAR - timedelta(days=1))
    swept = sweep(tmp_path)
    assert not any(path.exists() for path in files)
    assert swept.removed == EVERY_KIND_ONCE
    assert swept.keys_destroyed == 1
    assert _keys(tmp_path).destroyed("req-old")
    assert not (tmp_path / "documents" / "req-old").exists()
    assert not (tmp_path / "requests" / "req-old").exists()


def test_young_case_files_are_kept(tmp_path: Path) -> None:
    files = finished(tmp_path, "req-young", NOW - 2 * YEAR + timedelta(days=2))
    swept = sweep(tmp_path)
    assert all(path.exists() for path in files)
    assert swept.removed == _counts() and swept.keys_destroyed == 0
    assert _keys(tmp_path).get("req-young")


def test_an_open_request_is_never_touched(tmp_path: Path) -> None:
    """No final result: the request is being handled (Art. 12(3)); its letters and outcomes
    stay whatever their age, and so does its data key."""
    files = opened(tmp_path, "req-open", NOW - 10 * YEAR)
    swept = sweep(tmp_path)
    assert all(path.exists() for path in files)
    assert swept.removed == _counts() and swept.keys_destroyed == 0
    assert _keys(tmp_path).get("req-open")


def test_retention_counts_from_the_finish_time_in_the_result(tmp_path: Path) -> None:
    """A result rewritten later (a recipient told by hand) still counts from when the request
    finished, not from the file's last change."""
    files = finished(tmp_path, "req-rewritten", NOW - 3 * YEAR, written_at=NOW - timedelta(days=1))
    assert sweep(tmp_path).removed == EVERY_KIND_ONCE
    assert not any(path.exists() for path in files)


@pytest.mark.parametrize(("age", "removed"), [(3 * YEAR, True), (YEAR, False)])
def test_without_a_finish_time_the_result_files_mtime_counts(
    tmp_path: Path, age: timedelta, removed: bool
) -> None:
    result = _write(
        tmp_path / "results" / "req-legacy.json",
        '{"request_id": "req-legacy", "finished_at": null}',
        at=NOW - age,
    )
    letter = _write(tmp_path / "documents" / "req-legacy" / "answer.en.html", at=NOW - age)
    swept = sweep(tmp_path)
    assert result.exists() is not removed and letter.exists() is not removed
    assert swept.removed["results"] == int(removed)


def test_certificates_are_kept_longer_than_results(tmp_path: Path) -> None:
    """The deletion certificate is the evidence of the erasure (Art. 5(2), 17): kept 5 years
    (Art. 3:310 BW, Art. 5:45 Awb), while the results go after 2; the data key goes with the
    results, since the signed certificate never needs it."""
    finished(tmp_path, "req-erased", NOW - 3 * YEAR, kind=RequestType.ERASURE)
    certificate = tmp_path / "certificates" / "req-erased.json"

    first = sweep(tmp_path)
    assert first.removed == EVERY_KIND_ONCE and first.keys_destroyed == 1
    assert certificate.exists() and (tmp_path / "certificates" / "req-erased.nl.html").exists()

    later = sweep(tmp_path, now=NOW + 2 * YEAR + timedelta(days=2))
    assert later.removed == _counts(certificates=3) and later.keys_destroyed == 0
    assert not any((tmp_path / "certificates").iterdir())


def test_certificate_and_results_go_together_once_both_expired(tmp_path: Path) -> None:
    finished(tmp_path, "req-erased", NOW - 6 * YEAR, kind=RequestType.ERASURE)
    swept = sweep(tmp_path)
    assert swept.removed == {**EVERY_KIND_ONCE, "certificates": 3}
    assert not [p for d in ("results", "certificates") for p in tmp_path.joinpath(d).iterdir()]


def test_dry_run_counts_and_removes_nothing(tmp_path: Path) -> None:
    files = finished(tmp_path, "req-old", NOW - 3 * YEAR)
    dry = sweep(tmp_path, dry_run=True)
    assert all(path.exists() for path in files)
    assert _keys(tmp_path).get("req-old")
    real = sweep(tmp_path)
    assert dry == real == CaseFileSweep(removed=EVERY_KIND_ONCE, keys_destroyed=1)


def test_a_second_sweep_removes_nothing_more(tmp_path: Path) -> None:
    finished(tmp_path, "req-old", NOW - 3 * YEAR)
    finished(tmp_path, "req-young", NOW - YEAR)
    assert sweep(tmp_path).removed == EVERY_KIND_ONCE
    assert sweep(tmp_path) == CaseFileSweep(removed=_counts(), keys_destroyed=0)
    assert (tmp_path / "results" / "req-young.json").exists()


def test_a_sweep_stopped_half_way_is_completed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The key goes first and the result file last: a sweep that fails on one request leaves
    the result, so the next one finds the request and finishes the job; the others go on."""
    finished(tmp_path, "req-a", NOW - 3 * YEAR)
    finished(tmp_path, "req-b", NOW - 3 * YEAR)
    real_rmtree = casefiles.shutil.rmtree

    def refuse_letters(path: str, *args: Any, **kwargs: Any) -> None:
        if "documents" in str(path) and "req-a" in str(path):
            raise PermissionError(13, "Permission denied")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(casefiles.shutil, "rmtree", refuse_letters)
    with caplog.at_level(logging.ERROR, "dsr.orchestrator"):
        first = sweep(tmp_path)
    assert "case files of request req-a not removed: Permission denied" in caplog.text
    assert (tmp_path / "results" / "req-a.json").exists()
    assert not (tmp_path / "results" / "req-b.json").exists()
    assert first.keys_destroyed == 2

    monkeypatch.setattr(casefiles.shutil, "rmtree", real_rmtree)
    second = sweep(tmp_path)
    assert second.removed["letters"] == 1 and second.removed["results"] == 1
    assert second.keys_destroyed == 0  # already destroyed by the first
    assert not any((tmp_path / "results").iterdir())


def test_files_that_are_not_case_files_are_left_alone(tmp_path: Path) -> None:
    old = NOW - 9 * YEAR
    strangers = [
        _write(tmp_path / "results" / ".req-x.json.tmp123", at=old),  # an atomic write's temp
        _write(tmp_path / "results" / "notes.txt", at=old),
        _write(tmp_path / "certificates" / "bad name!.json", at=old),
        _write(tmp_path / "state" / "open" / "0.json", at=old),
        _write(tmp_path / "keys" / "req-old.pem", at=old),
    ]
    sweep(tmp_path)
    assert all(path.exists() for path in strangers)


def test_sweep_logs_counts_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No identifiers in logs: neither the subject's nor the request's."""
    finished(tmp_path, "req-old", NOW - 3 * YEAR)
    with caplog.at_level(logging.DEBUG):
        sweep(tmp_path)
    assert "req-old" not in caplog.text and EMAIL not in caplog.text
    assert "case files removed: results 1" in caplog.text
    assert "data keys destroyed: 1" in caplog.text


def test_mtimes_settle_old_results_without_opening_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast on a data dir with many requests: one scan per directory; a result file is opened
    only when its mtime alone cannot tell that it has expired."""
    old, young = NOW - 3 * YEAR, NOW - timedelta(days=30)
    for n in range(1500):
        _write(tmp_path / "results" / f"req-{n}.json", at=old if n % 2 else young)
        _write(tmp_path / "documents" / f"req-{n}" / "answer.nl.html", at=old)
    opened_results: list[str] = []
    real = casefiles._finished_at

    def counting(entry: os.DirEntry[str]) -> datetime | None:
        opened_results.append(entry.name)
        return real(entry)

    monkeypatch.setattr(casefiles, "_finished_at", counting)
    started = time.monotonic()
    swept = sweep_case_files(tmp_path, POLICY, _keys(tmp_path), now=NOW, dry_run=True)
    assert time.monotonic() - started < 5
    assert swept.removed["results"] == 750 and swept.removed["letters"] == 750
    assert len(opened_results) == 750  # only the young ones, to read their finish time


# -- the status topic's retention --------------------------------------------------------------


def test_retention_ms_is_never_shorter_than_the_period() -> None:
    assert retention_ms("2 years") == 732 * 24 * 3600 * 1000
    assert retention_ms("18 months") == (366 + 6 * 31) * 24 * 3600 * 1000
    assert retention_ms("6 weeks") == 42 * 24 * 3600 * 1000


def test_the_status_topic_gets_the_registers_retention() -> None:
    configs = status_topic_configs(CaseFiles(status_topic="3 years"))
    assert configs == {
        STATUS.name: {RETENTION_MS: str(retention_ms("3 years"))},
        INTAKE.name: {"cleanup.policy": "compact"},  # the topic's own config (schemas.topics)
    }
    assert status_topic_configs(None)[STATUS.name][RETENTION_MS] == str(retention_ms("2 years"))


def test_a_retention_given_as_a_topic_config_wins() -> None:
    given = topics.parse_topic_configs([f"{STATUS.name}:retention.ms=-1", "min.insync.replicas=2"])
    configs = status_topic_configs(CaseFiles(), given)
    assert configs[STATUS.name] == {RETENTION_MS: "-1", "min.insync.replicas": "2"}


class _Admin:
    """A stand-in for `KafkaAdminClient` recording what it is asked."""

    existing: set[str] = set()
    created: list[Any] = []
    altered: list[Any] = []
    answer: Any = None

    def __init__(self, **_: Any) -> None:
        pass

    def list_topics(self) -> list[str]:
        return sorted(self.existing)

    def create_topics(self, new: list[Any]) -> None:
        self.created.extend(new)

    def alter_configs(self, resources: list[Any], **options: Any) -> Any:
        self.altered.append((resources, options))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer or {"topic": {r.name: "OK" for r in resources}}

    def close(self) -> None:
        pass


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[_Admin]:
    monkeypatch.setattr(_Admin, "existing", set())
    monkeypatch.setattr(_Admin, "created", [])
    monkeypatch.setattr(_Admin, "altered", [])
    monkeypatch.setattr(_Admin, "answer", None)
    monkeypatch.setattr(topics, "KafkaAdminClient", _Admin)
    return _Admin


def test_new_status_topic_is_created_with_the_retention(admin: type[_Admin]) -> None:
    ensure_topics(ANY_KAFKA, case_files=CaseFiles(status_topic="3 years"))
    configs = {t.name: t.topic_configs for t in admin.created}
    assert configs[STATUS.name] == {RETENTION_MS: str(retention_ms("3 years"))}
    assert configs[INTAKE.name] == {"cleanup.policy": "compact"}
    assert all(c == {} for name, c in configs.items() if name not in (STATUS.name, INTAKE.name))
    assert admin.altered == []  # nothing existed


def test_existing_status_topic_gets_the_retention_incrementally(admin: type[_Admin]) -> None:
    """Only `retention.ms` changes (IncrementalAlterConfigs): the topic's other configs stay."""
    admin.existing = set(topics.topic_names())
    ensure_topics(ANY_KAFKA, case_files=CaseFiles(status_topic="3 years"))
    [(resources, options)] = admin.altered
    assert [(r.name, r.configs) for r in resources] == [
        (STATUS.name, {RETENTION_MS: str(retention_ms("3 years"))})
    ]
    assert options["incremental"] is True


def test_without_a_register_existing_topics_are_not_changed(admin: type[_Admin]) -> None:
    admin.existing = set(topics.topic_names())
    assert ensure_topics(ANY_KAFKA) == []
    assert admin.altered == []


@pytest.mark.parametrize(
    "answer",
    [{"topic": {STATUS.name: "[Error 29] TopicAuthorizationFailedError"}}, ValueError("no")],
)
def test_a_refused_retention_update_warns_and_goes_on(
    admin: type[_Admin], answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    admin.existing = set(topics.topic_names())
    admin.answer = answer
    with caplog.at_level(logging.WARNING):
        ensure_topics(ANY_KAFKA, case_files=CaseFiles())
    assert f"the retention of topic {STATUS.name} could not be set" in caplog.text
    assert "kafka-configs --alter" in caplog.text


def test_the_embedded_broker_takes_the_retention(kafka_settings: KafkaSettings) -> None:
    """Tansu accepts `retention.ms` on create and IncrementalAlterConfigs (answers OK) but
    never applies it and describes no configs: on it, only the request is tested."""
    admin = topics.KafkaAdminClient(**kafka_settings.kafka_python_options())
    try:
        assert topics.update_status_retention(admin, str(retention_ms("2 years")))
    finally:
        admin.close()


# -- dsr casefiles sweep -----------------------------------------------------------------------

REGISTER_YAML = """
systems:
  - name: crm
    kind: crm
    connector: memory
    data_categories: [email]
    purposes: [sales]
    legal_basis: [contract]
    profiling: none
    retention: 1 year
case_files:
  results: 1 year
"""


def test_cli_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    register = tmp_path / "register.yaml"
    register.write_text(REGISTER_YAML)
    now = datetime.now(UTC)
    finished(data, "req-old", now - YEAR - timedelta(days=2))
    finished(data, "req-young", now - timedelta(days=2))
    monkeypatch.delenv("DSR_DEK_DIR", raising=False)
    monkeypatch.delenv("DSR_KEYS_DIR", raising=False)
    monkeypatch.delenv("DSR_BUS_KEY_FILE", raising=False)
    runner = CliRunner()
    args = ["casefiles", "sweep", "--data-dir", str(data), "--register", str(register)]

    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove: 1 results, 1 outcomes, 1 letters" in dry.output
    assert "data keys to destroy: 1" in dry.output
    assert (data / "results" / "req-old.json").exists()

    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "removed: 1 results" in done.output and "(results kept 1 year" in done.output
    assert not (data / "results" / "req-old.json").exists()
    assert (data / "results" / "req-young.json").exists()
    assert runner.invoke(main, args).output.startswith("removed: nothing")


def test_a_sweep_in_a_thread_pauses_between_slices_and_still_removes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestrator runs the sweep in a thread beside its event loop; `pause` gives the
    loop the interpreter every few hundred folder entries and requests, and changes nothing
    about what goes."""
    monkeypatch.setattr(casefiles, "_PACE", 4)
    for n in range(6):
        finished(tmp_path, f"old-{n}", NOW - 3 * YEAR)
    kept = finished(tmp_path, "recent-1", NOW - YEAR)
    pauses: list[int] = []
    swept = sweep_case_files(
        tmp_path, POLICY, _keys(tmp_path), now=NOW, pause=lambda: pauses.append(1)
    )
    assert swept.removed["results"] == 6 and all(path.exists() for path in kept)
    assert len(pauses) >= 7  # 7 entries in each of 7 folders, 7 requests: every 4th
