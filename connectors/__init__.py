"""Connectors: the contract, the runtime that runs them on tasks, and built-in connectors."""

from connectors.base import Connector, ConnectorConfigError, ConnectorError, Result
from connectors.execute import perform

__all__ = ["Connector", "ConnectorConfigError", "ConnectorError", "Result", "perform"]
