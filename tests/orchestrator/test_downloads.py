"""Sealed exports at rest: `open_export`, `dsr export open`, and expiring download tokens."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.artifacts.downloads import Downloads, InvalidToken, NotAvailable, TokenExpired
from orchestrator.artifacts.export import open_export, write_export
from orchestrator.artifacts.store import ArtifactStore
from orchestrator.cli import main
from schemas.events import Record
from schemas.primitives.sealing import DataKeyDestroyed, DataKeys, SealBroken, bus_key
from schemas.register import parse_register
from tests import factories
from tests.orchestrator.test_export import completed

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EMAIL = "export.subject@example.nl"
REQUEST_ID = "req-export-9"
REGISTER = parse_register(
    {
        "systems": [
            {
                "name": "crm",
                "kind": "crm",
                "connector": "memory",
                "data_categories": ["email"],
                "purposes": ["sales"],
                "legal_basis": ["contract"],
                "profiling": "none",
                "retention": "1 year",
            }
        ]
    }
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with the sealed export of one finished access request."""
    return sealed_export(tmp_path)


def sealed_export(tmp_path: Path) -> Path:
    """A data dir with the sealed export of one finished access request, as the orchestrator
    writes it (keys where `Settings` finds them)."""
    data = tmp_path / "data"
    keys = _keys(data)
    state = completed(factories.request(REQUEST_ID, EMAIL, received_at=NOW), ["crm"])
    records = [Record(collection="contacts", data={"email": EMAIL, "n": n}) for n in range(50)]
    write_export(
        ArtifactStore(data).export_path(REQUEST_ID),
        state,
        REGISTER,
        lambda system: records,
        generated_at=NOW,
        key=keys.create(REQUEST_ID),
    )
    return data


def _keys(data: Path) -> DataKeys:
    return DataKeys(data / "dek", bus_key(None, data / "keys"))


def _archive(chunks: object) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(chunks)))  # type: ignore[arg-type]


def test_the_export_is_sealed_at_rest_and_opens_with_its_data_key(data_dir: Path) -> None:
    path = ArtifactStore(data_dir).export_path(REQUEST_ID)
    assert path.name == f"{REQUEST_ID}.zip.enc"
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and EMAIL.encode() not in raw
    assert not list(path.parent.glob(".spool-*"))  # nothing left over, sealed or not
    with _archive(open_export(path, _keys(data_dir))) as archive:
        contacts = json.loads(archive.read("data/crm/contacts.json"))
        manifest = json.loads(archive.read("manifest.json"))
    assert len(contacts) == 50 and contacts[0]["email"] == EMAIL
    assert manifest["request_id"] == REQUEST_ID
    # Renamed to another request's name, it does not open (bound to its request).
    other = path.with_name("req-other.zip.enc")
    other.write_bytes(raw)
    _keys(data_dir).create("req-other")
    with pytest.raises(SealBroken):
        b"".join(open_export(other, _keys(data_dir)))


def test_dsr_export_open_writes_a_private_zip(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "export.zip"
    runner = CliRunner()
    args = ["export", "open", REQUEST_ID, "--data-dir", str(data_dir), "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "delete it once sent" in result.output and EMAIL not in result.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert zipfile.ZipFile(out).testzip() is None
    missing = runner.invoke(main, [*args[:2], "req-none", *args[3:]])
    assert missing.exit_code != 0 and "no export of request 'req-none'" in missing.output
    _keys(data_dir).destroy(REQUEST_ID)
    shredded = runner.invoke(main, [*args[:-1], str(tmp_path / "again.zip")])
    assert shredded.exit_code != 0 and "crypto-shredded" in shredded.output
    assert not (tmp_path / "again.zip").exists()


def test_a_token_grants_one_file_until_it_expires(data_dir: Path) -> None:
    downloads = Downloads(data_dir, data_dir / "keys", _keys(data_dir))
    token = downloads.make_token(REQUEST_ID, "export", timedelta(minutes=5), now=NOW)
    grant = downloads.check_token(token, now=NOW + timedelta(minutes=4))
    assert (grant.request_id, grant.kind) == (REQUEST_ID, "export")
    assert grant.expires_at == NOW + timedelta(minutes=5)
    with pytest.raises(TokenExpired, match="ask for a new one"):
        downloads.check_token(token, now=NOW + timedelta(minutes=5))
    # Another installation's key (or none) does not sign tokens that work here.
    stranger = Downloads(data_dir, data_dir / "other-keys", _keys(data_dir))
    with pytest.raises(InvalidToken):
        stranger.check_token(token, now=NOW)
    with pytest.raises(ValueError, match="at most"):
        downloads.make_token(REQUEST_ID, "export", timedelta(days=2))
    with pytest.raises(ValueError, match="kind"):
        downloads.make_token(REQUEST_ID, "records", timedelta(minutes=1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t.split(".")[0] + "." + "A" * 43,  # another signature
        lambda t: t.split(".")[0],  # no signature
        lambda t: "x" + t,  # payload changed
        lambda t: "",
        lambda t: "!!.!!",
    ],
)
def test_a_forged_or_malformed_token_is_refused(data_dir: Path, forge: object) -> None:
    downloads = Downloads(data_dir, data_dir / "keys", _keys(data_dir))
    token = downloads.make_token(REQUEST_ID, "export")
    with pytest.raises(InvalidToken):
        downloads.check_token(forge(token))  # type: ignore[operator]


def test_a_changed_grant_is_refused(data_dir: Path) -> None:
    """The request id and kind are signed: a certificate token does not open the export."""
    import base64

    downloads = Downloads(data_dir, data_dir / "keys", _keys(data_dir))
    payload, signature = downloads.make_token(REQUEST_ID, "certificate").split(".")
    text = base64.urlsafe_b64decode(payload + "==").decode().replace("certificate", "export")
    forged = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode() + "." + signature
    with pytest.raises(InvalidToken):
        downloads.open(forged)


def test_a_download_streams_the_decrypted_export(data_dir: Path) -> None:
    downloads = Downloads(data_dir, data_dir / "keys", _keys(data_dir))
    download = downloads.open(downloads.make_token(REQUEST_ID, "export"))
    body = b"".join(download.chunks)
    assert download.filename == f"{REQUEST_ID}.zip" and download.media_type == "application/zip"
    assert download.size == len(body)
    assert "data/crm/contacts.json" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    with pytest.raises(NotAvailable, match="no deletion certificate"):
        downloads.open(downloads.make_token(REQUEST_ID, "certificate"))
    certificate = ArtifactStore(data_dir).certificate_path(REQUEST_ID)
    certificate.parent.mkdir(parents=True)
    certificate.write_text('{"certificate": {}}')
    served = downloads.open(downloads.make_token(REQUEST_ID, "certificate"))
    assert b"".join(served.chunks) == certificate.read_bytes()
    assert served.size == certificate.stat().st_size


def test_after_shredding_the_export_cannot_be_downloaded(data_dir: Path) -> None:
    keys = _keys(data_dir)
    downloads = Downloads(data_dir, data_dir / "keys", keys)
    token = downloads.make_token(REQUEST_ID, "export")
    keys.destroy(REQUEST_ID)
    with pytest.raises(NotAvailable, match="crypto-shredded"):
        downloads.open(token)
    with pytest.raises(DataKeyDestroyed):
        open_export(ArtifactStore(data_dir).export_path(REQUEST_ID), keys)
    ArtifactStore(data_dir).export_path(REQUEST_ID).unlink()  # what the orchestrator does
    with pytest.raises(NotAvailable, match="no export"):
        downloads.open(token)
