"""Letters to the data subject, in the request's language (Dutch by default).

Besides the export (access, portability) and the certificate (erasure), a request can end in:

- a **refusal** (Art. 12(4)): the reason, and the subject's right to complain to the
  Autoriteit Persoonsgegevens and to go to court;
- a **"what is missing"** letter when a request was carried out only in part (or not at all):
  per system what was done, what is missing and why;
- a **confirmation** for rectification, restriction, objection and consent withdrawal: per
  system what it did;
- an **extension notice** (Art. 12(3)) when the deadline is moved: the new deadline and why.

Every letter is a standalone HTML page with everything escaped. Letters carry no identifier of
the subject (they are sent through the channel the request came in on) and no internal
instructions meant for staff.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.artifacts.export import AP_URL
from orchestrator.lifecycle.reducer import RequestState
from schemas.events import OutcomeStatus, RequestStatus, RequestType, SystemProgress
from schemas.primitives.files import atomic_write
from schemas.register import Register

Language = Literal["nl", "en"]
DocumentKind = Literal["refusal", "missing", "confirmation", "extension"]

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

_RIGHTS: dict[Language, dict[RequestType, str]] = {
    "nl": {
        RequestType.ACCESS: "inzage (artikel 15 AVG)",
        RequestType.PORTABILITY: "gegevensoverdraagbaarheid (artikel 20 AVG)",
        RequestType.ERASURE: "verwijdering (artikel 17 AVG)",
        RequestType.RECTIFICATION: "rectificatie (artikel 16 AVG)",
        RequestType.RESTRICTION: "beperking van de verwerking (artikel 18 AVG)",
        RequestType.OBJECTION: "bezwaar (artikel 21 AVG)",
        RequestType.CONSENT_WITHDRAWAL: "intrekking van toestemming (artikel 7, lid 3, AVG)",
    },
    "en": {
        RequestType.ACCESS: "access (Article 15 GDPR)",
        RequestType.PORTABILITY: "data portability (Article 20 GDPR)",
        RequestType.ERASURE: "erasure (Article 17 GDPR)",
        RequestType.RECTIFICATION: "rectification (Article 16 GDPR)",
        RequestType.RESTRICTION: "restriction of processing (Article 18 GDPR)",
        RequestType.OBJECTION: "objection (Article 21 GDPR)",
        RequestType.CONSENT_WITHDRAWAL: "withdrawal of consent (Article 7(3) GDPR)",
    },
}

_T: dict[Language, dict[str, Any]] = {
    "nl": {
        "refusal": "Uw verzoek is geweigerd",
        "missing": "Uw verzoek is niet volledig uitgevoerd",
        "confirmation": "Bevestiging: uw verzoek is uitgevoerd",
        "confirmation_partial": "Uw verzoek is deels uitgevoerd",
        "extension": "De termijn voor uw verzoek is verlengd",
        "request": "Verzoek",
        "right": "Uw verzoek om",
        "received": "Ontvangen op",
        "deadline": "Uiterste datum",
        "date": "Datum van deze brief",
        "controller": "Verwerkingsverantwoordelijke",
        "refusal_intro": "Wij hebben uw verzoek niet uitgevoerd. De reden:",
        "missing_intro": "Wij hebben uw verzoek niet in alle systemen kunnen uitvoeren. Per "
        "systeem leest u hieronder wat wel is gedaan, wat ontbreekt en waarom. Wij werken aan "
        "het ontbrekende deel en laten het u weten zodra het is uitgevoerd.",
        "confirmation_intro": "Wij hebben uw verzoek uitgevoerd. Per systeem leest u hieronder "
        "wat er is gedaan.",
        "extension_intro": "Wij hebben meer tijd nodig om uw verzoek zorgvuldig af te handelen "
        "en verlengen de termijn daarom eenmalig, zoals artikel 12, lid 3, AVG toestaat.",
        "extension_reason": "De reden",
        "extension_new": "Nieuwe uiterste datum",
        "extension_old": "Oorspronkelijke uiterste datum",
        "system": "Systeem",
        "done": "Wat is gedaan",
        "what_missing": "Wat ontbreekt",
        "why": "Waarom",
        "kept": "Bewaard op grond van een wettelijke plicht",
        "until": "tot",
        "nothing_missing": "—",
        "everything": "het verzoek in dit systeem",
        "pending": "Een medewerker moet dit nog met de hand uitvoeren.",
        "failed": "Het systeem kon het verzoek niet uitvoeren.",
        "not_found": "Geen gegevens over u gevonden.",
        "manual": "Met de hand uitgevoerd door een medewerker.",
        "records": "gegevens",
        "complaint": "Bent u het hier niet mee eens? U kunt een klacht indienen bij de "
        "Autoriteit Persoonsgegevens",
        "court": "en u kunt zich tot de rechter wenden.",
        "contact": "Vragen? Neem contact op met",
        "counts": {
            "found": "gevonden",
            "deleted": "verwijderd",
            "anonymised": "geanonimiseerd",
            "updated": "gecorrigeerd",
            "suppressed": "afgeschermd of stopgezet",
            "retained": "bewaard",
        },
    },
    "en": {
        "refusal": "Your request has been refused",
        "missing": "Your request has not been carried out in full",
        "confirmation": "Confirmation: your request has been carried out",
        "confirmation_partial": "Your request has been carried out in part",
        "extension": "The deadline for your request has been extended",
        "request": "Request",
        "right": "Your request for",
        "received": "Received on",
        "deadline": "Deadline",
        "date": "Date of this letter",
        "controller": "Controller",
        "refusal_intro": "We have not carried out your request. The reason:",
        "missing_intro": "We could not carry out your request in every system. Below, per "
        "system, is what was done, what is missing and why. We are working on the missing part "
        "and will let you know once it is done.",
        "confirmation_intro": "We have carried out your request. Below, per system, is what "
        "was done.",
        "extension_intro": "We need more time to handle your request with care, so we extend "
        "the deadline once, as Article 12(3) GDPR allows.",
        "extension_reason": "The reason",
        "extension_new": "New deadline",
        "extension_old": "Original deadline",
        "system": "System",
        "done": "What was done",
        "what_missing": "What is missing",
        "why": "Why",
        "kept": "Kept under a legal obligation",
        "until": "until",
        "nothing_missing": "—",
        "everything": "the request in this system",
        "pending": "A member of staff still has to carry it out by hand.",
        "failed": "The system could not carry out the request.",
        "not_found": "No data about you was found.",
        "manual": "Carried out by hand by a member of staff.",
        "records": "records",
        "complaint": "If you disagree, you can lodge a complaint with the Dutch Data Protection "
        "Authority (Autoriteit Persoonsgegevens)",
        "court": "and you can go to court.",
        "contact": "Questions? Contact",
        "counts": {
            "found": "found",
            "deleted": "deleted",
            "anonymised": "anonymised",
            "updated": "corrected",
            "suppressed": "restricted or stopped",
            "retained": "kept",
        },
    },
}

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a;line-height:1.45}table{border-collapse:collapse;margin:1rem 0}"
    "td,th{border:1px solid #bbb;padding:.3rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}.meta th{background:none;font-weight:600}"
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


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
    return []


def render(
    kind: DocumentKind,
    state: RequestState,
    register: Register,
    *,
    now: datetime,
    language: Language | None = None,
) -> str:
    """One letter as a standalone HTML page."""
    request = state.request
    assert request is not None
    lang: Language = language or request.language
    t = _T[lang]
    titles = {s.name: s.display_name for s in register.systems}
    title = t[kind]
    if kind == "confirmation" and state.status != RequestStatus.COMPLETED:
        title = t["confirmation_partial"]
    controller = register.controller
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{_e(title)} - {_e(state.request_id)}</title><style>{_CSS}</style></head><body>",
        f'<h1 data-document="{kind}">{_e(title)}</h1>',
        '<table class="meta">',
        _row(t["request"], state.request_id),
        _row(t["right"], _RIGHTS[lang][request.type]),
        _row(t["received"], _day(request.received_at)),
        _row(t["deadline"], _day(state.deadline)),
        _row(t["date"], _day(now)),
    ]
    if controller is not None:
        out.append(_row(t["controller"], controller.name))
    out.append("</table>")
    if kind == "refusal":
        out.append(f"<p>{_e(t['refusal_intro'])}</p>")
        out.append(f'<blockquote data-reason="refusal">{_e(state.reason)}</blockquote>')
    elif kind == "extension":
        extension = state.extension
        out.append(f"<p>{_e(t['extension_intro'])}</p><table>")
        out.append(_row(t["extension_reason"], extension.reason if extension else None))
        out.append(_row(t["extension_old"], _day(state.original_deadline)))
        out.append(_row(t["extension_new"], _day(state.deadline)))
        out.append("</table>")
    else:
        intro = t["confirmation_intro"] if kind == "confirmation" else t["missing_intro"]
        if kind == "confirmation" and state.status != RequestStatus.COMPLETED:
            intro = t["missing_intro"]
        out.append(f"<p>{_e(intro)}</p>")
        out.append(_systems_table(state, titles, t))
    if kind in ("refusal", "missing") or state.status != RequestStatus.COMPLETED:
        out.append(
            f'<p data-complaint>{_e(t["complaint"])}: <a href="{_e(AP_URL)}">{_e(AP_URL)}</a> '
            f"{_e(t['court'])}</p>"
        )
    if controller is not None and (controller.contact or controller.dpo):
        out.append(f"<p>{_e(t['contact'])} {_e(controller.dpo or controller.contact)}.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write(
    kind: DocumentKind,
    state: RequestState,
    register: Register,
    directory: Path,
    *,
    now: datetime,
) -> Path:
    """Render one letter in the request's language and write it atomically."""
    assert state.request is not None
    language = state.request.language
    path = directory / state.request_id / f"{kind}.{language}.html"
    atomic_write(path, render(kind, state, register, now=now).encode())
    return path


def _systems_table(state: RequestState, titles: dict[str, str], t: dict[str, Any]) -> str:
    rows = [
        f"<table data-systems><tr><th>{_e(t['system'])}</th><th>{_e(t['done'])}</th>"
        f"<th>{_e(t['what_missing'])}</th><th>{_e(t['why'])}</th></tr>"
    ]
    for name in sorted(state.systems):
        progress = state.systems[name]
        done, missing, why = _describe(progress, t)
        rows.append(
            f'<tr data-system="{_e(name)}"><td>{_e(titles.get(name, name))}</td>'
            f"<td>{done}</td><td>{_e(missing)}</td><td>{_e(why)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _describe(progress: SystemProgress, t: dict[str, Any]) -> tuple[str, str, str]:
    """(what was done as HTML, what is missing, why) for one system."""
    counts = progress.counts.model_dump()
    done = [f"{value} {t['records']} {t['counts'][key]}" for key, value in counts.items() if value]
    status = progress.status
    if status == OutcomeStatus.NOT_FOUND:
        done = [t["not_found"]]
    if any(e.kind == "manual_confirmation" for e in progress.evidence):
        done.append(t["manual"])
    for item in progress.retained:
        until = f" {t['until']} {item.until.isoformat()}" if item.until else ""
        done.append(f"{t['kept']}: {item.collection} ({item.count}){until}, {item.legal_basis}")
    done_html = "<br>".join(_e(d) for d in done) or _e(t["nothing_missing"])
    if status == OutcomeStatus.FAILED:
        return done_html, t["everything"], progress.reason or t["failed"]
    if status in ("pending", "dispatched", OutcomeStatus.MANUAL_ACTION_REQUIRED):
        return done_html, t["everything"], t["pending"]
    return done_html, t["nothing_missing"], ""


def _row(label: str, value: object) -> str:
    return f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>"


def _day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "—"


__all__ = ["CONFIRMED", "documents_for", "render", "write"]
