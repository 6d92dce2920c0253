"""OpenDSR 2.0 signatures: a processor's certificate, and what it signed.

An OpenDSR processor signs its answers and its status callbacks with the key of an X.509
certificate it publishes (`processor_certificate` in its discovery document): the header
`X-OpenDSR-Signature` is the base64 signature of the SHA-256 digest of the raw body (RSA
PKCS#1 v1.5 or ECDSA, FIPS 186-4), and `X-OpenDSR-Processor-Domain` names the domain the
certificate is issued to. The controller checks the signature over the raw bytes *before*
parsing them (OpenDSR 2.0, "Callback Authentication"), so nothing is read from a body that a
stranger wrote.

Both sides use this: the connector that sends requests to a processor (answers) and the intake
process that receives its callbacks. OpenDSR 1.x named the headers `X-OpenGDPR-*`; processors
must still honour those, so they are read as a fallback.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from schemas.errors import DsrError

SIGNATURE_HEADER = "X-OpenDSR-Signature"
DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
#: The OpenGDPR names of the same headers (OpenDSR 2.0, "Migration from OpenGDPR").
LEGACY_HEADERS = {
    SIGNATURE_HEADER: "X-OpenGDPR-Signature",
    DOMAIN_HEADER: "X-OpenGDPR-Processor-Domain",
}
#: The longest signature header read (an RSA-8192 signature is 1,366 base64 characters).
_MAX_SIGNATURE = 4096


class CertificateError(DsrError, ValueError):
    """A processor certificate cannot be read or is not valid now; says which and why."""


def header(headers: object, name: str) -> str | None:
    """An OpenDSR header from a mapping of headers, or its OpenGDPR name; None when absent."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get(name)
    if value is None:
        value = get(LEGACY_HEADERS.get(name, name))
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ProcessorCertificate:
    """A processor's signing certificate (PEM), as pinned or fetched from its discovery URL."""

    certificate: x509.Certificate

    @classmethod
    def from_pem(
        cls, pem: bytes, *, where: str = "the processor certificate"
    ) -> ProcessorCertificate:
        """Read a PEM certificate; a `CertificateError` naming `where` if it is none."""
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise CertificateError(f"{where} is not a PEM X.509 certificate") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise CertificateError(
                f"{where} has a {type(key).__name__}; OpenDSR signatures need an RSA or EC key"
            )
        return cls(certificate)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint, `AB:CD:...` as `openssl x509 -fingerprint -sha256` prints it."""
        digest = self.certificate.fingerprint(hashes.SHA256())
        return ":".join(f"{b:02X}" for b in digest)

    @cached_property
    def domains(self) -> frozenset[str]:
        """The DNS names and IP addresses it is issued to (subject alternative names), or its
        common name when it has none."""
        names: set[str] = set()
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            san = None
        if san is not None:
            names |= {n.lower() for n in san.value.get_values_for_type(x509.DNSName)}
            names |= {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}
        else:
            for attribute in self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
                value = attribute.value
                names.add(value.lower() if isinstance(value, str) else value.decode().lower())
        return frozenset(names)

    def issued_for(self, domain: str) -> bool:
        """Whether the certificate names `domain` (a `*.` wildcard covers one label)."""
        domain = domain.strip().rstrip(".").lower()
        try:
            return str(ipaddress.ip_address(domain)) in self.domains
        except ValueError:
            pass
        if domain in self.domains:
            return True
        _, _, parent = domain.partition(".")
        return bool(parent) and f"*.{parent}" in self.domains

    def check_valid(self, now: datetime | None = None) -> None:
        """Raise `CertificateError` when the certificate is not valid at `now`."""
        now = now or datetime.now(UTC)
        if now < self.certificate.not_valid_before_utc:
            raise CertificateError("the processor certificate is not valid yet")
        if now > self.certificate.not_valid_after_utc:
            raise CertificateError(
                "the processor certificate expired on "
                f"{self.certificate.not_valid_after_utc.date().isoformat()}"
            )

    def verifies(self, signature: str | None, body: bytes) -> bool:
        """Whether `signature` (base64, as in `X-OpenDSR-Signature`; line breaks allowed) is
        the certificate key's signature of SHA-256 over the raw `body`."""
        if not signature or len(signature) > _MAX_SIGNATURE:
            return False
        try:
            raw = base64.b64decode("".join(signature.split()), validate=True)
        except (binascii.Error, ValueError):
            return False
        key = self.certificate.public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
            else:  # pragma: no cover - refused in from_pem
                return False
        except InvalidSignature:
            return False
        return True


def self_signed_certificate(
    key: rsa.RSAPrivateKey, domain: str, *, days: int, backdate: timedelta = timedelta(minutes=5)
) -> bytes:
    """A self-signed X.509 certificate (PEM) for `domain` (a host name or an IP address) with
    `key`, valid from `backdate` ago for `days`: our own processor certificate until one issued
    by a CA is configured, and the fake processors' in tests."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(domain))
    except ValueError:
        alt = x509.DNSName(domain)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


__all__ = [
    "DOMAIN_HEADER",
    "LEGACY_HEADERS",
    "SIGNATURE_HEADER",
    "CertificateError",
    "ProcessorCertificate",
    "header",
    "self_signed_certificate",
]
