"""OpenDSR credentials: our processor certificate and key, and the controllers' bearer tokens.

We act as a processor for controllers that send OpenDSR 2.0 requests. OpenDSR signs with
the processor's X.509 certificate key (spec section 4.2, FIPS 186-4 signatures): the
`processor_signature` of a 201 answer, the `X-OpenDSR-Signature` header of every answer and
status callback. Ours is RSA 2048 with PKCS#1 v1.5 over SHA-256 (RSASSA-PKCS1-v1_5, in FIPS
186-4 section 5): what `openssl dgst -sha256 -verify` checks, and what the processors in the
field use ("SHA256 with RSA over the raw body").

- `DSR_OPENDSR_CERTIFICATE_FILE`, `DSR_OPENDSR_KEY_FILE`: the certificate (PEM, the chain may
  follow) and its private key. OpenDSR 4.1 requires a certificate from a trusted CA issued to
  our organisation, so production sets both. Unset, a self-signed pair is created in KEYS_DIR
  on first use (key mode 0600), enough for trials and tests; a warning says so at start.
- `DSR_OPENDSR_PROCESSOR_DOMAIN`: the domain the certificate is for and that we answer on
  (`X-OpenDSR-Processor-Domain`); default: the host of the intake's public URL.
- `DSR_OPENDSR_CONTROLLERS`: the controllers file. Authentication of requests is left to the
  processor (OpenDSR 4.3); ours is a bearer token per controller (RFC 6750), kept as its
  SHA-256 in the file or in a file of its own, with the callback URL prefixes it may use::

      controllers:
        - id: acme
          token_sha256: 5e88...            # sha256 of the token, hex; or token_file: /run/...
          callback_url_prefixes: [https://privacy.acme.example/opendsr/]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelope import describe_validation_error
from schemas.errors import DsrError
from schemas.primitives.files import atomic_write
from schemas.primitives.opendsr import self_signed_certificate

log = logging.getLogger("dsr.intake.opendsr")

#: The files a self-signed pair is created in, inside KEYS_DIR.
GENERATED_CERTIFICATE = "opendsr-processor.pem"
GENERATED_KEY = "opendsr-processor.key"
_RSA_BITS = 2048
_SELF_SIGNED_DAYS = 365


class OpenDsrConfigError(DsrError):
    """The OpenDSR settings, certificate or controllers file are wrong; says which and the fix."""


class OpenDsrSettings(BaseSettings):
    """OpenDSR inbound settings (`DSR_OPENDSR_*`)."""

    model_config = SettingsConfigDict(env_prefix="DSR_OPENDSR_", extra="ignore")

    certificate_file: Path | None = Field(
        None, description="Our processor certificate (PEM); unset: self-signed in KEYS_DIR."
    )
    key_file: Path | None = Field(None, description="Its private key (PEM, RSA).")
    processor_domain: str | None = Field(
        None, description="Our OpenDSR domain; default: the host of the intake's public URL."
    )
    controllers: Path | None = Field(
        None, description="The controllers file (ids, token hashes, callback URL prefixes)."
    )
    callback_backoff_seconds: float = Field(
        2.0, gt=0, description="First wait before a failed status callback is sent again."
    )
    callback_max_backoff_seconds: float = Field(
        600.0, gt=0, description="Longest wait between two attempts of one callback."
    )
    callback_give_up_hours: float = Field(
        72.0, gt=0, description="Stop retrying a callback after this long (logged)."
    )
    poll_seconds: float = Field(
        1.0, gt=0, description="How often status changes are looked for callbacks."
    )

    @model_validator(mode="after")
    def _pair(self) -> OpenDsrSettings:
        if (self.certificate_file is None) != (self.key_file is None):
            raise ValueError(
                "set both DSR_OPENDSR_CERTIFICATE_FILE and DSR_OPENDSR_KEY_FILE, or neither "
                "(a self-signed pair is then created in KEYS_DIR)"
            )
        return self


@dataclass(frozen=True)
class ProcessorSigner:
    """Our processor certificate and its private key: signs answers and callbacks.

    Controllers check the signatures with the certificate we serve
    (`schemas.primitives.opendsr.ProcessorCertificate.verifies`, as our own OpenDSR connector
    does with other processors).
    """

    domain: str
    certificate_pem: bytes
    private_key: rsa.RSAPrivateKey
    self_signed: bool = False

    def sign(self, data: bytes) -> str:
        """Base64 RSASSA-PKCS1-v1_5 signature over SHA-256 of `data`."""
        signature = self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    @classmethod
    def load(cls, settings: OpenDsrSettings, keys_dir: Path, domain: str) -> ProcessorSigner:
        """The configured pair, else the self-signed one in `keys_dir` (created when missing
        or issued to another domain)."""
        if settings.certificate_file is not None and settings.key_file is not None:
            pem, key = _read_pair(settings.certificate_file, settings.key_file)
            return cls(domain, pem, key)
        cert_path, key_path = keys_dir / GENERATED_CERTIFICATE, keys_dir / GENERATED_KEY
        if cert_path.exists() and key_path.exists():
            pem, key = _read_pair(cert_path, key_path)
            if _issued_to(pem) == domain:
                return cls(domain, pem, key, self_signed=True)
        pem, key = _self_signed(domain)
        key_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(key_path, key_bytes, mode=0o600)
        atomic_write(cert_path, pem, mode=0o644)
        log.warning(
            "OpenDSR: created a self-signed processor certificate for %s in %s; OpenDSR 4.1 "
            "requires a CA-issued one in production (DSR_OPENDSR_CERTIFICATE_FILE)",
            domain,
            keys_dir,
        )
        return cls(domain, pem, key, self_signed=True)


def _read_pair(cert_path: Path, key_path: Path) -> tuple[bytes, rsa.RSAPrivateKey]:
    try:
        pem = cert_path.read_bytes()
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise OpenDsrConfigError(
            f"cannot read the OpenDSR certificate or key ({exc.strerror}): check "
            f"{cert_path} and {key_path}"
        ) from None
    except ValueError:
        raise OpenDsrConfigError(
            f"{cert_path} or {key_path} is not a PEM certificate / unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < _RSA_BITS:
        raise OpenDsrConfigError(f"{key_path}: the OpenDSR key must be RSA of {_RSA_BITS}+ bits")
    public = certificate.public_key()
    if (
        not isinstance(public, rsa.RSAPublicKey)
        or public.public_numbers() != key.public_key().public_numbers()
    ):
        raise OpenDsrConfigError(f"{key_path} is not the private key of {cert_path}")
    return pem, key


def _issued_to(pem: bytes) -> str | None:
    names = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _self_signed(domain: str) -> tuple[bytes, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    return self_signed_certificate(key, domain, days=_SELF_SIGNED_DAYS), key


# -- controllers ----------------------------------------------------------------------------

ControllerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._\-]{0,62}$")]


class Controller(BaseModel):
    """A controller that may send us OpenDSR requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ControllerId
    token_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    token_file: Path | None = None
    callback_url_prefixes: list[Annotated[str, Field(min_length=8)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_token(self) -> Controller:
        if (self.token_sha256 is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_sha256 and token_file")
        return self

    def token_hash(self) -> bytes:
        """SHA-256 of the controller's bearer token."""
        if self.token_sha256 is not None:
            return bytes.fromhex(self.token_sha256)
        assert self.token_file is not None
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise OpenDsrConfigError(
                f"controller {self.id!r}: cannot read token_file ({exc.strerror})"
            ) from None
        return hashlib.sha256(token.encode()).digest()

    def may_call_back(self, url: str) -> bool:
        """Whether `url` starts with one of the controller's callback URL prefixes and is https
        (http only to a loopback address: a controller on the same host, tests)."""
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname)):
            return False
        return any(url.startswith(prefix) for prefix in self.callback_url_prefixes)


class _ControllersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    controllers: list[Controller] = Field(default_factory=list)


class Controllers:
    """The controllers file, with bearer-token authentication."""

    def __init__(self, controllers: list[Controller]) -> None:
        self._by_id = {c.id: c for c in controllers}
        self._hashes = [(c.token_hash(), c) for c in controllers]

    @classmethod
    def load(cls, path: Path | None) -> Controllers:
        """Read the controllers file (none configured: nobody may send requests)."""
        if path is None:
            return cls([])
        try:
            document = yaml.safe_load(path.read_text()) or {}
            parsed = _ControllersFile.model_validate(document)
        except OSError as exc:
            raise OpenDsrConfigError(
                f"cannot read the OpenDSR controllers file {path} ({exc.strerror})"
            ) from None
        except yaml.YAMLError:
            raise OpenDsrConfigError(f"{path} is not valid YAML") from None
        except ValidationError as exc:
            raise OpenDsrConfigError(f"{path}: {describe_validation_error(exc)}") from None
        ids = [c.id for c in parsed.controllers]
        if len(set(ids)) != len(ids):
            raise OpenDsrConfigError(f"{path}: a controller id appears twice")
        return cls(parsed.controllers)

    def authenticate(self, authorization: str | None) -> Controller | None:
        """The controller whose bearer token the `Authorization` header carries, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for known, controller in self._hashes:  # compare with every one: no timing hint
            if hmac.compare_digest(known, digest):
                found = controller
        return found

    def get(self, controller_id: str) -> Controller | None:
        """A controller by id."""
        return self._by_id.get(controller_id)


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = [
    "Controller",
    "Controllers",
    "OpenDsrConfigError",
    "OpenDsrSettings",
    "ProcessorSigner",
]
