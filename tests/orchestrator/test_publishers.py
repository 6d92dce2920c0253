"""`dsr publishers`: keys issued, rotated and retired; what the orchestrator then accepts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.intake.publishers import create_publisher, local_publisher, rotate_publisher
from schemas.envelope import EnvelopeError, decode, encode
from schemas.events import IdentityVerified, VerificationMethod
from schemas.primitives.signing import PublisherKeyError, RequestSigner, RequestVerifier
from schemas.topics import REQUESTS
from tests.schemas.conftest import NOW, REQUEST_ID, request_submitted


def _accepts(keys_file: Path, signer: RequestSigner, body: object = None) -> bool:
    message = signer.sign(encode(body or request_submitted(), source="tests"))  # type: ignore[arg-type]
    try:
        decode(
            message.value,
            message.headers,
            key=message.key,
            expect=REQUESTS.events,
            verify=RequestVerifier(keys_file),
        )
    except EnvelopeError:
        return False
    return True


def _dsr(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("flag", ["--ed25519", "--hmac"])
def test_create_rotate_retire_list(tmp_path: Path, flag: str) -> None:
    keys_file = tmp_path / "conf" / "publisher-keys.yaml"
    out = _dsr("publishers", "create", "web-form", flag, "--keys-file", str(keys_file))
    assert "DSR_PUBLISHER_ID=web-form" in out and "DSR_PUBLISHER_KEY_FILE=" in out
    env = dict(line.strip().split("=", 1) for line in out.splitlines() if line.startswith("  DSR_"))
    first = RequestSigner.from_env(env)
    assert first is not None
    key_file = Path(env["DSR_PUBLISHER_KEY_FILE"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _accepts(keys_file, first)
    text = keys_file.read_text()
    assert key_file.read_text().strip() not in text  # the private part stays out of the file

    rotated = _dsr("publishers", "rotate", "web-form", "--keys-file", str(keys_file))
    env2 = dict(
        line.strip().split("=", 1) for line in rotated.splitlines() if line.startswith("  DSR_")
    )
    second = RequestSigner.from_env(env2)
    assert second is not None and second.key.algorithm == first.key.algorithm
    assert _accepts(keys_file, first) and _accepts(keys_file, second)  # both during rotation

    listed = _dsr("publishers", "list", "--keys-file", str(keys_file))
    assert "web-form: all request events" in listed
    assert first.key_id in listed and second.key_id in listed

    _dsr("publishers", "retire", "web-form", first.key_id, "--keys-file", str(keys_file))
    assert not _accepts(keys_file, first) and _accepts(keys_file, second)


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    runner = CliRunner()
    _dsr("publishers", "create", "desk", "--keys-file", str(keys_file))
    again = runner.invoke(main, ["publishers", "create", "desk", "--keys-file", str(keys_file)])
    assert again.exit_code != 0 and "dsr publishers rotate desk" in again.output
    missing = runner.invoke(main, ["publishers", "rotate", "nobody", "--keys-file", str(keys_file)])
    assert missing.exit_code != 0 and "dsr publishers create nobody" in missing.output
    (kid,) = [k for p, k in RequestVerifier(keys_file).keys.keys]
    last = runner.invoke(main, ["publishers", "retire", "desk", kid, "--keys-file", str(keys_file)])
    assert last.exit_code != 0 and "last key" in last.output
    unknown = runner.invoke(
        main, ["publishers", "retire", "desk", "nope", "--keys-file", str(keys_file)]
    )
    assert unknown.exit_code != 0 and f"its keys: {kid}" in unknown.output
    empty = runner.invoke(main, ["publishers", "list", "--keys-file", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "cannot read" in empty.output


def test_a_publisher_restricted_to_submitting(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    issued = create_publisher(
        keys_file, "web-form", events=["dsr.request.submitted.v1"], out_dir=tmp_path / "private"
    )
    assert issued.key_file.parent == tmp_path / "private"
    signer = issued.signer()
    assert _accepts(keys_file, signer)
    verified = IdentityVerified(
        request_id=REQUEST_ID, method=VerificationMethod.ID_DOCUMENT, verified_at=NOW
    )
    assert not _accepts(keys_file, signer, verified)
    data = yaml.safe_load(keys_file.read_text())
    assert data["publishers"][0]["events"] == ["dsr.request.submitted.v1"]


def test_a_private_key_file_is_never_overwritten(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    issued = create_publisher(keys_file, "a")
    before = issued.key_file.read_bytes()
    with pytest.raises(PublisherKeyError, match="exists already"):
        create_publisher(keys_file, "b", key_file_name=issued.key_file.name)
    assert issued.key_file.read_bytes() == before
    assert [p["id"] for p in yaml.safe_load(keys_file.read_text())["publishers"]] == ["a"]


def test_keys_file_with_env_secrets_can_be_edited_without_them(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        "publishers:\n  - id: portal\n    keys:\n"
        "      - {algorithm: hmac-sha256, id: p1, secret: '${PORTAL_SECRET_NOT_SET_HERE}'}\n"
    )
    rotate_publisher(keys_file, "portal", "ed25519")
    assert len(yaml.safe_load(keys_file.read_text())["publishers"][0]["keys"]) == 2


def test_local_publisher_is_created_once(tmp_path: Path) -> None:
    first = local_publisher(tmp_path / "publishers")
    second = local_publisher(tmp_path / "publishers")
    assert first == second
    assert _accepts(first.keys_file, second.signer())
    first.keys_file.unlink()  # half gone: made again
    third = local_publisher(tmp_path / "publishers")
    assert third.key_id != first.key_id and _accepts(third.keys_file, third.signer())
