"""Intake: how requests enter: the publishing client, publisher keys, kcat, and the decoding and
signature check of everything the orchestrator reads."""
