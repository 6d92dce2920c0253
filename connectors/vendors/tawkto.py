"""Tawk.to (live chat): the built-in spec `connectors/specs/tawkto.yaml`, manual tasks only.

Tawk.to documents no public API for search or deletion, so every right is a manual task whose
numbered instructions walk a person through the dashboard (see the spec); retention sweeps
become manual sweep tasks. This module only names the class the `tawkto` entry point loads.
"""

from __future__ import annotations

from connectors.vendors.spec import SpecConnector


class TawkToConnector(SpecConnector, spec="tawkto"):
    """Chat history in Tawk.to, handled by a person in the Tawk.to dashboard."""


#: The register settings: dashboard_url and property_name.
TawkToSettings = TawkToConnector.settings_model

__all__ = ["TawkToConnector", "TawkToSettings"]
