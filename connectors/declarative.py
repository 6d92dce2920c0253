"""REST connectors declared in YAML: a new vendor is one short file, not a Python class.

The register names the connector `rest` and points at a spec file:

    - name: crm
      connector: rest
      settings:
        spec: examples/connectors/acme.yaml    # or a bare name looked up in $DSR_CONNECTOR_DIR
        base_url: https://acme.example/api     # optional: overrides the spec's base_url
        credentials: {token: "${ACME_TOKEN}"}  # filled into the spec's "{credentials.token}"

The spec (`ConnectorSpec`, see `examples/connectors/acme.yaml`) says how to find the subject
(`find`), which records hang off each found id (`related`) and which calls erase it (`erase`,
optionally polling a vendor job). Placeholders: `{email}`, `{phone}`, `{customer_id}` or any
identifier type in `find`; `{id}`, `{record.<field>}` and identifier types in `related` and
`erase`; `{job_id}` in a job's `poll`. Paging, rate limits, retries and auth come from
`connectors.http`, so the spec reads like the vendor's API docs.

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

import itertools
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from connectors.base import Connector, ConnectorConfigError, ConnectorError, Result
from connectors.http import (
    Auth,
    HttpClient,
    JobPolling,
    NoPaging,
    Paging,
    RateLimit,
    RetryPolicy,
    TemplateError,
    json_body,
    lookup,
    placeholders,
    render_path,
    render_value,
)
from connectors.vendors.base import matches_subject
from schemas.events import IDENTIFIER_TYPE_PATTERN, Counts, Evidence, Record, RequestType, Subject

log = logging.getLogger(__name__)

#: Environment variable naming the directory of spec files (`<name>.yaml`).
SPEC_DIR_VARIABLE = "DSR_CONNECTOR_DIR"

#: The rights a spec can carry out; the others stay with the runtime (manual tasks).
SUPPORTED_RIGHTS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listing(_Spec):
    """A call that returns records, possibly over several pages."""

    method: str = "GET"
    path: str = Field(description="Path template below base_url, e.g. /contacts/{id}/notes.")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="Query templates.")
    body: JsonValue = Field(default=None, description="JSON body template (POST searches).")
    records_path: str = Field(description='Dotted path to the records; "" = the whole body.')
    paging: Paging = Field(default_factory=NoPaging)
    absent: list[int] = Field(default=[404], description="Statuses that mean: nothing here.")

    def templates(self) -> list[Any]:
        """Everything that may hold placeholders."""
        return [self.path, self.params, self.body]

    def records(self, client: HttpClient, values: Mapping[str, Any]) -> AsyncIterator[Any]:
        """Every record of the listing, its templates filled with `values`."""
        return client.records(
            self.method,
            self.path,
            path_params=values,
            params=self.params,
            json=self.body,
            paging=self.paging,
            records_path=self.records_path,
            absent=self.absent,
        )


class FindSpec(Listing):
    """How to find the subject's main records by their identifiers."""

    collection: str
    id_field: str = "id"
    match: dict[str, str] | Literal["none"] | None = Field(
        default=None,
        description="Keep only records in which one of these fields (dotted path -> identifier "
        "type, e.g. {email_address: email}) equals one of the subject's identifiers exactly "
        "(e-mail ignoring case, phone as E.164 digits). Default: a field named after each "
        "identifier the find step uses ({email: email}). 'none' keeps whatever the vendor "
        "returns (logged as a warning): a search treating * or % as a wildcard finds others.",
    )

    @model_validator(mode="after")
    def _match_types(self) -> FindSpec:
        if isinstance(self.match, dict):
            for field_path, identifier_type in self.match.items():
                if not _is_identifier(identifier_type):
                    raise ValueError(
                        f"match: {field_path}: {identifier_type!r} is not an identifier type "
                        "such as email"
                    )
        return self

    def match_fields(self) -> dict[str, str] | None:
        """The fields a search result must match the subject on; None for `match: none`."""
        if self.match == "none":
            return None
        if self.match:
            return dict(self.match)
        return {name: name for name in sorted(placeholders(self.templates()))}


class RelatedSpec(Listing):
    """Records fetched for each found id, e.g. notes of a contact."""

    collection: str


class JobSpec(JobPolling):
    """An asynchronous vendor job to poll until it is done."""

    id_path: str = Field(description="Dotted path of the job id in the step's response.")
    interval_seconds: Annotated[float, Field(gt=0)] = 1.0


class EraseStep(_Spec):
    """One call of the erasure, made for each found id in order."""

    method: str = "DELETE"
    path: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    body: JsonValue = None
    expect: list[int] = Field(default=[200, 204])
    already_gone: list[int] = Field(default=[404], description="Counts as done, not an error.")
    job: JobSpec | None = None


class ConnectorSpec(_Spec):
    """A REST vendor described declaratively (one YAML file)."""

    name: str
    description: str = ""
    base_url: str | None = None
    auth: Auth = Field(default_factory=Auth)
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. API version.")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    rights: Annotated[list[RequestType], Field(min_length=1)]
    find: FindSpec
    related: list[RelatedSpec] = Field(default_factory=list)
    erase: list[EraseStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        unsupported = set(self.rights) - SUPPORTED_RIGHTS
        if unsupported:
            names = ", ".join(sorted(unsupported))
            raise ValueError(
                f"rights: {names} cannot be declared; supported: access, "
                "portability, erasure (leave others out: they become manual tasks)"
            )
        if RequestType.ERASURE in self.rights and not self.erase:
            raise ValueError("rights: erasure needs an 'erase' list of steps")
        used = placeholders(self.find.templates())
        if not used:
            # Without the subject's identifier the search would list everybody.
            raise ValueError("find: must use an identifier placeholder, e.g. {email}")
        for name in used:
            if not _is_identifier(name):
                raise ValueError(f"find: {{{name}}} is not an identifier type such as {{email}}")
        return self

    def identifier_types(self) -> list[str]:
        """The identifier types `find` needs, in a stable order."""
        return sorted(placeholders(self.find.templates()))


def _is_identifier(name: str) -> bool:
    return re.fullmatch(IDENTIFIER_TYPE_PATTERN, name) is not None


class DeclarativeSettings(BaseModel):
    """Settings of the `rest` connector in the register."""

    model_config = ConfigDict(extra="forbid")
    spec: str = Field(description="Spec file, or a name looked up in $DSR_CONNECTOR_DIR.")
    base_url: str | None = Field(default=None, description="Overrides the spec's base_url.")
    credentials: dict[str, str] = Field(default_factory=dict, repr=False)


# ------------------------------------------------------------------------- loading specs


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


def load_spec(path: str | Path) -> ConnectorSpec:
    """Read and validate a spec file; errors name the file and the field path."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConnectorConfigError(f"{path}: cannot read the spec ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConnectorConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConnectorConfigError(f"{path}: expected a mapping with name, rights and find")
    try:
        return ConnectorSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            where = ".".join(str(p) for p in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {where}: {message}")
        raise ConnectorConfigError("; ".join(problems)) from None


def _resolve(spec: str) -> Path:
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


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConnectorConfigError(f"{path}: cannot read the spec ({exc.strerror})") from None
    return info.st_mtime_ns, info.st_size, info.st_ino


# ------------------------------------------------------------------------------ connector


@dataclass(frozen=True, slots=True)
class _Found:
    """One main record of the subject and the values its related/erase templates can use."""

    record: dict[str, Any]
    values: dict[str, Any]


class _LiveCapabilities:
    """`capabilities` read from the spec as it is on disk now (the runtime checks it first)."""

    def __get__(self, obj: DeclarativeConnector | None, owner: type) -> frozenset[RequestType]:
        if obj is None:
            return SUPPORTED_RIGHTS
        try:
            return obj._current().capabilities
        except ConnectorConfigError:
            # Let the task run, so it fails with the spec's error instead of turning manual.
            return SUPPORTED_RIGHTS


@dataclass(frozen=True, slots=True)
class _Loaded:
    spec: ConnectorSpec
    client: HttpClient
    capabilities: frozenset[RequestType]
    client_key: Any


class DeclarativeConnector(Connector[DeclarativeSettings]):
    """A REST vendor described by a YAML spec; the HTTP layer owns paging, limits and retries."""

    capabilities = _LiveCapabilities()
    description = "REST API described by a YAML spec (connectors/declarative.py)."

    def __init__(self, system: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(system, settings)
        self.spec_path = _resolve(self.settings.spec)
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
        if spec.find.match_fields() is None:
            log.warning(
                "%s: %s: find.match is none: search results are kept as the vendor returns "
                "them, without an exact identifier match; a search treating * or %% as a "
                "wildcard would hand over or erase other people",
                self.system,
                self.spec_path,
            )

    def _load(self) -> _Loaded:
        spec = load_spec(self.spec_path)
        self._warn_unmatched(spec)
        base_url = self.settings.base_url or spec.base_url
        if not base_url:
            raise ConnectorConfigError(
                f"{self.spec_path}: base_url: set it in the spec or in the settings of "
                f"system {self.system!r}"
            )
        values = {"credentials": self.settings.credentials}
        try:
            auth = Auth.model_validate(render_value(spec.auth.model_dump(), values))
        except TemplateError as exc:
            raise ConnectorConfigError(
                f"{self.spec_path}: auth: {exc}; add it under settings.credentials of system "
                f"{self.system!r}"
            ) from None
        key = (base_url, auth, spec.headers, spec.rate_limit, spec.retry, spec.timeout_seconds)
        previous = self._loaded
        if previous is not None and previous.client_key == key:
            client = previous.client  # same connection settings: keep the pool
        else:
            if previous is not None:
                self._retired.append(previous.client)  # a running task may still use it
            client = HttpClient(
                self.system,
                base_url,
                auth,
                spec.rate_limit,
                spec.retry,
                spec.timeout_seconds,
                headers=spec.headers,
            )
        return _Loaded(spec, client, frozenset(spec.rights), key)

    # ------------------------------------------------------------------------- rights

    async def access(self, subject: Subject) -> Result:
        """Every record of the subject: the found records and their related collections."""
        loaded = self._current()
        found = await self._find(loaded, subject)
        if isinstance(found, Result):
            return found
        spec = loaded.spec
        records = [Record(collection=spec.find.collection, data=f.record) for f in found]
        for related in spec.related:
            for item in found:
                async for data in related.records(loaded.client, item.values):
                    records.append(Record(collection=related.collection, data=_as_dict(data)))
        log.info("%s: access found %d records", self.system, len(records))
        return Result.found(records)

    async def erase(self, subject: Subject) -> Result:
        """Run the erase steps for every found id; already gone counts as done."""
        loaded = self._current()
        found = await self._find(loaded, subject)
        if isinstance(found, Result):
            return found
        if not found:
            return Result.not_found()
        for item in found:  # a '.' or '..' id is refused before anything is erased
            for step in loaded.spec.erase:
                render_path(step.path, item.values, where=f"{self.system}: {step.method}")
        client = loaded.client
        deleted = 0
        evidence: list[Evidence] = []
        for item in found:
            changed = False
            for step in loaded.spec.erase:
                response = await client.request(
                    step.method,
                    step.path,
                    path_params=item.values,
                    params=step.params,
                    json=step.body,
                    expected=(*step.expect, *step.already_gone),
                )
                if response.status_code in step.already_gone:
                    continue
                changed = True
                if step.job is not None:
                    job_id = lookup(json_body(response), step.job.id_path)
                    if job_id in (None, ""):
                        raise ConnectorError(
                            f"{self.system}: {step.method} {step.path}: no job id at "
                            f"{step.job.id_path!r} in the response; check the spec's erase.job"
                        )
                    values = {**item.values, "job_id": job_id}
                    await client.wait_for_job(step.job, values, what=f"{step.method} {step.path}")
                    evidence.append(Evidence(kind="vendor_job_id", value=str(job_id)))
            deleted += changed
        if not deleted:
            return Result.not_found()  # gone between our search and our delete
        log.info("%s: erased %d of %d found records", self.system, deleted, len(found))
        return Result.completed(Counts(found=len(found), deleted=deleted), evidence=evidence)

    async def aclose(self) -> None:
        """Close every HTTP client this connector opened."""
        clients = [*self._retired, *([self._loaded.client] if self._loaded else [])]
        self._retired = []
        for client in clients:
            await client.aclose()

    # ------------------------------------------------------------------------- helpers

    async def _find(self, loaded: _Loaded, subject: Subject) -> list[_Found] | Result:
        """The subject's main records (deduplicated by id), or a manual task when the subject
        lacks the identifier the vendor is searched by."""
        spec = loaded.spec
        types = spec.identifier_types()
        choices = [subject.values(t) for t in types]
        if not all(choices):
            return self._cannot_search(spec)
        fields = spec.find.match_fields()
        found: dict[str, _Found] = {}
        for combination in itertools.product(*choices):
            identifiers = dict(zip(types, combination, strict=True))
            async for data in spec.find.records(loaded.client, identifiers):
                record = _as_dict(data)
                if fields is not None and not self._is_subject(record, fields, subject):
                    continue
                record_id = lookup(record, spec.find.id_field)
                if record_id in (None, ""):
                    raise ConnectorError(
                        f"{self.system}: {spec.find.method} {spec.find.path}: a record has no "
                        f"{spec.find.id_field!r}; check find.id_field in {self.spec_path}"
                    )
                values = {**_first_values(subject), "id": record_id, "record": record}
                found.setdefault(str(record_id), _Found(record, values))
        return list(found.values())

    def _is_subject(self, record: dict[str, Any], fields: dict[str, str], subject: Subject) -> bool:
        """Whether a search result is the subject's by an exact identifier match; a record
        without any of the fields means the spec names the wrong ones: an error, not a miss."""
        if matches_subject(record, fields, subject):
            return True
        if all(lookup(record, path) in (None, "", []) for path in fields):
            names = ", ".join(fields)
            raise ConnectorError(
                f"{self.system}: a search result has none of the fields {names} to match the "
                f"subject's identifiers on; set find.match in {self.spec_path} to the fields "
                "that hold them, e.g. {email_address: email}"
            )
        log.debug("%s: a search result is not an exact match of the subject", self.system)
        return False

    def _cannot_search(self, spec: ConnectorSpec) -> Result:
        types = " or ".join(spec.identifier_types())
        return Result.manual(
            f"System {self.system!r} can only be searched by {types}, and the request has no "
            f"such identifier. Search it by hand with the identifiers the request has.",
            reason=f"no {types} identifier to search {self.system!r} with",
        )


def _as_dict(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {"value": data}


def _first_values(subject: Subject) -> dict[str, str]:
    values: dict[str, str] = {}
    for identifier in subject.identifiers:
        values.setdefault(identifier.type, identifier.value)
    return values


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
