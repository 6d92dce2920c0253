"""Placeholder; replaced by the PostgreSQL fixture."""
