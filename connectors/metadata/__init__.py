"""What a connector's collections are, for people: titles, a glossary of field names, which
fields the subject provided, and the field that dates a record.

The export uses it to make the copy intelligible (Art. 12(1) GDPR: "concise, transparent,
intelligible and easily accessible form, using clear and plain language") and to keep a
portability export to what the subject provided (Art. 20(1) GDPR). A built-in connector's
metadata is package data, `connectors/metadata/<connector>.yaml`; a plugin connector sets the
class attribute `Connector.collections`. The register can override labels (`System.glossary`)
and what was provided (`System.provided`) per system.

File format::

    collections:
      tickets:
        title: {nl: Supportvragen, en: Support questions}
        date_field: created_at          # dates the record: "since when" in the summary
        provided: [subject, description] # or "all" / "none": what the subject gave us;
                                         # "properties.email": a key inside field "properties"
        fields:
          subject: {nl: Onderwerp, en: Subject}
          fieldValues: {nl: Extra velden, en: Custom fields}
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import DsrError
from schemas.register import Language, Provided, System, Text, localize


class MetadataError(DsrError, ValueError):
    """A connector's metadata file is invalid; the message names the file and the field."""


class CollectionInfo(BaseModel):
    """One collection of a connector, described for people."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Text | None = None
    date_field: str | None = Field(default=None, description="The field that dates a record.")
    provided: Provided = Field(
        default="all", description="What the subject provided (Art. 20(1)): all, none, fields."
    )
    fields: dict[str, Text] = Field(default_factory=dict, description="Field name -> label.")
    provided_when: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description="Portability: only records whose fields have these values are the "
        "subject's own (e.g. `incoming: true` for the messages they sent, not staff replies); "
        "`a.b` reads key b of the object in field a.",
    )

    def from_subject(self, data: dict[str, Any]) -> bool:
        """Whether the record is one the subject provided, by `provided_when`."""
        return all(_lookup(data, path) == value for path, value in self.provided_when.items())

    def label(self, field: str, language: Language) -> str:
        """The field's label in `language`, or the field name when the glossary lacks it."""
        text = self.fields.get(field)
        return field if text is None else localize(text, language)

    def heading(self, collection: str, language: Language) -> str:
        """The collection's title in `language`, or its name."""
        return collection if self.title is None else localize(self.title, language)

    def is_provided(self, field: str) -> bool:
        """Whether the subject provided this field (portability keeps only those)."""
        if self.provided == "all":
            return True
        if self.provided == "none":
            return False
        return field in self.provided

    def provided_part(self, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """What of a record the subject provided, and the names of the fields left out.

        A `provided` entry "a.b" keeps the key "b" of the object in field "a" (HubSpot keeps a
        record's values under `properties`); a top-level key of that exact name wins.
        """
        if self.provided == "all":
            return data, []
        if self.provided == "none":
            return {}, list(data)
        nested: dict[str, set[str]] = {}
        for entry in self.provided:
            if entry not in data and "." in entry:
                outer, inner = entry.split(".", 1)
                nested.setdefault(outer, set()).add(inner)
        kept: dict[str, Any] = {}
        dropped: list[str] = []
        for key, value in data.items():
            if key in self.provided:
                kept[key] = value
            elif key in nested and isinstance(value, dict):
                kept[key] = {k: v for k, v in value.items() if k in nested[key]}
                dropped += [f"{key}.{k}" for k in value if k not in nested[key]]
            else:
                dropped.append(key)
        return kept, dropped


_MISSING = object()


def _lookup(data: dict[str, Any], path: str) -> Any:
    """The value at `path` ("a" or "a.b"); a sentinel when it is not there."""
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


class _MetadataFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collections: dict[str, CollectionInfo]


@cache
def packaged(connector: str) -> Mapping[str, CollectionInfo]:
    """The metadata shipped for a built-in connector (empty when there is none)."""
    source = resources.files(__name__) / f"{connector}.yaml"
    if not source.is_file():
        return {}
    name = f"connectors/metadata/{connector}.yaml"
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        return _MetadataFile.model_validate(data).collections
    except (yaml.YAMLError, ValidationError) as exc:
        raise MetadataError(f"{name}: invalid connector metadata: {exc}") from None


def collection_info(system: System, connector: Any = None) -> dict[str, CollectionInfo]:
    """Every known collection of `system`: the connector's metadata (`connector`'s class
    attribute `collections`, else
    the packaged file), with the register's `glossary` and `provided` laid over it."""
    base: Mapping[str, CollectionInfo] = {}
    if connector is not None and getattr(connector, "collections", None):
        base = connector.collections
    else:
        base = packaged(system.connector)
    merged = dict(base)
    for name in set(system.glossary) | set(system.provided):
        info = merged.get(name, CollectionInfo())
        update: dict[str, object] = {}
        if name in system.glossary:
            update["fields"] = {**info.fields, **system.glossary[name]}
        if name in system.provided:
            update["provided"] = system.provided[name]
        merged[name] = info.model_copy(update=update)
    return merged


__all__ = ["CollectionInfo", "MetadataError", "collection_info", "packaged"]
