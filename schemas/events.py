"""Event bodies: the single source of truth for every message on the bus.

Every event is a pydantic model. JSON Schema files and the AsyncAPI document in this
package are generated from these models (`python -m schemas.generate`), never written by hand.

Personal data travels in the clear only in `RequestSubmitted` (from the publisher).
`TaskDispatched` carries the subject sealed with the request's data key
(`schemas.primitives.sealing`); `TaskOutcome` carries counts and a reference to the stored
records (records inline only in dry runs and tests). Status events and `DeadLetter` reasons
never carry it: they are read by dashboards and other services.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
SYSTEM_NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,62}$"
IDENTIFIER_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"

RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_PATTERN,
        description="Chosen by the publisher; the idempotency key. Must not contain personal data.",
        examples=["web-2026-000123"],
    ),
]
SystemName = Annotated[str, Field(pattern=SYSTEM_NAME_PATTERN, examples=["crm"])]


class _Model(BaseModel):
    """Base for all event bodies: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestType(StrEnum):
    """The right a data subject exercises (GDPR article in brackets)."""

    ACCESS = "access"  # Art. 15, inzage
    PORTABILITY = "portability"  # Art. 20, gegevensoverdraagbaarheid
    ERASURE = "erasure"  # Art. 17, verwijdering
    RECTIFICATION = "rectification"  # Art. 16, rectificatie
    RESTRICTION = "restriction"  # Art. 18, beperking
    OBJECTION = "objection"  # Art. 21, bezwaar
    CONSENT_WITHDRAWAL = "consent_withdrawal"  # Art. 7(3), toestemming intrekken


class IdentifierType(StrEnum):
    """Well-known identifier types; any lower_snake_case type is accepted besides these."""

    EMAIL = "email"
    PHONE = "phone"
    CUSTOMER_ID = "customer_id"
    ACCOUNT_ID = "account_id"


_PHONE_STRIP = re.compile(r"[\s().\-]")
_PHONE_VALID = re.compile(r"^\+?[0-9]{6,15}$")
_EMAIL_VALID = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HEX = re.compile(r"^[0-9a-f]+$")

# --- the BSN (burgerservicenummer) ---------------------------------------------------------
# Art. 87 GDPR lets a member state set the conditions for processing a national identification
# number. The Netherlands did so in Art. 46(1) UAVG (wetten.overheid.nl, BWBR0040940): a number
# the law prescribes to identify a person is used, when personal data is processed, only to
# carry out that law or for purposes the law sets. The BSN is such a number (Wet algemene
# bepalingen burgerservicenummer); a request to a webshop, CRM or mailing tool is neither, so
# no event of ours carries one. Messages name the rule, never the number.
BSN_RULE = (
    "Art. 46 UAVG (with Art. 87 GDPR) allows the BSN (burgerservicenummer) only where a law "
    "prescribes it; identify the subject by e-mail address, phone number or customer number"
)
#: The pydantic error type of every BSN refusal: a dead letter of such an event withholds the
#: original value, which holds the BSN (`schemas.envelope.dead_letter_for`).
BSN_REFUSED = "bsn_refused"
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)
_BSN_SEPARATORS = re.compile(r"[\s.\-]")
_BSN_WORDS = ("burgerservicenummer", "citizenservicenumber", "sofinummer", "sofinumber")


def passes_bsn_check(digits: str) -> bool:
    """True if `digits` is nine digits passing the BSN 11-proef (elfproef).

    A BSN is nine digits (early eight-digit numbers got a leading zero) and
    9*d1 + 8*d2 + 7*d3 + 6*d4 + 5*d5 + 4*d6 + 3*d7 + 2*d8 - 1*d9 is divisible by 11: the old
    bank-account 11-proef with weight -1 instead of 1 for the last digit, so that a bank
    account number typed by mistake fails. Worked example: 123456782 gives 154 = 14 * 11
    (calaris.nl, "BSN 11-proef valideren"; privacynieuws.nl, "Wie gebruiken uw
    burgerservicenummer"). All zeros passes the sum but is nobody's number.
    """
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit() or digits == "0" * 9:
        return False
    return sum(w * int(d) for w, d in zip(_BSN_WEIGHTS, digits, strict=True)) % 11 == 0


def looks_like_bsn(value: str) -> bool:
    """True if `value`, without spaces, dots and hyphens, is a number passing the 11-proef."""
    return passes_bsn_check(_BSN_SEPARATORS.sub("", value))


def names_bsn(name: str) -> bool:
    """True if an identifier type or field name means the BSN, in any spelling.

    `bsn`, `BSN`, `bsn_nummer`, `patientBsn`, `burgerservicenummer`, `Citizen-Service-Number`,
    `sofinummer` (the BSN's predecessor: the same number since 2007).
    """
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    squashed = "".join(words)
    return (
        "bsn" in words
        or squashed.startswith("bsn")
        or squashed.endswith("bsn")
        or any(word in squashed for word in _BSN_WORDS)
    )


def _holds_bsn(value: JsonValue) -> bool:
    """True if a JSON value holds a BSN anywhere: a key naming it or a number passing the check.

    Walked with a stack, not recursion: a deeply nested value must give a validation error,
    never a crash.
    """
    stack: list[JsonValue] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if looks_like_bsn(item):
                return True
        elif isinstance(item, int) and not isinstance(item, bool):
            if 10**8 <= item < 10**9 and passes_bsn_check(str(item)):
                return True
        elif isinstance(item, dict):
            if any(names_bsn(key) for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Identifier(_Model):
    """One identifier of the data subject, e.g. an email address or a customer number.

    Never a BSN (Art. 46 UAVG): neither as the type nor as a value that passes its 11-proef.

    `format` other than `raw`: the value is the lower-case hex digest of the identifier,
    normalised as a raw one is (`Identifier.normalise`), as an OpenDSR controller may send it
    (OpenDSR 2.0, identity formats `sha256`, `md5`, `sha1`). Only connectors that name the
    format in `identifier_formats` get such an identifier; they hash their own stored values
    the same way (`Identifier.digest`) to compare.
    """

    #: Digest length in hex characters per hashed format.
    HEX_LENGTHS: ClassVar[dict[str, int]] = {"sha256": 64, "sha1": 40, "md5": 32}

    type: Annotated[
        str,
        Field(
            pattern=IDENTIFIER_TYPE_PATTERN,
            examples=["email"],
            description="lower_snake_case. Never the BSN (`bsn`, `burgerservicenummer`, ...): "
            "refused under Art. 46 UAVG, as is any value of nine digits passing its 11-proef.",
        ),
    ]
    value: Annotated[str, Field(min_length=1, max_length=320)]
    format: Literal["raw", "sha256", "md5", "sha1"] = Field(
        default="raw",
        description="raw: the value itself. sha256, md5, sha1: the lower-case hex digest of "
        "the value normalised as a raw one is (e-mail trimmed and lower-cased, phone without "
        "spaces, brackets, dots and hyphens, any other type trimmed).",
    )

    @field_validator("type", mode="before")
    @classmethod
    def _not_bsn_type(cls, identifier_type: object) -> object:
        # Before the pattern, so `BSN` is refused for the law, not for its upper case.
        if isinstance(identifier_type, str) and names_bsn(identifier_type):
            raise PydanticCustomError(
                BSN_REFUSED, "a BSN is refused as an identifier type. " + BSN_RULE
            )
        return identifier_type

    @staticmethod
    def normalise(identifier_type: str, value: str) -> str:
        """A raw value in the form identifiers of `identifier_type` are compared (and hashed) in.

        Raises `ValueError` naming the type, never the value, when it is not valid.
        """
        value = value.strip()
        if identifier_type == IdentifierType.EMAIL:
            value = value.lower()
            if not _EMAIL_VALID.match(value):
                raise ValueError("identifier of type 'email' is not a valid email address")
        elif identifier_type == IdentifierType.PHONE:
            value = _PHONE_STRIP.sub("", value)
            if not _PHONE_VALID.match(value):
                raise ValueError(
                    "identifier of type 'phone' must be 6-15 digits, optionally starting with +"
                )
        if not value:
            raise ValueError(f"identifier of type {identifier_type!r} is empty")
        return value

    @staticmethod
    def digest(identifier_format: str, normalised: str) -> str:
        """The lower-case hex digest of a normalised value in a hashed `identifier_format`."""
        return hashlib.new(
            identifier_format, normalised.encode(), usedforsecurity=False
        ).hexdigest()

    @model_validator(mode="after")
    def _normalise(self) -> Identifier:
        # Messages name the identifier type, never the value: it is personal data.
        if self.format != "raw":
            value = self.value.strip().lower()
            length = self.HEX_LENGTHS[self.format]
            if len(value) != length or not _HEX.match(value):
                raise ValueError(
                    f"identifier of type {self.type!r} in format {self.format!r} must be "
                    f"{length} hexadecimal characters (the digest of the normalised value)"
                )
            object.__setattr__(self, "value", value)
            return self
        value = self.normalise(self.type, self.value)
        if looks_like_bsn(value):
            hint = (
                "; give a phone number in international form (+31...)"
                if self.type == "phone"
                else ""
            )
            raise PydanticCustomError(
                BSN_REFUSED,
                "identifier of type {type} is refused: it is nine digits passing the BSN "
                "11-proef. " + BSN_RULE + hint,
                {"type": repr(self.type)},
            )
        object.__setattr__(self, "value", value)
        return self


class Subject(_Model):
    """The person the request is about, known by one or more identifiers."""

    identifiers: Annotated[list[Identifier], Field(min_length=1, max_length=20)]

    def values(self, identifier_type: str) -> list[str]:
        """All values of one identifier type (e.g. every email address given)."""
        return [i.value for i in self.identifiers if i.type == identifier_type]

    def first(self, identifier_type: str) -> str | None:
        """The first value of one identifier type, or None."""
        found = self.values(identifier_type)
        return found[0] if found else None


class VerificationMethod(StrEnum):
    """How the controller established that the requester is the subject."""

    ID_DOCUMENT = "id_document"
    AUTHENTICATED_SESSION = "authenticated_session"
    EMAIL_CONFIRMATION = "email_confirmation"
    IN_PERSON = "in_person"
    OTHER = "other"


#: The evidence of an ID check is the record of it, never the copy of the document.
_COPY_DESTROYED = (
    "When the copy of an ID document used for the check was destroyed (none is kept: the "
    "evidence is this record of method, checker and time, never the copy)."
)


class IdentityVerification(_Model):
    """The state of the identity check at the time an event was published."""

    verified: bool = False
    method: VerificationMethod | None = None
    verified_at: AwareDatetime | None = None
    verified_by: Annotated[str | None, Field(max_length=128)] = Field(
        default=None, description="Staff member or service that checked; not the subject."
    )
    copy_destroyed_at: AwareDatetime | None = Field(default=None, description=_COPY_DESTROYED)

    @model_validator(mode="after")
    def _consistent(self) -> IdentityVerification:
        if self.verified and self.method is None:
            raise ValueError("a verified identity needs a method (e.g. 'id_document')")
        return self


class RequesterKind(StrEnum):
    """Who made the request: the subject, or someone on their behalf."""

    SELF = "self"
    PARENT_OR_GUARDIAN = "parent_or_guardian"  # for a child, or a person under guardianship
    REPRESENTATIVE = "representative"  # e.g. a lawyer, with a mandate


class Requester(_Model):
    """Who asks, when it is not (only) the subject: the letters go to them, the data concerns
    the subject.

    The GDPR does not bar a request made through someone else; the controller must then be sure
    the requester may act for the subject (EDPB Guidelines 01/2022 on the right of access, on
    requests made via third parties / proxies). So a parent, guardian or representative needs a
    mandate reference: where the mandate (power of attorney, proof of parental authority) is
    kept, never the document itself. A child may ask on their own (`kind=self`,
    `subject_is_child`): letters to a child are written in plain language (Art. 12(1) GDPR,
    recital 58).
    """

    kind: RequesterKind = RequesterKind.SELF
    mandate_ref: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=256,
            pattern=r"^\S",
            description="Where the mandate (power of attorney, proof of parental authority or "
            "guardianship) is kept, e.g. a document-management id; never the document, and no "
            "personal data.",
            examples=["dms://mandates/2026/0142"],
        ),
    ] = None
    subject_is_child: bool = Field(
        default=False,
        description="The subject is a child (under 16: Art. 8 GDPR, Art. 5 UAVG); letters "
        "addressed to the child are written in plain language (Art. 12(1), recital 58 GDPR).",
    )

    @model_validator(mode="after")
    def _mandate_for_others(self) -> Requester:
        if self.kind != RequesterKind.SELF and self.mandate_ref is None:
            raise ValueError(
                f"a request by a {self.kind.value.replace('_', ' ')} needs 'mandate_ref': a "
                "reference to where the mandate or proof of authority is kept"
            )
        if self.kind == RequesterKind.SELF and self.mandate_ref is not None:
            raise ValueError(
                "'mandate_ref' is only for a request made on someone else's behalf; set 'kind' "
                "to 'parent_or_guardian' or 'representative'"
            )
        return self


class FieldChange(_Model):
    """One correction asked for in a rectification request."""

    field: Annotated[str, Field(min_length=1, max_length=128, examples=["phone"])]
    value: JsonValue
    system: SystemName | None = Field(
        default=None, description="Only this system; all systems holding the field if omitted."
    )

    @model_validator(mode="after")
    def _not_bsn(self) -> FieldChange:
        # Art. 46 UAVG: a correction may not bring a BSN in either. Name the field, not the value.
        if names_bsn(self.field):
            raise PydanticCustomError(
                BSN_REFUSED, "a change to a BSN field is refused. " + BSN_RULE
            )
        if _holds_bsn(self.value):
            raise PydanticCustomError(
                BSN_REFUSED,
                "the new value is refused: it holds a BSN (nine digits passing its 11-proef, "
                "or a key naming it). " + BSN_RULE,
            )
        return self


class RequestSubmitted(_Model):
    """A data-subject request, as published by a web form, portal or support tool."""

    request_id: RequestId
    type: RequestType
    subject: Subject
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "NL"
    language: Literal["nl", "en"] = "nl"
    received_at: AwareDatetime
    verification: IdentityVerification = IdentityVerification()
    requested_by: Annotated[str, Field(min_length=1, max_length=128, examples=["web-form"])]
    changes: list[FieldChange] | None = Field(
        default=None, description="Rectification only: the fields to correct."
    )
    scope: list[SystemName] | None = Field(
        default=None, description="Only these systems of the register; all of them if omitted."
    )
    requester: Requester = Field(
        default_factory=Requester,
        description="Who asks; the subject themself if omitted. Letters go to the requester.",
    )
    recipients_requested: bool = Field(
        default=False,
        description="Rectification, erasure, restriction: the subject asks to be told the "
        "recipients that were notified (Art. 19, second sentence, GDPR); the letter names them.",
    )

    @model_validator(mode="after")
    def _changes_match_type(self) -> RequestSubmitted:
        if self.type == RequestType.RECTIFICATION and not self.changes:
            raise ValueError("a rectification request needs 'changes' (the fields to correct)")
        if self.type != RequestType.RECTIFICATION and self.changes:
            raise ValueError("'changes' is only allowed on rectification requests")
        return self

    @field_validator("scope")
    @classmethod
    def _scope_unique(cls, scope: list[str] | None) -> list[str] | None:
        if scope is not None and len(set(scope)) != len(scope):
            raise ValueError("scope lists a system twice")
        return scope


class IdentityVerified(_Model):
    """The subject's identity was checked; a waiting request may now be fanned out."""

    request_id: RequestId
    method: VerificationMethod
    verified_at: AwareDatetime
    verified_by: Annotated[str | None, Field(max_length=128)] = None
    copy_destroyed_at: AwareDatetime | None = Field(default=None, description=_COPY_DESTROYED)


class DeadlineExtended(_Model):
    """The controller extends a request's deadline once, by one or two months (Art. 12(3))."""

    request_id: RequestId
    months: Annotated[int, Field(ge=1, le=2)]
    reason: Annotated[
        str,
        Field(
            min_length=10,
            max_length=1000,
            description="Why, as the subject will be told. No personal data.",
        ),
    ]
    extended_at: AwareDatetime
    extended_by: Annotated[str | None, Field(max_length=128)] = None


class DecisionKind(StrEnum):
    """What an officer decided about a request (`DecisionRecorded`)."""

    APPROVE = "approve"  # where the policy requires approval before the request is carried out
    REFUSE = "refuse"  # the whole request (Art. 12(4): with the reasons and the remedies)
    REFUSE_SYSTEM = "refuse_system"  # one system's part only; the answer is partial
    LEGAL_HOLD = "legal_hold"  # erasure: one system's data is kept (Art. 17(3)(e))
    FEE = "fee"  # Art. 12(5)(a): a reasonable fee; the request waits for payment
    FEE_PAID = "fee_paid"


class RefusalReason(StrEnum):
    """Why a request (or one system's part) is refused; the letter words it per code."""

    MANIFESTLY_UNFOUNDED = "manifestly_unfounded"  # Art. 12(5)(b) GDPR
    EXCESSIVE = "excessive"  # Art. 12(5)(b) GDPR, in particular repetitive
    IDENTITY_NOT_ESTABLISHED = "identity_not_established"  # Art. 12(6), Art. 11(2) GDPR
    STATUTORY_EXEMPTION = "statutory_exemption"  # Art. 23 GDPR, Art. 41 UAVG
    OTHER = "other"  # free text (`explanation`) required


class HoldReason(StrEnum):
    """Why a system's data is kept despite an erasure request: Art. 17(3)(e) GDPR, "for the
    establishment, exercise or defence of legal claims"."""

    DISPUTE = "dispute"  # a dispute with the subject, pending or reasonably expected
    DEBT_COLLECTION = "debt_collection"  # an unpaid claim being collected
    OTHER_LEGAL_CLAIM = "other_legal_claim"  # free text (`explanation`) required


class DecisionRecorded(_Model):
    """An officer's decision on a request, published (signed) on the requests topic.

    Only publishers whose `events` allow-list in the publisher keys file names this event type
    may publish it; the default allow-list leaves it out. `explanation` is for the subject (in
    the letter); status events carry the decision, its code and who decided, never the text.
    """

    request_id: RequestId
    decision: DecisionKind
    reason_code: RefusalReason | None = Field(
        default=None, description="refuse and refuse_system: why (the letter words it)."
    )
    hold_reason: HoldReason | None = Field(
        default=None, description="legal_hold: which legal claim (Art. 17(3)(e) GDPR)."
    )
    system: SystemName | None = Field(
        default=None, description="refuse_system and legal_hold: the system concerned."
    )
    review_date: date | None = Field(
        default=None, description="legal_hold: when the hold is reviewed (the data kept until)."
    )
    fee_eur: Annotated[int | None, Field(ge=1, le=10_000)] = Field(
        default=None, description="fee: the amount in whole euros (Art. 12(5)(a))."
    )
    explanation: Annotated[str | None, Field(min_length=1, max_length=2000)] = Field(
        default=None,
        description="Shown to the subject in the letter; never in status events. Required for "
        "reason 'other' and hold reason 'other_legal_claim'.",
    )
    decided_by: Annotated[
        str, Field(min_length=1, max_length=128, description="Staff id of the officer.")
    ]
    decided_at: AwareDatetime

    @model_validator(mode="after")
    def _fields_match_decision(self) -> DecisionRecorded:
        kind = self.decision
        needs = {
            "reason_code": kind in (DecisionKind.REFUSE, DecisionKind.REFUSE_SYSTEM),
            "system": kind in (DecisionKind.REFUSE_SYSTEM, DecisionKind.LEGAL_HOLD),
            "hold_reason": kind == DecisionKind.LEGAL_HOLD,
            "review_date": kind == DecisionKind.LEGAL_HOLD,
            "fee_eur": kind == DecisionKind.FEE,
        }
        for name, needed in needs.items():
            given = getattr(self, name) is not None
            if needed and not given:
                raise ValueError(f"a '{kind}' decision needs '{name}'")
            if given and not needed:
                raise ValueError(f"'{name}' is not allowed on a '{kind}' decision")
        free_text = (
            self.reason_code == RefusalReason.OTHER
            or self.hold_reason == HoldReason.OTHER_LEGAL_CLAIM
        )
        if free_text and not (self.explanation and self.explanation.strip()):
            raise ValueError("reason 'other' needs an 'explanation' (shown to the subject)")
        return self


class DeliveryChannel(StrEnum):
    """How the answer reached the subject (`DeliveryRecorded`, and the orchestrator's e-mail)."""

    EMAIL = "email"
    POST = "post"
    ZIVVER = "zivver"  # secure e-mail (ZIVVER)
    IN_PERSON = "in_person"


class DeliveryRecorded(_Model):
    """An officer records that the answer reached the subject (`dsr.request.delivery_recorded.v1`).

    Art. 12(3) GDPR: the controller "shall provide information on action taken" within one
    month; a request counts as answered when the subject has the answer, not when the systems
    are done. Published signed on the requests topic by publishers whose `events` allow-list
    names this type (like decisions). Holds no address: only the channel, who and when.
    """

    request_id: RequestId
    channel: DeliveryChannel
    delivered_by: Annotated[
        str, Field(min_length=1, max_length=128, description="Staff id of the officer.")
    ]
    delivered_at: AwareDatetime


_B64URL = r"^[A-Za-z0-9_-]*$"


class SealedValue(BaseModel):
    """A value sealed with AES-256-GCM: readable only with its key and its context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alg: Literal["A256GCM"] = "A256GCM"
    nonce: Annotated[
        str, Field(min_length=16, max_length=16, pattern=_B64URL, description="96 bits, base64url.")
    ]
    ciphertext: Annotated[
        str,
        Field(
            min_length=22,
            pattern=_B64URL,
            description="Ciphertext followed by the 128-bit tag, base64url without padding.",
        ),
    ]


class _TaskEvent(_Model):
    """What every event about one task carries: which request, task, system, action, attempt."""

    request_id: RequestId
    task_id: Annotated[str, Field(min_length=1, max_length=256)]
    system: SystemName
    action: RequestType
    attempt: Annotated[int, Field(ge=1)] = 1


class TaskDispatched(_TaskEvent):
    """One request's work for one system, sent to the connector workers."""

    subject: Subject | None = Field(
        default=None,
        description="The subject in the clear: for tools and tests. The orchestrator always "
        "sends `sealed_subject` instead.",
    )
    sealed_subject: SealedValue | None = Field(
        default=None,
        description="The subject as JSON, sealed (AES-256-GCM) with the request's data key, "
        "bound to the request id and task id. Unreadable once the key is destroyed.",
    )
    changes: list[FieldChange] | None = None
    sealed_changes: SealedValue | None = Field(
        default=None, description="Rectification: `changes` as JSON, sealed like the subject."
    )
    language: Literal["nl", "en"] = "nl"
    deadline: AwareDatetime
    dispatched_at: AwareDatetime
    not_before: AwareDatetime | None = Field(
        default=None, description="A retry: the connector waits until this time."
    )

    @model_validator(mode="after")
    def _one_subject(self) -> TaskDispatched:
        if (self.subject is None) == (self.sealed_subject is None):
            raise ValueError("a task needs exactly one of 'subject' and 'sealed_subject'")
        if self.changes is not None and self.sealed_changes is not None:
            raise ValueError("a task has 'changes' or 'sealed_changes', not both")
        return self


class OutcomeStatus(StrEnum):
    """What one system reports for one task."""

    COMPLETED = "completed"
    NOT_FOUND = "not_found"
    RETAINED = "retained"
    MANUAL_ACTION_REQUIRED = "manual_action_required"
    FAILED = "failed"


class Counts(_Model):
    """How many records one system found and changed."""

    found: Annotated[int, Field(ge=0)] = 0
    deleted: Annotated[int, Field(ge=0)] = 0
    anonymised: Annotated[int, Field(ge=0)] = 0
    updated: Annotated[int, Field(ge=0)] = 0
    suppressed: Annotated[int, Field(ge=0)] = 0
    retained: Annotated[int, Field(ge=0)] = 0


class RetainedItem(_Model):
    """Records a system keeps despite the request, with the legal reason."""

    collection: str
    count: Annotated[int, Field(ge=0)]
    legal_basis: Annotated[str, Field(min_length=1, examples=["Art. 52 AWR (fiscal retention)"])]
    reason: str | None = None
    until: date | None = None


class Evidence(_Model):
    """Proof of what a system did, e.g. a vendor's job id; never personal data."""

    kind: Annotated[str, Field(examples=["vendor_job_id", "manual_confirmation"])]
    value: str


class Record(_Model):
    """One record found for the subject, with its provenance."""

    collection: str
    data: dict[str, JsonValue]
    others: list[Annotated[str, Field(pattern=r"^(/[^/]*)+$", max_length=512)]] = Field(
        default=[],  # pydantic copies it per record; a default_factory costs a signature
        # inspection in every model_construct, the export's hot path
        description="JSON Pointers (RFC 6901) into `data` whose values concern other people "
        "(participants, CCs, co-owners). The export redacts them or holds the record for an "
        "officer's review (Art. 15(4) GDPR).",
    )


class Attachment(_Model):
    """A file a person attached when completing a manual task, kept in the record store."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    path: Annotated[
        str, Field(min_length=1, max_length=1024, description="Relative to the record store.")
    ]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0, description="Bytes.")]
    media_type: Annotated[str, Field(max_length=128)] = "application/octet-stream"


class RecordsRef(_Model):
    """Where a connector stored the records it found: large results never travel in Kafka.

    The file is JSON Lines (one `Record` per line) in the record store shared by connector
    workers and the orchestrator (`DSR_RECORD_DIR`); `sha256` lets the reader prove it intact.
    A small result (up to `DSR_RECORD_INLINE_BYTES`, 64 KiB by default) has no file: its JSON
    Lines travel in `sealed`, encrypted with the request's data key and bound to `path`.
    """

    path: Annotated[
        str, Field(min_length=1, max_length=1024, description="Relative to the record store.")
    ]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0, description="Bytes.")]
    count: Annotated[int, Field(ge=0, description="Records.")]
    collections: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Records per collection."
    )
    sealed: SealedValue | None = Field(
        default=None,
        description="A small result's JSON Lines themselves, sealed (AES-256-GCM) with the "
        "request's data key and bound to `path`; then there is no file.",
    )


class TaskOutcome(_TaskEvent):
    """What a connector reports back for one task."""

    status: OutcomeStatus
    counts: Counts = Counts()
    records: list[Record] = Field(
        default_factory=list,
        description="Access and portability: what was found, when small and sent inline "
        "(manual completions, dry runs). Workers store records and send `records_ref`.",
    )
    records_ref: RecordsRef | None = Field(
        default=None, description="Access and portability: the stored records."
    )
    attachments: list[Attachment] = Field(
        default_factory=list,
        description="Manual completions: files a person attached (what they found), stored "
        "sealed in the record store and copied into the export with their hash.",
    )
    retained: list[RetainedItem] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    reason: Annotated[str | None, Field(max_length=2000)] = Field(
        default=None, description="Why it failed, was retained or needs a human. No personal data."
    )
    instructions: Annotated[str | None, Field(max_length=4000)] = Field(
        default=None, description="Manual action: what a person must do."
    )
    retryable: bool = False
    completed_at: AwareDatetime

    @model_validator(mode="after")
    def _reason_when_needed(self) -> TaskOutcome:
        if self.status in (OutcomeStatus.FAILED, OutcomeStatus.RETAINED) and not self.reason:
            raise ValueError(f"an outcome with status '{self.status}' needs a reason")
        if self.status == OutcomeStatus.MANUAL_ACTION_REQUIRED and not self.instructions:
            raise ValueError("a manual_action_required outcome needs instructions")
        return self


class RequestStatus(StrEnum):
    """Where a request is in its lifecycle."""

    AWAITING_VERIFICATION = "awaiting_verification"
    AWAITING_APPROVAL = "awaiting_approval"  # an officer must approve it first
    AWAITING_FEE = "awaiting_fee"  # a fee was charged (Art. 12(5)(a)); waiting for payment
    IN_PROGRESS = "in_progress"
    ACTION_REQUIRED = "action_required"
    STALLED = "stalled"  # a system gave no outcome in time; it was dispatched again
    COMPLETED = "completed"
    PARTIALLY_COMPLETED = "partially_completed"
    FAILED = "failed"
    REFUSED = "refused"
    #: The answer reached the subject (Art. 12(3)): after completed, partially_completed, refused.
    DELIVERED = "delivered"

    @property
    def is_final(self) -> bool:
        """True once the request will not change any more."""
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {
        RequestStatus.COMPLETED,
        RequestStatus.PARTIALLY_COMPLETED,
        RequestStatus.FAILED,
        RequestStatus.REFUSED,
        RequestStatus.DELIVERED,
    }
)


class SystemProgress(_Model):
    """One system's part of a request as seen on the status topic (no personal data)."""

    status: Literal["pending", "dispatched"] | OutcomeStatus
    attempt: int = 0
    counts: Counts = Counts()
    retained: list[RetainedItem] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    reason: str | None = None
    instructions: str | None = None
    retryable: bool = False
    stalled: bool = Field(
        default=False, description="No outcome came in time; the task was dispatched again."
    )
    updated_at: AwareDatetime | None = None
    decision: Literal["refuse_system", "legal_hold"] | None = Field(
        default=None,
        description="An officer refused this system's part or put its data on legal hold; "
        "`reason` then holds the code, never the officer's free text.",
    )


class StatusTrigger(StrEnum):
    """What caused a status event."""

    SUBMITTED = "submitted"
    VERIFIED = "verified"
    DISPATCHED = "dispatched"
    OUTCOME = "outcome"
    RETRY = "retry"
    EXTENDED = "extended"
    TIMEOUT = "timeout"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    FINISHED = "finished"
    SHREDDED = "shredded"  # the retention window passed; the personal data was destroyed
    #: A verification by a method the policy does not accept for the right; still waiting.
    VERIFICATION_REJECTED = "verification_rejected"
    DECIDED = "decided"  # an officer's decision (`DecisionRecorded`)
    #: The subject was reminded of the identity verification asked for (the `reminder` letter).
    REMINDED = "reminded"
    #: The request waits on the subject and the deadline comes near (earlier than due soon).
    WAITING_ON_SUBJECT = "waiting_on_subject"
    DELIVERED = "delivered"  # the answer reached the subject (e-mail, or `DeliveryRecorded`)
    #: Sending the answer by e-mail failed; it waits for another try or an officer.
    DELIVERY_FAILED = "delivery_failed"


class RequestStatusChanged(_Model):
    """Every state change of a request; dashboards build their view from these."""

    request_id: RequestId
    request_type: RequestType
    sequence: Annotated[int, Field(ge=1, description="Per request, increasing by one.")]
    status: RequestStatus
    previous_status: RequestStatus | None = None
    trigger: StatusTrigger
    reason: str | None = None
    systems_total: Annotated[int, Field(ge=0)]
    systems_done: Annotated[int, Field(ge=0)]
    systems: dict[str, SystemProgress] = Field(default_factory=dict)
    received_at: AwareDatetime
    verified_at: AwareDatetime | None = None
    deadline: AwareDatetime
    deadline_extended: bool = Field(
        default=False, description="Extended under Art. 12(3); the reason was given to the subject."
    )
    days_left: int
    due_soon: bool = False
    overdue: bool = False
    finished_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = Field(
        default=None, description="When the answer reached the subject (the deadline is met)."
    )
    delivery_channel: DeliveryChannel | None = Field(
        default=None, description="How it was delivered; never the address."
    )
    artifact: str | None = Field(default=None, description="Path or URL of the result.")
    occurred_at: AwareDatetime
    requester_kind: RequesterKind = Field(
        default=RequesterKind.SELF, description="Who asked (the kind only: no names)."
    )
    waiting_on_subject: bool = Field(
        default=False,
        description="The request waits on the subject (identity verification or a fee) and "
        "the deadline is near: warned earlier than `due_soon`.",
    )


class DeadLetter(_Model):
    """An event that could not be processed, kept with the reason so nothing is lost."""

    reason: Annotated[str, Field(description="What is wrong and how to fix it; no personal data.")]
    stage: Literal["envelope", "signature", "body", "process"] = Field(
        description="envelope: not a CloudEvent of ours; signature: not signed by a known "
        "publisher; body: the body does not validate; process: valid, but refused."
    )
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    ce_type: str | None = None
    value_base64: str = Field(
        description="The original message value, unchanged (its first 256 KiB if truncated)."
    )
    value_truncated: bool = Field(
        default=False,
        description="The value was larger than 256 KiB; the whole record stays on the source "
        "topic at this offset.",
    )
    value_withheld: bool = Field(
        default=False,
        description="The value is not kept here (`value_base64` is empty) because it holds data "
        "we may not store, such as a BSN (Art. 46 UAVG); the record stays on the source topic "
        "at this offset until that topic's retention removes it.",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    failed_at: AwareDatetime


EventBody = (
    RequestSubmitted
    | IdentityVerified
    | DeadlineExtended
    | DecisionRecorded
    | TaskDispatched
    | TaskOutcome
    | RequestStatusChanged
    | DeadLetter
)


__all__ = [
    "BSN_RULE",
    "Attachment",
    "Counts",
    "DeadLetter",
    "DeadlineExtended",
    "DecisionKind",
    "DecisionRecorded",
    "DeliveryChannel",
    "DeliveryRecorded",
    "EventBody",
    "Evidence",
    "FieldChange",
    "HoldReason",
    "Identifier",
    "IdentifierType",
    "IdentityVerification",
    "IdentityVerified",
    "OutcomeStatus",
    "Record",
    "RecordsRef",
    "RefusalReason",
    "RequestId",
    "RequestStatus",
    "RequestStatusChanged",
    "RequestSubmitted",
    "RequestType",
    "Requester",
    "RequesterKind",
    "RetainedItem",
    "StatusTrigger",
    "Subject",
    "SystemName",
    "SystemProgress",
    "TaskDispatched",
    "TaskOutcome",
    "VerificationMethod",
    "looks_like_bsn",
    "names_bsn",
    "passes_bsn_check",
]
