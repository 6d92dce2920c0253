"""Write the JSON Schema files and the AsyncAPI document from the pydantic models.

Run `python -m schemas.generate` after changing a model; `--check` exits 1 when the files in
the package differ from what the models produce (CI runs the equivalent test). The output is
deterministic (no timestamps, stable ordering) so a change shows up as a readable diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.envelope import EVENT_TYPES, JSON, SIGNATURE_HEADER, SPEC_VERSION, TYPE_OF
from schemas.events import REQUEST_ID_PATTERN, DeadLetter
from schemas.register import Register
from schemas.topics import (
    ALL_TOPICS,
    DEAD_LETTER,
    OUTCOMES,
    REQUEST_EVENT_TYPES,
    REQUESTS,
    STATUS,
    TASKS,
    Topic,
)

#: The generated files live in this package, so they ship in the wheel (see package-data).
PACKAGE_DIR = Path(__file__).resolve().parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"

#: Base of every schema's `$id`. A URN, because the schemas have no canonical web address.
ID_BASE = "urn:dsr-orchestrator:schema:"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"
_SIGNATURE_PATTERN = (
    r"^v1;alg=(hmac-sha256|ed25519);publisher=[A-Za-z0-9][A-Za-z0-9._-]{0,63};"
    r"kid=[A-Za-z0-9][A-Za-z0-9._-]{0,63};sig=[A-Za-z0-9+/]+={0,2}$"
)

_HEADER = "Generated from the pydantic models by `python -m schemas.generate`; do not edit."

#: Who sends or receives what, from the point of view of a service around the orchestrator:
#: (operation id, action, topic, CloudEvents type, role, summary).
_OPERATIONS: tuple[tuple[str, str, Topic, str, str, str], ...] = (
    (
        "submitRequest",
        "send",
        REQUESTS,
        "dsr.request.submitted.v1",
        "intake",
        "An intake service (web form, portal, support tool) publishes a request.",
    ),
    (
        "verifyIdentity",
        "send",
        REQUESTS,
        "dsr.request.identity_verified.v1",
        "intake",
        "An intake service reports that the subject's identity was verified.",
    ),
    (
        "receiveTask",
        "receive",
        TASKS,
        "dsr.task.dispatched.v1",
        "connector",
        "A connector worker receives the work for one system.",
    ),
    (
        "reportOutcome",
        "send",
        OUTCOMES,
        "dsr.task.outcome.v1",
        "connector",
        "A connector worker reports what it did for one task.",
    ),
    (
        "followStatus",
        "receive",
        STATUS,
        "dsr.request.status_changed.v1",
        "dashboard",
        "A dashboard or any other service follows every request's state.",
    ),
    (
        "inspectDeadLetters",
        "receive",
        DEAD_LETTER,
        "dsr.deadletter.v1",
        "operations",
        "Operators inspect events that could not be processed, with the reason.",
    ),
)


def json_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of one model, with `$id` and `title`."""
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": DRAFT_2020_12,
        "$id": f"{ID_BASE}{name}",
        "title": schema.pop("title", model.__name__),
        **schema,
    }


def _channel_id(topic: Topic) -> str:
    # "dsr.requests.v1" -> "requests": short, stable and valid as an AsyncAPI identifier.
    return topic.name.split(".")[1]


def _message_id(ce_type: str) -> str:
    return EVENT_TYPES[ce_type].__name__


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _headers_schema(ce_type: str) -> dict[str, Any]:
    """CloudEvents binary content mode, Kafka protocol binding: attributes as `ce_*` headers;
    request events also carry the publisher's signature."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPEC_VERSION},
            "ce_id": {
                "type": "string",
                "minLength": 1,
                "description": "Unique per event within its source (CloudEvents id).",
            },
            "ce_source": {
                "type": "string",
                "minLength": 1,
                "description": "The publishing service, e.g. 'web-form'.",
            },
            "ce_type": {"type": "string", "const": ce_type},
            "ce_time": {"type": "string", "format": "date-time"},
            "content-type": {"type": "string", "const": JSON},
        },
    }
    if ce_type in REQUEST_EVENT_TYPES:
        schema["required"].append(SIGNATURE_HEADER)
        schema["properties"][SIGNATURE_HEADER] = {
            "type": "string",
            "pattern": _SIGNATURE_PATTERN,
            "description": "The publisher's signature of the event's canonical form: "
            "`v1;alg=hmac-sha256|ed25519;publisher=ID;kid=KEY_ID;sig=BASE64` (see "
            "schemas/primitives/signing.py). Unsigned events are dead-lettered.",
        }
    return schema


def _key_schema(ce_type: str) -> dict[str, Any]:
    if ce_type == TYPE_OF[DeadLetter]:
        return {
            "type": "string",
            "description": "The key of the original message, if it had one.",
        }
    return {
        "type": "string",
        "pattern": REQUEST_ID_PATTERN,
        "description": "The request id, so that one request's events stay in order.",
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: topics, messages with CloudEvents headers, operations."""
    models = [EVENT_TYPES[name] for name in sorted(EVENT_TYPES)]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = dict(sorted(definitions["$defs"].items()))

    messages: dict[str, Any] = {}
    for ce_type in sorted(EVENT_TYPES):
        model = EVENT_TYPES[ce_type]
        messages[_message_id(ce_type)] = {
            "name": ce_type,
            "title": model.__name__,
            "summary": _first_line(model.__doc__),
            "contentType": JSON,
            "headers": _headers_schema(ce_type),
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": {
                "kafka": {"key": _key_schema(ce_type), "bindingVersion": KAFKA_BINDING_VERSION}
            },
        }

    channels: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        channels[_channel_id(topic)] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {
                _message_id(TYPE_OF[model]): {
                    "$ref": f"#/components/messages/{_message_id(TYPE_OF[model])}"
                }
                for model in topic.events
            },
            "bindings": {"kafka": {"topic": topic.name, "bindingVersion": KAFKA_BINDING_VERSION}},
        }

    operations: dict[str, Any] = {}
    for op_id, action, topic, ce_type, role, summary in _OPERATIONS:
        channel = _channel_id(topic)
        message = _message_id(ce_type)
        operations[op_id] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "tags": [{"name": role}],
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }

    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "dsr-orchestrator events",
            "version": "1.0.0",
            "description": (
                "Events of the GDPR data-subject-request orchestrator. Every message is a "
                "CloudEvent 1.0 in binary content mode (Kafka protocol binding): attributes in "
                "`ce_*` headers, the JSON body as the value, the request id as the key. "
                "Structured mode (`content-type: application/cloudevents+json`) is accepted "
                "on read. " + _HEADER
            ),
        },
        "defaultContentType": JSON,
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "Your Kafka cluster (DSR_KAFKA_BOOTSTRAP).",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
    # A JSON round trip gives every repeated sub-schema its own object: no YAML anchors.
    result: dict[str, Any] = json.loads(json.dumps(document))
    return result


def render() -> dict[str, str]:
    """Every generated file: path relative to the `schemas` package -> file text."""
    files: dict[str, str] = {}
    targets: list[tuple[str, type[BaseModel]]] = [
        *sorted(EVENT_TYPES.items()),
        ("register", Register),
    ]
    for name, model in targets:
        text = json.dumps(json_schema(model, name), indent=2, ensure_ascii=False)
        files[f"{JSON_DIR}/{name}.schema.json"] = text + "\n"
    body = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    files[ASYNCAPI_FILE] = f"# {_HEADER}\n{body}"
    return files


def _stale(base: Path, files: dict[str, str]) -> list[str]:
    """Schema files on disk that no model produces any more (e.g. a removed event type)."""
    return sorted(
        f"{JSON_DIR}/{path.name}"
        for path in (base / JSON_DIR).glob("*.schema.json")
        if f"{JSON_DIR}/{path.name}" not in files
    )


def drifted(base: Path = PACKAGE_DIR) -> list[str]:
    """Generated files that are missing, differ or are left over on disk, relative to `base`."""
    files = render()
    changed = [
        path
        for path, text in files.items()
        if not (base / path).is_file() or (base / path).read_text(encoding="utf-8") != text
    ]
    return sorted(changed + _stale(base, files))


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files, or with `--check` report the ones that drifted."""
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted()
        for path in stale:
            print(f"out of date: schemas/{path}", file=sys.stderr)
        if stale:
            print("run `python -m schemas.generate` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    files = render()
    for path, text in files.items():
        target = PACKAGE_DIR / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote schemas/{path}")
    for path in _stale(PACKAGE_DIR, files):
        (PACKAGE_DIR / path).unlink()
        print(f"removed schemas/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
