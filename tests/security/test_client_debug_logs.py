"""The Kafka clients' DEBUG lines print whole messages; they never reach our logs."""

from __future__ import annotations

import logging
import logging.config

from orchestrator.cli.options import (
    KAFKA_CLIENT_LOGGERS,
    LOG_FORMAT,
    faust_logging,
    setup_logging,
)


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


def test_the_faust_workers_logging_keeps_kafka_client_debug_lines_out_too() -> None:
    """The orchestrator's Faust worker sets up logging itself (`faust_logging`): at DEBUG too,
    the client libraries stay at INFO, and lines have the plain format of our other processes."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    before = {name: logging.getLogger(name).level for name in KAFKA_CLIENT_LOGGERS}
    try:
        logging.config.dictConfig(faust_logging("DEBUG"))
        assert root.isEnabledFor(logging.DEBUG)
        for name in KAFKA_CLIENT_LOGGERS:
            assert not logging.getLogger(f"{name}.producer.producer").isEnabledFor(logging.DEBUG)
        [handler] = root.handlers
        assert handler.formatter is not None and handler.formatter._fmt == LOG_FORMAT
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
