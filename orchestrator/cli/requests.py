"""`dsr submit`, `dsr verify-identity`, `dsr extend`, `dsr decide` and `dsr status`: requests from
a terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import (
    BOOTSTRAP_FILE,
    PUBLISHER_FILE,
    REQUEST_TYPES,
    VERIFICATION_METHODS,
    DsrCommand,
    DsrGroup,
    bootstrap_option,
    client_kafka,
    subject_identifiers,
    subject_options,
)

if TYPE_CHECKING:
    from orchestrator.intake.client import RequestPublisher
    from schemas.events import (
        FieldChange,
        IdentityVerification,
        Requester,
        RequestStatusChanged,
        RequestSubmitted,
    )
    from schemas.kafka import KafkaSettings
    from schemas.primitives.signing import RequestSigner


def _client_signer(kafka: KafkaSettings) -> RequestSigner | None:
    """The key a client command signs request events with: the DSR_PUBLISHER_* variables, else
    the local publisher of the embedded broker that `dsr up` started, when talking to it."""
    from schemas.primitives.signing import RequestSigner

    signer = RequestSigner.from_env()
    if (
        signer is None
        and PUBLISHER_FILE.exists()
        and BOOTSTRAP_FILE.exists()
        and kafka.bootstrap == BOOTSTRAP_FILE.read_text().strip()
    ):
        lines = PUBLISHER_FILE.read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        signer = RequestSigner.from_env(env)
    return signer


def _publisher(kafka: KafkaSettings) -> RequestPublisher:
    from orchestrator.intake.client import RequestPublisher

    return RequestPublisher(kafka, source="dsr-cli", signer=_client_signer(kafka))


def _changes(changes: tuple[str, ...]) -> list[FieldChange] | None:
    """--change FIELD=VALUE items as FieldChanges (None: no rectification asked for)."""
    from schemas.events import FieldChange

    if not changes:
        return None
    parsed = []
    for change in changes:
        field, sep, value = change.partition("=")
        if not sep:
            raise click.BadParameter(f"{change!r}: use FIELD=VALUE", param_hint="--change")
        parsed.append(FieldChange(field=field, value=value))
    return parsed


def _verification(verified: str | None, now: datetime) -> IdentityVerification:
    """--verified METHOD: checked `now`, by the CLI's user; else not (yet) checked."""
    from schemas.events import IdentityVerification, VerificationMethod

    if not verified:
        return IdentityVerification()
    return IdentityVerification(
        verified=True,
        method=VerificationMethod(verified),
        verified_at=now,
        verified_by="dsr-cli",
    )


def _build_request(
    request_id: str | None,
    request_type: str,
    identifiers: list[tuple[str, str]],
    verified: str | None,
    language: str,
    requested_by: str,
    scope: str | None,
    changes: tuple[str, ...],
    requester: Requester,
) -> RequestSubmitted:
    from schemas.events import Identifier, RequestSubmitted, RequestType, Subject

    now = datetime.now(UTC)
    return RequestSubmitted(
        request_id=request_id or f"cli-{now:%Y%m%d%H%M%S%f}",
        type=RequestType(request_type),
        subject=Subject(identifiers=[Identifier(type=t, value=v) for t, v in identifiers]),
        language=language,  # type: ignore[arg-type]
        received_at=now,
        verification=_verification(verified, now),
        requested_by=requested_by,
        changes=_changes(changes),
        scope=[s.strip() for s in scope.split(",")] if scope else None,
        requester=requester,
    )


def _requester(kind: str, mandate_ref: str | None, subject_is_child: bool) -> Requester:
    """--requester-kind, --mandate-ref and --subject-is-child as the request's requester."""
    from schemas.events import Requester, RequesterKind

    return Requester(
        kind=RequesterKind(kind), mandate_ref=mandate_ref, subject_is_child=subject_is_child
    )


@click.command(cls=DsrCommand)
@bootstrap_option
@click.option(
    "--file", "file_", type=click.File("rb"), help="A request body as JSON ('-' = stdin)."
)
@click.option("--id", "request_id", help="Request id (idempotency key); generated if omitted.")
@click.option("--type", "request_type", type=REQUEST_TYPES)
@subject_options
@click.option(
    "--verified",
    type=VERIFICATION_METHODS,
    help="Identity already verified, and how; omit to hold it until 'dsr verify-identity'.",
)
@click.option("--language", type=click.Choice(["nl", "en"]), default="nl", show_default=True)
@click.option("--requested-by", default="dsr-cli", show_default=True)
@click.option("--scope", help="Comma-separated system names (default: all).")
@click.option("--change", "changes", multiple=True, help="Rectification: FIELD=VALUE.")
@click.option(
    "--requester-kind",
    type=click.Choice(["self", "parent_or_guardian", "representative"]),
    default="self",
    show_default=True,
    help="Who asks; letters go to them, the data concerns the subject.",
)
@click.option(
    "--mandate-ref",
    help="Where the mandate or proof of authority is kept (needed unless --requester-kind self); "
    "a reference, never the document.",
)
@click.option(
    "--subject-is-child", is_flag=True, help="The subject is a child: plain-language letters."
)
@click.option("--wait", is_flag=True, help="Wait for the final status and print it.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait with --wait.")
def submit(
    bootstrap: str | None,
    file_: Any,
    request_id: str | None,
    request_type: str | None,
    email: tuple[str, ...],
    phone: tuple[str, ...],
    customer_id: tuple[str, ...],
    verified: str | None,
    language: str,
    requested_by: str,
    scope: str | None,
    changes: tuple[str, ...],
    requester_kind: str,
    mandate_ref: str | None,
    subject_is_child: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Publish a data-subject request (from flags or a JSON file)."""
    from pydantic import ValidationError

    from orchestrator.cli.errors import CommandError
    from schemas.envelope import describe_validation_error
    from schemas.events import RequestStatus, RequestSubmitted

    try:
        if file_ is not None:
            request = RequestSubmitted.model_validate_json(file_.read())
        else:
            if not request_type:
                raise click.UsageError("give --type (or --file)")
            identifiers = subject_identifiers(email, phone, customer_id)
            request = _build_request(
                request_id,
                request_type,
                identifiers,
                verified,
                language,
                requested_by,
                scope,
                changes,
                _requester(requester_kind, mandate_ref, subject_is_child),
            )
    except ValidationError as exc:
        raise CommandError(f"invalid request: {describe_validation_error(exc)}") from None
    kafka = client_kafka(bootstrap)
    with _publisher(kafka) as publisher:
        publisher.publish(request)
    click.echo(f"submitted {request.request_id}")
    if wait:
        status = asyncio.run(wait_final(kafka, [request.request_id], timeout))[request.request_id]
        print_status(status)
        if status is None or status.status != RequestStatus.COMPLETED:
            sys.exit(1)


@click.command("verify-identity", cls=DsrCommand)
@bootstrap_option
@click.argument("request_id")
@click.option("--method", type=VERIFICATION_METHODS, required=True)
@click.option("--by", "verified_by", help="Who checked (staff id).")
def verify_identity(
    bootstrap: str | None, request_id: str, method: str, verified_by: str | None
) -> None:
    """Record that the requester's identity was verified; the request is then fanned out."""
    from schemas.events import IdentityVerified, VerificationMethod

    event = IdentityVerified(
        request_id=request_id,
        method=VerificationMethod(method),
        verified_at=datetime.now(UTC),
        verified_by=verified_by,
    )
    with _publisher(client_kafka(bootstrap)) as publisher:
        publisher.verify_identity(event)
    click.echo(f"identity verified for {request_id}")


@click.command(cls=DsrCommand)
@bootstrap_option
@click.argument("request_id")
@click.option("--months", type=click.IntRange(1, 2), required=True, help="1 or 2 months.")
@click.option(
    "--reason",
    required=True,
    help="Why, as the subject will be told (e.g. 'many systems, complex request'). "
    "No personal data.",
)
@click.option("--by", "extended_by", help="Who decided (staff id).")
def extend(
    bootstrap: str | None, request_id: str, months: int, reason: str, extended_by: str | None
) -> None:
    """Extend a request's deadline once by one or two months (Art. 12(3) GDPR)."""
    from pydantic import ValidationError

    from orchestrator.cli.errors import CommandError
    from schemas.envelope import describe_validation_error
    from schemas.events import DeadlineExtended

    try:
        event = DeadlineExtended(
            request_id=request_id,
            months=months,
            reason=reason,
            extended_at=datetime.now(UTC),
            extended_by=extended_by,
        )
    except ValidationError as exc:
        raise CommandError(f"invalid extension: {describe_validation_error(exc)}") from None
    with _publisher(client_kafka(bootstrap)) as publisher:
        publisher.extend_deadline(event)
    click.echo(
        f"asked to extend {request_id} by {months} month(s); the subject must be told the reason "
        "(see 'dsr status' for the new deadline)"
    )


@click.group(cls=DsrGroup)
def decide() -> None:
    """An officer's decision on a request, published signed (`dsr.request.decision_recorded.v1`).

    The publisher key must be allowed to decide: its `events` in the publisher keys file list
    dsr.request.decision_recorded.v1. Status events show the decision, its code and --by; the
    --explanation is shown only to the subject, in the letter.
    """


_REFUSAL_CODES = click.Choice(
    [
        "manifestly_unfounded",
        "excessive",
        "identity_not_established",
        "statutory_exemption",
        "other",
    ]
)
_by_option = click.option("--by", "decided_by", required=True, help="Who decided (staff id).")
_explanation_option = click.option(
    "--explanation", help="Shown to the subject in the letter; required with reason 'other'."
)


def _publish_decision(bootstrap: str | None, fields: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from orchestrator.cli.errors import CommandError
    from schemas.envelope import describe_validation_error
    from schemas.events import DecisionRecorded

    given = {k: v for k, v in fields.items() if v is not None}
    try:
        event = DecisionRecorded.model_validate({**given, "decided_at": datetime.now(UTC)})
    except ValidationError as exc:
        raise CommandError(f"invalid decision: {describe_validation_error(exc)}") from None
    with _publisher(client_kafka(bootstrap)) as publisher:
        publisher.publish_decision(event)
    click.echo(f"{event.decision} published for {event.request_id} (see 'dsr status')")


def _plain_decision(name: str, kind: str, help_text: str) -> click.Command:
    """A decision command with nothing but the request and who decided."""

    @decide.command(name, help=help_text)
    @bootstrap_option
    @click.argument("request_id")
    @_by_option
    def command(bootstrap: str | None, request_id: str, decided_by: str) -> None:
        fields = {"request_id": request_id, "decision": kind, "decided_by": decided_by}
        _publish_decision(bootstrap, fields)

    return command


decide_approve = _plain_decision("approve", "approve", "Approve a request that waits for approval.")
decide_fee_paid = _plain_decision(
    "fee-paid", "fee_paid", "Confirm the fee is paid: the request goes on."
)


@decide.command("refuse", short_help="Refuse the whole request; the letter is written at once.")
@bootstrap_option
@click.argument("request_id")
@click.option("--reason", "reason_code", type=_REFUSAL_CODES, required=True, help="Why.")
@_explanation_option
@_by_option
def decide_refuse(
    bootstrap: str | None,
    request_id: str,
    reason_code: str,
    explanation: str | None,
    decided_by: str,
) -> None:
    """Refuse the whole request at once; the refusal letter (Art. 12(4) GDPR) is written now.

    Reasons: manifestly_unfounded or excessive (Art. 12(5)(b)), identity_not_established
    (Art. 12(6), 11(2)), statutory_exemption (Art. 23 GDPR, Art. 41 UAVG), other.
    """
    fields = {"request_id": request_id, "decision": "refuse", "reason_code": reason_code}
    _publish_decision(bootstrap, {**fields, "explanation": explanation, "decided_by": decided_by})


@decide.command("refuse-system", short_help="Refuse one system's part; the answer is partial.")
@bootstrap_option
@click.argument("request_id")
@click.option("--system", required=True, help="The system whose part is refused.")
@click.option("--reason", "reason_code", type=_REFUSAL_CODES, required=True, help="Why.")
@_explanation_option
@_by_option
def decide_refuse_system(
    bootstrap: str | None,
    request_id: str,
    system: str,
    reason_code: str,
    explanation: str | None,
    decided_by: str,
) -> None:
    """Refuse one system's part: it is not carried out there, the answer is partial."""
    fields: dict[str, Any] = {"request_id": request_id, "decision": "refuse_system"}
    fields["system"] = system
    fields |= {"reason_code": reason_code, "explanation": explanation, "decided_by": decided_by}
    _publish_decision(bootstrap, fields)


@decide.command("hold", short_help="Put one system on legal hold (erasure).")
@bootstrap_option
@click.argument("request_id")
@click.option("--system", required=True, help="The system whose data is kept.")
@click.option(
    "--reason",
    "hold_reason",
    type=click.Choice(["dispute", "debt_collection", "other_legal_claim"]),
    required=True,
    help="The legal claim (Art. 17(3)(e) GDPR).",
)
@click.option("--review-date", type=click.DateTime(["%Y-%m-%d"]), required=True, help="YYYY-MM-DD.")
@_explanation_option
@_by_option
def decide_hold(
    bootstrap: str | None,
    request_id: str,
    system: str,
    hold_reason: str,
    review_date: datetime,
    explanation: str | None,
    decided_by: str,
) -> None:
    """Put one system on legal hold for an erasure request: its data is kept and reported as
    held, with the reason and review date (Art. 17(3)(e) GDPR). Before the system's task is sent.
    """
    fields: dict[str, Any] = {"request_id": request_id, "decision": "legal_hold"}
    fields["system"] = system
    fields |= {"hold_reason": hold_reason, "review_date": review_date.date()}
    _publish_decision(bootstrap, {**fields, "explanation": explanation, "decided_by": decided_by})


@decide.command("fee", short_help="Charge a reasonable fee; the request waits for payment.")
@bootstrap_option
@click.argument("request_id")
@click.option("--eur", "fee_eur", type=click.IntRange(1, 10_000), required=True, help="Amount.")
@_by_option
def decide_fee(bootstrap: str | None, request_id: str, fee_eur: int, decided_by: str) -> None:
    """Charge a reasonable fee (Art. 12(5)(a) GDPR): the request waits until `fee-paid`."""
    fields = {"request_id": request_id, "decision": "fee", "fee_eur": fee_eur}
    _publish_decision(bootstrap, {**fields, "decided_by": decided_by})


@click.command(cls=DsrCommand)
@bootstrap_option
@click.argument("request_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(bootstrap: str | None, request_id: str | None, as_json: bool) -> None:
    """Show the status of all requests, or one request in detail."""
    from orchestrator.cli.errors import CommandError
    from orchestrator.status.view import read_status

    view = asyncio.run(read_status(client_kafka(bootstrap)))
    if request_id:
        found = view.get(request_id)
        if found is None:
            raise CommandError(f"no status events for request {request_id!r}")
        if as_json:
            click.echo(found.model_dump_json(indent=2))
        else:
            print_status(found)
        return
    if as_json:
        click.echo(
            json.dumps([s.model_dump(mode="json") for s in view.requests.values()], indent=2)
        )
        return
    _print_table(list(view.requests.values()))


def _print_table(statuses: list[RequestStatusChanged]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("request", "type", "status", "systems", "deadline", "days left")
    for s in sorted(statuses, key=lambda s: s.received_at):
        flag = " [red]OVERDUE[/]" if s.overdue else (" [yellow]due soon[/]" if s.due_soon else "")
        table.add_row(
            s.request_id,
            s.request_type.value,
            s.status.value + flag,
            f"{s.systems_done}/{s.systems_total}",
            s.deadline.date().isoformat(),
            str(s.days_left),
        )
    Console().print(table)


def print_status(s: RequestStatusChanged | None) -> None:
    """A request's status with one line per system (no personal data: status events hold none)."""
    if s is None:
        click.echo("no final status in time")
        return
    click.echo(
        f"{s.request_id}: {s.request_type.value} {s.status.value} "
        f"({s.systems_done}/{s.systems_total} systems, deadline {s.deadline.date()})"
    )
    if s.reason:
        click.echo(f"  reason: {s.reason}")
    width = max((len(name) for name in s.systems), default=0) + 1
    for name, p in s.systems.items():
        detail = ", ".join(f"{k} {v}" for k, v in p.counts.model_dump().items() if v)
        click.echo(
            f"  {name:<{width}} {p.status:<23} {detail}" + (f"  ({p.reason})" if p.reason else "")
        )
    if s.artifact:
        click.echo(f"  result: {s.artifact}")


@click.command(cls=DsrCommand)
@bootstrap_option
@click.argument("request_id")
@click.option(
    "--channel",
    type=click.Choice(["post", "zivver", "in_person", "email"]),
    required=True,
    help="How the answer reached the subject.",
)
@click.option("--by", "delivered_by", required=True, help="Who delivered it (staff id).")
def deliver(bootstrap: str | None, request_id: str, channel: str, delivered_by: str) -> None:
    """Record that a finished request's answer reached the subject (Art. 12(3) GDPR).

    The deadline is met only by delivery. Published signed
    (`dsr.request.delivery_recorded.v1`): the publisher key must list that type in its `events`
    in the publisher keys file, as for decisions. No address is recorded, only the channel.
    """
    from pydantic import ValidationError

    from orchestrator.cli.errors import CommandError
    from schemas.envelope import describe_validation_error
    from schemas.events import DeliveryChannel, DeliveryRecorded

    try:
        event = DeliveryRecorded(
            request_id=request_id,
            channel=DeliveryChannel(channel),
            delivered_by=delivered_by,
            delivered_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        raise CommandError(f"invalid delivery: {describe_validation_error(exc)}") from None
    with _publisher(client_kafka(bootstrap)) as publisher:
        publisher.record_delivery(event)
    click.echo(f"delivery via {channel} recorded for {request_id} (see 'dsr status')")


async def wait_final(
    kafka: KafkaSettings, request_ids: list[str], timeout: float
) -> dict[str, RequestStatusChanged | None]:
    """The final status of each request, or None for those not final within `timeout` seconds."""
    from orchestrator.status.view import read_status

    def done(view: Any) -> bool:
        return all((s := view.get(r)) is not None and s.status.is_final for r in request_ids)

    view = await read_status(kafka, until=done, timeout=timeout)
    return {r: view.get(r) for r in request_ids}


__all__ = [
    "decide",
    "deliver",
    "extend",
    "print_status",
    "status",
    "submit",
    "verify_identity",
    "wait_final",
]
