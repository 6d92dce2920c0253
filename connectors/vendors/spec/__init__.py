"""Vendors declared in YAML: the spec model, its engine, hooks and computed values.

A spec file (see `docs/add-a-processor.md`) describes how to find a subject at a vendor, what
hangs off each record found, and how each right is carried out: by calls, or as a manual task
with instructions. `SpecRunner` carries a spec out over `connectors.http`; `SpecConnector` is
the base of a built-in vendor that is a spec (`connectors/specs/<name>.yaml`), and
`connectors.declarative.DeclarativeConnector` the `rest` connector for a user's spec file.
"""

from connectors.vendors.spec.connector import SpecConnector, SpecSettings, make_client
from connectors.vendors.spec.engine import SpecRunner, holds
from connectors.vendors.spec.expressions import FUNCTIONS, ExpressionError
from connectors.vendors.spec.hooks import FoundRecord, HookContext, Hooks, load_hooks
from connectors.vendors.spec.loading import (
    SPEC_DIR_VARIABLE,
    built_in_spec,
    built_in_specs,
    find_spec,
    load_spec,
)
from connectors.vendors.spec.model import (
    SUPPORTED_RIGHTS,
    ActionSpec,
    ConnectorSpec,
    EraseStep,
    FindSpec,
    JobSpec,
    RelatedSpec,
    Step,
    SweepSpec,
)

__all__ = [
    "FUNCTIONS",
    "SPEC_DIR_VARIABLE",
    "SUPPORTED_RIGHTS",
    "ActionSpec",
    "ConnectorSpec",
    "EraseStep",
    "ExpressionError",
    "FindSpec",
    "FoundRecord",
    "HookContext",
    "Hooks",
    "JobSpec",
    "RelatedSpec",
    "SpecConnector",
    "SpecRunner",
    "SpecSettings",
    "Step",
    "SweepSpec",
    "built_in_spec",
    "built_in_specs",
    "find_spec",
    "holds",
    "load_hooks",
    "load_spec",
    "make_client",
]
