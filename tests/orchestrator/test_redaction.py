"""`protect`: other people's data in a record is redacted, or the record held for review.

Art. 15(4) GDPR and EDPB Guidelines 01/2022 (v2.1, section 6.2): the copy leaves out or makes
illegible what concerns others and gives the subject the rest.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.artifacts.redaction import MARKERS, protect
from schemas.events import Record

CONVERSATION: dict[str, Any] = {
    "id": "c1",
    "contacts": [{"id": "anna"}, {"id": "jan", "email": "jan@example.com"}],
    "parts": [
        {"id": "p0", "author": {"name": "Jan"}, "body": "Jan's message", "created_at": 1},
        {"id": "p1", "author": {"name": "Anna"}, "body": "Anna's message", "created_at": 2},
    ],
    "a/b": "slash key",
    "m~n": "tilde key",
}


def _record(*others: str) -> Record:
    return Record(collection="conversations", data=CONVERSATION, others=list(others))


def test_art_15_4_other_persons_values_replaced_by_the_marker() -> None:
    out = protect(_record("/contacts/1", "/parts/0/body", "/parts/0/author"), "redact", "en")
    assert out is not None and out.others == []
    marker = MARKERS["en"]
    assert out.data["contacts"] == [{"id": "anna"}, marker]  # an object goes as a whole
    parts: Any = out.data["parts"]
    assert parts[0] == {"id": "p0", "author": marker, "body": marker, "created_at": 1}
    assert parts[1] == CONVERSATION["parts"][1]  # the subject's own message stays
    assert "jan@example.com" not in out.model_dump_json()


def test_art_15_4_marker_is_in_the_documents_language() -> None:
    out = protect(_record("/parts/0/body"), "redact", "nl")
    assert out is not None
    parts: Any = out.data["parts"]
    assert parts[0]["body"] == "[afgeschermd: gegevens van een ander]"


def test_art_15_4_hold_keeps_the_record_back_for_review() -> None:
    assert protect(_record("/parts/0/body"), "hold", "nl") is None


def test_a_record_about_the_subject_alone_is_unchanged() -> None:
    record = _record()
    assert protect(record, "redact", "en") is record
    assert protect(record, "hold", "en") is record


def test_escaped_tokens_are_unescaped_per_rfc_6901() -> None:
    out = protect(_record("/a~1b", "/m~0n"), "redact", "en")
    assert out is not None
    assert out.data["a/b"] == MARKERS["en"] and out.data["m~n"] == MARKERS["en"]


def test_pointers_that_do_not_resolve_are_ignored() -> None:
    bad = ["/nope", "/parts/9/body", "/parts/01/body", "/parts/-", "/id/x", "/x~2y", "/parts/a"]
    out = protect(_record(*bad), "redact", "en")
    assert out is not None and out.data == CONVERSATION and out.others == []


def test_the_original_record_is_not_changed() -> None:
    record = _record("/parts/0/body")
    protect(record, "redact", "en")
    assert record.data["parts"] == CONVERSATION["parts"]


@given(st.lists(st.text(alphabet="/~01ab-", max_size=12).map(lambda t: "/" + t), max_size=6))
def test_any_pointer_is_handled_without_error(pointers: list[str]) -> None:
    out = protect(_record(*pointers), "redact", "en")
    assert (out is not None and out.others == []) or not pointers
