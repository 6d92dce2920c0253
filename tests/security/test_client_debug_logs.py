"""The Kafka clients' DEBUG lines print whole messages; they never reach our logs."""

from __future__ import annotations

import logging

from orchestrator.cli.options import KAFKA_CLIENT_LOGGERS, setup_logging


def test_kafka_client_debug_lines_with_message_values_are_never_logged() -> None:
    """aiokafka's producer logs each record's value at DEBUG: personal data (Art. 32 GDPR,
    Art. 5(1)(f)); even a command run at DEBUG keeps the client libraries at INFO."""
    before = {name: logging.getLogger(name).level for name in KAFKA_CLIENT_LOGGERS}
    root = logging.getLogger()
    root_level = root.level
    try:
        root.setLevel(logging.DEBUG)  # as `setup_logging("DEBUG")` makes it outside pytest
        setup_logging("DEBUG")
        for name in KAFKA_CLIENT_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
            assert not logging.getLogger(f"{name}.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(root_level)
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
