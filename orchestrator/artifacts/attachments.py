"""What a person found in a manual system, attached when the task is completed.

A system without an API (Tawk.to keeps chat transcripts in its dashboard) is searched by hand.
`dsr tasks complete TASK --attach FILE` keeps what the person found: each file is stored in the
record store, sealed with the request's data key like a connector's record file, and the
task's outcome lists it (`schemas.events.Attachment`: name, SHA-256, size, media type). With
`--attach-records FILE.json|FILE.csv` the person hands over records instead; they become
`Record`s of that system, one collection per file, and are exported like any connector's.

The export copies each attached file to `attachments/<system>/<name>` (`AttachedFiles`),
checking its SHA-256 on the way, and its manifest lists the file with that hash: the subject
gets what was found in every system, as Art. 15(1) and (3) GDPR require, not only what an API
could reach. The files go with the request's other record files once the export is written.

File names travel in the outcome event, so a name that holds an e-mail address, a phone number
or a BSN is refused: name a file after what it is ("chat-transcript.pdf"), not after whom.
"""

from __future__ import annotations

import csv
import json
import mimetypes
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.artifacts.digest import ExportFile
from orchestrator.status.masking import identifier_kinds
from schemas.errors import DsrError
from schemas.events import Attachment, JsonValue, Record, RecordsRef, TaskOutcome
from schemas.primitives.records import RecordStore, RecordStoreError

#: Largest file a person may attach, unless configured (`--max-size`, DSR_ATTACHMENT_MAX_MB).
DEFAULT_MAX_MB = 25
_MEGABYTE = 1024 * 1024
#: The `Attachment.name` pattern: a letter or digit, then letters, digits, `_`, `.`, `-`.
_NAME_LENGTH = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")  # a run of anything else (or of `_`) becomes one `_`
RECORD_SUFFIXES = (".json", ".csv")


class AttachmentError(DsrError, ValueError):
    """A file cannot be attached; the message names the file's position and what to do."""


def attachment_name(filename: str, used: set[str]) -> str:
    """A safe, unique name for an attached file, from the name it had on disk.

    Accents are dropped, other characters become `_`, and a name used before in the same task
    gets `-2`, `-3` before its suffix. A name holding an identifier is refused: it would travel
    in the outcome event.
    """
    kinds = identifier_kinds(filename)
    if kinds:
        raise AttachmentError(
            f"a file name seems to contain personal data ({', '.join(kinds)}); rename the file "
            "after what it is, e.g. 'chat-transcript.pdf'"
        )
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    safe = _UNSAFE.sub("_", ascii_name).lstrip("._-") or "attachment"
    stem, dot, suffix = safe.rpartition(".")
    stem, suffix = (stem, dot + suffix) if stem and len(suffix) <= 16 else (safe, "")
    stem = stem[: _NAME_LENGTH - len(suffix) - 4]  # room for a "-NNN" that makes it unique
    candidate, n = stem + suffix, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}-{n}{suffix}"
    used.add(candidate.lower())
    return candidate


def media_type(name: str) -> str:
    """The media type a file name suggests; `application/octet-stream` when it says nothing."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def store_files(
    store: RecordStore,
    request_id: str,
    system: str,
    files: Sequence[Path],
    *,
    max_mb: int = DEFAULT_MAX_MB,
) -> list[Attachment]:
    """Store the files a person attached to `system`'s task, sealed; their outcome entries.

    Every file is checked (exists, size, name) before any is stored, so a bad one leaves
    nothing behind.
    """
    max_bytes = max_mb * _MEGABYTE
    used: set[str] = set()
    named = [(path, attachment_name(path.name, used)) for path in files]
    for position, (path, _) in enumerate(named, start=1):
        _check_file(path, position, max_bytes, max_mb)
    stored = []
    for position, (path, name) in enumerate(named, start=1):
        with path.open("rb") as source:
            try:
                stored.append(
                    store.attach(
                        request_id,
                        system,
                        source,
                        name=name,
                        media_type=media_type(name),
                        max_bytes=max_bytes,
                    )
                )
            except RecordStoreError:  # it grew past the limit while it was read
                raise AttachmentError(
                    f"attached file {position} is larger than {max_mb} MB; split it, or raise "
                    "the limit with --max-size (DSR_ATTACHMENT_MAX_MB)"
                ) from None
    return stored


def store_records(
    store: RecordStore,
    request_id: str,
    system: str,
    attempt: int,
    files: Sequence[Path],
    *,
    max_mb: int = DEFAULT_MAX_MB,
) -> RecordsRef | None:
    """Store the records a person found in `system` (JSON or CSV files, one collection each,
    named after the file) as the system's record file; None when there are none."""
    for position, path in enumerate(files, start=1):
        _check_file(path, position, max_mb * _MEGABYTE, max_mb)
        if path.suffix.lower() not in RECORD_SUFFIXES:
            raise AttachmentError(
                f"records file {position} is neither .json nor .csv; attach other files with "
                "--attach"
            )
    used: set[str] = set()
    with store.writer(request_id, system, attempt) as writer:
        for position, path in enumerate(files, start=1):
            collection = attachment_name(path.stem, used)
            for data in _rows(path, position):
                writer.write(Record(collection=collection, data=data))
        return writer.commit()


def _check_file(path: Path, position: int, max_bytes: int, max_mb: int) -> None:
    """Refuse a file that is missing or too large, naming its position, never its name."""
    if not path.is_file():
        raise AttachmentError(f"attached file {position} does not exist or is not a file")
    if path.stat().st_size > max_bytes:
        raise AttachmentError(
            f"attached file {position} is larger than {max_mb} MB; split it, or raise the "
            "limit with --max-size (DSR_ATTACHMENT_MAX_MB)"
        )


def _rows(path: Path, position: int) -> Iterator[dict[str, JsonValue]]:
    """The records in a JSON file (an array of objects, or one object) or a CSV file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                yield {key: value for key, value in row.items() if key is not None}
        return
    try:
        loaded = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise AttachmentError(f"records file {position} is not valid JSON") from None
    rows = loaded if isinstance(loaded, list) else [loaded]
    if not all(isinstance(row, dict) for row in rows):
        raise AttachmentError(
            f"records file {position} must hold a JSON object or an array of objects"
        )
    yield from rows


@dataclass(frozen=True, slots=True)
class AttachedFiles:
    """The files attached to a request's manual tasks, as the export writes them.

    `outcomes` gives a system's stored outcome (None when there is none); the files are read
    from `store`. Called once by `write_export` with the open archive and the exported systems.
    """

    store: RecordStore
    request_id: str
    outcomes: Callable[[str], TaskOutcome | None]

    def __call__(self, archive: zipfile.ZipFile, systems: Sequence[str]) -> list[ExportFile]:
        """Copy each system's attachments into `attachments/<system>/<name>`, hash checked."""
        files = []
        for system in systems:
            outcome = self.outcomes(system)
            for position, attachment in enumerate(outcome.attachments if outcome else [], 1):
                files.append(self._copy(archive, system, position, attachment))
        return files

    def _copy(
        self, archive: zipfile.ZipFile, system: str, position: int, attachment: Attachment
    ) -> ExportFile:
        """One attached file into the archive; a seal or hash that does not check out is an
        error naming the system and the file's position (its name may identify someone)."""
        member = f"attachments/{system}/{attachment.name}"
        try:
            with archive.open(member, "w", force_zip64=True) as target:
                for piece in self.store.read_attachment(attachment, self.request_id):
                    target.write(piece)
        except RecordStoreError:
            raise RecordStoreError(
                f"attachment {position} of system {system!r} is missing, altered or does not "
                "match its SHA-256; complete the task again with the file"
            ) from None
        return ExportFile(member, attachment.sha256, None, attachment.size, system)


__all__ = [
    "DEFAULT_MAX_MB",
    "RECORD_SUFFIXES",
    "AttachedFiles",
    "AttachmentError",
    "attachment_name",
    "media_type",
    "store_files",
    "store_records",
]
