"""Connector metadata: every built-in connector describes every collection its access exports,
with a label for every field, and says what the subject provided (Art. 12(1), 20(1) GDPR)."""

from __future__ import annotations

import importlib
from importlib import resources

import pytest

from connectors.metadata import CollectionInfo, MetadataError, collection_info, packaged
from schemas.register import parse_register
from tests.connectors.targets import completed

#: Built-in connectors with a vendor fake: the test module that seeds it and builds the connector.
WITH_FAKE = ["activecampaign", "freshdesk", "hubspot", "intercom", "mailchimp", "zendesk"]
#: Every built-in vendor connector (Tawk.to is manual: a person attaches what they found).
BUILT_IN = [*WITH_FAKE, "tawkto"]


@pytest.mark.parametrize("connector", BUILT_IN)
def test_every_builtin_connector_ships_valid_metadata(connector: str) -> None:
    infos = packaged(connector)
    assert infos, f"connectors/metadata/{connector}.yaml is missing or empty"
    for name, info in infos.items():
        assert info.title is not None, f"{connector}/{name}: no title"
        if isinstance(info.provided, list):
            assert info.provided, f"{connector}/{name}: an empty list; write none"
        if info.date_field is not None:
            assert info.date_field in info.fields, f"{connector}/{name}: date field unlabelled"


@pytest.mark.parametrize("connector", WITH_FAKE)
def test_every_exported_collection_and_field_is_described(connector: str) -> None:
    """Run the connector's access against its fake: every collection it exports has an entry,
    and every field its records carry a label in both languages (no raw vendor names)."""
    module = importlib.import_module(f"tests.connectors.vendors.test_{connector}")
    with module.FAKE() as fake:
        if hasattr(module, "seed"):
            module.seed(fake)
        else:
            fake.reset()
        outcome = completed(fake, module.build(fake), module.SUBJECT)
    infos = packaged(connector)
    seen: dict[str, set[str]] = {}
    for record in outcome.records:
        seen.setdefault(record.collection, set()).update(record.data)
    assert seen, "the fake's access found nothing to check"
    for collection, fields in seen.items():
        assert collection in infos, f"{connector}: collection {collection!r} has no metadata"
        unlabelled = sorted(f for f in fields if f not in infos[collection].fields)
        assert not unlabelled, f"{connector}/{collection}: no label for {unlabelled}"


@pytest.mark.parametrize(
    ("connector", "collection"),
    [
        ("activecampaign", "scoreValues"),
        ("activecampaign", "notes"),
        ("activecampaign", "deals"),
        ("hubspot", "notes"),
        ("intercom", "tags"),
        ("mailchimp", "notes"),
    ],
)
def test_art_20_1_inferred_and_staff_collections_are_not_provided(
    connector: str, collection: str
) -> None:
    """WP29 Guidelines on data portability (WP 242 rev.01, section III): scores, deals, tags
    and staff notes are the controller's, inferred or derived, not provided by the subject."""
    assert packaged(connector)[collection].provided == "none"


@pytest.mark.parametrize(
    ("connector", "collection"),
    [
        ("activecampaign", "trackingLogs"),
        ("activecampaign", "geoIps"),
        ("mailchimp", "activity"),
        ("tawkto", "chats"),
    ],
)
def test_art_20_1_observed_data_is_provided(connector: str, collection: str) -> None:
    """WP 242 rev.01, section III: data observed from the use of the service (opens, clicks,
    IP addresses, chats typed) counts as provided by the subject."""
    assert packaged(connector)[collection].provided == "all"


def test_nested_provided_fields_keep_only_those_keys() -> None:
    info = packaged("hubspot")["contacts"]
    data = {
        "id": "501",
        "properties": {"email": "a@example.nl", "firstname": "Anna", "hubspotscore": "80"},
        "archived": False,
    }
    kept, dropped = info.provided_part(data)
    assert kept == {"id": "501", "properties": {"email": "a@example.nl", "firstname": "Anna"}}
    assert dropped == ["properties.hubspotscore", "archived"]
    assert CollectionInfo(provided="none").provided_part(data) == ({}, list(data))
    assert CollectionInfo().provided_part(data) == (data, [])


def test_register_overrides_labels_and_what_was_provided() -> None:
    system = parse_register(
        {
            "systems": [
                {
                    "name": "mailing",
                    "kind": "mailing",
                    "connector": "activecampaign",
                    "data_categories": ["contactgegevens"],
                    "purposes": ["nieuwsbrief"],
                    "legal_basis": ["consent"],
                    "profiling": "none",
                    "retention": "1 jaar",
                    "glossary": {"fieldValues": {"value": {"nl": "Antwoord", "en": "Answer"}}},
                    "provided": {"notes": "all"},
                }
            ]
        }
    ).get("mailing")
    infos = collection_info(system)
    assert infos["fieldValues"].label("value", "nl") == "Antwoord"
    assert infos["fieldValues"].label("field", "en") == "Field"  # the rest kept
    assert infos["notes"].provided == "all"


def test_an_invalid_metadata_file_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    real = resources.files

    class _Broken:
        def __truediv__(self, name: str) -> _Broken:
            return self

        def is_file(self) -> bool:
            return True

        def read_text(self, encoding: str) -> str:
            return "collections: {tickets: {provided: sometimes}}"

    monkeypatch.setattr(resources, "files", lambda package: _Broken())
    packaged.cache_clear()
    try:
        with pytest.raises(MetadataError, match=r"connectors/metadata/broken\.yaml"):
            packaged("broken")
    finally:
        monkeypatch.setattr(resources, "files", real)
        packaged.cache_clear()
