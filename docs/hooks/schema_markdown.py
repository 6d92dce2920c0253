"""JSON Schema to Markdown: the field tables of the generated reference pages.

One renderer serves the events (AsyncAPI), the register (JSON Schema), the dashboard API
(OpenAPI) and the configuration (the `Settings` model's JSON Schema), so every reference page
reads the same way and none of them is written by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Schema = Mapping[str, Any]
#: Turns the name of a referenced schema into Markdown: a link where the page documents it.
Linker = Callable[[str], str]


def anchor(name: str) -> str:
    """The HTML id of the section documenting the schema `name`."""
    return "schema-" + name.lower()


def page_linker(documented: set[str]) -> Linker:
    """A linker to the sections of one page; names it does not document stay plain."""

    def link(name: str) -> str:
        return f"[{name}](#{anchor(name)})" if name in documented else f"`{name}`"

    return link


_CODE_SPAN = re.compile(r"(`+).+?\1")
_BARE_PIPE = re.compile(r"(?<!\\)\|")


def cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes escaped (a code span keeps its own)."""
    text = " ".join(text.split())
    parts, end = [], 0
    for span in _CODE_SPAN.finditer(text):
        parts += [_BARE_PIPE.sub(r"\|", text[end : span.start()]), span.group(0)]
        end = span.end()
    return "".join([*parts, _BARE_PIPE.sub(r"\|", text[end:])])


def code(value: Any) -> str:
    """A value as inline code, JSON-spelt (so `null`, `true` and strings read as on the wire)."""
    text = value if isinstance(value, str) else json.dumps(value)
    # A backtick inside needs a longer fence; none of our values has two in a row.
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def type_of(schema: Schema, link: Linker) -> str:
    """A short human type: `string (date-time)`, `list of [Identifier](#...)`, `a` or `b`."""
    if "$ref" in schema:
        return link(schema["$ref"].rsplit("/", 1)[-1])
    if "const" in schema:
        return code(schema["const"])
    if "enum" in schema:
        return " or ".join(code(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(type_of(option, link) for option in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return "list of " + type_of(schema.get("items", {}), link)
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return "map of string to " + type_of(schema["additionalProperties"], link)
    if schema.get("format") == "password":
        return "secret string"
    if schema.get("format") == "path":
        return "path"
    if isinstance(kind, list):
        return " or ".join(kind)
    text = kind or "any JSON value"
    return f"{text} ({schema['format']})" if "format" in schema else text


_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
)


def constraints(schema: Schema) -> list[str]:
    """The limits a value must keep, in words (looked up in `anyOf` options too)."""
    found: list[str] = []
    for option in [schema, *schema.get("anyOf", ())]:
        found += [text.format(option[key]) for key, text in _BOUNDS if key in option]
        if "pattern" in option:
            found.append("pattern " + code(option["pattern"]))
    return found


def description(schema: Schema) -> str:
    """What a field means, with its limits and an example, as one table cell."""
    parts = [schema.get("description", "")]
    limits = constraints(schema)
    if limits:
        parts.append("(" + "; ".join(limits) + ")")
    if schema.get("examples"):
        parts.append("E.g. " + ", ".join(code(v) for v in schema["examples"]) + ".")
    return cell(" ".join(p for p in parts if p))


def default_of(schema: Schema) -> str:
    """The default as inline code, or an empty cell when the schema has none."""
    return code(schema["default"]) if "default" in schema else ""


def fields_table(schema: Schema, link: Linker) -> Iterator[str]:
    """The fields of an object schema as a Markdown table: field, type, required, meaning."""
    properties = schema.get("properties", {})
    if not properties:
        yield "No fields."
        return
    required = set(schema.get("required", ()))
    yield "| field | type | required / default | description |"
    yield "|---|---|---|---|"
    for name, prop in properties.items():
        need = "required" if name in required else default_of(prop) or "optional"
        yield f"| `{name}` | {cell(type_of(prop, link))} | {need} | {description(prop)} |"


def schema_section(name: str, schema: Schema, link: Linker, level: int = 3) -> Iterator[str]:
    """A heading (with the anchor links point at), the description and the fields or values."""
    yield f"{'#' * level} {name} {{#{anchor(name)}}}"
    yield ""
    if schema.get("description"):
        yield " ".join(schema["description"].split())
        yield ""
    if "enum" in schema:
        yield "One of: " + ", ".join(code(v) for v in schema["enum"]) + "."
    elif "properties" in schema:
        yield from fields_table(schema, link)
    else:
        yield f"A {type_of(schema, link)}."
    yield ""


__all__ = [
    "Linker",
    "Schema",
    "anchor",
    "cell",
    "code",
    "constraints",
    "default_of",
    "description",
    "fields_table",
    "page_linker",
    "schema_section",
    "type_of",
]
