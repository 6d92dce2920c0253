"""Reading spec files: the user's (a path, or a name in $DSR_CONNECTOR_DIR) and the built-in
ones shipped as package data in `connectors/specs/`.

Settings. A spec declares the settings a register entry gives (`settings:`); a string that is
exactly one `{settings.x}` placeholder takes the setting's typed value before the spec is
validated, so `page_size: "{settings.page_size}"` is an integer the register may change.
Placeholders inside longer strings (`"{settings.api_url}/v2"`) are filled in when used.
Without a register entry (listing, checking a file) the settings' defaults are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ConnectorConfigError
from connectors.http import RateLimit, RetryPolicy, lookup
from connectors.vendors.spec.model import ConnectorSpec, SettingSpec

#: Environment variable naming the directory of spec files (`<name>.yaml`).
SPEC_DIR_VARIABLE = "DSR_CONNECTOR_DIR"
#: The package whose data files are the built-in specs.
BUILT_IN_PACKAGE = "connectors.specs"


def find_spec(name: str) -> Path | None:
    """The spec file `<name>.yaml` (or .yml) in $DSR_CONNECTOR_DIR, or None."""
    directory = os.environ.get(SPEC_DIR_VARIABLE)
    if not directory:
        return None
    for suffix in (".yaml", ".yml"):
        candidate = Path(directory) / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def built_in_spec(name: str) -> Path:
    """The built-in spec `connectors/specs/<name>.yaml`."""
    path = Path(str(resources.files(BUILT_IN_PACKAGE) / f"{name}.yaml"))
    if not path.is_file():
        raise ConnectorConfigError(f"no built-in connector spec named {name!r}")
    return path


def built_in_specs() -> list[Path]:
    """Every built-in spec file, by name."""
    folder = Path(str(resources.files(BUILT_IN_PACKAGE)))
    return sorted(folder.glob("*.yaml"))


def read_spec(path: Path) -> dict[str, Any]:
    """The spec file's YAML as a mapping; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConnectorConfigError(f"{path}: cannot read the spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConnectorConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConnectorConfigError(f"{path}: expected a mapping with name, rights and find")
    return data


def problems(source: Any, exc: ValidationError, prefix: str = "") -> str:
    """A validation error as `file: field.path: message; ...`, never quoting an input."""
    found = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        found.append(f"{source}: {prefix}{where}: {message}")
    return "; ".join(found)


class _Connection(BaseModel):
    """The part of a spec the settings model is built from."""

    model_config = ConfigDict(extra="ignore")
    name: str = "spec"
    settings: dict[str, SettingSpec] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: float = 30.0


class NoSettings(BaseModel):
    """The base of a settings model: nothing but what the spec declares."""

    model_config = ConfigDict(extra="forbid")


def settings_model(
    data: Mapping[str, Any], source: Any, base: type[BaseModel] = NoSettings
) -> type[BaseModel]:
    """The model of the register settings the spec `data` declares (see `ConnectorSpec`)."""
    try:
        part = _Connection.model_validate(data)
    except ValidationError as exc:
        raise ConnectorConfigError(problems(source, exc)) from None
    spec = ConnectorSpec.model_construct(
        name=part.name,
        settings=part.settings,
        rate_limit=part.rate_limit,
        retry=part.retry,
        timeout_seconds=part.timeout_seconds,
    )
    return spec.settings_model(base)


def defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """The declared settings' defaults."""
    declared = data.get("settings") or {}
    return {
        name: setting.get("default")
        for name, setting in declared.items()
        if isinstance(setting, dict) and setting.get("default") is not None
    }


def with_settings(value: Any, settings: Mapping[str, Any]) -> Any:
    """`value` with every string that is exactly one `{settings.x}` replaced by the typed
    setting (when it has a value); everything else as it was."""
    if isinstance(value, str):
        parts = list(Formatter().parse(value)) if "{" in value else []
        if len(parts) == 1 and parts[0][0] == "" and (parts[0][1] or "").startswith("settings."):
            found = lookup({"settings": settings}, parts[0][1] or "")
            return value if found is None else found
        return value
    if isinstance(value, Mapping):
        # The declarations under `settings:` stay as written.
        return {k: v if k == "settings" else with_settings(v, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [with_settings(v, settings) for v in value]
    return value


def validate_spec(
    data: Mapping[str, Any], source: Any, settings: Mapping[str, Any] | None = None
) -> ConnectorSpec:
    """The spec `data` with `settings` (default: the declared defaults) filled in, validated;
    errors name `source` (the file) and the field path."""
    values = defaults(data) if settings is None else dict(settings)
    try:
        return ConnectorSpec.model_validate(with_settings(data, values))
    except ValidationError as exc:
        raise ConnectorConfigError(problems(source, exc)) from None


def load_spec(path: str | Path, settings: Mapping[str, Any] | None = None) -> ConnectorSpec:
    """Read and validate a spec file; errors name the file and the field path."""
    path = Path(path)
    return validate_spec(read_spec(path), path, settings)


def resolve(spec: str) -> Path:
    """The spec file a register entry names: a path, or a name in $DSR_CONNECTOR_DIR."""
    given = Path(spec)
    if given.is_file():
        return given
    if given.suffix == "" and "/" not in spec:
        found = find_spec(spec)
        if found is not None:
            return found
    where = os.environ.get(SPEC_DIR_VARIABLE)
    hint = f" (nor {spec}.yaml in {SPEC_DIR_VARIABLE}={where})" if where else ""
    raise ConnectorConfigError(f"spec file {spec!r} not found{hint}")


__all__ = [
    "BUILT_IN_PACKAGE",
    "SPEC_DIR_VARIABLE",
    "NoSettings",
    "built_in_spec",
    "built_in_specs",
    "defaults",
    "find_spec",
    "load_spec",
    "problems",
    "read_spec",
    "resolve",
    "settings_model",
    "validate_spec",
    "with_settings",
]
