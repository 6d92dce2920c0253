"""The export archive of an access (Art. 15) or portability (Art. 20) request, as a ZIP.

Layout::

    data/<system>/<collection>.json   a JSON array of the records
    data/<system>/<collection>.csv    the same records as CSV (header: the union of all keys)
    report.html                       the Art. 15(1) information per system (access only)
    README.html                       what a portability export holds and leaves out, and why
    manifest.json                     request id, time, systems, per file SHA-256 and counts,
                                      per collection records, held and redacted, and what a
                                      portability export left out (`excluded`, reason codes)

Everything is streamed: records are never held in memory as a whole. The source is read
once and spooled per collection to JSON-lines files on disk (next to the archive by default,
not in /tmp, which may be RAM-backed). Spooling is needed because a ZIP member must be
written in one go while a system's records arrive with collections interleaved, and because
a CSV header must list every key before the first row: the spool pass collects the union of
keys (small: one entry per distinct key), so the CSV has exact columns and no catch-all.
Each member is then written from its spool file while its SHA-256, size and record count are
computed on the fly. Nested values become JSON text in CSV cells.

Every record passes `redaction.protect` before it is spooled: other people's values in a shared
record are redacted, or the record is held for an officer's review and only counted (Art. 15(4)
and 20(4) GDPR). While spooling, a `CollectionDigest` per collection counts the records, dates
them by the connector metadata's `date_field` and keeps a short listing for the report.

Portability exports (Art. 20(1) GDPR) keep the systems with a purpose resting on consent or
contract (Art. 20(1)(a)), and within them only what the subject provided: the collections and
fields the connector metadata (`connectors.metadata`, overridable in the register) flags as
`provided` (WP29 Guidelines on the right to data portability, WP 242 rev.01, section III: data
actively given and data observed from the use of the service, not data the controller inferred
or derived). Whatever is left out is named with a reason code in the manifest (`excluded`) and
in `README.html`. They hold no report: Art. 20 asks for machine-readable data, and the Art. 15
information belongs to an access request.

At rest the archive is sealed with the request's data key (`REQUEST_ID.zip.enc`, chunked
AES-256-GCM, see `schemas.primitives.sealed_files`): `open_export` streams the ZIP back for staff
(`dsr export open`) and the dashboard's expiring downloads (`orchestrator.artifacts.downloads`). The
spool files are sealed too, with a key that lives only in memory while the export is written:
a crash half-way leaves nothing readable behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from connectors.metadata import CollectionInfo, collection_info
from orchestrator.artifacts.digest import CollectionDigest, ExportFile, record_date
from orchestrator.artifacts.redaction import protect
from orchestrator.artifacts.render import AP_URL, Language, render_document
from orchestrator.artifacts.report import render_report, report_language
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import Record
from schemas.primitives.sealed_files import CHUNK_SIZE, SealedReader, SealedWriter, read_sealed
from schemas.primitives.sealing import DataKeys, context
from schemas.register import Register, System

#: Why a portability export leaves something out (`Exclusion.reason_code`).
NOT_CONSENT_OR_CONTRACT = "legal_basis"  # Art. 20(1)(a): no purpose rests on consent/contract
NOT_PROVIDED = "not_provided"  # not provided by the subject: inferred, derived or staff data

#: The file name ending of a sealed export.
SEALED_SUFFIX = ".zip.enc"
_NO_INFO = CollectionInfo()  # a collection no metadata describes: all of it is the subject's
_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Exclusion:
    """What a portability export left out: a system, a collection, or fields of one."""

    system: str
    reason_code: str
    collection: str | None = None
    fields: tuple[str, ...] = ()
    records: int = 0  # records of the collection left out (not the subject's own messages)

    def as_json(self) -> dict[str, Any]:
        """The manifest's entry (no field that does not apply)."""
        entry: dict[str, Any] = {"system": self.system}
        if self.collection is not None:
            entry["collection"] = self.collection
        if self.fields:
            entry["fields"] = list(self.fields)
        if self.records:
            entry["records"] = self.records
        entry["reason_code"] = self.reason_code
        return entry


@dataclass(slots=True)
class ExportSummary:
    """What was written: the archive, its files and totals."""

    path: Path
    request_id: str
    portability: bool
    systems: list[str]
    files: list[ExportFile] = field(default_factory=list)
    #: Per system, its collections as exported (counts, dates, listing; held and redacted).
    digests: dict[str, list[CollectionDigest]] = field(default_factory=dict)
    #: Portability: what was left out, and why.
    excluded: list[Exclusion] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records exported (each counted once, from the JSON files)."""
        return sum(f.records or 0 for f in self.files if f.path.endswith(".json"))


class _HashingWriter:
    """Forwards bytes to a ZIP member while counting them and computing their SHA-256."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Write, hash and count."""
        self._hash.update(data)
        self.size += len(data)
        self._target.write(data)

    @property
    def hexdigest(self) -> str:
        """SHA-256 of everything written so far."""
        return self._hash.hexdigest()


class _TextSink:
    """The str-accepting file the csv module wants, encoding to UTF-8 as it goes."""

    def __init__(self, target: _HashingWriter) -> None:
        self._target = target

    def write(self, text: str) -> int:
        """Encode and forward one chunk (csv writes a row at a time)."""
        self._target.write(text.encode("utf-8"))
        return len(text)


@dataclass(slots=True)
class _Spool:
    """One collection's records on disk, one JSON document per line, plus its keys."""

    digest: CollectionDigest  # its count and keys (first-seen order) make the CSV
    path: Path
    key: bytes
    handle: SealedWriter | None

    def lines(self) -> Iterator[str]:
        """The spooled records as JSON text, one at a time."""
        raw = SealedReader(self.path, self.key, context("spool", self.path.name))
        with io.TextIOWrapper(io.BufferedReader(raw, CHUNK_SIZE), encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")


def write_export(
    path: Path,
    state: RequestState,
    register: Register,
    records: Callable[[str], Iterable[Record]],
    *,
    generated_at: datetime,
    portability: bool = False,
    spool_dir: Path | None = None,
    key: bytes | None = None,
    attachments: Callable[[zipfile.ZipFile, list[str]], list[ExportFile]] | None = None,
) -> ExportSummary:
    """Write the request's export ZIP to `path`, streaming; returns what was written.

    With `key` (the request's data key) the ZIP is sealed as it is written (`open_export`
    reads it back); without, it is a plain ZIP (tests, tools). `attachments` copies the files
    attached to manual tasks (`orchestrator.artifacts.attachments.AttachedFiles`).
    """
    request = state.request
    if request is None:
        raise ValueError(f"request {state.request_id!r} has no submitted request to export")
    path = Path(path)
    language = report_language(request.language)
    systems, excluded = _systems_in_scope(register, state, portability)
    summary = ExportSummary(
        path=path,
        request_id=state.request_id,
        portability=portability,
        systems=[s.name for s in systems],
        excluded=excluded,
    )
    digests = summary.digests
    per_system: dict[str, list[ExportFile]] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    spool_key = os.urandom(32)  # in memory only: the spool dies with this process
    try:
        with (
            tempfile.TemporaryDirectory(dir=spool_dir or path.parent, prefix=".spool-") as tmp,
            _open_target(partial, key, state.request_id) as target,
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            for system in systems:
                shaping = _Shaping(system, language, portability)
                spools = _spool(Path(tmp), records(system.name), spool_key, shaping)
                written = _write_system(archive, system.name, spools)
                per_system[system.name] = written
                summary.files.extend(written)
                digests[system.name] = list(shaping.digests.values())
                summary.excluded.extend(shaping.exclusions())
                for spool in spools:
                    spool.path.unlink()  # free the disk as soon as the collection is written
            attached = attachments(archive, summary.systems) if attachments else []
            summary.files.extend(attached)
            if not portability:
                report = render_report(
                    state,
                    systems,
                    per_system,
                    language=language,
                    generated_at=generated_at,
                    controller=register.controller,
                    digests=digests,
                    register=register,
                    attached=attached,
                ).encode("utf-8")
                summary.files.append(_write_small(archive, "report.html", report))
            else:
                readme = _readme(state, register, summary, language, generated_at)
                summary.files.append(_write_small(archive, "README.html", readme))
            manifest = _manifest(state, summary, generated_at, language)
            with archive.open("manifest.json", "w") as member:
                member.write(manifest)
        os.replace(partial, path)  # a reader never sees a half-written archive
    finally:
        partial.unlink(missing_ok=True)
    return summary


def export_context(request_id: str) -> bytes:
    """What a sealed export is bound to: its request."""
    return context("export", request_id)


def open_export(path: Path, data_keys: DataKeys, request_id: str | None = None) -> Iterator[bytes]:
    """The plaintext ZIP of a sealed export, in chunks of up to 1 MiB, streamed.

    The request id comes from the file name (`REQUEST_ID.zip.enc`) unless given. Raises
    `DataKeyDestroyed` once the request was shredded, `SealBroken` if the file was altered
    (possibly after earlier chunks were yielded: write to a temporary file, keep it only when
    the iteration ends cleanly).
    """
    path = Path(path)
    request_id = request_id or path.name.removesuffix(SEALED_SUFFIX)
    return read_sealed(
        path, data_keys.get(request_id), export_context(request_id), chunk_size=_CHUNK
    )


def _open_target(path: Path, key: bytes | None, request_id: str) -> IO[bytes] | SealedWriter:
    """The file the ZIP goes into: sealed when there is a key."""
    if key is None:
        return path.open("wb")
    return SealedWriter(path, key, export_context(request_id))


def _systems_in_scope(
    register: Register, state: RequestState, portability: bool
) -> tuple[list[System], list[Exclusion]]:
    """The request's systems in register order; for portability, those Art. 20 reaches, and
    the others named with the reason."""
    systems = [register.get(name) for name in register.names if name in state.systems]
    if not portability:
        return systems, []
    left_out = [Exclusion(s.name, NOT_CONSENT_OR_CONTRACT) for s in systems if not s.is_portable()]
    return [s for s in systems if s.is_portable()], left_out


@dataclass(slots=True)
class _Shaping:
    """One system's records on their way into the archive: protected from exposing others
    (Art. 15(4), 20(4) GDPR), kept to what the subject provided (portability), digested."""

    system: System
    language: Language
    portability: bool
    infos: dict[str, CollectionInfo] = field(init=False)
    digests: dict[str, CollectionDigest] = field(default_factory=dict)  # first-seen order
    skipped: dict[str, None] = field(default_factory=dict)  # collections left out
    dropped: dict[str, dict[str, None]] = field(default_factory=dict)  # fields left out
    others: dict[str, int] = field(default_factory=dict)  # records not the subject's own

    def __post_init__(self) -> None:
        self.infos = collection_info(self.system)

    def shape(self, record: Record) -> tuple[CollectionDigest, dict[str, Any]] | None:
        """The record's digest and the data that goes into the archive; None when nothing
        does (held for review, or not provided by the subject)."""
        name = record.collection
        info = self.infos.get(name, _NO_INFO)
        if self.portability and info.provided == "none":
            self.skipped[name] = None
            return None
        if self.portability and info.provided_when and not info.from_subject(record.data):
            self.others[name] = self.others.get(name, 0) + 1
            return None
        digest = self.digests.get(name)
        if digest is None:
            digest = self.digests[name] = CollectionDigest(self.system.name, name)
        protected = protect(record, self.system.third_party_mode(name), self.language)
        if protected is None:
            digest.held += 1
            return None
        digest.redacted += protected is not record
        data: dict[str, Any] = protected.data
        when = record_date(data.get(info.date_field)) if info.date_field else None
        if self.portability:
            data, dropped = info.provided_part(data)
            if dropped:
                self.dropped.setdefault(name, {}).update(dict.fromkeys(dropped))
        digest.add(data, when)
        return digest, data

    def exclusions(self) -> list[Exclusion]:
        """What the portability export left out of this system."""
        name = self.system.name
        return (
            [Exclusion(name, NOT_PROVIDED, collection) for collection in self.skipped]
            + [
                Exclusion(name, NOT_PROVIDED, collection, tuple(fields))
                for collection, fields in self.dropped.items()
            ]
            + [
                Exclusion(name, NOT_PROVIDED, collection, records=count)
                for collection, count in self.others.items()
            ]
        )


def _spool(tmp: Path, source: Iterable[Record], seal_key: bytes, shaping: _Shaping) -> list[_Spool]:
    """Read one system's records once, shaped, into a sealed JSON-lines file per collection."""
    spools: dict[str, _Spool] = {}
    try:
        for record in source:
            shaped = shaping.shape(record)
            if shaped is None:
                continue
            digest, data = shaped
            spool = spools.get(record.collection)
            if spool is None:
                fd, name = tempfile.mkstemp(dir=tmp, suffix=".jsonl")
                os.close(fd)
                path = Path(name)
                handle = SealedWriter(path, seal_key, context("spool", path.name))
                spool = spools[record.collection] = _Spool(digest, path, seal_key, handle)
            assert spool.handle is not None
            spool.handle.write(_dumps(data).encode("utf-8") + b"\n")
    finally:
        for spool in spools.values():
            if spool.handle is not None:
                spool.handle.close()
                spool.handle = None
    return list(spools.values())


def _write_system(archive: zipfile.ZipFile, system: str, spools: list[_Spool]) -> list[ExportFile]:
    """Write each spooled collection of one system as a JSON and a CSV member."""
    files: list[ExportFile] = []
    used: set[str] = set()
    for spool in spools:
        collection, count = spool.digest.collection, spool.digest.count
        stem = _file_stem(collection, used)
        base = f"data/{system}/{stem}"
        with archive.open(f"{base}.json", "w", force_zip64=True) as member:
            out = _HashingWriter(member)
            out.write(b"[")
            for i, line in enumerate(spool.lines()):
                out.write((",\n" if i else "\n").encode() + line.encode("utf-8"))
            out.write(b"\n]\n")
        files.append(ExportFile(f"{base}.json", out.hexdigest, count, out.size, system, collection))
        with archive.open(f"{base}.csv", "w", force_zip64=True) as member:
            out = _HashingWriter(member)
            writer = csv.DictWriter(
                _TextSink(out), fieldnames=list(spool.digest.fields), restval=""
            )
            writer.writeheader()
            for line in spool.lines():
                writer.writerow({k: _cell(v) for k, v in json.loads(line).items()})
        files.append(ExportFile(f"{base}.csv", out.hexdigest, count, out.size, system, collection))
    return files


def _write_small(archive: zipfile.ZipFile, name: str, data: bytes) -> ExportFile:
    """Write a member that is small by construction (the report), with its hash."""
    with archive.open(name, "w") as member:
        out = _HashingWriter(member)
        for start in range(0, len(data), _CHUNK):
            out.write(data[start : start + _CHUNK])
    return ExportFile(name, out.hexdigest, None, out.size)


def _manifest(
    state: RequestState, summary: ExportSummary, generated_at: datetime, language: str
) -> bytes:
    """The manifest: what the archive holds, with a SHA-256 per file."""
    request = state.request
    assert request is not None
    body = {
        "request_id": state.request_id,
        "type": "portability" if summary.portability else request.type.value,
        "language": language,
        "generated_at": generated_at.isoformat(),
        "systems": summary.systems,
        "files": [
            {
                k: v
                for k, v in {
                    "path": f.path,
                    "sha256": f.sha256,
                    "records": f.records,
                    "bytes": f.bytes,
                    "system": f.system,
                    "collection": f.collection,
                }.items()
                if v is not None
            }
            for f in summary.files
        ],
        # Counts only: a held record's content is not in the archive (Art. 15(4) GDPR).
        "collections": [
            {
                "system": d.system,
                "collection": d.collection,
                "records": d.count,
                "held": d.held,
                "redacted": d.redacted,
            }
            for digests in summary.digests.values()
            for d in digests
        ],
    }
    if summary.portability:
        body["excluded"] = [e.as_json() for e in summary.excluded]
    return json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def _readme(
    state: RequestState,
    register: Register,
    summary: ExportSummary,
    language: Language,
    generated_at: datetime,
) -> bytes:
    """`README.html` of a portability export: what it holds, what it leaves out and why
    (`templates/portability.html`), in the request's language."""
    infos = {name: collection_info(register.get(name)) for name in register.names}

    def heading(system: str, collection: str) -> str:
        return infos[system].get(collection, _NO_INFO).heading(collection, language)

    included = [
        {
            "system": register.get(name).display_name,
            "collections": [
                (heading(name, d.collection), d.count) for d in summary.digests.get(name, [])
            ],
        }
        for name in summary.systems
    ]
    excluded = [
        {
            "system": register.get(e.system).display_name,
            "collection": None if e.collection is None else heading(e.system, e.collection),
            "fields": [
                infos[e.system].get(e.collection or "", _NO_INFO).label(f, language)
                for f in e.fields
            ],
            "records": e.records,
            "reason_code": e.reason_code,
        }
        for e in summary.excluded
    ]
    return render_document(
        "portability",
        language,
        request_id=state.request_id,
        generated_at=generated_at,
        controller=register.controller,
        included=included,
        excluded=excluded,
    ).encode("utf-8")


def _dumps(value: Any) -> str:
    # default=str: a connector's stray datetime or Decimal must not abort a whole export.
    return json.dumps(value, ensure_ascii=False, default=str)


def _cell(value: Any) -> str:
    """A CSV cell: strings as they are, nothing as empty, everything else as JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _dumps(value)


def _file_stem(collection: str, used: set[str]) -> str:
    """A safe, unique file name for a collection (collection names come from connectors)."""
    stem = _UNSAFE.sub("_", collection).strip("._") or "records"
    candidate, n = stem, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate.lower())
    return candidate


__all__ = [
    "AP_URL",
    "NOT_CONSENT_OR_CONTRACT",
    "NOT_PROVIDED",
    "Exclusion",
    "ExportFile",
    "ExportSummary",
    "write_export",
]
