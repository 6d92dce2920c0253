"""Topic configs for `dsr topics create --config [TOPIC:]KEY=VALUE`."""

from __future__ import annotations

import pytest

from orchestrator.runtime.topics import parse_topic_configs, topic_names
from schemas.topics import STATUS


def test_general_configs_apply_to_every_topic_and_specific_ones_win() -> None:
    configs = parse_topic_configs(
        ["retention.ms=1000", "min.insync.replicas=2", f"{STATUS.name}:retention.ms=-1"]
    )
    assert sorted(configs) == sorted(topic_names())
    assert configs[STATUS.name] == {"retention.ms": "-1", "min.insync.replicas": "2"}
    others = [configs[name] for name in topic_names() if name != STATUS.name]
    assert all(c == {"retention.ms": "1000", "min.insync.replicas": "2"} for c in others)


def test_no_items_means_no_configs() -> None:
    assert parse_topic_configs([]) == {name: {} for name in topic_names()}


def test_a_value_may_contain_separators() -> None:
    configs = parse_topic_configs([f"{STATUS.name}:message.format=a=b:c"])
    assert configs[STATUS.name] == {"message.format": "a=b:c"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("dsr.typo.v1:retention.ms=1", "unknown topic 'dsr.typo.v1'"),
        ("retention.ms", "use KEY=VALUE or TOPIC:KEY=VALUE"),
        (f"{STATUS.name}:=1", "use KEY=VALUE or TOPIC:KEY=VALUE"),
    ],
)
def test_mistakes_are_named(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_topic_configs([item])
