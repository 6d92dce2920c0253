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
once, and each record is encoded once, as it arrives, into its collection's two spool files
on disk (next to the archive by default, not in /tmp, which may be RAM-backed): its JSON text
and its CSV row. Spooling is needed because a ZIP member must be written in one go while a
system's records arrive with collections interleaved. A CSV header must list every key before
the first row; the spool collects the union of keys (small: one entry per distinct key), and
rows spooled before a later record brought a new key get their empty cells when the member is
written, so the CSV has exact columns and no catch-all. Each member is then a copy of its
spool file, its SHA-256, size and record count computed on the fly, deflated with ISA-L (the
level by measurement, `bench/export.py --levels`). Nested values become JSON text in CSV cells.
Writing members is mostly C that lets go of the GIL (deflate, CRC-32, SHA-256, sealing), so a
system whose spool went to disk is written in a thread while the next system is spooled
(`_Members`): the two overlap on two cores, and the archive still holds the systems in order.

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
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from isal import isal_zlib
from pydantic_core import to_json

from connectors.metadata import CollectionInfo, collection_info
from orchestrator.artifacts.bulk import lower_priority, usable_cpus
from orchestrator.artifacts.digest import CollectionDigest, ExportFile, record_date
from orchestrator.artifacts.redaction import protect
from orchestrator.artifacts.render import AP_URL, Language, render_document
from orchestrator.artifacts.report import render_report, report_language
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import Record
from schemas.primitives.sealed_files import SealedReader, SealedWriter, read_sealed
from schemas.primitives.sealing import DataKeys, context
from schemas.register import Register, System

#: Why a portability export leaves something out (`Exclusion.reason_code`).
NOT_CONSENT_OR_CONTRACT = "legal_basis"  # Art. 20(1)(a): no purpose rests on consent/contract
NOT_PROVIDED = "not_provided"  # not provided by the subject: inferred, derived or staff data

#: The file name ending of a sealed export.
SEALED_SUFFIX = ".zip.enc"
_NO_INFO = CollectionInfo()  # a collection no metadata describes: all of it is the subject's
_CHUNK = 1 << 20  # spool and member I/O: few, large calls into the cipher and deflate
#: Deflate level of the data members, with ISA-L (0-3). Measured with `bench/export.py
#: --levels 0,1,2,3` on mixed text, numbers and dates: see the table in its docstring.
_DEFLATE_LEVEL = 1
#: true and false in CSV cells, as JSON spells them.
_BOOLEAN = {True: "true", False: "false"}
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


class _Spool:
    """One collection's records on disk, written once: the JSON member's body and the CSV rows.

    Each record is encoded to JSON text and to a CSV row as it arrives, into two sealed files;
    the archive members are then copies of them (see `_write_system`). A CSV row has a cell
    for every key seen so far. When a record brings a new key the row width grows: `segments`
    notes where (CSV byte offset, width), and rows of a narrower segment get their empty cells
    appended when the CSV member is written (one entry per new key, so it stays small).
    """

    __slots__ = (
        "_buffered", "_columns", "_csv", "_json", "_key", "_pending", "_rows", "csv_size", "digest",
        "segments",
    )  # fmt: skip

    def __init__(self, tmp: _SpoolDir, digest: CollectionDigest, key: bytes) -> None:
        self.digest = digest  # its count and keys (first-seen order) make the CSV header
        self._key = key
        self._json = _SpoolFile(tmp, key)
        self._csv = _SpoolFile(tmp, key)
        self._rows: list[str] = []  # CSV rows not yet sealed
        self._columns: list[str] = []
        self._pending: list[bytes] = []  # JSON text not yet sealed
        self.segments: list[tuple[int, int]] = []
        self.csv_size = 0
        self._buffered = 0  # characters encoded and not yet sealed, about

    def add(self, data: dict[str, Any]) -> None:
        """Encode one record (already counted in the digest) into both spool files."""
        text = _json(data)
        self._pending.append(b",\n" if self.digest.count > 1 else b"\n")
        self._pending.append(text)
        fields = self.digest.fields
        if len(fields) != len(self._columns):  # a new key: the rows from here are wider
            self._flush_rows()
            self._columns = list(fields)
            self.segments.append((self.csv_size, len(self._columns)))
        row = _csv_row(map(data.get, self._columns))
        self._rows.append(row)
        self._buffered += len(text) + len(row)
        if self._buffered >= _CHUNK:  # by size: one record may be megabytes
            self._flush_json()
            self._flush_rows()
            self._buffered = 0

    def _flush_json(self) -> None:
        self._json.write(b"".join(self._pending))
        self._pending.clear()

    def _flush_rows(self) -> None:
        raw = "".join(self._rows).encode("utf-8")
        self._rows.clear()
        self._csv.write(raw)
        self.csv_size += len(raw)

    def close(self) -> None:
        """Seal what is left; the spool files can be read from now on."""
        if not self._json.closed:
            self._flush_json()
            self._flush_rows()
            self._json.close()
            self._csv.close()

    @property
    def on_disk(self) -> bool:
        """True once either spool file outgrew memory."""
        return self._json.on_disk or self._csv.on_disk

    def discard(self) -> None:
        """Remove both files (the members are written, or the export failed)."""
        self._json.abort()
        self._csv.abort()

    def json_body(self) -> Iterator[bytes]:
        """The JSON member between its brackets: the records, comma separated."""
        with self._json.reader() as raw:
            while piece := raw.read(_CHUNK):
                yield piece

    def csv_rows(self) -> io.BufferedIOBase:
        """The CSV rows (no header), as spooled."""
        return self._csv.reader()


class _SpoolFile:
    """A spool that stays in memory until it holds `_CHUNK` bytes, then goes to a sealed file.

    Most collections of most requests are small: they never touch the disk (no temporary
    file, no cipher), while a large one is sealed on disk as it grows, so memory stays bounded.
    """

    __slots__ = ("_key", "_memory", "_path", "_size", "_tmp", "_writer", "closed")

    def __init__(self, tmp: _SpoolDir, key: bytes) -> None:
        self._tmp = tmp
        self._key = key
        self._memory: list[bytes] = []
        self._size = 0
        self._writer: SealedWriter | None = None
        self._path: Path | None = None
        self.closed = False

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """A closed spool goes to another process as its bytes or its file's name."""
        if not self.closed:
            raise ValueError("a spool is handed over only once it is closed")
        names = ("_key", "_memory", "_path", "_size", "_tmp", "closed")
        return None, {name: getattr(self, name) for name in names} | {"_writer": None}

    def write(self, data: bytes) -> None:
        """Append `data`."""
        if self._writer is None and self._size + len(data) < _CHUNK:
            self._memory.append(data)
            self._size += len(data)
            return
        if self._writer is None:
            self._writer = _spool_file(self._tmp.path, self._key)
            self._path = self._writer.path
            self._writer.write(b"".join(self._memory))
            self._memory.clear()
        self._writer.write(data)

    @property
    def on_disk(self) -> bool:
        """True once it outgrew memory."""
        return self._path is not None

    def close(self) -> None:
        """No more writes; readable from now on."""
        self.closed = True
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        """Drop what was spooled."""
        self._memory.clear()
        if self._writer is not None:
            self._writer.abort()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def reader(self) -> io.BufferedIOBase:
        """What was written, from the start."""
        if self._path is None:
            return io.BytesIO(b"".join(self._memory))
        return io.BufferedReader(_spool_reader(self._path, self._key), _CHUNK)


class _SpoolDir:
    """The export's temporary directory, created only when a spool first needs the disk (most
    exports never do: their collections stay in memory), removed at the end."""

    def __init__(self, parent: Path) -> None:
        self._parent = parent
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        """The directory (created now if it does not exist yet)."""
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(dir=self._parent, prefix=".spool-"))
        return self._path

    def __enter__(self) -> _SpoolDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


def _spool_file(tmp: Path, key: bytes) -> SealedWriter:
    """A new sealed spool file, bound to its name."""
    fd, name = tempfile.mkstemp(dir=tmp, suffix=".spool")
    os.close(fd)
    path = Path(name)
    # Not synced: a spool is read back at once and is worthless after a crash.
    return SealedWriter(path, key, context("spool", path.name), chunk_size=_CHUNK, durable=False)


def _spool_reader(path: Path, key: bytes) -> SealedReader:
    return SealedReader(path, key, context("spool", path.name))


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
    spoolers: Executor | None = None,
    durable: bool = True,
) -> ExportSummary:
    """Write the request's export ZIP to `path`, streaming; returns what was written.

    With `key` (the request's data key) the ZIP is sealed as it is written (`open_export`
    reads it back); without, it is a plain ZIP (tests, tools). `attachments` copies the files
    attached to manual tasks (`orchestrator.artifacts.attachments.AttachedFiles`). With
    `spoolers` (an executor of other processes; `records` must then be picklable) the systems
    are spooled side by side in them, and their members written here in system order. A sealed
    export is synced to disk before it is renamed into place, unless `durable` is False: the
    caller then syncs it (and its folder) itself, as the export process does for a batch.
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
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    spool_key = os.urandom(32)  # in memory only (here and in spooling processes)
    try:
        with (
            _SpoolDir(spool_dir or path.parent) as tmp,
            _open_target(partial, key, state.request_id, durable) as target,
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            spooled = _spooled(tmp, systems, records, spool_key, language, portability, spoolers)
            per_system = _write_data(archive, systems, spooled, summary)
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


def _open_target(
    path: Path, key: bytes | None, request_id: str, durable: bool
) -> IO[bytes] | SealedWriter:
    """The file the ZIP goes into: sealed when there is a key."""
    if key is None:
        return path.open("wb")
    return SealedWriter(path, key, export_context(request_id), durable=durable)


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


def _spool(
    tmp: _SpoolDir, source: Iterable[Record], seal_key: bytes, shaping: _Shaping
) -> list[_Spool]:
    """Read one system's records once, shaped, into sealed spool files per collection."""
    spools: dict[str, _Spool] = {}
    try:
        for record in source:
            shaped = shaping.shape(record)
            if shaped is None:
                continue
            digest, data = shaped
            spool = spools.get(record.collection)
            if spool is None:
                spool = spools[record.collection] = _Spool(tmp, digest, seal_key)
            spool.add(data)
        for spool in spools.values():
            spool.close()
    except BaseException:
        for spool in spools.values():
            spool.discard()
        raise
    return list(spools.values())


class _Members:
    """Writes each system's spooled collections into the archive, one system after another,
    a large one in a thread while the main thread spools the next system.

    Spooling is Python (parse, shape, encode); writing a member is mostly C that lets go of
    the GIL (decrypting the spool, CRC-32, deflate, SHA-256, sealing), so the two overlap on
    two cores. One system at a time is handed over: the archive is written in system order,
    and at most one system's spool waits on disk. A system whose spools all stayed in memory
    is written in the calling thread (a thread hand-off would cost more than it saves).
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        self._pool: ThreadPoolExecutor | None = None
        self._deflaters: ThreadPoolExecutor | None = None
        self._pending: tuple[str, Future[list[ExportFile]]] | None = None
        self._written: dict[str, list[ExportFile]] = {}

    def write(self, system: str, spools: list[_Spool]) -> None:
        """Write `system`'s members, after the previous system's are written."""
        self._wait()
        if not any(spool.on_disk for spool in spools):
            self._written[system] = _write_system(self._archive, system, spools)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                1, thread_name_prefix="dsr-export-members", initializer=lower_priority
            )
            threads = min(usable_cpus(), _DEFLATE_THREADS)
            if threads > 1:
                self._deflaters = ThreadPoolExecutor(
                    threads, thread_name_prefix="dsr-deflate", initializer=lower_priority
                )
        job = self._pool.submit(_write_system, self._archive, system, spools, self._deflaters)
        self._pending = (system, job)

    def written(self) -> dict[str, list[ExportFile]]:
        """Every system's members, once all are written (raises what writing one raised)."""
        self._wait()
        return self._written

    def _wait(self) -> None:
        if self._pending is not None:
            system, future = self._pending
            self._pending = None
            self._written[system] = future.result()

    def __enter__(self) -> _Members:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # On an error too: the archive is not closed while a member is being written into it.
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._deflaters is not None:
            self._deflaters.shutdown(wait=True)


def _write_data(
    archive: zipfile.ZipFile,
    systems: list[System],
    spooled: Generator[tuple[_Shaping, list[_Spool]], None, None],
    summary: ExportSummary,
) -> dict[str, list[ExportFile]]:
    """Each system's data members, in system order, from its spools as they come; its digests,
    exclusions and files go into `summary`."""
    with closing(spooled), _Members(archive) as members:
        for system, (shaping, spools) in zip(systems, spooled, strict=True):
            members.write(system.name, spools)  # overlaps the next system's spooling
            summary.digests[system.name] = list(shaping.digests.values())
            summary.excluded.extend(shaping.exclusions())
        per_system = members.written()
    for system in systems:
        summary.files.extend(per_system[system.name])
    return per_system


def _spool_system(
    tmp: _SpoolDir,
    system: System,
    records: Callable[[str], Iterable[Record]],
    seal_key: bytes,
    language: Language,
    portability: bool,
) -> tuple[_Shaping, list[_Spool]]:
    """One system's records, shaped and spooled (here, or in a spooling process)."""
    shaping = _Shaping(system, language, portability)
    return shaping, _spool(tmp, records(system.name), seal_key, shaping)


def _spooled(
    tmp: _SpoolDir,
    systems: list[System],
    records: Callable[[str], Iterable[Record]],
    seal_key: bytes,
    language: Language,
    portability: bool,
    spoolers: Executor | None,
) -> Generator[tuple[_Shaping, list[_Spool]], None, None]:
    """Each system's shaping and spools, in system order: spooled one after another as they
    are asked for, or all handed to `spoolers` at once and collected in order.

    Spooling processes write into this export's spool directory, so it is created first; when
    the export stops early (an error), pending systems are cancelled and running ones waited
    for, so none writes into the directory after it is removed.
    """
    if spoolers is None:
        for system in systems:
            yield _spool_system(tmp, system, records, seal_key, language, portability)
        return
    tmp.path  # noqa: B018 - created now: the spooling processes write into it
    futures = [
        spoolers.submit(_spool_system, tmp, system, records, seal_key, language, portability)
        for system in systems
    ]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()
        wait(futures)


def _write_system(
    archive: zipfile.ZipFile,
    system: str,
    spools: list[_Spool],
    deflaters: Executor | None = None,
) -> list[ExportFile]:
    """Write each spooled collection of one system as a JSON and a CSV member (deflated in
    `deflaters`' threads when given, see `_ParallelDeflate`)."""
    files: list[ExportFile] = []
    used: set[str] = set()
    for spool in spools:
        collection, count = spool.digest.collection, spool.digest.count
        base = f"data/{system}/{_file_stem(collection, used)}"
        with _Member(archive, f"{base}.json", deflaters) as out:
            out.write(b"[")
            for piece in spool.json_body():
                out.write(piece)
            out.write(b"\n]\n")
        files.append(ExportFile(f"{base}.json", out.hexdigest, count, out.size, system, collection))
        with _Member(archive, f"{base}.csv", deflaters) as out:
            _write_csv(out, spool)
        files.append(ExportFile(f"{base}.csv", out.hexdigest, count, out.size, system, collection))
        spool.discard()  # free the disk as soon as the collection is written
    return files


def _write_csv(out: _HashingWriter, spool: _Spool) -> None:
    """The CSV member: the header (every key), then the spooled rows, the narrower ones
    (spooled before a later record brought a new key) given their empty cells."""
    columns = list(spool.digest.fields)
    sink = _TextSink(out)
    writer = csv.writer(sink)
    writer.writerow(columns)
    ends = [offset for offset, _ in spool.segments[1:]] + [spool.csv_size]
    with spool.csv_rows() as rows:
        for (start, width), end in zip(spool.segments, ends, strict=True):
            if width == len(columns):  # as wide as the header: copied as it is
                while start < end:
                    piece = rows.read(min(_CHUNK, end - start))
                    if not piece:
                        raise ValueError("spool file ended early")
                    out.write(piece)
                    start += len(piece)
                continue
            padding = [""] * (len(columns) - width)
            segment = io.BufferedReader(_Bounded(rows, end - start))
            text = io.TextIOWrapper(segment, encoding="utf-8", newline="")
            for row in csv.reader(text):
                writer.writerow(row + padding)


class _Bounded(io.RawIOBase):
    """The next `size` bytes of a stream, as a stream of their own."""

    def __init__(self, source: io.BufferedIOBase, size: int) -> None:
        super().__init__()
        self._source = source
        self._left = size

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Up to the bound; 0 after it."""
        view = memoryview(buffer)[: self._left]
        n = self._source.readinto(view)
        self._left -= n
        return n


class _Member:
    """A data member of the archive, deflated by ISA-L (see `_DEFLATE_LEVEL`), in `deflaters`'
    threads when given."""

    def __init__(
        self, archive: zipfile.ZipFile, name: str, deflaters: Executor | None = None
    ) -> None:
        self._member = archive.open(name, "w", force_zip64=True)
        # zipfile takes its compressor from stdlib zlib; ISA-L writes the same raw deflate
        # stream (wbits -15) several times faster, so the member is swapped to it before its
        # first byte. The attribute is CPython's; without it, zlib's default level stays.
        if hasattr(self._member, "_compressor"):
            self._member._compressor = (
                _deflater() if deflaters is None else _ParallelDeflate(deflaters)
            )
        self.out = _HashingWriter(self._member)

    def __enter__(self) -> _HashingWriter:
        return self.out

    def __exit__(self, *exc_info: object) -> None:
        self._member.close()


def _deflater() -> Any:
    """A raw deflate stream (wbits -15, as in a ZIP member) by ISA-L."""
    return isal_zlib.compressobj(_DEFLATE_LEVEL, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)


def _deflate_piece(piece: bytes) -> bytes:
    """One piece of a member as deflate blocks of its own, ended by a sync flush (byte
    aligned, not final), so pieces deflated apart join into one stream."""
    deflater = _deflater()
    return bytes(deflater.compress(piece) + deflater.flush(isal_zlib.Z_SYNC_FLUSH))


#: The last block of a stream joined from pieces: empty, final (fixed Huffman codes).
_FINAL_BLOCK = b"\x03\x00"
#: Threads deflating a large member's pieces, at most; and pieces waiting per member.
_DEFLATE_THREADS = 4
_DEFLATE_IN_FLIGHT = 8


class _ParallelDeflate:
    """zipfile's compressor for a large system's members: 1 MiB pieces deflated side by side
    in threads (ISA-L lets go of the GIL), joined in order into one raw deflate stream.

    Deflate was the larger part of writing a member, and members are written one after
    another in one thread (a ZIP is written in order); with the pieces in threads, a large
    export's member writing uses the cores the spooling processes leave. Each piece starts
    with an empty window: the stream is ~0.2 % larger. zipfile still computes the CRC-32 and
    sizes over the plain bytes; at most `_DEFLATE_IN_FLIGHT` pieces wait.
    """

    def __init__(self, deflaters: Executor) -> None:
        self._deflaters = deflaters
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._queued: deque[Future[bytes]] = deque()

    def compress(self, data: bytes) -> bytes:
        """Take plain bytes; return the deflated pieces that are done, in order."""
        self._buffer.append(bytes(data))
        self._buffered += len(data)
        if self._buffered >= _CHUNK:
            self._submit()
        done = []
        while self._queued and (self._queued[0].done() or len(self._queued) > _DEFLATE_IN_FLIGHT):
            done.append(self._queued.popleft().result())
        return b"".join(done)

    def flush(self) -> bytes:
        """The rest of the stream, closed by the final block."""
        if self._buffered:
            self._submit()
        rest = [future.result() for future in self._queued]
        self._queued.clear()
        return b"".join(rest) + _FINAL_BLOCK

    def _submit(self) -> None:
        piece = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._queued.append(self._deflaters.submit(_deflate_piece, piece))


def _write_small(archive: zipfile.ZipFile, name: str, data: bytes) -> ExportFile:
    """Write a member that is small by construction (the report), with its hash; deflated
    by ISA-L like the data members (zlib's default level was a good part of a small export)."""
    with _Member(archive, name) as out:
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
    return _pretty_json(body) + b"\n"


def _pretty_json(value: Any) -> bytes:
    """JSON text (UTF-8) indented by two spaces: the bytes of `json.dumps(value, indent=2,
    ensure_ascii=False)`, from pydantic-core's encoder. With an indent the json module falls
    back to its pure-Python encoder: a small export's manifest took about ten times as long."""
    try:
        return to_json(value, indent=2)
    except ValueError:  # what pydantic-core cannot encode fails as it did before
        return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8")


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


def _csv_row(values: Iterable[Any]) -> str:
    """One CSV row, exactly as `csv.writer` (dialect "excel") writes it: a cell is quoted
    when it holds a comma, a quote or a line break, and its quotes are doubled.

    The csv module's writer was a third of the export's time; this is a `str.join` and, per
    text cell, up to four `in` tests (each a memchr; one character-class regular expression
    over a 1 KB body cost as much as the rest of the row). `test_csv_rows_match_the_csv_module`
    holds the two to the same bytes.
    """
    cells = []
    for value in values:
        if type(value) is not str:
            value = _cell(value)
        if '"' in value:
            value = '"' + value.replace('"', '""') + '"'
        elif "," in value or "\n" in value or "\r" in value:
            value = '"' + value + '"'
        cells.append(value)
    if cells == [""]:
        return '""\r\n'  # a lone empty cell is quoted, or the row would read as no row
    return ",".join(cells) + "\r\n"


def _cell(value: Any) -> str:
    """A CSV cell's text: nothing as empty, numbers as digits, everything else (true/false,
    nested values) as JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)  # a StrEnum's value, not its JSON
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)  # what JSON text says too
    if type(value) is bool:
        return _BOOLEAN[value]
    return _json(value).decode("utf-8")


def _json(value: Any) -> bytes:
    """Compact JSON text (UTF-8) of a record's data or a nested value.

    pydantic-core's encoder is several times faster than the json module's; a connector's
    stray datetime or Decimal becomes text rather than aborting a whole export (`fallback`),
    and whatever it cannot encode goes through the json module (ASCII, escaped).
    """
    try:
        return to_json(value, fallback=str)
    except ValueError:
        return json.dumps(value, default=str, separators=(",", ":")).encode("ascii")


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
