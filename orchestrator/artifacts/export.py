"""The export archive of an access (Art. 15) or portability (Art. 20) request, as a ZIP.

Layout::

    data/<system>/<collection>.json   a JSON array of the records
    data/<system>/<collection>.csv    the same records as CSV (header: the union of all keys)
    report.html                       the Art. 15(1) information per system (access only)
    manifest.json                     request id, time, systems, per file SHA-256 and counts

Everything is streamed: records are never held in memory as a whole. The source is read
once and spooled per collection to JSON-lines files on disk (next to the archive by default,
not in /tmp, which may be RAM-backed). Spooling is needed because a ZIP member must be
written in one go while a system's records arrive with collections interleaved, and because
a CSV header must list every key before the first row: the spool pass collects the union of
keys (small: one entry per distinct key), so the CSV has exact columns and no catch-all.
Each member is then written from its spool file while its SHA-256, size and record count are
computed on the fly. Nested values become JSON text in CSV cells.

Portability exports contain only the systems whose legal basis includes consent or contract
(Art. 20(1)(a)); the register describes data per system, not per field, so this is the
finest filter available. They hold JSON and CSV only, no report: Art. 20 asks for
machine-readable data, and the Art. 15 information belongs to an access request.

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

from orchestrator.artifacts.render import AP_URL, LANGUAGES, Language, render_document
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import Record
from schemas.primitives.sealed_files import CHUNK_SIZE, SealedReader, SealedWriter, read_sealed
from schemas.primitives.sealing import DataKeys, context
from schemas.register import Controller, LegalBasis, Register, System

#: Legal bases under which data counts as "provided by the subject" for portability.
PORTABLE_BASES = frozenset({LegalBasis.CONSENT, LegalBasis.CONTRACT})

#: The file name ending of a sealed export.
SEALED_SUFFIX = ".zip.enc"
_CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One member of the archive as listed in the manifest."""

    path: str
    sha256: str
    records: int | None
    bytes: int
    system: str | None = None
    collection: str | None = None


@dataclass(slots=True)
class ExportSummary:
    """What was written: the archive, its files and totals."""

    path: Path
    request_id: str
    portability: bool
    systems: list[str]
    files: list[ExportFile] = field(default_factory=list)

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

    collection: str
    path: Path
    key: bytes
    handle: SealedWriter | None
    keys: dict[str, None] = field(default_factory=dict)  # ordered set: first-seen order
    count: int = 0

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
) -> ExportSummary:
    """Write the request's export ZIP to `path`, streaming; returns what was written.

    With `key` (the request's data key) the ZIP is sealed as it is written (`open_export`
    reads it back); without, it is a plain ZIP (tests, tools).
    """
    request = state.request
    if request is None:
        raise ValueError(f"request {state.request_id!r} has no submitted request to export")
    path = Path(path)
    language = _texts_language(request.language)
    systems = [register.get(name) for name in register.names if name in state.systems]
    if portability:
        systems = [s for s in systems if PORTABLE_BASES.intersection(s.legal_basis)]
    summary = ExportSummary(
        path=path,
        request_id=state.request_id,
        portability=portability,
        systems=[s.name for s in systems],
    )
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
                spools = _spool(Path(tmp), records(system.name), spool_key)
                written = _write_system(archive, system.name, spools)
                per_system[system.name] = written
                summary.files.extend(written)
                for spool in spools:
                    spool.path.unlink()  # free the disk as soon as the collection is written
            if not portability:
                report = render_report(
                    state,
                    systems,
                    per_system,
                    language=language,
                    generated_at=generated_at,
                    controller=register.controller,
                ).encode("utf-8")
                summary.files.append(_write_small(archive, "report.html", report))
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


def _spool(tmp: Path, source: Iterable[Record], seal_key: bytes) -> list[_Spool]:
    """Read one system's records once, into a sealed JSON-lines file per collection."""
    spools: dict[str, _Spool] = {}
    try:
        for record in source:
            spool = spools.get(record.collection)
            if spool is None:
                fd, name = tempfile.mkstemp(dir=tmp, suffix=".jsonl")
                os.close(fd)
                path = Path(name)
                handle = SealedWriter(path, seal_key, context("spool", path.name))
                spool = spools[record.collection] = _Spool(
                    record.collection, path, seal_key, handle
                )
            assert spool.handle is not None
            spool.handle.write(_dumps(record.data).encode("utf-8") + b"\n")
            for key in record.data:
                if key not in spool.keys:
                    spool.keys[key] = None
            spool.count += 1
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
        stem = _file_stem(spool.collection, used)
        base = f"data/{system}/{stem}"
        with archive.open(f"{base}.json", "w", force_zip64=True) as member:
            out = _HashingWriter(member)
            out.write(b"[")
            for i, line in enumerate(spool.lines()):
                out.write((",\n" if i else "\n").encode() + line.encode("utf-8"))
            out.write(b"\n]\n")
        files.append(
            ExportFile(
                f"{base}.json", out.hexdigest, spool.count, out.size, system, spool.collection
            )
        )
        with archive.open(f"{base}.csv", "w", force_zip64=True) as member:
            out = _HashingWriter(member)
            writer = csv.DictWriter(_TextSink(out), fieldnames=list(spool.keys), restval="")
            writer.writeheader()
            for line in spool.lines():
                writer.writerow({k: _cell(v) for k, v in json.loads(line).items()})
        files.append(
            ExportFile(
                f"{base}.csv", out.hexdigest, spool.count, out.size, system, spool.collection
            )
        )
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
    }
    return json.dumps(body, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


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


def render_report(
    state: RequestState,
    systems: list[System],
    files: dict[str, list[ExportFile]],
    *,
    language: str,
    generated_at: datetime,
    controller: Controller | None = None,
) -> str:
    """The human-readable report: Art. 15(1)(a)-(h) per system, plus what each file holds
    (`templates/report.html`; a language without texts gets the Dutch ones)."""
    return render_document(
        "report",
        _texts_language(language),
        lang=language,
        request_id=state.request_id,
        generated_at=generated_at,
        controller=controller,
        sections=[_section(state, system, files.get(system.name, [])) for system in systems],
    )


def _texts_language(language: str) -> Language:
    """The language the report's texts are in: the request's, else Dutch."""
    return next((known for known in LANGUAGES if known == language), "nl")


def _section(state: RequestState, system: System, files: list[ExportFile]) -> dict[str, Any]:
    """What the report says about one system, decided here; the template words it."""
    progress = state.systems.get(system.name)
    return {
        "system": system,
        "status": progress.status if progress is not None else "-",
        "portable": bool(PORTABLE_BASES.intersection(system.legal_basis)),
        "consent": LegalBasis.CONSENT in system.legal_basis,
        # The register's default source, in English: said in the report's language instead.
        "from_subject": system.source.strip().lower() == "the data subject",
        "in_eea": system.location.region.upper() == "EEA",
        "files": [
            (f, f.path.removesuffix(".json") + ".csv") for f in files if f.path.endswith(".json")
        ],
    }


__all__ = [
    "AP_URL",
    "PORTABLE_BASES",
    "ExportFile",
    "ExportSummary",
    "render_report",
    "write_export",
]
