"""Contracts of dsr-orchestrator: event bodies, the CloudEvents envelope, topics, the register.

The names below are imported on first use, so `import schemas.errors` (as the CLI does before
it knows which command runs) does not pay for pydantic and every model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ALL_TOPICS": "schemas.topics",
    "Counts": "schemas.events",
    "DEAD_LETTER": "schemas.topics",
    "DeadLetter": "schemas.events",
    "Envelope": "schemas.envelope",
    "EnvelopeError": "schemas.envelope",
    "Evidence": "schemas.events",
    "FieldChange": "schemas.events",
    "Identifier": "schemas.events",
    "IdentityVerification": "schemas.events",
    "IdentityVerified": "schemas.events",
    "KafkaMessage": "schemas.envelope",
    "KafkaSettings": "schemas.kafka",
    "OUTCOMES": "schemas.topics",
    "OutcomeStatus": "schemas.events",
    "REQUESTS": "schemas.topics",
    "Record": "schemas.events",
    "Register": "schemas.register",
    "RegisterError": "schemas.register",
    "RequestStatus": "schemas.events",
    "RequestStatusChanged": "schemas.events",
    "RequestSubmitted": "schemas.events",
    "RequestType": "schemas.events",
    "RetainedItem": "schemas.events",
    "STATUS": "schemas.topics",
    "SealedValue": "schemas.events",
    "StatusTrigger": "schemas.events",
    "Subject": "schemas.events",
    "System": "schemas.register",
    "SystemProgress": "schemas.events",
    "TASKS": "schemas.topics",
    "TaskDispatched": "schemas.events",
    "TaskOutcome": "schemas.events",
    "Topic": "schemas.topics",
    "VerificationMethod": "schemas.events",
    "decode": "schemas.envelope",
    "encode": "schemas.envelope",
    "load_register": "schemas.register",
    "parse_register": "schemas.register",
}


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
