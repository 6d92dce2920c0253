"""MkDocs hook: the reference pages, generated from the code on every build so they cannot drift.

A page asks for a generated part with a line `<!-- generated: NAME -->` (invisible on GitHub);
NAME is one of `GENERATORS`. The contracts are also published beside the pages: the AsyncAPI
document, the JSON Schema files and the dashboard's OpenAPI document, under `reference/`.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic_settings import BaseSettings
from schema_markdown import (
    Schema,
    anchor,
    cell,
    code,
    description,
    fields_table,
    page_linker,
    schema_section,
    type_of,
)

from schemas.generate import ASYNCAPI_FILE, JSON_DIR, PACKAGE_DIR

PLACEHOLDER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
#: Where the machine-readable contracts are published in the site.
REFERENCE_DIR = "reference"
OPENAPI_FILE = "openapi.json"
REGISTER_SCHEMA = "register.schema.json"


def _ref_names(node: Any) -> Iterator[str]:
    """Names of the schemas `node` refers to, in reading order."""
    if isinstance(node, Mapping):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from _ref_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ref_names(value)


def _reachable(start: Any, schemas: Mapping[str, Schema]) -> list[str]:
    """The schemas `start` uses, directly or through others, in the order a reader meets them."""
    order: list[str] = []
    queue = list(_ref_names(start))
    while queue:
        name = queue.pop(0)
        if name in schemas and name not in order:
            order.append(name)
            queue += _ref_names(schemas[name])
    return order


def _without_null(schema: Schema) -> Schema:
    """The schema of a setting that may be unset, as the value one sets."""
    options = [o for o in schema.get("anyOf", ()) if o.get("type") != "null"]
    if len(options) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}


def variables_table(model: type[BaseSettings]) -> str:
    """The environment variables one settings model reads: name, type, default, meaning."""
    prefix = model.model_config.get("env_prefix", "")
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for key, prop in model.model_json_schema()["properties"].items():
        if "$ref" in prop:  # a nested settings model has its own table and prefix
            continue
        name = key if key.startswith(prefix) else prefix + key.upper()
        value = _without_null(prop)
        default = "(unset)" if prop.get("default") is None else code(prop["default"])
        lines.append(
            f"| `{name}` | {cell(type_of(value, str))} | {default} | {description(value)} |"
        )
    return "\n".join(lines)


def configuration() -> str:
    """Every DSR_* variable of the `Settings` model, the Kafka connection and the intake."""
    from orchestrator.gateway.opendsr_keys import OpenDsrSettings
    from orchestrator.gateway.public import PublicSettings
    from orchestrator.gateway.settings import IntakeSettings
    from orchestrator.runtime.config import Settings
    from schemas.kafka import KafkaSettings

    intake = [
        ("The intake process (`dsr intake`)", IntakeSettings),
        ("The request page for the public", PublicSettings),
        ("OpenDSR, as a processor", OpenDsrSettings),
    ]
    sections = [
        line
        for title, model in intake
        for line in (f"### {title}", "", f"From `{model.__module__}.{model.__name__}`: "
                     f"{' '.join((model.__doc__ or '').split())}", "", variables_table(model), "")
    ]  # fmt: skip
    return "\n".join(
        [
            "### Orchestrator, workers and dashboard",
            "",
            f"From `{Settings.__module__}.Settings`: {Settings.__doc__}",
            "",
            variables_table(Settings),
            "",
            "### Kafka connection",
            "",
            f"From `{KafkaSettings.__module__}.KafkaSettings`: {KafkaSettings.__doc__}",
            "",
            variables_table(KafkaSettings),
            "",
            *sections,
        ]
    )


def _asyncapi() -> dict[str, Any]:
    """The generated AsyncAPI document."""
    return dict(yaml.safe_load((PACKAGE_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8")))


def _headers_table(messages: Mapping[str, Schema]) -> Iterator[str]:
    """The Kafka headers of our events, and which events require each."""
    everyone = set(messages)
    seen: dict[str, tuple[Schema, set[str]]] = {}
    for name, message in messages.items():
        headers = message["headers"]
        for header, schema in headers["properties"].items():
            required = seen.setdefault(header, (schema, set()))[1]
            if header in headers.get("required", ()):
                required.add(name)
    yield "| header | type | required on | description |"
    yield "|---|---|---|---|"
    for header, (schema, required) in seen.items():
        if header == "ce_type":
            kind, text = "string", "The event type: the heading of each event below."
        else:
            kind, text = type_of(schema, str), description(schema)
        on = "every event" if required == everyone else ", ".join(sorted(required)) or "optional"
        yield f"| `{header}` | {cell(kind)} | {cell(on)} | {text} |"


def events() -> str:
    """Topics, event types, headers and fields, from the generated AsyncAPI document."""
    document = _asyncapi()
    messages: dict[str, Schema] = document["components"]["messages"]
    schemas: dict[str, Schema] = document["components"]["schemas"]
    payload_of = {name: m["payload"]["$ref"].rsplit("/", 1)[-1] for name, m in messages.items()}
    link = page_linker(set(schemas))
    lines = ["## Topics", "", "| topic | carries | events |", "|---|---|---|"]
    topic_of: dict[str, str] = {}
    for channel in document["channels"].values():
        names = list(channel["messages"])
        topic_of.update(dict.fromkeys(names, channel["address"]))
        carried = ", ".join(f"[{messages[n]['name']}](#{anchor(payload_of[n])})" for n in names)
        lines.append(f"| `{channel['address']}` | {cell(channel['description'])} | {carried} |")
    lines += ["", "## Headers", "", *_headers_table(messages), "", "## Events", ""]
    for name in topic_of:  # in the order of the flow, topic by topic
        message, payload = messages[name], schemas[payload_of[name]]
        key = message.get("bindings", {}).get("kafka", {}).get("key", {})
        file = f"{JSON_DIR}/{message['name']}.schema.json"
        lines += [
            f"### {message['name']} {{#{anchor(payload_of[name])}}}",
            "",
            f"{message['summary']} On topic `{topic_of[name]}`; body `{name}`"
            f" ([JSON Schema]({file})). Kafka key: {key.get('description', 'the request id')}",
            "",
            *fields_table(payload, link),
            "",
        ]
    lines += ["## Types used in events", ""]
    for name in _reachable(list(schemas[p] for p in payload_of.values()), schemas):
        lines += schema_section(name, schemas[name], link)
    return "\n".join(lines)


def register() -> str:
    """The fields of the register file and of each system entry, from its JSON Schema."""
    schema = json.loads((PACKAGE_DIR / JSON_DIR / REGISTER_SCHEMA).read_text(encoding="utf-8"))
    defs: dict[str, Schema] = schema.get("$defs", {})
    link = page_linker({schema["title"], *defs})
    lines = list(schema_section(schema["title"], schema, link, level=2))
    for name in _reachable(schema.get("properties"), defs):
        lines += schema_section(name, defs[name], link)
    return "\n".join(lines)


def openapi() -> dict[str, Any]:
    """The dashboard's OpenAPI document, as the running dashboard serves it."""
    from orchestrator.dashboard.openapi import openapi_document

    return openapi_document(importlib.metadata.version("dsr-orchestrator"))


def intake_openapi() -> dict[str, Any]:
    """The intake API's OpenAPI document, as `dsr intake` serves it."""
    from orchestrator.gateway.openapi import openapi_document

    return openapi_document(importlib.metadata.version("dsr-orchestrator"))


def _operation(path: str, method: str, operation: Schema, link: Callable[[str], str]) -> list[str]:
    """One endpoint: summary, parameters, body and responses."""
    lines = [f"### {method.upper()} {path} {{#op-{operation['operationId'].lower()}}}", ""]
    lines += [operation.get("summary", ""), ""]
    if operation.get("description"):
        lines += [" ".join(operation["description"].split()), ""]
    if operation.get("parameters"):
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in operation["parameters"]:
            need = "yes" if p.get("required") else "no"
            schema = p.get("schema", {})
            kind = cell(type_of(schema, link))
            default = f"Default {code(schema['default'])}." if "default" in schema else ""
            text = cell(" ".join([p.get("description", ""), description(schema), default]))
            lines.append(f"| `{p['name']}` | {p['in']} | {kind} | {need} | {text} |")
        lines.append("")
    for media, content in operation.get("requestBody", {}).get("content", {}).items():
        lines += [f"Body ({media}): {type_of(content.get('schema', {}), link)}", ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        bodies = [
            f"{type_of(c['schema'], link)} ({media})" if "schema" in c else media
            for media, c in response.get("content", {}).items()
        ]
        lines.append(f"| {status} | {cell(response['description'])} | {', '.join(bodies)} |")
    return [*lines, ""]


def dashboard_api() -> str:
    """Endpoints, parameters, responses and schemas of the dashboard API, from its OpenAPI."""
    return api_reference(openapi())


def intake_api() -> str:
    """The same for the intake API."""
    return api_reference(intake_openapi())


def api_reference(document: dict[str, Any]) -> str:
    """Endpoints, parameters, responses and schemas of an OpenAPI document."""
    schemas: dict[str, Schema] = document["components"]["schemas"]
    link = page_linker(set(schemas))
    lines = [" ".join(document["info"]["description"].split()), "", "## Authentication", ""]
    for name, scheme in document["components"].get("securitySchemes", {}).items():
        if scheme["type"] == "http":
            how = f"an `Authorization: {scheme['scheme'].title()} <token>` header"
        else:
            how = f"the {scheme['in']} `{scheme['name']}`, set by the sign-in form"
        text = " ".join(scheme.get("description", "").split())
        if len(text) > 60:  # a scheme explained in prose (the intake's HTTP signatures)
            lines.append(f"- `{name}`: {text}")
            continue
        token = f" with the value of `{text}`" if text else ""
        lines.append(f"- `{name}`: {how}{token}.")
    lines += ["", "## Endpoints", ""]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            lines += _operation(path, method, operation, link)
    lines += ["## Schemas", ""]
    for name in _reachable(document["paths"], schemas):
        lines += schema_section(name, schemas[name], link)
    return "\n".join(lines)


#: What a placeholder may name, and the function that writes it.
GENERATORS: dict[str, Callable[[], str]] = {
    "configuration": configuration,
    "events": events,
    "register": register,
    "dashboard-api": dashboard_api,
    "intake-api": intake_api,
}


def expand(markdown: str, where: str) -> str:
    """The page with each placeholder replaced by what its generator writes."""

    def generated(match: re.Match[str]) -> str:
        generator = GENERATORS.get(match.group(1))
        if generator is None:
            raise PluginError(
                f"{where}: unknown generated part {match.group(1)!r}; "
                f"use one of {', '.join(GENERATORS)}"
            )
        return generator()

    return PLACEHOLDER.sub(generated, markdown)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """MkDocs event: fill the page's generated parts."""
    return expand(markdown, page.file.src_uri)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs event: publish the contracts for producers in other languages beside the pages."""
    files.append(
        File.generated(
            config, f"{REFERENCE_DIR}/{OPENAPI_FILE}", content=json.dumps(openapi(), indent=2)
        )
    )
    files.append(
        File.generated(
            config,
            f"{REFERENCE_DIR}/{ASYNCAPI_FILE}",
            abs_src_path=str(PACKAGE_DIR / ASYNCAPI_FILE),
        )
    )
    for path in sorted(Path(PACKAGE_DIR / JSON_DIR).glob("*.json")):
        files.append(
            File.generated(
                config, f"{REFERENCE_DIR}/{JSON_DIR}/{path.name}", abs_src_path=str(path)
            )
        )
    return files
