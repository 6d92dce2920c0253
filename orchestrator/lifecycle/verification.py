"""Which identity check each right needs: the verification policy, as pure functions.

Identity is checked in proportion to the right (Art. 12(6) GDPR; EDPB Guidelines 01/2022 on the
right of access, section 3.3 "Proportionality assessment regarding identification of the
requesting person"): the controller may ask for more only where it has reasonable doubts, and
must not collect more personal data than identification needs.

- An **objection** (Art. 21; to direct marketing, Art. 21(2)-(3), processing must simply stop)
  and a **consent withdrawal** (Art. 7(3): "as easy to withdraw as to give consent") proceed on
  the channel alone: the authenticated session or confirmed e-mail address the request came by.
  They need no ID step; Art. 12(6) allows one only where there is reasonable doubt, which an
  officer can still act on, never the default.
- **Access, portability, erasure, rectification and restriction** need verification: the policy
  names the methods it accepts for each. A verification by any other method does not count.

While a request waits, its deadline keeps running from receipt (Art. 12(3)); the ID request
goes out the moment the request arrives, and an unverified request is refused, with reasons and
remedies, at the deadline (docs/officers.md, "Identity verification").

Configured with `DSR_VERIFICATION_POLICY` (see `VerificationPolicy.parse`); unknown rights or
methods are refused at start-up, naming the input and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import RequestType, VerificationMethod

#: The word in `DSR_VERIFICATION_POLICY` for "no ID step: the channel is enough".
CHANNEL = "channel"

_STRONG = frozenset(
    {
        VerificationMethod.ID_DOCUMENT,
        VerificationMethod.AUTHENTICATED_SESSION,
        VerificationMethod.IN_PERSON,
    }
)
#: The defaults: None means the right proceeds on the channel alone.
DEFAULT_METHODS: Mapping[RequestType, frozenset[VerificationMethod] | None] = {
    RequestType.ACCESS: _STRONG,
    RequestType.PORTABILITY: _STRONG,
    RequestType.ERASURE: _STRONG,
    RequestType.RECTIFICATION: _STRONG,
    RequestType.RESTRICTION: _STRONG,
    RequestType.OBJECTION: None,
    RequestType.CONSENT_WITHDRAWAL: None,
}


def _defaults() -> dict[RequestType, frozenset[VerificationMethod] | None]:
    return dict(DEFAULT_METHODS)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """Per right: the verification methods that count, or None when the channel is enough."""

    methods: Mapping[RequestType, frozenset[VerificationMethod] | None] = field(
        default_factory=_defaults
    )

    @classmethod
    def parse(cls, spec: str) -> VerificationPolicy:
        """The defaults, changed per right by `spec`: `right=method,method;right=channel`.

        Example: `erasure=id_document,in_person;restriction=channel`. Rights not named keep
        their default. Raises ValueError naming the unknown right or method and the known ones.
        """
        methods = _defaults()
        for part in (p.strip() for p in spec.split(";")):
            if not part:
                continue
            right_name, sep, listed = part.partition("=")
            if not sep:
                raise ValueError(
                    f"{part!r} is not 'right=method,method' (or 'right={CHANNEL}'); "
                    "e.g. 'erasure=id_document,in_person'"
                )
            right = _right(right_name.strip())
            methods[right] = _methods(right, listed)
        return cls(methods)

    def needs_verification(self, right: RequestType) -> bool:
        """True when requests for `right` wait for an accepted verification before fan-out."""
        return self.methods.get(right) is not None

    def accepted(self, right: RequestType) -> tuple[VerificationMethod, ...]:
        """The methods that count for `right`, in a stable order (empty: channel alone)."""
        allowed = self.methods.get(right) or frozenset()
        return tuple(m for m in VerificationMethod if m in allowed)

    def accepts(self, right: RequestType, method: VerificationMethod | None) -> bool:
        """True when a verification by `method` counts for `right` (always, on the channel)."""
        if not self.needs_verification(right):
            return True
        return method is not None and method in self.accepted(right)

    def refusal(self, right: RequestType, method: VerificationMethod) -> str | None:
        """Why a verification by `method` does not count for `right`; None when it does.

        Names the right and methods only: no personal data.
        """
        if self.accepts(right, method):
            return None
        accepted = ", ".join(self.accepted(right))
        return (
            f"the identity verification by {method.value!r} does not count for a request for "
            f"{right.value}: the verification policy accepts {accepted}; the request keeps "
            "waiting for one of these"
        )

    def describe(self) -> str:
        """The policy in the notation `parse` reads (for start-up logs and docs)."""
        return ";".join(
            f"{right.value}={','.join(self.accepted(right)) or CHANNEL}" for right in RequestType
        )


def _right(name: str) -> RequestType:
    try:
        return RequestType(name)
    except ValueError:
        known = ", ".join(r.value for r in RequestType)
        raise ValueError(f"unknown right {name!r}; known rights: {known}") from None


def _methods(right: RequestType, listed: str) -> frozenset[VerificationMethod] | None:
    names = [n.strip() for n in listed.split(",") if n.strip()]
    if names == [CHANNEL]:
        return None
    if not names or CHANNEL in names:
        raise ValueError(
            f"{right.value}: give one or more methods, or '{CHANNEL}' alone for no ID step"
        )
    methods = set()
    for name in names:
        try:
            methods.add(VerificationMethod(name))
        except ValueError:
            known = ", ".join(m.value for m in VerificationMethod)
            raise ValueError(
                f"{right.value}: unknown verification method {name!r}; known methods: {known} "
                f"(or '{CHANNEL}' alone for no ID step)"
            ) from None
    return frozenset(methods)


__all__ = ["CHANNEL", "DEFAULT_METHODS", "VerificationPolicy"]
