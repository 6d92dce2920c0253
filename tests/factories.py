"""Valid events for tests: one place that knows how to build a plain request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.events import (
    Identifier,
    IdentityVerification,
    RequestSubmitted,
    RequestType,
    Subject,
    VerificationMethod,
)


def request(
    request_id: str,
    email: str,
    *,
    type: RequestType = RequestType.ACCESS,
    verified: bool = True,
    received_at: datetime | None = None,
    requested_by: str = "tests",
    scope: list[str] | None = None,
) -> RequestSubmitted:
    """A request for the subject with this e-mail address, identity checked unless told not."""
    now = received_at or datetime.now(UTC)
    verification = (
        IdentityVerification(verified=True, method=VerificationMethod.ID_DOCUMENT, verified_at=now)
        if verified
        else IdentityVerification()
    )
    return RequestSubmitted(
        request_id=request_id,
        type=type,
        subject=Subject(identifiers=[Identifier(type="email", value=email)]),
        received_at=now,
        verification=verification,
        requested_by=requested_by,
        scope=scope,
    )


def paper_archive(name: str) -> dict[str, Any]:
    """A register entry for a system with no connector rights: every task is a manual task."""
    return {
        "name": name,
        "kind": "archive",
        "connector": "memory",
        "rights": [],
        "data_categories": ["signed contracts"],
        "purposes": ["contract administration"],
        "legal_basis": ["contract"],
        "profiling": "none",
        "retention": "7 years",
    }


def failing_ledger(name: str) -> dict[str, Any]:
    """A register entry for a system whose connector always fails fatally."""
    return {
        "name": name,
        "kind": "database",
        "connector": "memory",
        "settings": {"fail": "fatal"},
        "data_categories": ["invoices"],
        "purposes": ["bookkeeping"],
        "legal_basis": ["legal_obligation"],
        "profiling": "none",
        "retention": "7 years",
    }
