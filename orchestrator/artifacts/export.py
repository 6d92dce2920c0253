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
import html
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

from orchestrator.lifecycle.reducer import RequestState
from schemas.events import Record
from schemas.primitives.sealed_files import CHUNK_SIZE, SealedReader, SealedWriter, read_sealed
from schemas.primitives.sealing import DataKeys, context
from schemas.register import Controller, LegalBasis, Register, System

#: Legal bases under which data counts as "provided by the subject" for portability.
PORTABLE_BASES = frozenset({LegalBasis.CONSENT, LegalBasis.CONTRACT})

AP_URL = "https://autoriteitpersoonsgegevens.nl"
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
    language = request.language if request.language in _TEXTS else "nl"
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


# ---------------------------------------------------------------------------------------------
# The report (Art. 15(1) information)

_TEXTS: dict[str, dict[str, str]] = {
    "nl": {
        "title": "Inzage in uw persoonsgegevens",
        "intro": "Dit overzicht hoort bij uw verzoek om inzage (artikel 15 AVG). Per systeem "
        "staat hieronder welke gegevens wij van u verwerken, waarom, en wat uw rechten zijn. "
        "De gegevens zelf staan in de map data/ van dit archief, als JSON en CSV.",
        "request": "Verzoek",
        "generated": "Aangemaakt op",
        "controller": "Verwerkingsverantwoordelijke",
        "dpo": "Functionaris gegevensbescherming",
        "contact": "Contact",
        "a": "Doeleinden",
        "b": "Categorieën persoonsgegevens",
        "c": "Ontvangers en verwerkers",
        "c_self": "Wij beheren dit systeem zelf; er is geen verwerker.",
        "c_proc": "Verwerker",
        "c_sub": "Subverwerkers",
        "c_none": "geen",
        "d": "Bewaartermijn",
        "e": "Uw rechten",
        "e_text": "U kunt ons vragen uw gegevens te corrigeren (rectificatie, art. 16), te "
        "verwijderen (art. 17) of de verwerking te beperken (art. 18), en u kunt bezwaar maken "
        "tegen de verwerking (art. 21).",
        "e_port": "U kunt de gegevens die u ons hebt verstrekt in een machineleesbaar formaat "
        "ontvangen of laten overdragen (gegevensoverdraagbaarheid, art. 20).",
        "e_consent": "U kunt uw toestemming op elk moment intrekken (art. 7 lid 3); dat doet "
        "niets af aan de verwerking daarvóór.",
        "f": "Klacht indienen",
        "f_text": "U hebt het recht een klacht in te dienen bij de Autoriteit Persoonsgegevens",
        "g": "Bron van de gegevens",
        "h": "Geautomatiseerde besluitvorming",
        "h_text": "Er vindt geen geautomatiseerde besluitvorming of profilering plaats (art. 22).",
        "loc": "Opslaglocatie en doorgifte",
        "loc_eea": "Binnen de Europese Economische Ruimte (EER).",
        "loc_out": "Buiten de EER ({region}); waarborg: {mechanism}.",
        "basis": "Rechtsgrond",
        "kind": "Soort systeem",
        "status": "Resultaat",
        "files": "Uw gegevens in dit systeem",
        "collection": "Verzameling",
        "records": "Records",
        "no_data": "Geen gegevens over u gevonden.",
        "subject": "de betrokkene (uzelf)",
    },
    "en": {
        "title": "Access to your personal data",
        "intro": "This overview belongs to your access request (Article 15 GDPR). For each "
        "system it lists which of your data we process, why, and what your rights are. The "
        "data itself is in the data/ folder of this archive, as JSON and CSV.",
        "request": "Request",
        "generated": "Generated at",
        "controller": "Controller",
        "dpo": "Data protection officer",
        "contact": "Contact",
        "a": "Purposes",
        "b": "Categories of personal data",
        "c": "Recipients and processors",
        "c_self": "We run this system ourselves; there is no processor.",
        "c_proc": "Processor",
        "c_sub": "Sub-processors",
        "c_none": "none",
        "d": "Retention period",
        "e": "Your rights",
        "e_text": "You can ask us to correct your data (rectification, Art. 16), to erase it "
        "(Art. 17) or to restrict its processing (Art. 18), and you can object to the "
        "processing (Art. 21).",
        "e_port": "You can receive the data you provided to us in a machine-readable format, "
        "or have it transmitted to another controller (data portability, Art. 20).",
        "e_consent": "You can withdraw your consent at any time (Art. 7(3)); this does not "
        "affect processing before the withdrawal.",
        "f": "Lodging a complaint",
        "f_text": "You have the right to lodge a complaint with the Dutch Data Protection "
        "Authority (Autoriteit Persoonsgegevens)",
        "g": "Source of the data",
        "h": "Automated decision-making",
        "h_text": "No automated decision-making or profiling takes place (Art. 22).",
        "loc": "Storage location and transfers",
        "loc_eea": "Within the European Economic Area (EEA).",
        "loc_out": "Outside the EEA ({region}); safeguard: {mechanism}.",
        "basis": "Legal basis",
        "kind": "Kind of system",
        "status": "Outcome",
        "files": "Your data in this system",
        "collection": "Collection",
        "records": "Records",
        "no_data": "No data about you was found.",
        "subject": "the data subject (yourself)",
    },
}

_BASES: dict[str, dict[LegalBasis, str]] = {
    "nl": {
        LegalBasis.CONSENT: "toestemming (art. 6 lid 1 sub a)",
        LegalBasis.CONTRACT: "uitvoering van een overeenkomst (art. 6 lid 1 sub b)",
        LegalBasis.LEGAL_OBLIGATION: "wettelijke verplichting (art. 6 lid 1 sub c)",
        LegalBasis.VITAL_INTERESTS: "vitale belangen (art. 6 lid 1 sub d)",
        LegalBasis.PUBLIC_TASK: "taak van algemeen belang (art. 6 lid 1 sub e)",
        LegalBasis.LEGITIMATE_INTERESTS: "gerechtvaardigd belang (art. 6 lid 1 sub f)",
    },
    "en": {
        LegalBasis.CONSENT: "consent (Art. 6(1)(a))",
        LegalBasis.CONTRACT: "performance of a contract (Art. 6(1)(b))",
        LegalBasis.LEGAL_OBLIGATION: "legal obligation (Art. 6(1)(c))",
        LegalBasis.VITAL_INTERESTS: "vital interests (Art. 6(1)(d))",
        LegalBasis.PUBLIC_TASK: "public task (Art. 6(1)(e))",
        LegalBasis.LEGITIMATE_INTERESTS: "legitimate interests (Art. 6(1)(f))",
    },
}

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a;line-height:1.45}section{border-top:1px solid #ccc;margin-top:1.5rem}"
    "dt{font-weight:600;margin-top:.6rem}dd{margin-left:1rem}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _item(key: str, label: str, body: str) -> str:
    return f'<div data-art15="{key}"><dt>{_e(label)}</dt><dd>{body}</dd></div>'


def render_report(
    state: RequestState,
    systems: list[System],
    files: dict[str, list[ExportFile]],
    *,
    language: str,
    generated_at: datetime,
    controller: Controller | None = None,
) -> str:
    """The human-readable report: Art. 15(1)(a)-(h) per system, plus what each file holds."""
    t = _TEXTS.get(language, _TEXTS["nl"])
    bases = _BASES.get(language, _BASES["nl"])
    parts = [
        f'<!DOCTYPE html><html lang="{_e(language)}"><head><meta charset="utf-8">',
        f"<title>{_e(t['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(t['title'])}</h1><p>{_e(t['intro'])}</p><dl>",
        f"<dt>{_e(t['request'])}</dt><dd>{_e(state.request_id)}</dd>",
        f"<dt>{_e(t['generated'])}</dt><dd>{_e(generated_at.isoformat())}</dd>",
    ]
    # Who the controller is and how to reach its DPO: the subject needs it to exercise rights.
    if controller is not None:
        parts.append(f"<dt>{_e(t['controller'])}</dt><dd>{_e(controller.name)}</dd>")
        if controller.contact:
            parts.append(f"<dt>{_e(t['contact'])}</dt><dd>{_e(controller.contact)}</dd>")
        if controller.dpo:
            parts.append(f"<dt>{_e(t['dpo'])}</dt><dd>{_e(controller.dpo)}</dd>")
    parts.append("</dl>")
    for system in systems:
        parts.append(_system_section(state, system, files.get(system.name, []), t, bases))
    parts.append("</body></html>\n")
    return "".join(parts)


def _system_section(
    state: RequestState,
    system: System,
    files: list[ExportFile],
    t: dict[str, str],
    bases: dict[LegalBasis, str],
) -> str:
    """One system's section: the Art. 15(1) items, location, and its files with counts."""
    if system.processor is None:
        recipients = f"<p>{_e(t['c_self'])}</p>"
    else:
        subs = ", ".join(system.processor.sub_processors) or t["c_none"]
        recipients = (
            f"<p>{_e(t['c_proc'])}: {_e(system.processor.name)}</p>"
            f"<p>{_e(t['c_sub'])}: {_e(subs)}</p>"
        )
    rights = f"<p>{_e(t['e_text'])}</p>"
    if PORTABLE_BASES.intersection(system.legal_basis):
        rights += f"<p>{_e(t['e_port'])}</p>"
    if LegalBasis.CONSENT in system.legal_basis:
        rights += f"<p>{_e(t['e_consent'])}</p>"
    complaint = f'<p>{_e(t["f_text"])}: <a href="{_e(AP_URL)}">{_e(AP_URL)}</a>.</p>'
    source = system.source
    if source.strip().lower() == "the data subject":  # the register's default, in English
        source = t["subject"]
    location = system.location
    if location.region.upper() == "EEA":
        where = t["loc_eea"]
    else:
        where = t["loc_out"].format(
            region=location.region, mechanism=location.transfer_mechanism or "-"
        )
    progress = state.systems.get(system.name)
    status = progress.status if progress is not None else "-"
    items = [
        f'<section id="system-{_e(system.name)}">',
        f"<h2>{_e(system.display_name)}</h2><dl>",
        f"<dt>{_e(t['kind'])}</dt><dd>{_e(system.kind.value)}</dd>",
        f"<dt>{_e(t['basis'])}</dt><dd>{_list(bases[b] for b in system.legal_basis)}</dd>",
        f"<dt>{_e(t['status'])}</dt><dd>{_e(status)}</dd>",
        _item("a", t["a"], _list(system.purposes)),
        _item("b", t["b"], _list(system.data_categories)),
        _item("c", t["c"], recipients),
        _item("d", t["d"], f"<p>{_e(system.retention)}</p>"),
        _item("e", t["e"], rights),
        _item("f", t["f"], complaint),
        _item("g", t["g"], f"<p>{_e(source)}</p>"),
        _item("h", t["h"], f"<p>{_e(t['h_text'])}</p>"),
        _item("2", t["loc"], f"<p>{_e(where)}</p>"),
        "</dl>",
        f"<h3>{_e(t['files'])}</h3>",
    ]
    data_files = [f for f in files if f.path.endswith(".json")]
    if not data_files:
        items.append(f"<p>{_e(t['no_data'])}</p>")
    else:
        items.append(
            f"<table><tr><th>{_e(t['collection'])}</th><th>{_e(t['records'])}</th>"
            "<th>JSON</th><th>CSV</th></tr>"
        )
        for f in data_files:
            csv_path = f.path[: -len(".json")] + ".csv"
            items.append(
                f"<tr><td>{_e(f.collection)}</td><td>{f.records}</td>"
                f'<td><a href="{_e(f.path)}">{_e(f.path)}</a></td>'
                f'<td><a href="{_e(csv_path)}">{_e(csv_path)}</a></td></tr>'
            )
        items.append("</table>")
    items.append("</section>")
    return "".join(items)


__all__ = [
    "AP_URL",
    "PORTABLE_BASES",
    "ExportFile",
    "ExportSummary",
    "render_report",
    "write_export",
]
