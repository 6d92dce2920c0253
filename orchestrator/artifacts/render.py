"""The subject's HTML documents from Jinja2 templates: one environment, texts in nl and en.

Each document is `templates/<document>.html` with its texts beside it in
`templates/<document>.texts.yaml` (one mapping per language, the same keys in each, and an
optional `nl-je` mapping with the Dutch texts that differ when the controller addresses the
reader informally, `controller.tone: je`: only keys `nl` has, merged over it); the words
every document shares (status words, kinds of system, engine reasons, the remedies, the months)
are in `templates/common.texts.yaml`, given to every template as `common`. Every value
is HTML-escaped (autoescape), because much of it comes from requests, the register and
connectors; a text or variable the template names but nobody gave fails loudly
(StrictUndefined) instead of leaving a gap in a letter.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from schemas.register import localize

Language = Literal["nl", "en"]
#: How a Dutch document addresses the reader: formal "u" or informal "je" (`Controller.tone`).
Tone = Literal["u", "je"]
#: The mapping in a texts file holding the informal Dutch variants.
_INFORMAL = "nl-je"
#: The languages every document is written in.
LANGUAGES: tuple[Language, ...] = ("nl", "en")
_PACKAGE = "orchestrator.artifacts"  # the templates/ folder ships inside it as package data
_NO_DATE = "—"
#: The Autoriteit Persoonsgegevens' site and its complaint page (Art. 77 GDPR), linked in every
#: document that names the remedies (Art. 12(4) GDPR).
AP_URL = "https://autoriteitpersoonsgegevens.nl"
AP_COMPLAINT_URL = f"{AP_URL}/nl/zelf-doen/gebruik-uw-privacyrechten/klacht-indienen-bij-de-ap"


def day(moment: datetime | date | str | None, language: Language = "nl") -> str:
    """A moment as its date written out in `language` ("28 februari 2026"), or a dash."""
    if moment is None or moment == "":
        return _NO_DATE
    when = _as_date(moment)
    month = texts("common")[language]["months"][when.month - 1]
    return f"{when.day} {month} {when.year}"


def _as_date(moment: datetime | date | str) -> date:
    # Certificates hold their dates as ISO text (they are signed JSON); the rest are objects.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.date() if isinstance(moment, datetime) else moment


@pass_context
def _day_filter(context: Context, moment: datetime | date | str | None) -> Markup | str:
    """`| day`: the date written out in the document's language, the ISO form kept in a
    machine-readable `<time datetime>` beside it."""
    if moment is None or moment == "":
        return _NO_DATE
    iso = moment if isinstance(moment, str) else moment.isoformat()
    written = day(moment, context["document_language"])
    return Markup('<time datetime="{}">{}</time>').format(iso, written)


#: Engine reasons (from connectors and the lifecycle, always English) a subject may read, by the
#: code their translation has in `common.texts.yaml` (`engine`). The first match wins.
_ENGINE_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (code, re.compile(pattern, re.IGNORECASE))
    for code, pattern in (
        ("credentials_rejected", r"credentials rejected"),
        ("rate_limited", r"rate limited|\b429\b"),
        ("server_error", r"server error"),
        ("timed_out", r"timed out|no outcome (within|after)"),
        ("connection_failed", r"connection failed"),
        ("no_identifier", r"no .* identifier to search"),
        ("retention_duty", r"retention duty|legal obligation"),
        ("legal_hold", r"legal hold"),
        ("refused", r"^refused"),
        ("deadline_passed", r"deadline has passed"),
        ("not_found", r"not found"),
    )
)


def reason_code(reason: str | None) -> str | None:
    """The code of an engine reason whose translation the documents have, or None."""
    if not reason:
        return None
    return next((code for code, pattern in _ENGINE_REASONS if pattern.search(reason)), None)


@pass_context
def _reason_filter(context: Context, reason: str | None) -> Markup | str:
    """`| reason`: an engine reason in the document's language through its code; a reason
    without one is kept, labelled as the system's own message (it is not translated)."""
    if not reason:
        return ""
    words = context["common"]["engine"]  # in the document's language and tone
    code = reason_code(reason)
    if code is not None:
        return Markup('<span data-reason-code="{}">{}</span>').format(code, words[code])
    return Markup('<span data-reason-code="untranslated">{} {}</span>').format(
        reason, words["untranslated"]
    )


@pass_context
def _local_filter(context: Context, text: Any) -> str:
    """`| local`: a register text (`Text`: one string, or `{nl, en}`) in the document's language."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    return str(localize(text, context["document_language"]))


def _blank(value: Any) -> Any:
    # A missing optional value (no reason, no deadline yet) prints as nothing, not "None".
    return "" if value is None else value


#: What a plain dict has as attributes: its methods (`certificate.get(...)` in a template).
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(Environment):
    """Jinja2's environment, with `mapping.name` looked up in one step for a plain dict.

    Jinja2 tries the attribute first and the item after (`Environment.getattr`): for the
    texts (`t.title`, `common.statuses`) and the report's sections and collections, which are
    dicts, every `.name` first raised and caught an AttributeError. A plain dict's only
    attributes are its methods, so for any other name the item is what Jinja2 would have
    found too: the same result, without the exception (an Art. 15 report reads some 240).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.attribute` in a template: as Jinja2 does it, faster for a plain dict."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


@cache
def environment() -> Environment:
    """The one Jinja2 environment of the documents (autoescape on, strict about names)."""
    env = _Environment(
        loader=PackageLoader(_PACKAGE, "templates"),
        # Package data does not change under a running process: no stat per rendering.
        auto_reload=False,
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_blank,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = _day_filter
    env.filters["reason"] = _reason_filter
    env.filters["local"] = _local_filter
    return env


def texts(document: str) -> dict[str, dict[str, Any]]:
    """A document's texts by language (`nl`, `en`), from `templates/<document>.texts.yaml`,
    checked; `texts_in` gives one language in one tone."""
    data = _texts_file(document)
    return {language: data[language] for language in LANGUAGES}


@cache
def _texts_file(document: str) -> dict[str, dict[str, Any]]:
    """The whole texts file, checked: `nl` and `en` with the same keys, and `nl-je` (optional)
    with only keys `nl` has."""
    name = f"{document}.texts.yaml"
    source = resources.files(_PACKAGE) / "templates" / name
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not set(LANGUAGES) <= set(data) <= {*LANGUAGES, _INFORMAL}:
        raise ValueError(
            f"{name}: expected one mapping per language ({', '.join(LANGUAGES)}) "
            f"and optionally {_INFORMAL!r} (the informal Dutch variants)"
        )
    shapes = {language: _keys(data[language]) for language in LANGUAGES}
    if len({frozenset(keys) for keys in shapes.values()}) != 1:
        raise ValueError(f"{name}: the languages differ in which texts they have; give each all")
    if _INFORMAL in data:
        informal = data[_INFORMAL]
        unknown = sorted(_keys(informal) - shapes["nl"]) if isinstance(informal, dict) else ["?"]
        if unknown:
            raise ValueError(
                f"{name}: {_INFORMAL!r} may only give variants of texts 'nl' has; "
                f"not in 'nl': {', '.join(k.rstrip('.') for k in unknown)}"
            )
    return data


def informal_variants(document: str) -> dict[str, Any]:
    """The `nl-je` variants of a document's Dutch texts (empty when it has none)."""
    return dict(_texts_file(document).get(_INFORMAL) or {})


def texts_in(document: str, language: Language, tone: Tone = "u") -> dict[str, Any]:
    """A document's texts in `language`; Dutch in the informal tone takes the `nl-je` variants."""
    if language == "nl" and tone == "je":
        return _merge(texts(document)["nl"], informal_variants(document))
    return texts(document)[language]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, mapping by mapping (a variant replaces one text, not a group)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def _keys(texts: Any, prefix: str = "") -> set[str]:
    """Every text's dotted name; a key YAML read as something else (yes, no, 2) is an error."""
    if not isinstance(texts, dict):
        return {prefix}
    found: set[str] = set()
    for key, value in texts.items():
        if not isinstance(key, str):
            raise ValueError(f"text key {key!r} in {prefix or 'a language'} is not text; quote it")
        found |= _keys(value, f"{prefix}{key}.")
    return found


def render_document(
    document: str, language: Language, *, tone: Tone | None = None, **context: Any
) -> str:
    """`templates/<document>.html` with its texts in `language` as `t` (and `lang` unless given),
    the shared words as `common` and the AP's complaint page as `ap_complaint_url`.

    Dutch texts follow `tone` ("u" or "je"); without it, the tone of the `controller` in the
    context (`Controller.tone`), else the formal "u".
    """
    chosen: Tone = tone or getattr(context.get("controller"), "tone", None) or "u"
    template = environment().get_template(f"{document}.html")
    return template.render(
        {
            "lang": language,
            "ap_complaint_url": AP_COMPLAINT_URL,
            **context,
            "document_language": language,
            "tone": chosen,
            "t": texts_in(document, language, chosen),
            "common": texts_in("common", language, chosen),
        }
    )


__all__ = [
    "AP_COMPLAINT_URL",
    "AP_URL",
    "LANGUAGES",
    "Language",
    "Tone",
    "day",
    "environment",
    "informal_variants",
    "reason_code",
    "render_document",
    "texts",
    "texts_in",
]
