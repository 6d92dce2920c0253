"""`dsr keys` (signing keys) and `dsr verify` (check a deletion or sweep certificate offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import DIRECTORY, FILE, DsrCommand, DsrGroup

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from orchestrator.artifacts.keys import KeyStore

_dir_option = click.option(
    "--dir",
    "keys_dir",
    type=DIRECTORY,
    help="Key store directory (default: DSR_KEYS_DIR, else <DSR_DATA_DIR>/keys).",
)


def _store(keys_dir: Path | None) -> KeyStore:
    from orchestrator.artifacts.keys import KeyStore

    return KeyStore(keys_dir)


@click.group("keys", cls=DsrGroup)
def keys() -> None:
    """Signing keys for deletion and sweep certificates."""


@keys.command("create")
@_dir_option
def keys_create(keys_dir: Path | None) -> None:
    """Create the first signing key."""
    store = _store(keys_dir)
    click.echo(f"created signing key {store.create().kid} in {store.root}")


@keys.command("rotate")
@_dir_option
def keys_rotate(keys_dir: Path | None) -> None:
    """Make a new active signing key; older keys still verify earlier certificates."""
    info = _store(keys_dir).rotate()
    click.echo(f"active signing key is now {info.kid}; export the JWKS again for verifiers")


@keys.command("list")
@_dir_option
def keys_list(keys_dir: Path | None) -> None:
    """The keys in the store, oldest first."""
    store = _store(keys_dir)
    infos = store.list()
    if not infos:
        click.echo(f"no keys in {store.root}; create one with `dsr keys create`")
        return
    for info in infos:
        marker = "active" if info.active else "verify-only"
        click.echo(f"{info.kid}  {info.created_at}  {marker}")


@keys.command("export-jwks")
@_dir_option
@click.option("--out", type=FILE)
def keys_export_jwks(keys_dir: Path | None, out: Path | None) -> None:
    """All public keys as JWKS (to stdout, or --out FILE), for anyone who verifies."""
    document = _store(keys_dir).export_jwks()
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {len(document['keys'])} public key(s) to {out}")


@click.command("verify", cls=DsrCommand)
@click.argument("certificate", type=FILE)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=FILE,
    help="JWKS or PEM public key file (repeatable; default: the local key store).",
)
@_dir_option
def verify(certificate: Path, key_files: tuple[Path, ...], keys_dir: Path | None) -> None:
    """Verify a signed deletion or sweep certificate offline."""
    from orchestrator.artifacts.certificate import CertificateError
    from orchestrator.artifacts.keys import KeyStoreError
    from orchestrator.artifacts.sweep_certificate import verify_any_certificate
    from orchestrator.cli.errors import CommandError

    try:
        public_keys = _public_keys(key_files, keys_dir)
        try:
            data = certificate.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {certificate}: {exc.strerror}") from None
        result = verify_any_certificate(data, public_keys)
    except (KeyStoreError, CertificateError) as exc:
        raise CommandError(f"{certificate}: invalid: {exc}") from None
    body = result.certificate
    about = (
        f"sweep certificate for sweep {body['sweep_id']} (system {body['system'].get('name')})"
        if result.kind == "sweep"
        else f"certificate for request {result.request_id}"
    )
    click.echo(f"valid: {about} signed by key {result.kid} on {result.issued_at}")


def _public_keys(key_files: tuple[Path, ...], keys_dir: Path | None) -> dict[str, Ed25519PublicKey]:
    """The keys given with --key, else those of the local key store (which must have some)."""
    from orchestrator.artifacts.keys import load_public_keys
    from orchestrator.cli.errors import CommandError

    public_keys: dict[str, Ed25519PublicKey] = {}
    for path in key_files:
        public_keys.update(load_public_keys(path))
    if key_files:
        return public_keys
    public_keys = _store(keys_dir).public_keys()
    if not public_keys:
        raise CommandError(
            "no public keys: the local key store is empty; pass the issuer's JWKS with --key FILE"
        )
    return public_keys


__all__ = ["keys", "verify"]
