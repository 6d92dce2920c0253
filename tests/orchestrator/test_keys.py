"""The signing key store: create, rotate, list, permissions, JWKS and PEM loading."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orchestrator.artifacts.keys import (
    KeyStore,
    KeyStoreError,
    default_keys_dir,
    load_jwks,
    load_public_keys,
)
from schemas.primitives.encoding import b64url_decode, public_raw
from schemas.primitives.encoding import ed25519_key_id as key_id


def test_create_rotate_list(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    with pytest.raises(KeyStoreError, match="dsr keys create"):
        store.active()
    first = store.create()
    with pytest.raises(KeyStoreError, match="already has an active key"):
        store.create()
    second = store.rotate()
    assert first.kid != second.kid
    listed = store.list()
    assert [k.kid for k in listed] == [first.kid, second.kid]
    assert [k.active for k in listed] == [False, True]
    kid, private = store.active()
    assert kid == second.kid == key_id(private.public_key())
    assert set(store.public_keys()) == {first.kid, second.kid}


def test_private_key_mode_0600(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    info = store.create()
    mode = stat.S_IMODE(store.private_path(info.kid).stat().st_mode)
    assert mode == 0o600
    assert store.private_path(info.kid).read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_jwks_round_trip(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.create()
    store.rotate()
    document = store.export_jwks()
    for entry in document["keys"]:
        assert entry.keys() == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (entry["kty"], entry["crv"], entry["use"], entry["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert len(b64url_decode(entry["x"])) == 32
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    loaded = load_public_keys(path)
    original = store.public_keys()
    assert loaded.keys() == original.keys()
    for kid, key in loaded.items():
        assert public_raw(key) == public_raw(original[kid])


def test_pem_public_key_gets_same_kid(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "issuer.pem"
    path.write_bytes(pem)
    assert list(load_public_keys(path)) == [key_id(private.public_key())]


def test_bad_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello")
    with pytest.raises(KeyStoreError, match="neither JSON"):
        load_public_keys(garbage)
    with pytest.raises(KeyStoreError, match="cannot read"):
        load_public_keys(tmp_path / "missing.json")
    with pytest.raises(KeyStoreError, match="not a JWKS"):
        load_jwks({"kty": "OKP"})
    with pytest.raises(KeyStoreError, match="not an Ed25519"):
        load_jwks({"keys": [{"kty": "RSA"}]})
    with pytest.raises(KeyStoreError, match="invalid 'x'"):
        load_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})


def test_default_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_KEYS_DIR", raising=False)
    monkeypatch.setenv("DSR_DATA_DIR", "/srv/dsr")
    assert default_keys_dir() == Path("/srv/dsr/keys")
    monkeypatch.setenv("DSR_KEYS_DIR", "/etc/dsr/keys")
    assert default_keys_dir() == Path("/etc/dsr/keys")
