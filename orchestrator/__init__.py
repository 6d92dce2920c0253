"""The orchestrator: intake, fan-out, collection, completion, deadlines, CLI."""
