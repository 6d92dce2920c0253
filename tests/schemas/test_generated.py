"""The committed JSON Schema files and AsyncAPI document match the pydantic models."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from schemas import generate
from schemas.envelope import EVENT_TYPES, encode, header_dict
from schemas.primitives.signing import RequestSigner
from schemas.topics import ALL_TOPICS, REQUEST_EVENT_TYPES
from tests.schemas.conftest import all_samples

FIX = "run `python -m schemas.generate` and commit the result"


def _asyncapi() -> dict[str, Any]:
    text = (generate.PACKAGE_DIR / generate.ASYNCAPI_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_committed_files_match_the_models() -> None:
    drifted = generate.drifted()
    assert not drifted, f"generated files are out of date: {', '.join(drifted)}; {FIX}"


def test_render_is_deterministic() -> None:
    assert generate.render() == generate.render()


def test_check_flag_reports_drift(tmp_path: Any) -> None:
    assert generate.drifted(tmp_path) == sorted(generate.render())
    for path, text in generate.render().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert generate.drifted(tmp_path) == []
    (tmp_path / "json" / "dsr.removed.v1.schema.json").write_text("{}", encoding="utf-8")
    assert generate.drifted(tmp_path) == ["json/dsr.removed.v1.schema.json"]


def test_one_schema_file_per_event_type_and_the_register() -> None:
    expected = {f"json/{name}.schema.json" for name in [*EVENT_TYPES, "register"]}
    assert {p for p in generate.render() if p.startswith("json/")} == expected


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_schema_files_are_draft_2020_12_with_id_and_title(ce_type: str) -> None:
    path = generate.PACKAGE_DIR / "json" / f"{ce_type}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(ce_type)
    assert schema["title"] == EVENT_TYPES[ce_type].__name__


def test_every_event_type_has_a_sample() -> None:
    assert set(all_samples()) == set(EVENT_TYPES)


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_sample_validates_against_its_json_schema(
    ce_type: str, samples: dict[str, BaseModel]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    path = generate.PACKAGE_DIR / "json" / f"{ce_type}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    instance = json.loads(encode(samples[ce_type], source="tests").value)
    jsonschema.Draft202012Validator(schema).validate(instance)

    # The schema is strict like the model: an unknown field is rejected.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**instance, "unexpected": 1})


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_sample_validates_against_the_asyncapi_message(
    ce_type: str, samples: dict[str, BaseModel]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = _asyncapi()
    messages = document["components"]["messages"]
    (message,) = [m for m in messages.values() if m["name"] == ce_type]

    # Resolve the payload's $ref inside the document itself.
    payload_schema = {**document, **message["payload"]}
    encoded = encode(samples[ce_type], source="tests")
    if ce_type in REQUEST_EVENT_TYPES:  # request events must carry a publisher's signature
        encoded = RequestSigner.from_secret("tests", "s" * 32).sign(encoded)
    jsonschema.Draft202012Validator(payload_schema).validate(json.loads(encoded.value))
    jsonschema.Draft202012Validator(message["headers"]).validate(header_dict(encoded.headers))
    assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_asyncapi_has_a_channel_for_every_topic() -> None:
    document = _asyncapi()
    assert document["asyncapi"] == "3.0.0"
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        channel = channels[topic.name]
        assert channel["description"] == topic.description
        names = {
            document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
            for ref in channel["messages"].values()
        }
        assert names == {t for t, m in EVENT_TYPES.items() if m in topic.events}


def test_asyncapi_operations_point_at_existing_channels_and_messages() -> None:
    document = _asyncapi()
    actions = {}
    for op_id, operation in document["operations"].items():
        channel_id = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel_id in document["channels"], op_id
        for ref in operation["messages"]:
            prefix = f"#/channels/{channel_id}/messages/"
            assert ref["$ref"].startswith(prefix), op_id
            assert ref["$ref"].removeprefix(prefix) in document["channels"][channel_id]["messages"]
        actions[document["channels"][channel_id]["address"], operation["action"]] = op_id
    assert ("dsr.requests.v1", "send") in actions
    assert ("dsr.status.v1", "receive") in actions
