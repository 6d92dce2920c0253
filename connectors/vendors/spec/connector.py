"""Connectors made of a spec: a built-in vendor is a class that names its spec file.

    class ActiveCampaignConnector(SpecConnector, spec="activecampaign"):
        '''ActiveCampaign contacts with their lists, deals, notes, logs and activities.'''

The class reads `connectors/specs/activecampaign.yaml` once: its declared settings become the
class's settings model (validated by `Connector` like any other), its rights, actions and
manual entries its `capabilities`, its sweeps `sweeps`. Each instance fills the register's
settings into the spec and carries it out with one `SpecRunner` and one `HttpClient`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from connectors.base import Connector, ConnectorConfigError, Result, SweepResult
from connectors.http import (
    Auth,
    HttpClient,
    RateLimit,
    RetryPolicy,
    TemplateError,
    render,
    render_value,
)
from connectors.vendors.spec.engine import SpecRunner
from connectors.vendors.spec.hooks import load_hooks
from connectors.vendors.spec.loading import built_in_spec, read_spec, settings_model, validate_spec
from connectors.vendors.spec.model import ConnectorSpec
from schemas.events import FieldChange, RequestType, Subject
from schemas.sweeps import SweepRule


class SpecSettings(BaseModel):
    """The settings of a spec connector: exactly what its spec declares, plus rate_limit,
    retry and timeout_seconds (defaulting to the spec's)."""

    model_config = ConfigDict(extra="forbid")

    def auth(self) -> Auth | None:
        """How requests sign in, where the spec's `auth` cannot say it (a vendor that takes a
        token or a key, whichever the settings give): a settings base overrides it. None: the
        spec's `auth`."""
        return None


def make_client(
    system: str,
    spec: ConnectorSpec,
    settings: Mapping[str, Any],
    *,
    credentials: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    auth: Auth | None = None,
    source: Any = "",
) -> HttpClient | None:
    """The HTTP client a spec's calls go through, its templates filled with the settings and
    credentials; None for a spec that calls nothing (only manual tasks). `auth` replaces the
    spec's."""
    url = base_url or spec.base_url
    values = {"credentials": dict(credentials or {}), "settings": dict(settings)}
    if not url:
        if spec.rights or spec.actions or spec.sweeps:
            raise ConnectorConfigError(
                f"{source}: base_url: set it in the spec or in the settings of system {system!r}"
            )
        return None
    try:
        auth = auth or Auth.model_validate(render_value(spec.auth.model_dump(), values))
        url = render(url, values)
        headers = {k: render(v, values) for k, v in spec.headers.items()}
    except TemplateError as exc:
        raise ConnectorConfigError(
            f"{source}: auth: {exc}; add it under settings.credentials of system {system!r}"
        ) from None
    return HttpClient(
        system,
        url,
        auth,
        _setting(settings, "rate_limit", RateLimit, spec.rate_limit),
        _setting(settings, "retry", RetryPolicy, spec.retry),
        float(settings.get("timeout_seconds") or spec.timeout_seconds),
        headers=headers,
    )


def _setting(settings: Mapping[str, Any], name: str, model: type[Any], default: Any) -> Any:
    value = settings.get(name)
    return default if value is None else model.model_validate(value)


class SpecConnector(Connector[SpecSettings]):
    """A connector whose behaviour is a spec file; see the module docstring."""

    #: The spec file and its data, read once per class.
    spec_path: ClassVar[Path]
    spec_data: ClassVar[dict[str, Any]]
    #: The spec with its settings' defaults: what `dsr connectors list` shows.
    default_spec: ClassVar[ConnectorSpec]

    def __init_subclass__(
        cls,
        spec: str | Path | None = None,
        settings: type[SpecSettings] = SpecSettings,
        **kwargs: Any,
    ) -> None:
        """`spec`: the built-in spec's name or a file; `settings`: the base of the settings
        model, for a check across settings the spec cannot declare (one of two given)."""
        super().__init_subclass__(**kwargs)
        if spec is None:
            return
        cls.spec_path = spec if isinstance(spec, Path) else built_in_spec(spec)
        cls.spec_data = read_spec(cls.spec_path)
        cls.settings_model = settings_model(cls.spec_data, cls.spec_path, settings)
        cls.default_spec = validate_spec(cls.spec_data, cls.spec_path)
        cls.capabilities = cls.default_spec.capabilities()
        cls.description = cls.default_spec.description
        cls.sweeps = bool(cls.default_spec.sweeps)
        if cls.default_spec.collections:
            cls.collections = cls.default_spec.collections

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        values = self.settings.model_dump()
        self.spec = validate_spec(self.spec_data, self.spec_path, values)
        # A declared `base_url` setting (tests, proxies) overrides the spec's.
        client = make_client(
            system,
            self.spec,
            values,
            base_url=values.get("base_url"),
            auth=self.settings.auth(),
            source=self.spec_path,
        )
        hooks = load_hooks(self.spec.hooks, self.spec_path)
        self.runner = SpecRunner(
            system, self.spec, client, hooks, values, source=str(self.spec_path)
        )

    @property
    def http(self) -> HttpClient:
        """The HTTP client, as a Python vendor connector's `http`."""
        return self.runner.client

    async def access(self, subject: Subject) -> Result:
        """Every record of the subject (Art. 15), or the spec's manual task."""
        return await self.runner.access(subject)

    async def portability(self, subject: Subject) -> Result:
        """As access (Art. 20); the export keeps what the subject provided."""
        return await self.runner.access(subject, RequestType.PORTABILITY)

    async def erase(self, subject: Subject) -> Result:
        """The spec's erase steps for every found record (Art. 17), or its manual task."""
        return await self.runner.erase(subject)

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """The spec's rectification steps (Art. 16), or its manual task."""
        return await self.runner.act(RequestType.RECTIFICATION, subject, changes)

    async def restrict(self, subject: Subject) -> Result:
        """The spec's restriction steps (Art. 18), or its manual task."""
        return await self.runner.act(RequestType.RESTRICTION, subject)

    async def object(self, subject: Subject) -> Result:
        """The spec's objection steps (Art. 21), or its manual task."""
        return await self.runner.act(RequestType.OBJECTION, subject)

    async def withdraw_consent(self, subject: Subject) -> Result:
        """The spec's consent-withdrawal steps (Art. 7(3)), or its manual task."""
        return await self.runner.act(RequestType.CONSENT_WITHDRAWAL, subject)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """The spec's retention sweeps (Art. 5(1)(e))."""
        return await self.runner.sweep(rules, dry_run=dry_run)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.runner.aclose()


__all__ = ["SpecConnector", "SpecSettings", "make_client"]
