"""Intake: how requests enter: the publishing client, publisher keys, kcat."""
