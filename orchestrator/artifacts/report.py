"""The Art. 15 report in an access export (`report.html`): intelligible first, complete after.

It opens with a one-screen summary (which systems hold what, how much, since when), states the
rights and remedies once, then per system the Art. 15(1)(a)-(h) and 15(2) information from the
register (purposes with their legal bases, recipients beyond processors, retention, source,
profiling as the register states it), and per collection a glossary of the field names and a
readable listing of the records beside the JSON and CSV files. The export computes the
per-collection digests while it writes (`orchestrator.artifacts.digest`), so the report never
reads the records twice. Templates: `templates/report.html` and its `_report_*.html` parts.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from markupsafe import Markup

from connectors.metadata import CollectionInfo, collection_info
from orchestrator.artifacts.digest import CollectionDigest, ExportFile
from orchestrator.artifacts.render import (
    LANGUAGES,
    Language,
    Tone,
    day,
    environment,
    render_document,
    texts,
    texts_in,
)
from orchestrator.artifacts.sweep_certificate import period_in_words
from orchestrator.lifecycle.reducer import RequestState
from schemas.register import Controller, LegalBasis, Register, System, localize


def render_report(
    state: RequestState,
    systems: list[System],
    files: dict[str, list[ExportFile]],
    *,
    language: str,
    generated_at: datetime,
    controller: Controller | None = None,
    digests: dict[str, list[CollectionDigest]] | None = None,
    register: Register | None = None,
    attached: list[ExportFile] | None = None,
) -> str:
    """The human-readable report of an access request (`templates/report.html`; a language
    without texts gets the Dutch ones).

    Art. 12(1) GDPR asks for a "concise, transparent, intelligible and easily accessible form,
    using clear and plain language", and the EDPB (Guidelines 01/2022 on the right of access,
    5.2.3-5.2.4) for a layered answer when there is much of it: so the report opens with a
    summary (which systems hold what, how much, since when), states the rights (Art. 15(1)(e)) and
    remedies (Art. 15(1)(f), 77; Art. 35 UAVG) once, and then gives per system Art. 15(1)(a)-(h)
    and 15(2) as the register states them, and the data itself per collection, titled and with
    a glossary, beside the JSON and CSV files (Art. 15(3); CJEU C-487/21: a faithful and
    intelligible reproduction). `digests` (per system, from the write path) give the counts,
    dates and listings; `register` gives the recipients besides the processors (Art. 15(1)(c);
    CJEU C-154/21: named, not only by category). `attached` are the files a person attached
    when completing a manual system's task (`orchestrator.artifacts.attachments`).
    """
    words = report_language(language)
    tone: Tone = (controller.tone if controller is not None else None) or "u"
    general_recipients = [r for r in register.recipients if not r.systems] if register else []
    sections = [
        _section(
            state,
            system,
            files.get(system.name, []),
            (digests or {}).get(system.name, []),
            register,
            words,
            [f for f in attached or () if f.system == system.name],
        )
        for system in systems
    ]
    for section in sections:
        section["facts"] = _facts(section, bool(general_recipients), words, tone)
    return render_document(
        "report",
        words,
        tone=tone,
        lang=language,
        request_id=state.request_id,
        generated_at=generated_at,
        controller=controller,
        sections=sections,
        summary=_summary(sections),
        rights={
            "portable": [s["system"].display_name for s in sections if s["portable"]],
            "consent": [s["system"].display_name for s in sections if s["consent"]],
        },
        general_recipients=general_recipients,
        not_retrievable=register.not_retrievable if register else [],
    )


#: Rendered register facts per system (`_facts`), least recently used dropped first.
_FACTS: OrderedDict[str, Markup] = OrderedDict()
_FACTS_SIZE = 1024
_FACTS_LOCK = threading.Lock()  # exports are written in threads


#: The same, found by the register's objects themselves: the exports of a batch share one
#: register object (one copy per hand-over to the export process), so each system's facts are
#: found there without encoding the system. An entry holds on to its objects, so their ids
#: cannot be taken by other objects while it is kept (the register's models are frozen).
_FACTS_BY_OBJECT: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
_FACTS_BY_OBJECT_SIZE = 256


def _facts(section: dict[str, Any], general: bool, language: Language, tone: Tone) -> Markup:
    """A system's Art. 15(1)(a)-(h) and 15(2) facts, rendered once per register content,
    language and tone (`templates/_report_system_facts.html`): they are the same in every
    request's report until the register changes, and they were most of its rendering time.

    Looked up by the system and recipient objects first; else by their content
    (`_facts_by_content`).
    """
    system: System = section["system"]
    recipients = section["recipients"]
    quick = (id(system), tuple(map(id, recipients)), general, language, tone)
    with _FACTS_LOCK:
        found = _FACTS_BY_OBJECT.get(quick)
        if found is not None:
            _FACTS_BY_OBJECT.move_to_end(quick)
            return found[0]
    rendered = _facts_by_content(section, general, language, tone)
    with _FACTS_LOCK:
        _FACTS_BY_OBJECT[quick] = (rendered, system, *recipients)
        if len(_FACTS_BY_OBJECT) > _FACTS_BY_OBJECT_SIZE:
            _FACTS_BY_OBJECT.popitem(last=False)
    return rendered


def _facts_by_content(
    section: dict[str, Any], general: bool, language: Language, tone: Tone
) -> Markup:
    """`_facts` by content. The key is everything the template reads: the system and its
    recipients as JSON (a changed register gives another key), whether there are general
    recipients, the language and tone."""
    system: System = section["system"]
    recipients = section["recipients"]
    key = "\x1f".join(
        (
            language,
            tone,
            str(general),
            system.model_dump_json(),
            json.dumps([r.model_dump(mode="json") for r in recipients], sort_keys=True),
        )
    )
    with _FACTS_LOCK:
        found = _FACTS.get(key)
        if found is not None:
            _FACTS.move_to_end(key)
            return found
    template = environment().get_template("_report_system_facts.html")
    # Safe: the environment autoescapes every value it puts in (`render.environment`).
    rendered = Markup(  # noqa: S704
        template.render(
            {
                "document_language": language,
                "tone": tone,
                "t": texts_in("report", language, tone),
                "common": texts_in("common", language, tone),
                "system": system,
                "section": section,
                "general_recipients": general,
            }
        ).rstrip("\n")
    )
    with _FACTS_LOCK:
        _FACTS[key] = rendered
        if len(_FACTS) > _FACTS_SIZE:
            _FACTS.popitem(last=False)
    return rendered


def report_language(language: str) -> Language:
    """The language the report's texts are in: the request's, else Dutch."""
    return next((known for known in LANGUAGES if known == language), "nl")


#: Outcomes after which a system without data truly has none (anything else: not searched yet).
_SEARCHED = frozenset({"completed", "not_found", "delivered", "-"})


def _section(
    state: RequestState,
    system: System,
    files: list[ExportFile],
    digests: list[CollectionDigest],
    register: Register | None,
    language: Language,
    attached: list[ExportFile],
) -> dict[str, Any]:
    """What the report says about one system, decided here; the template words it."""
    progress = state.systems.get(system.name)
    collections = _collections(system, files, digests, language)
    return {
        "system": system,
        "status": progress.status if progress is not None else "-",
        "purposes": system.purpose_list(),
        "recipients": [r for r in register.recipients if system.name in r.systems]
        if register is not None
        else [],
        "portable": system.is_portable(),
        "consent": LegalBasis.CONSENT in system.legal_basis,
        # The register's default source, in English: said in the report's language instead.
        "from_subject": localize(system.source, "en").strip().lower() == "the data subject",
        "in_eea": system.location.region.upper() == "EEA",
        "retention_rules": _retention_rules(system, language),
        "collections": collections,
        "attached": attached,
        "count": sum(c["count"] for c in collections) + len(attached),
        "held": sum(c["held"] for c in collections),
        "since": min((c["earliest"] for c in collections if c["earliest"]), default=None),
    }


def _retention_rules(system: System, language: Language) -> list[str]:
    """The register's machine-readable retention per collection, in words (Art. 15(1)(d)):
    "Supportvragen: 12 maanden na de laatste activiteit"."""
    if system.sweep is None:
        return []
    words = texts_in("sweep_certificate", language)
    infos = collection_info(system)
    rules = []
    for rule in system.sweep.collections:
        info = infos.get(rule.collection)
        heading = info.heading(rule.collection, language) if info else rule.collection
        period = period_in_words(rule.period, words["units"])
        rules.append(
            f"{heading}: {period} {words['after']} {words['counted_from'][rule.counted_from]}"
        )
    return rules


def _summary(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's opening: systems with data (what, how much, since when), systems searched
    without a find, and systems not (fully) searched yet with their status."""
    found, nothing, waiting = [], [], []
    for section in sections:
        system, status = section["system"], str(section["status"])
        if section["count"] or section["held"]:
            found.append(
                {
                    "system": system,
                    "what": [c["heading"] for c in section["collections"] if c["count"]],
                    "count": section["count"],
                    "held": section["held"],
                    "since": section["since"],
                }
            )
        elif status in _SEARCHED:
            nothing.append(system)
        else:
            waiting.append((system, status))
    return {"found": found, "nothing": nothing, "open": waiting}


def _collections(
    system: System, files: list[ExportFile], digests: list[CollectionDigest], language: Language
) -> list[dict[str, Any]]:
    """Each collection of one system as the report shows it: from its digest where the write
    path made one, else from its files alone (counts, no listing)."""
    info = collection_info(system)
    paths = {f.collection: f.path for f in files if f.path.endswith(".json")}
    records = {f.collection: f.records or 0 for f in files if f.path.endswith(".json")}
    by_name = {d.collection: d for d in digests}
    names = list(by_name) + [name for name in paths if name not in by_name and name is not None]
    parts = []
    for index, name in enumerate(names):
        digest = by_name.get(name) or CollectionDigest(system.name, name, count=records[name])
        json_path = paths.get(name)
        parts.append(
            _collection(
                digest,
                info.get(name, CollectionInfo()),
                f"{system.name}-{index + 1}",
                (json_path, json_path.removesuffix(".json") + ".csv") if json_path else None,
                language,
            )
        )
    return parts


def _collection(
    digest: CollectionDigest,
    info: CollectionInfo,
    anchor: str,
    paths: tuple[str, str] | None,
    language: Language,
) -> dict[str, Any]:
    """One collection: its title, a glossary of the fields present, and the listing of its
    first records with labels as column headers and values written out (cells are text)."""
    fields = list(digest.fields)
    yes_no = _yes_no(language)
    return {
        "name": digest.collection,
        "anchor": anchor,
        "heading": info.heading(digest.collection, language),
        "count": digest.count,
        "earliest": digest.earliest,
        "latest": digest.latest,
        "held": digest.held,
        "redacted": digest.redacted,
        "json": paths[0] if paths else None,
        "csv": paths[1] if paths else None,
        "glossary": [(f, info.label(f, language)) for f in fields if f in info.fields],
        "columns": [info.label(f, language) for f in fields],
        "rows": [[_shown(r.get(f), language, yes_no) for f in fields] for r in digest.sample],
        "cut": digest.count > len(digest.sample),
    }


_ISO_MOMENT = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
#: Characters of one value shown in the listing; the files hold it whole.
_SHOWN_LIMIT = 300


def _yes_no(language: Language) -> tuple[str, str]:
    words = texts("report")[language]
    return words["yes"], words["no"]


def _shown(value: Any, language: Language, yes_no: tuple[str, str], depth: int = 0) -> str:
    """A value as the listing shows it: dates written out in `language`, yes/no for booleans,
    nested values compactly ("key: value; ..."), long text cut (the JSON and CSV are whole)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no[0] if value else yes_no[1]
    if isinstance(value, str):
        text = _moment(value, language) if _ISO_MOMENT.match(value) else value
    elif isinstance(value, dict) and depth < 2:
        text = "; ".join(
            f"{k}: {_shown(v, language, yes_no, depth + 1)}"
            for k, v in value.items()
            if v is not None
        )
    elif isinstance(value, list) and depth < 2:
        text = ", ".join(_shown(v, language, yes_no, depth + 1) for v in value)
    elif isinstance(value, float) and language == "nl":
        text = repr(value).replace(".", ",")
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN_LIMIT else text[: _SHOWN_LIMIT - 1] + "…"


def _moment(value: str, language: Language) -> str:
    """An ISO date or date-time written out ("3 maart 2026, 14:05 UTC"); unparsable: as given."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    written = day(moment, language)
    if len(value) <= 10:
        return written
    offset = moment.utcoffset()
    zone = " UTC" if offset is not None and not offset else ""
    return f"{written}, {moment:%H:%M}{zone}"


__all__ = ["render_report", "report_language"]
