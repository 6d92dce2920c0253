"""Letters to the data subject, in the request's language (Dutch by default).

Besides the export (access, portability) and the certificate (erasure), a request can end in:

- a **refusal** (Art. 12(4)): the reason, and the subject's right to complain to the
  Autoriteit Persoonsgegevens and to go to court;
- a **"what is missing"** letter when a request was carried out only in part (or not at all):
  per system what was done, what is missing and why;
- a **confirmation** for rectification, restriction, objection and consent withdrawal: per
  system what it did;
- an **extension notice** (Art. 12(3)) when the deadline is moved: the new deadline and why;
- an **ID request** (Art. 12(6)) at once when the right needs an identity check the request has
  not had (`orchestrator.lifecycle.verification`): the accepted ways, what to black out on a
  copy (photo, MRZ, document number, BSN), the KopieID app, and that the copy is destroyed after
  the check. From its own template, `templates/id_request.html`;
- a **recipients** letter, when the subject of an erasure asked to be told the recipients of
  their data (`RequestSubmitted.recipients_requested`, Art. 19 GDPR, second sentence) and no
  other letter goes out; a confirmation or "what is missing" letter names them itself. Names
  and categories come from `orchestrator.artifacts.notifications.select`: who was told;
- a **reminder** of it, once, when nothing arrived (`orchestrator.lifecycle.reminders`): the
  same letter, saying when it was first asked.

Letters go to the **requester** (`schemas.events.Requester`): a parent, guardian or
representative reads that the letter is addressed to them and the request and data concern the
subject; a child who asked themself gets a summary in plain language at the top (Art. 12(1)
GDPR: information "in particular for any information addressed specifically to a child";
recital 58: "such a clear and plain language that the child can easily understand"). The part
comes from `templates/_requester.html`, texts in `requester.texts.yaml`.

Every letter is a standalone HTML page from `templates/letter.html` (texts beside it in
`letter.texts.yaml`), with everything escaped. Letters carry no identifier of the subject (they
are sent through the channel the request came in on) and no internal instructions meant for
staff.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

from orchestrator.artifacts.notifications import NOTIFIED, select
from orchestrator.artifacts.render import (
    AP_COMPLAINT_URL,
    Language,
    Tone,
    render_document,
    texts_in,
)
from orchestrator.lifecycle import decisions
from orchestrator.lifecycle.reducer import RequestState
from orchestrator.lifecycle.verification import VerificationPolicy
from schemas.events import (
    DecisionKind,
    OutcomeStatus,
    Requester,
    RequestStatus,
    RequestType,
    SystemProgress,
)
from schemas.primitives.files import atomic_write
from schemas.register import Register

DocumentKind = Literal[
    "refusal", "missing", "confirmation", "extension", "id_request", "reminder", "fee", "recipients"
]

#: Requests whose completion is confirmed by letter (access has its export, erasure its
#: certificate).
CONFIRMED = frozenset(
    {
        RequestType.RECTIFICATION,
        RequestType.RESTRICTION,
        RequestType.OBJECTION,
        RequestType.CONSENT_WITHDRAWAL,
    }
)


def document_kind(name: str) -> DocumentKind:
    """`name` (e.g. from `Effects.notices`) as a letter kind; ValueError if no letter has it."""
    kinds = get_args(DocumentKind)
    if name not in kinds:
        raise ValueError(f"no letter of kind {name!r}; known: {', '.join(kinds)}")
    return cast(DocumentKind, name)


def documents_for(state: RequestState) -> list[DocumentKind]:
    """The letters a finished request gets (besides its export or certificate)."""
    request = state.request
    if request is None or state.status is None:
        return []
    if state.status == RequestStatus.REFUSED:
        return ["refusal"]
    if request.type in CONFIRMED:
        return ["confirmation"]
    if state.status in (RequestStatus.PARTIALLY_COMPLETED, RequestStatus.FAILED):
        return ["missing"]
    if request.recipients_requested and request.type in NOTIFIED:
        return ["recipients"]
    return []


def render(
    kind: DocumentKind,
    state: RequestState,
    register: Register,
    *,
    now: datetime,
    policy: VerificationPolicy | None = None,
) -> str:
    """One letter in the request's language, as a standalone HTML page (`templates/letter.html`;
    the ID request from `templates/id_request.html`, with the methods `policy` accepts)."""
    request = state.request
    assert request is not None
    if kind in ("id_request", "reminder"):
        return _render_id_request(kind, state, register, policy or VerificationPolicy(), now=now)
    titles = {s.name: s.display_name for s in register.systems}
    return render_document(
        "letter",
        request.language,
        kind=kind,
        state=state,
        request=request,
        controller=register.controller,
        partial=state.status != RequestStatus.COMPLETED,
        systems=[_system(n, titles.get(n, n), state.systems[n]) for n in sorted(state.systems)],
        **_addressed(request.language, request.requester, _tone(register)),
        # Officers' decisions: the refusal's code and explanation, and per system a refusal
        # or a legal hold (`orchestrator.lifecycle.decisions`).
        refusal=decisions.refusal(state.decisions),
        fee=next(
            (d.fee_eur for d in reversed(state.decisions) if d.decision == DecisionKind.FEE), None
        ),
        decided={n: decisions.system_decision(n, state.decisions) for n in state.systems},
        recipients=_recipients(state, register),
        now=now,
    )


def _recipients(state: RequestState, register: Register) -> list[dict[str, str]] | None:
    """Art. 19 GDPR, second sentence: the recipients told of the request, by name and category,
    when the subject asked for them; None when they did not ask (the letter then says nothing)."""
    request = state.request
    if request is None or not request.recipients_requested or request.type not in NOTIFIED:
        return None
    return [{"name": n.name, "category": n.category.value} for n in select(state, register)]


def write(
    kind: DocumentKind,
    state: RequestState,
    register: Register,
    directory: Path,
    *,
    now: datetime,
    policy: VerificationPolicy | None = None,
) -> Path:
    """Render one letter in the request's language and write it atomically."""
    assert state.request is not None
    path = directory / state.request_id / f"{kind}.{state.request.language}.html"
    atomic_write(path, render(kind, state, register, now=now, policy=policy).encode())
    return path


def _render_id_request(
    kind: DocumentKind,
    state: RequestState,
    register: Register,
    policy: VerificationPolicy,
    *,
    now: datetime,
) -> str:
    """The ID request (or its reminder): the methods the policy accepts for the right, the
    rules for a copy."""
    request = state.request
    assert request is not None
    return render_document(
        "id_request",
        request.language,
        kind=kind,
        reminder=kind == "reminder",
        **_addressed(request.language, request.requester, _tone(register)),
        state=state,
        request=request,
        controller=register.controller,
        methods=[m.value for m in policy.accepted(request.type)],
        rights=texts_in("letter", request.language, _tone(register))["rights"],
        now=now,
    )


def _addressed(language: Language, requester: Requester, tone: Tone) -> dict[str, Any]:
    """What `templates/_requester.html` needs: who asked, and its texts as `who`."""
    return {"requester": requester, "who": texts_in("requester", language, tone)}


def _tone(register: Register) -> Tone:
    """How the register's controller addresses readers in Dutch (u or je)."""
    return register.controller.tone if register.controller is not None else "u"


def _system(name: str, title: str, progress: SystemProgress) -> dict[str, Any]:
    """What one system did and what is missing, decided here; the template words it.

    `done` is a list of (fact, value): a count name with its number, `not_found`, `manual`, or
    `kept` with a retained item.
    """
    status = progress.status
    done: list[tuple[str, Any]]
    if status == OutcomeStatus.NOT_FOUND:
        done = [("not_found", None)]
    else:
        done = [(key, value) for key, value in progress.counts.model_dump().items() if value]
    if any(e.kind == "manual_confirmation" for e in progress.evidence):
        done.append(("manual", None))
    done += [("kept", item) for item in progress.retained]
    missing = None
    if status == OutcomeStatus.FAILED:
        missing = "failed"
    elif status in ("pending", "dispatched", OutcomeStatus.MANUAL_ACTION_REQUIRED):
        missing = "pending"
    return {
        "name": name,
        "title": title,
        "done": done,
        "missing": missing,
        "reason": progress.reason,
    }


__all__ = [
    "AP_COMPLAINT_URL",
    "CONFIRMED",
    "DocumentKind",
    "document_kind",
    "documents_for",
    "render",
    "write",
]
