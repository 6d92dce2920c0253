"""Local fakes of vendor APIs for connector tests: real HTTP servers on loopback ports."""

from connectors.fakes.server import FakeServer, Faults, LoggedRequest

__all__ = ["FakeServer", "Faults", "LoggedRequest"]
