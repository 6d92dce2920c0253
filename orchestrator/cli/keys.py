"""`dsr keys` (signing keys) and `dsr verify` (check a deletion certificate offline)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from orchestrator.artifacts.certificate import CertificateError, verify_certificate
from orchestrator.artifacts.keys import KeyStore, KeyStoreError, load_public_keys

_dir_option = click.option(
    "--dir",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Key store directory (default: DSR_KEYS_DIR, else <DSR_DATA_DIR>/keys).",
)


@click.group("keys")
def keys() -> None:
    """Signing keys for deletion certificates."""


@keys.command("create")
@_dir_option
def keys_create(keys_dir: Path | None) -> None:
    """Create the first signing key."""
    store = KeyStore(keys_dir)
    try:
        info = store.create()
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created signing key {info.kid} in {store.root}")


@keys.command("rotate")
@_dir_option
def keys_rotate(keys_dir: Path | None) -> None:
    """Make a new active signing key; older keys still verify earlier certificates."""
    store = KeyStore(keys_dir)
    try:
        info = store.rotate()
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"active signing key is now {info.kid}; export the JWKS again for verifiers")


@keys.command("list")
@_dir_option
def keys_list(keys_dir: Path | None) -> None:
    """The keys in the store, oldest first."""
    store = KeyStore(keys_dir)
    try:
        infos = store.list()
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    if not infos:
        click.echo(f"no keys in {store.root}; create one with `dsr keys create`")
        return
    for info in infos:
        marker = "active" if info.active else "verify-only"
        click.echo(f"{info.kid}  {info.created_at}  {marker}")


@keys.command("export-jwks")
@_dir_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def keys_export_jwks(keys_dir: Path | None, out: Path | None) -> None:
    """All public keys as JWKS (to stdout, or --out FILE), for anyone who verifies."""
    try:
        document = KeyStore(keys_dir).export_jwks()
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {len(document['keys'])} public key(s) to {out}")


@click.command("verify")
@click.argument("certificate", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JWKS or PEM public key file (repeatable; default: the local key store).",
)
@_dir_option
def verify(certificate: Path, key_files: tuple[Path, ...], keys_dir: Path | None) -> None:
    """Verify a signed deletion certificate offline."""
    try:
        public_keys: dict[str, Ed25519PublicKey] = {}
        if key_files:
            for path in key_files:
                public_keys.update(load_public_keys(path))
        else:
            public_keys = KeyStore(keys_dir).public_keys()
            if not public_keys:
                raise click.ClickException(
                    "no public keys: the local key store is empty; pass the issuer's JWKS "
                    "with --key FILE"
                )
        try:
            data = certificate.read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read {certificate}: {exc.strerror}") from None
        result = verify_certificate(data, public_keys)
    except (KeyStoreError, CertificateError) as exc:
        raise click.ClickException(f"{certificate}: invalid: {exc}") from None
    click.echo(
        f"valid: certificate for request {result.request_id} signed by key {result.kid} "
        f"on {result.issued_at}"
    )
