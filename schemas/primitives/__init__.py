"""Primitives both sides share: sealing, request signatures, sealed files and the record store."""
