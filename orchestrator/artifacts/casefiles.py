"""Our own case files under storage limitation: results, letters and certificates removed once
their retention (the register's `case_files`) has passed, and the request's data key destroyed.

API (the orchestrator's timer calls `sweep_case_files` on `case_files.schedule`):

- `sweep_case_files(data_dir, policy, data_keys, *, now, dry_run=False) -> CaseFileSweep`:
  what was (or would be) removed, counted per kind; no identifiers.

What a request leaves in the data dir, by kind (`KINDS`), all named after its request id:

| kind | where | kept for |
|---|---|---|
| results | `results/ID.json` | `results` |
| outcomes | `outcomes/ID.log` (each system's outcome, sealed; `requests/ID/` before) | `results` |
| letters | `documents/ID/` (letters to the subject) | `results` |
| exports | `exports/ID.zip.enc` (normally gone with crypto-shredding) | `results` |
| records | `records/ID/` (record files, attachments; normally gone already) | `results` |
| notifications | `notifications/ID.json` (the Art. 19 ledger) | `results` |
| delivery_codes | `delivery-codes/ID.json` (download codes, hashed) | `results` |
| deliveries | `delivery-sent/ID.json` (when the answer was e-mailed) | `results` |
| certificates | `certificates/ID.json`, `ID.nl.html`, `ID.en.html` | `certificates` |

Both periods count from when the request finished (`finished_at` in its result file; the result
file's mtime when that is missing). A request without a result file is still open and is never
touched, except for a certificate standing alone: certificates are issued only when a request
finishes, so one without a result is the last trace of a request whose results went earlier (or
a sweep certificate); it counts from its own mtime.

The data key goes with the results (Art. 5(1)(e) GDPR): it opens the subject's identifiers
wherever they are still sealed (tasks and the table's changelog in Kafka, exports, record files),
and what is kept longer, the certificate, is signed and names the subject only by a keyed
hash (HMAC-SHA256), so it never needs the key. `DataKeys.destroy` leaves a `.shredded` marker,
so the request id can never get a key again.

Fast on a data dir with many requests: one scan per directory (names and mtimes); a result file
is opened only when its mtime alone cannot tell that it has expired. The result file goes last,
so a sweep stopped half-way is finished by the next one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.artifacts.export import SEALED_SUFFIX
from schemas.events import REQUEST_ID_PATTERN
from schemas.primitives.sealing import DataKeys
from schemas.register import CaseFiles, parse_period

log = logging.getLogger("dsr.orchestrator")

RESULTS = "results"
CERTIFICATES = "certificates"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
#: Folder entries, and requests, between two calls of `sweep_case_files`'s `pause`.
_PACE = 200
# The first `finished_at` in a result file is the request's (it comes before "systems").
_FINISHED_AT = re.compile(rb'"finished_at":\s*(?:null|"([^"]*)")')


@dataclass(slots=True)
class CaseFileSweep:
    """What a case-file sweep removed (or would remove), per kind of file."""

    removed: dict[str, int] = field(default_factory=dict)
    keys_destroyed: int = 0


def _strip(suffix: str) -> Callable[[str], str | None]:
    return lambda name: name[: -len(suffix)] if name.endswith(suffix) else None


def _certificate_id(name: str) -> str | None:
    """`ID.json`, `ID.nl.html` and `ID.en.html` are the certificate of request ID."""
    if name.endswith(".json"):
        return name[:-5]
    if name.endswith(".html"):
        stem, dot, language = name[:-5].rpartition(".")
        if dot and len(language) == 2:
            return stem
    return None


def _same(name: str) -> str | None:
    return name


#: Where each kind of case file lives: (kind, directory, request id from an entry's name).
_PLACES: tuple[tuple[str, str, Callable[[str], str | None]], ...] = (
    ("results", "results", _strip(".json")),
    ("outcomes", "outcomes", _strip(".log")),
    ("outcomes", "requests", _same),  # where earlier versions kept them, one folder each
    ("letters", "documents", _same),
    ("exports", "exports", _strip(SEALED_SUFFIX)),
    ("records", "records", _same),
    ("notifications", "notifications", _strip(".json")),
    ("delivery_codes", "delivery-codes", _strip(".json")),
    ("deliveries", "delivery-sent", _strip(".json")),
    ("certificates", "certificates", _certificate_id),
)
#: Every kind, in the order a sweep reports them.
KINDS: tuple[str, ...] = tuple(kind for kind, _, _ in _PLACES)


@dataclass(slots=True)
class _Case:
    """What one request left on disk: its entries per kind, and its result and certificate."""

    entries: list[tuple[str, os.DirEntry[str]]] = field(default_factory=list)
    result: os.DirEntry[str] | None = None
    certificate: os.DirEntry[str] | None = None


def sweep_case_files(
    data_dir: Path,
    policy: CaseFiles,
    data_keys: DataKeys,
    *,
    now: datetime,
    dry_run: bool = False,
    pause: Callable[[], None] | None = None,
) -> CaseFileSweep:
    """Remove the case files whose retention has passed and destroy their data keys.

    `pause` is called every `_PACE` folder entries and requests: the orchestrator runs the
    sweep in a thread beside its event loop, and lets the loop have the interpreter there.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    results_cutoff = now - parse_period(policy.results)
    certificates_cutoff = now - parse_period(policy.certificates)
    sweep = CaseFileSweep(removed=dict.fromkeys(KINDS, 0))
    for count, (request_id, case) in enumerate(_scan(Path(data_dir), pause).items(), 1):
        if pause is not None and count % _PACE == 0:
            pause()
        try:
            results_expire, certificates_expire = _expired(
                case, results_cutoff, certificates_cutoff
            )
            if results_expire:
                _destroy_key(request_id, data_keys, sweep, dry_run=dry_run)
            for kind, entry in _in_removal_order(case):
                if certificates_expire if kind == CERTIFICATES else results_expire:
                    sweep.removed[kind] += _remove(entry, dry_run=dry_run)
        except OSError as exc:  # the next sweep tries again; this one goes on
            log.error("case files of request %s not removed: %s", request_id, exc.strerror or exc)
    counts = ", ".join(f"{kind} {n}" for kind, n in sweep.removed.items() if n) or "nothing"
    log.info(
        "case files %s: %s; data keys destroyed: %d",
        "that would be removed (dry run)" if dry_run else "removed",
        counts,
        sweep.keys_destroyed,
    )
    return sweep


def _scan(data_dir: Path, pause: Callable[[], None] | None = None) -> dict[str, _Case]:
    """Every request with a case file, found by the names in each directory (one scan each)."""
    cases: dict[str, _Case] = {}
    for kind, directory, request_of in _PLACES:
        for count, entry in enumerate(_entries(data_dir / directory), 1):
            if pause is not None and count % _PACE == 0:
                pause()
            request_id = request_of(entry.name)
            if request_id is None or not _REQUEST_ID.fullmatch(request_id):
                continue  # temporary files (".tmp-..."), and whatever is not a case file
            case = cases.setdefault(request_id, _Case())
            case.entries.append((kind, entry))
            if kind == RESULTS:
                case.result = entry
            elif kind == CERTIFICATES and entry.name.endswith(".json"):
                case.certificate = entry
    return cases


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as scan:
            yield from scan
    except FileNotFoundError:
        return


def _expired(
    case: _Case, results_cutoff: datetime, certificates_cutoff: datetime
) -> tuple[bool, bool]:
    """Whether the request's results (and letters...) and its certificates have expired."""
    if case.result is not None:
        # finished_at <= the result file's mtime: an mtime before every cutoff settles it.
        earliest = min(results_cutoff, certificates_cutoff) if case.certificate else results_cutoff
        finished = _mtime(case.result)
        if finished >= earliest:
            finished = _finished_at(case.result) or finished
        return finished < results_cutoff, finished < certificates_cutoff
    if case.certificate is not None:
        return False, _mtime(case.certificate) < certificates_cutoff
    return False, False  # no result: the request is still open


def _mtime(entry: os.DirEntry[str]) -> datetime:
    return datetime.fromtimestamp(entry.stat().st_mtime, UTC)


def _finished_at(entry: os.DirEntry[str]) -> datetime | None:
    """When the request finished, from its result file; None when it does not say."""
    try:
        match = _FINISHED_AT.search(Path(entry.path).read_bytes())
        moment = datetime.fromisoformat(match.group(1).decode()) if match and match[1] else None
    except (OSError, ValueError):
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _in_removal_order(case: _Case) -> list[tuple[str, os.DirEntry[str]]]:
    """The result file and the certificate's JSON last: they tell the next sweep the request
    is finished, so one stopped half-way is completed, never taken for an open request."""
    return sorted(
        case.entries, key=lambda item: (item[1] is case.result, item[1] is case.certificate)
    )


def _destroy_key(
    request_id: str, data_keys: DataKeys, sweep: CaseFileSweep, *, dry_run: bool
) -> None:
    """Destroy the request's data key (before its files go: a crash in between then leaves
    files the next sweep removes, never a key nobody will destroy)."""
    if data_keys.destroyed(request_id):
        return
    # `DataKeys` keeps each key as `ID.key`: counted only where there was a key to destroy.
    had_key = (data_keys.root / f"{request_id}.key").exists()
    if not dry_run:
        data_keys.destroy(request_id)  # also where no key was made: none ever will be now
    sweep.keys_destroyed += had_key


def _remove(entry: os.DirEntry[str], *, dry_run: bool) -> int:
    """Remove a file or a request's directory; the number of files in it."""
    if not entry.is_dir(follow_symlinks=False):
        if not dry_run:
            Path(entry.path).unlink(missing_ok=True)
        return 1
    count = sum(len(files) for _, _, files in os.walk(entry.path))
    if not dry_run:
        shutil.rmtree(entry.path)
    return count


__all__ = ["KINDS", "CaseFileSweep", "sweep_case_files"]
