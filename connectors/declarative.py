"""REST connectors declared in YAML: a new vendor is one short file, not a Python class.

The register names the connector `rest` and points at a spec file:

    - name: crm
      connector: rest
      settings:
        spec: examples/connectors/acme.yaml    # or a bare name looked up in $DSR_CONNECTOR_DIR
        base_url: https://acme.example/api     # optional: overrides the spec's base_url
        credentials: {token: "${ACME_TOKEN}"}  # filled into the spec's "{credentials.token}"
        page_size: 50                          # any setting the spec declares (`settings:`)

The spec (`connectors.vendors.spec.ConnectorSpec`; every key with an example in
`docs/add-a-processor.md`) says how to find the subject (`find`), which records hang off each
found record (`related`, nested), which calls erase it (`erase`), how the other rights are
carried out (`actions`, `manual`) and how retention sweeps run (`sweeps`). The built-in
vendors that are specs (`connectors/specs/`) run on the same engine (`SpecRunner`).

Exact matches. A vendor's search is not trusted to match exactly: some match partially, some
treat `*` or `%` as wildcards, so `*@example.com` would find (and erase) everyone there. A
search result is kept only when one of its identifier fields (`find.match`, by default a field
named after each identifier `find` uses: `{email: email}`) equals one of the subject's
identifiers exactly: e-mail ignoring case, phone as E.164 digits. A result without any of
those fields fails the task (the spec names the wrong field). `match: none` keeps every
result and logs a warning. Placeholder values are percent-encoded, and a `.` or `..` path
segment after substitution is refused (`connectors.http.render_path`).

Personal data and URLs: the subject's values are only ever rendered into a request by the HTTP
layer; log lines and error messages show the spec's templates (`GET /contacts?email={email}`),
never a rendered URL, and never a vendor's error body (vendors echo what they did not find).

Hot reload: before each task the connector compares the spec file's mtime and size with what
it loaded; a changed file takes effect on that task, without a restart. A spec made invalid on
disk fails tasks with a message naming the file and field until it is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import Connector, ConnectorConfigError, Result, SweepResult
from connectors.http import HttpClient
from connectors.vendors.spec import (
    SPEC_DIR_VARIABLE,
    SUPPORTED_RIGHTS,
    ConnectorSpec,
    EraseStep,
    FindSpec,
    JobSpec,
    RelatedSpec,
    SpecRunner,
    find_spec,
    load_hooks,
    load_spec,
    make_client,
)
from connectors.vendors.spec.loading import problems, read_spec, resolve, validate_spec
from connectors.vendors.spec.loading import settings_model as declared_settings
from schemas.events import FieldChange, RequestType, Subject
from schemas.sweeps import SweepRule

log = logging.getLogger(__name__)


class DeclarativeSettings(BaseModel):
    """Settings of the `rest` connector in the register; any other key is a setting the spec
    declares (`settings:`), checked against it when the spec is loaded."""

    model_config = ConfigDict(extra="allow")
    spec: str = Field(description="Spec file, or a name looked up in $DSR_CONNECTOR_DIR.")
    base_url: str | None = Field(default=None, description="Overrides the spec's base_url.")
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConnectorConfigError(f"{path}: cannot read the spec ({exc.strerror})") from None
    return info.st_mtime_ns, info.st_size, info.st_ino


class _LiveCapabilities:
    """`capabilities` read from the spec as it is on disk now (the runtime checks it first)."""

    def __get__(self, obj: DeclarativeConnector | None, owner: type) -> frozenset[RequestType]:
        if obj is None:
            return SUPPORTED_RIGHTS
        try:
            return obj._current().spec.capabilities()
        except ConnectorConfigError:
            # Let the task run, so it fails with the spec's error instead of turning manual.
            return SUPPORTED_RIGHTS


class _LiveSweeps:
    """`sweeps`: whether the spec on disk now declares retention sweeps."""

    def __get__(self, obj: DeclarativeConnector | None, owner: type) -> bool:
        if obj is None:
            return False
        try:
            return bool(obj._current().spec.sweeps)
        except ConnectorConfigError:
            return True  # run the sweep task, so it fails with the spec's error


class _LiveCollections:
    """`collections`: the titles and glossary the spec on disk now gives (for the export)."""

    def __get__(self, obj: DeclarativeConnector | None, owner: type) -> Mapping[str, Any]:
        if obj is None:
            return {}
        try:
            return obj._current().spec.collections
        except ConnectorConfigError:
            return {}


@dataclass(frozen=True, slots=True)
class _Loaded:
    spec: ConnectorSpec
    runner: SpecRunner
    client: HttpClient | None
    client_key: Any


class DeclarativeConnector(Connector[DeclarativeSettings]):
    """A REST vendor described by a YAML spec; the HTTP layer owns paging, limits and retries."""

    capabilities = _LiveCapabilities()
    sweeps = _LiveSweeps()
    collections = _LiveCollections()
    description = "REST API described by a YAML spec (connectors/declarative.py)."

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self.spec_path = resolve(self.settings.spec)
        self._stamp: tuple[int, int, int] | None = None
        self._loaded: _Loaded | None = None
        self._error: ConnectorConfigError | None = None
        self._retired: list[HttpClient] = []
        self._current()  # an invalid spec fails at start-up, not on the first task

    @property
    def spec(self) -> ConnectorSpec:
        """The spec in use now (reloaded if the file changed)."""
        return self._current().spec

    def _current(self) -> _Loaded:
        stamp = _stamp(self.spec_path)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._loaded = self._load()
                self._error = None
                log.info("%s: loaded connector spec %s", self.system, self.spec_path)
            except ConnectorConfigError as exc:
                self._error = ConnectorConfigError(str(exc), retryable=True)  # fixable on disk
                log.error("%s: %s", self.system, exc)
        if self._error is not None:
            raise self._error
        assert self._loaded is not None
        return self._loaded

    def _warn_unmatched(self, spec: ConnectorSpec) -> None:
        if spec.find is not None and spec.find.match == "none":
            log.warning(
                "%s: %s: find.match is none: search results are kept as the vendor returns "
                "them, without an exact identifier match; a search treating * or %% as a "
                "wildcard would hand over or erase other people",
                self.system,
                self.spec_path,
            )

    def _declared(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The settings the spec declares, from the register entry's other keys."""
        model = declared_settings(data, self.spec_path)
        try:
            return model.model_validate(self.settings.model_extra or {}).model_dump()
        except ValidationError as exc:
            raise ConnectorConfigError(
                problems(f"settings of system {self.system!r}", exc)
            ) from None

    def _load(self) -> _Loaded:
        data = read_spec(self.spec_path)
        values = self._declared(data)
        spec = validate_spec(data, self.spec_path, values)
        self._warn_unmatched(spec)
        credentials = self.settings.credentials
        base_url = self.settings.base_url
        key: tuple[Any, ...] = (base_url, credentials, spec.base_url, spec.auth, spec.headers)
        key += (repr(values), spec.rate_limit, spec.retry, spec.timeout_seconds)
        previous = self._loaded
        if previous is not None and previous.client_key == key:
            client = previous.client  # same connection settings: keep the pool
        else:
            if previous is not None and previous.client is not None:
                self._retired.append(previous.client)  # a running task may still use it
            client = make_client(
                self.system,
                spec,
                values,
                credentials=credentials,
                base_url=base_url,
                source=self.spec_path,
            )
        hooks = load_hooks(spec.hooks, self.spec_path)
        runner = SpecRunner(
            self.system, spec, client, hooks, values, credentials, source=str(self.spec_path)
        )
        return _Loaded(spec, runner, client, key)

    # ------------------------------------------------------------------------- rights

    async def access(self, subject: Subject) -> Result:
        """Every record of the subject: the found records and their related collections."""
        return await self._current().runner.access(subject)

    async def portability(self, subject: Subject) -> Result:
        """As access (Art. 20); the export keeps what the subject provided."""
        return await self._current().runner.access(subject, RequestType.PORTABILITY)

    async def erase(self, subject: Subject) -> Result:
        """Run the erase steps for every found record; already gone counts as done."""
        return await self._current().runner.erase(subject)

    async def rectify(self, subject: Subject, changes: Sequence[FieldChange]) -> Result:
        """The spec's rectification steps (Art. 16), or its manual task."""
        return await self._current().runner.act(RequestType.RECTIFICATION, subject, changes)

    async def restrict(self, subject: Subject) -> Result:
        """The spec's restriction steps (Art. 18), or its manual task."""
        return await self._current().runner.act(RequestType.RESTRICTION, subject)

    async def object(self, subject: Subject) -> Result:
        """The spec's objection steps (Art. 21), or its manual task."""
        return await self._current().runner.act(RequestType.OBJECTION, subject)

    async def withdraw_consent(self, subject: Subject) -> Result:
        """The spec's consent-withdrawal steps (Art. 7(3)), or its manual task."""
        return await self._current().runner.act(RequestType.CONSENT_WITHDRAWAL, subject)

    async def sweep(self, rules: Sequence[SweepRule], *, dry_run: bool) -> SweepResult:
        """The spec's retention sweeps (Art. 5(1)(e) GDPR)."""
        return await self._current().runner.sweep(rules, dry_run=dry_run)

    async def aclose(self) -> None:
        """Close every HTTP client this connector opened."""
        current = [self._loaded.client] if self._loaded and self._loaded.client else []
        clients, self._retired = [*self._retired, *current], []
        for client in clients:
            await client.aclose()


__all__ = [
    "SPEC_DIR_VARIABLE",
    "ConnectorSpec",
    "DeclarativeConnector",
    "DeclarativeSettings",
    "EraseStep",
    "FindSpec",
    "JobSpec",
    "RelatedSpec",
    "find_spec",
    "load_spec",
]
