"""The spec of a REST vendor: pydantic models of every key a spec file may hold.

`docs/add-a-processor.md` walks through them with an example each. In short:

- `settings`: what the register entry of a system gives (an API URL, a key, a page size),
  typed and bounded; `{settings.x}` uses one anywhere in the spec;
- `find`: how to find the subject (one listing, or several `queries`, e.g. by e-mail and by
  phone, active and soft-deleted; optionally once per record of a listed parent, `each`);
- `related`: the listings that hang off each found record, nested as deep as the vendor
  nests them (tickets -> conversations);
- `erase`: the calls that erase one found record, in order; a step may run `over` a related
  collection, only `when` a condition holds, and poll a vendor `job`;
- `actions`: objection, consent withdrawal, restriction and rectification as calls;
- `manual`: the rights a person carries out, with the instructions they follow;
- `sweeps`: retention sweeps of a collection by its date fields (Art. 5(1)(e) GDPR);
- `computed`: values computed from identifiers, records or settings (`md5(lower(email))`);
- `hooks`: a small Python module for what a declaration cannot say (see `spec.hooks`);
- `collections`: titles and a glossary of the fields, for the export (Art. 12(1) GDPR).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model, model_validator

from connectors.http import (
    Auth,
    HttpClient,
    JobPolling,
    NoPaging,
    Paging,
    RateLimit,
    RetryPolicy,
    placeholders,
)
from connectors.metadata import CollectionInfo
from connectors.vendors.spec.expressions import Expression, ExpressionError, names, parse
from schemas.events import IDENTIFIER_TYPE_PATTERN, RequestType

#: The rights `rights` can name: they read or erase records. The others are `actions`.
SUPPORTED_RIGHTS = frozenset({RequestType.ACCESS, RequestType.PORTABILITY, RequestType.ERASURE})
#: The rights carried out by `actions` steps.
ACTION_RIGHTS = frozenset(RequestType) - SUPPORTED_RIGHTS
#: What a step's success adds to: a field of `Counts`, or nothing.
CountAs = Literal["deleted", "anonymised", "updated", "suppressed", "none"]
#: Names a template may use besides identifier types and computed values.
CONTEXT_NAMES = frozenset(
    {"id", "record", "item", "settings", "credentials", "job_id", "changes", "cutoff", "fields"}
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def is_identifier(name: str) -> bool:
    """Whether `name` has the form of an identifier type (email, phone, customer_id)."""
    return re.fullmatch(IDENTIFIER_TYPE_PATTERN, name) is not None


#: A condition: dotted path -> expected value (a template), or {in: [...]}, {not: value},
#: {present: bool}; `hook: name` asks the hook module's function `name(values) -> bool`.
Condition = dict[str, JsonValue]


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


class FindQuery(_Spec):
    """One more way to search: what differs from `find` (its params, often)."""

    method: str | None = None
    path: str | None = None
    params: dict[str, JsonValue] | None = None
    body: JsonValue = None
    records_path: str | None = None
    paging: Paging | None = None


class FanOut(Listing):
    """A listed parent the search runs under, once per record (every Mailchimp audience)."""

    name: str = Field(
        alias="as", description="The parent's name in templates: {list.id} for as: list."
    )


class FindSpec(Listing):
    """How to find the subject's main records by their identifiers."""

    collection: str
    id_field: str = "id"
    queries: list[FindQuery] = Field(
        default_factory=list,
        description="Searches to run instead of the one above, each changing what it gives "
        "(e.g. params {phone: '{phone}'}, {email: '{email}', state: deleted}); each runs for "
        "the identifiers it names, and is skipped when the subject has none of them.",
    )
    each: FanOut | None = None
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
                if not is_identifier(identifier_type):
                    raise ValueError(
                        f"match: {field_path}: {identifier_type!r} is not an identifier type "
                        "such as email"
                    )
        return self

    def searches(self) -> list[Listing]:
        """Every search to run: the queries merged onto this listing, or this listing."""
        base = Listing.model_validate(self.model_dump(include=set(Listing.model_fields)))
        if not self.queries:
            return [base]
        return [
            base.model_copy(update=q.model_dump(exclude_unset=True, exclude_none=True))
            for q in self.queries
        ]

    def all_templates(self) -> list[Any]:
        """The templates of every search."""
        return [t for search in self.searches() for t in search.templates()]

    def match_fields(self, used: set[str]) -> dict[str, str] | None:
        """The fields a search result must match the subject on; None for `match: none`.

        `used`: the identifier types the searches use (the default match names them)."""
        if self.match == "none":
            return None
        if self.match:
            return dict(self.match)
        return {name: name for name in sorted(used)}


class RelatedSpec(Listing):
    """Records fetched for each found record (notes of a contact), and for each of those
    their own related records (`related`: a ticket's conversations)."""

    collection: str
    id_field: str | None = Field(
        default=None, description="Records with the same id (two listings) are kept once."
    )
    where: Condition = Field(
        default_factory=dict,
        description="Keep only records for which this holds, e.g. {item.requester_id: '{id}'}: "
        "a listing that may return other people's records.",
    )
    related: list[RelatedSpec] = Field(default_factory=list)

    def walk(self) -> Iterator[RelatedSpec]:
        """This listing and every one nested below it."""
        yield self
        for child in self.related:
            yield from child.walk()


class JobSpec(JobPolling):
    """An asynchronous vendor job to poll until it is done (the HTTP layer's `JobPolling`)."""

    id_path: str = Field(description="Dotted path of the job id in the step's response.")
    status_path: str = Field(default="status", description="Its status in the poll's answer.")
    started_status_path: str | None = Field(
        default=None, description="The status in the step's own response (no poll if final)."
    )
    interval_seconds: Annotated[float, Field(gt=0)] = 1.0


class Step(_Spec):
    """One call of an erasure or an action, made for each found record in order."""

    method: str = "DELETE"
    path: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    body: JsonValue = None
    expect: list[int] = Field(default=[200, 204])
    already_gone: list[int] = Field(default=[404], description="Counts as done, not an error.")
    job: JobSpec | None = None
    over: str | None = Field(
        default=None,
        description="A related collection: the step runs once per record of it, {item.x}.",
    )
    when: Condition = Field(default_factory=dict, description="Only when this holds.")
    unless: Condition = Field(default_factory=dict, description="Not when this holds.")
    count_as: CountAs | None = Field(
        default=None, description="Default: deleted in erase, the action's count_as else."
    )
    removes: list[str] = Field(
        default_factory=list,
        description="Related collections the vendor removes with this record: counted too.",
    )
    evidence: EvidenceSpec | None = Field(
        default=None,
        description="Evidence of each call, its value a template that may use {status}, e.g. "
        "{kind: hard_delete, value: 'contact {id}: {status}'}; never the subject's values.",
    )

    def templates(self) -> list[Any]:
        """Everything that may hold placeholders."""
        return [self.path, self.params, self.body]


#: The name the erase steps had before actions shared them.
EraseStep = Step


class ActionSpec(_Spec):
    """Objection, consent withdrawal, restriction or rectification carried out by calls."""

    steps: Annotated[list[Step], Field(min_length=1)]
    count_as: CountAs = "suppressed"
    evidence: str | None = Field(
        default=None, description="Evidence kind for the number of changes, e.g. lists_unsubscribed"
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Rectification: our field name -> the vendor's; {changes} in a body is "
        "the mapping of vendor fields to new values.",
    )


class ManualLine(_Spec):
    """One line of a manual task's instructions, shown only `when` the condition holds."""

    text: str
    when: Condition = Field(default_factory=dict)
    unless: Condition = Field(default_factory=dict)


def _line(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


class ManualSpec(_Spec):
    """Rights a person carries out, with numbered instructions; never the subject's values."""

    before: list[ManualLine] = Field(default_factory=list, description="First, for every right.")
    rights: dict[RequestType, list[ManualLine]] = Field(default_factory=dict)
    reason: str | None = Field(default=None, description="Why it is manual (no public API).")

    @model_validator(mode="before")
    @classmethod
    def _lines(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {"rights": dict(data.get("rights") or {})}
        for key, value in data.items():
            if key in ("before", "reason"):
                out[key] = value
            elif key != "rights":
                out["rights"][key] = value
        out["before"] = [_line(v) for v in out.get("before") or []]
        out["rights"] = {k: [_line(v) for v in lines] for k, lines in out["rights"].items()}
        return out


class SweepSpec(Listing):
    """A retention sweep of one collection: list what is dated before the cutoff, delete it."""

    collection: str
    id_field: str = "id"
    date_fields: dict[str, dict[str, JsonValue]] = Field(
        description="Date field -> the params that list records dated before {cutoff} "
        "(YYYY-MM-DD), e.g. {udate: {'filters[updated_before]': '{cutoff}'}}",
    )
    where: Condition = Field(default_factory=dict, description="Only records for which it holds.")
    delete: Annotated[list[Step], Field(min_length=1)]
    total_path: str | None = Field(
        default=None,
        description="Where the answer states how many records match (a search API that lists "
        "only the first N): a dry run counts what it could not list too.",
    )
    again: bool = Field(
        default=False,
        description="After deleting, list again until nothing new is listed (a capped search).",
    )
    caveats: list[EvidenceSpec] = Field(
        default_factory=list, description="Stated in the sweep's evidence only (e.g. a Trash)."
    )


class EvidenceSpec(_Spec):
    """A fixed statement added to erasure and sweep evidence (a vendor caveat)."""

    kind: str
    value: str


class SettingSpec(_Spec):
    """One setting a register entry gives the connector."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    default: JsonValue = None
    required: bool | None = Field(default=None, description="Default: when there is no default")
    secret: bool = Field(default=False, description="Kept out of repr and messages.")
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def annotation(self) -> tuple[Any, Any]:
        """The pydantic field for `create_model`."""
        python: Any = {"string": str, "integer": int, "number": float, "boolean": bool}[self.type]
        bounds = {"ge": self.minimum, "le": self.maximum}
        constraints: dict[str, Any] = {k: v for k, v in bounds.items() if v is not None}
        if self.type == "string":
            constraints["min_length"] = 1
        required = self.default is None if self.required is None else self.required
        default: Any = ... if required else self.default
        field = Field(default, repr=not self.secret, description=self.description, **constraints)
        return (python if required else python | None), field


class ConnectorSpec(_Spec):
    """A REST vendor described declaratively (one YAML file)."""

    name: str
    title: str | None = Field(default=None, description="The vendor's name for people.")
    description: str = ""
    base_url: str | None = None
    auth: Auth = Field(default_factory=Auth)
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. API version.")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    settings: dict[str, SettingSpec] = Field(default_factory=dict)
    hooks: str | None = Field(default=None, description="Module or file of hook functions.")
    computed: dict[str, str] = Field(default_factory=dict, description="name -> expression")
    rights: list[RequestType] = Field(default_factory=list)
    find: FindSpec | None = None
    related: list[RelatedSpec] = Field(default_factory=list)
    erase: list[Step] = Field(default_factory=list)
    actions: dict[RequestType, ActionSpec | RequestType] = Field(
        default_factory=dict, description="A right -> its steps, or the right it is done as."
    )
    manual: ManualSpec | None = None
    sweeps: list[SweepSpec] = Field(default_factory=list)
    caveats: list[EvidenceSpec] = Field(default_factory=list)
    collections: dict[str, CollectionInfo] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ConnectorSpec:
        unsupported = set(self.rights) - SUPPORTED_RIGHTS
        if unsupported:
            names_ = ", ".join(sorted(unsupported))
            raise ValueError(
                f"rights: {names_} cannot be declared; supported: access, portability, "
                "erasure (describe the others under 'actions', or 'manual', or leave them "
                "out: they become manual tasks)"
            )
        if RequestType.ERASURE in self.rights and not self.erase:
            raise ValueError("rights: erasure needs an 'erase' list of steps")
        for right in self.actions:
            if right not in ACTION_RIGHTS:
                raise ValueError(f"actions: {right} is a right of 'rights', not an action")
        for right, target in self.actions.items():
            if isinstance(target, RequestType) and not isinstance(
                self.actions.get(target), ActionSpec
            ):
                raise ValueError(f"actions: {right}: {target} has no steps of its own")
        if not self.capabilities():
            raise ValueError("rights: name at least one (or describe 'actions' or 'manual')")
        needs_find = bool(self.rights or self.actions)
        if needs_find and self.find is None:
            raise ValueError("find: required to carry out rights or actions")
        self._check_computed()
        if self.find is not None:
            self._check_find()
        self._check_collections()
        return self

    def _check_computed(self) -> None:
        for name, text in self.computed.items():
            try:
                parse(text)
            except ExpressionError as exc:
                raise ValueError(f"computed: {name}: {exc}") from None

    def _check_find(self) -> None:
        assert self.find is not None
        used = self.identifier_types()
        if not used:
            # Without the subject's identifier the search would list everybody.
            raise ValueError("find: must use an identifier placeholder, e.g. {email}")
        known = CONTEXT_NAMES | set(self.computed)
        parent = self.find.each.name if self.find.each else None
        for name in placeholders(self.find.all_templates()):
            head = name.split(".", 1)[0]
            if head in known or head == parent:
                continue
            if not is_identifier(name):
                raise ValueError(f"find: {{{name}}} is not an identifier type such as {{email}}")

    def _check_collections(self) -> None:
        known = set(self.collection_names())
        for where, steps in self._steps():
            for step in steps:
                if step.over is not None and step.over not in known:
                    raise ValueError(
                        f"{where}: over: {step.over!r} is not a related collection; known: "
                        f"{', '.join(sorted(known))}"
                    )
                for name in step.removes:
                    if name not in known:
                        raise ValueError(f"{where}: removes: {name!r} is not a collection")

    def _steps(self) -> Iterator[tuple[str, list[Step]]]:
        yield "erase", self.erase
        for right, action in self.actions.items():
            if isinstance(action, ActionSpec):
                yield f"actions.{right}", action.steps

    def expressions(self) -> dict[str, Expression]:
        """The computed values, parsed."""
        return {name: parse(text) for name, text in self.computed.items()}

    def identifier_types(self) -> list[str]:
        """The identifier types the searches use, directly or through computed values."""
        if self.find is None:
            return []
        return sorted(self.types_in(self.find.all_templates()))

    def types_in(self, templates: Any) -> set[str]:
        """The identifier types `templates` use, directly or through computed values."""
        parsed = self.expressions()
        found: set[str] = set()
        for name in placeholders(templates):
            if name in parsed:
                found |= {n for n in names(parsed[name]) if "." not in n and is_identifier(n)}
            elif "." not in name and name not in CONTEXT_NAMES and is_identifier(name):
                found.add(name)
        return found - set(parsed)

    def collection_names(self) -> list[str]:
        """The main collection and every related one."""
        main = [self.find.collection] if self.find else []
        return main + [r.collection for top in self.related for r in top.walk()]

    def action(self, right: RequestType) -> ActionSpec | None:
        """The steps that carry out `right`, following an alias."""
        found = self.actions.get(right)
        if isinstance(found, RequestType):
            found = self.actions.get(found)
        return found if isinstance(found, ActionSpec) else None

    def capabilities(self) -> frozenset[RequestType]:
        """Every right this spec carries out, by calls or as a manual task it describes."""
        manual = set(self.manual.rights) if self.manual else set()
        return frozenset({*self.rights, *self.actions, *manual})

    def settings_model(self, base: type[BaseModel]) -> type[BaseModel]:
        """The pydantic model of the register settings: `base`'s fields plus the declared ones,
        with the spec's rate limit, retry policy and timeout as defaults."""
        fields: dict[str, Any] = {
            name: setting.annotation() for name, setting in self.settings.items()
        }
        fields["rate_limit"] = (RateLimit, self.rate_limit)
        fields["retry"] = (RetryPolicy, self.retry)
        fields["timeout_seconds"] = (Annotated[float, Field(gt=0)], self.timeout_seconds)
        return create_model(f"{_camel(self.name)}Settings", __base__=base, **fields)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


__all__ = [
    "ACTION_RIGHTS",
    "SUPPORTED_RIGHTS",
    "ActionSpec",
    "Condition",
    "ConnectorSpec",
    "EraseStep",
    "EvidenceSpec",
    "FanOut",
    "FindQuery",
    "FindSpec",
    "JobSpec",
    "Listing",
    "ManualLine",
    "ManualSpec",
    "RelatedSpec",
    "SettingSpec",
    "Step",
    "SweepSpec",
    "is_identifier",
]
