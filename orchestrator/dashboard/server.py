"""The dashboard's web server (aiohttp): the page, its JSON API, live updates and /metrics.

Everything it shows comes from the status topic (see `live`), so any number of dashboards can
run, and a restarted one rebuilds its view before it reports ready. The page is plain HTML and
JavaScript from this package, and reads the same API that scripts use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import jinja2
from aiohttp import web
from aiohttp_sse import sse_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from orchestrator.dashboard.audit import AuditAction, AuditLog, AuditPage
from orchestrator.dashboard.auth import HSTS, USER, Auth, local_path
from orchestrator.dashboard.delivery_routes import SUBJECT_PAGE, add_subject_routes, stream
from orchestrator.dashboard.files import ResultFiles, download_name
from orchestrator.dashboard.lag import ConsumerLag, our_groups, our_topics
from orchestrator.dashboard.live import SWEEP_CHANGED, LiveView
from orchestrator.dashboard.metrics import DashboardCollector, registry
from orchestrator.dashboard.model import (
    Action,
    DecisionBody,
    DeliveryBody,
    EventPublished,
    ExtensionBody,
    RequestFilter,
    TaskCompletion,
    TaskRecorded,
    VerificationBody,
    detail,
    list_requests,
    next_step,
    summarise,
)
from orchestrator.dashboard.openapi import openapi_document
from orchestrator.dashboard.responses import json_response as _json
from orchestrator.dashboard.responses import problem as _problem
from orchestrator.dashboard.sessions import (
    SHARED_USER,
    SessionSettings,
    Users,
    UsersFileError,
    load_users,
)
from orchestrator.dashboard.sweep_routes import (
    SweepRegister,
    SweepRoutes,
    SweepStep,
    publish_sweep_step,
)
from orchestrator.dashboard.sweeps import summarise_sweep
from orchestrator.intake.client import PublishError, RequestPublisher
from orchestrator.intake.publishers import LOCAL_KEYS_FILE, LOCAL_PUBLISHER
from orchestrator.lifecycle.delivery import delivered_now
from orchestrator.runtime.config import ConfigError, Settings, staff_id_problem
from orchestrator.runtime.serving import serve, stop_serving
from orchestrator.status.masking import identifier_kinds
from orchestrator.status.tasks import (
    TaskError,
    TaskNotWaiting,
    UnknownTask,
    complete_task,
    waiting_task,
)
from schemas.envelope import TYPE_OF, describe_validation_error
from schemas.events import (
    REQUEST_ID_PATTERN,
    SYSTEM_NAME_PATTERN,
    DeadlineExtended,
    DecisionKind,
    DecisionRecorded,
    DeliveryRecorded,
    IdentityVerified,
    RequestStatusChanged,
)
from schemas.kafka import KafkaSettings
from schemas.primitives.signing import PublisherKeyError, RequestSigner
from schemas.sweeps import SweepRequested
from schemas.topics import STATUS

log = logging.getLogger("dsr.dashboard")

STATIC = Path(__file__).parent / "static"
#: Reachable without the token: probes, the sign-in page and its stylesheet.
PUBLIC = frozenset({"/healthz", "/readyz", "/login", "/static/app.css"})
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_SYSTEM = re.compile(SYSTEM_NAME_PATTERN)
#: Who the dashboard records as deciding and verifying when it knows no person: its token is
#: shared, so without a proxy's header or DSR_DASHBOARD_OFFICER the timeline says "dashboard".
OFFICER = "dashboard"
#: How far in the future a copy's destruction time may lie (clock skew of the browser).
_CLOCK_SKEW = timedelta(minutes=5)
_Body = TypeVar("_Body", DecisionBody, VerificationBody, ExtensionBody)
_Event = TypeVar("_Event", DecisionRecorded, IdentityVerified, DeadlineExtended)
#: Anything an officer's step publishes: a request's event or a sweep's.
_Sent = TypeVar("_Sent", bound=BaseModel)
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


#: An officer's step: (body model, what it is called, the step it asks: a name or one read
#: from the body), how its event is built, and how the client publishes it.
_Step = tuple[tuple[type[Any], str, Any], Callable[..., Any], Callable[..., None]]


class Dashboard:
    """The dashboard server: `start()` serves and follows the status topic, `stop()` ends both."""

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaSettings | None = None,
        *,
        sessions: SessionSettings | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = kafka or settings.kafka
        self.auth = _auth(settings, sessions)
        self.audit = AuditLog.in_data_dir(settings.data_dir)
        self.live = LiveView(self.kafka)
        self.lag = ConsumerLag(
            self.kafka,
            groups=our_groups(settings.app_id),
            topics=our_topics(settings.app_id),
            interval=settings.dashboard_lag_interval_seconds,
        )
        self.files = ResultFiles(settings.data_dir)
        self._download_service: Any = None
        self.register = SweepRegister(settings.register_file)
        self.metrics = registry(
            DashboardCollector(self.live, self.lag, settings.due_soon_days, self.register)
        )
        self.host = settings.dashboard_host
        self.port = settings.dashboard_port
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        try:
            self._version = importlib.metadata.version("dsr-orchestrator")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
            self._version = "0"
        self.verification = settings.policy().verification
        self.officer = settings.dashboard_officer or OFFICER

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/"

    # -- running ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (routes, middlewares, background tasks)."""
        app = web.Application(middlewares=[self._headers, self._authenticate])
        routes = [
            web.get("/", self._page),
            web.get("/requests/{request_id}", self._page),
            web.get("/sweeps", self._page),
            web.get("/sweeps/{sweep_id}", self._page),
            web.get("/login", self._login_form),
            web.post("/login", self._login),
            web.post("/logout", self._logout),
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
            web.get("/metrics", self._metrics),
            web.get("/api/openapi.json", self._openapi),
            web.get("/api/requests", self._list),
            web.get("/api/requests/{request_id}", self._detail),
            web.post("/api/requests/{request_id}/tasks/{system}/complete", self._complete),
            web.post("/api/requests/{request_id}/decisions", self._officer_step),
            web.post("/api/requests/{request_id}/verifications", self._officer_step),
            web.post("/api/requests/{request_id}/extensions", self._officer_step),
            web.post("/api/requests/{request_id}/deliveries", self._officer_step),
            web.get("/api/requests/{request_id}/files/{name}", self._file),
            web.get("/api/downloads/{token}", self._download),
            web.get("/api/events", self._events),
            web.get("/api/audit", self._audit_log),
        ]
        app.add_routes(routes)
        app.add_routes(self._sweeps().routes())
        add_subject_routes(app, self._downloads, self.settings.data_dir)  # public: link + code
        app.router.add_static("/static/", STATIC, follow_symlinks=False, show_index=False)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self) -> None:
        """Follow the status topic, measure lag and serve HTTP (returns once listening)."""
        if self.auth.anonymous:
            log.warning("the dashboard serves anyone who can reach %s: no token", self.url)
        self._tasks = [
            asyncio.create_task(self.live.run(), name="dashboard-status"),
            asyncio.create_task(self.lag.run(), name="dashboard-lag"),
        ]
        self._runner, self.port = await serve(self.app(), self.host, self.port)
        log.info("dashboard on %s, reading %s", self.url, STATUS.name)

    async def stop(self) -> None:
        """Stop serving and following; safe to call twice."""
        runner, self._runner = self._runner, None
        tasks, self._tasks = self._tasks, []
        await stop_serving(runner, tasks)

    async def _on_shutdown(self, app: web.Application) -> None:
        self.live.close()  # event streams end, so shutdown does not wait for them

    # -- middlewares --------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        hsts = self.auth.is_secure(request)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            _secure(request, exc.headers, hsts=hsts)
            raise
        _secure(request, response.headers, hsts=hsts)
        return response

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in PUBLIC or request.path.startswith(SUBJECT_PAGE) or self.auth.anonymous:
            return await handler(request)
        token = request.query.get("token")
        if token is not None and request.method == "GET" and not _is_api(request):
            # Signed in: the token leaves the address bar (and the history) at once.
            query = {k: v for k, v in request.query.items() if k != "token"}
            return await self._sign_in(request, token, str(request.rel_url.with_query(query)))
        bearer = self.auth.bearer(request)
        user = self.auth.session_user(request) if bearer is None else None
        if bearer is not None:
            if (wait := self.auth.retry_after(request)) is not None:
                return _too_many(wait)
            user = await self.auth.user_of_token(request, bearer)
        if user is not None:
            request[USER] = user
            return await handler(request)
        if _is_api(request):
            return _problem(
                401,
                "sign in: send 'Authorization: Bearer <DSR_DASHBOARD_TOKEN>'",
                headers={"WWW-Authenticate": 'Bearer realm="dsr-dashboard"'},
            )
        return self._login_page(request.path_qs, None, status=401)

    # -- pages and sign-in --------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _login_form(self, request: web.Request) -> web.Response:
        return self._login_page(request.query.get("next"), None, status=200)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        target = local_path(str(form.get("next") or "/"))
        return await self._sign_in(request, token if isinstance(token, str) else "", target)

    async def _sign_in(self, request: web.Request, token: str, target: str) -> web.Response:
        """Start a session for the token's user and go to `target` (a path on this site);
        refused with 429 after too many wrong tokens from this client in a minute."""
        target = local_path(target)
        if (wait := self.auth.retry_after(request)) is not None:
            log.warning("sign-in refused: too many wrong tokens from one client address")
            return self._login_page(
                target,
                f"Too many wrong tokens; try again in {wait} seconds.",
                status=429,
                headers={"Retry-After": str(wait)},
            )
        user = await self.auth.user_of_token(request, token)
        if user is None:
            log.info("sign-in with a wrong token refused")
            return self._login_page(target, "That token is not right.", status=401)
        response = _see_other(target)
        self.auth.sign_in(response, request, user)
        log.info("user %s signed in to the dashboard", user)
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = _see_other("/login")
        self.auth.sign_out(response, request)
        return response

    def _login_page(
        self,
        target: str | None,
        error: str | None,
        *,
        status: int,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        page = _login_template().render(next=local_path(target), error=error)
        headers = dict(headers or {})
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="dsr-dashboard"'
        return web.Response(text=page, status=status, content_type="text/html", headers=headers)

    # -- the audit log ------------------------------------------------------------------------

    def _record(self, request: web.Request, action: AuditAction, **fields: str | None) -> None:
        """Append to the audit log as the request's officer (see `_officer`)."""
        who = self._officer(request)
        self._audit_as(who if isinstance(who, str) else self.officer, action, **fields)

    def _audit_as(self, who: str | None, action: AuditAction, **fields: str | None) -> None:
        request_id, sweep_id = fields.pop("request_id", None), fields.pop("sweep_id", None)
        detail = {k: v for k, v in fields.items() if v is not None}
        try:
            self.audit.record(
                who or self.officer, action, request_id=request_id, sweep_id=sweep_id, **detail
            )
        except OSError as exc:  # the step happened; say loudly that its record is missing
            log.error("audit log %s not written (%s): %s", self.audit.path, action, exc.strerror)

    async def _audit_log(self, request: web.Request) -> web.Response:
        """The audit log for officers: `?request_id=` or `?sweep_id=`, `limit` (default 1000)."""
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _problem(400, "limit must be a whole number")
        if not 1 <= limit <= 100_000:
            return _problem(400, f"limit={limit} must be between 1 and 100000")
        entries = await asyncio.to_thread(
            self.audit.read,
            request_id=request.query.get("request_id"),
            sweep_id=request.query.get("sweep_id"),
            limit=limit,
        )
        return web.json_response(AuditPage(entries=entries).model_dump(mode="json"))

    # -- probes and metrics -------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        dead = [t.get_name() for t in self._tasks if t.done()]
        if dead:
            return _status(503, "failed", f"stopped: {', '.join(dead)}")
        return _status(200, "ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.live.ready:
            return _status(200, "ready")
        follower = self.live.follower
        reason = follower.problem or (
            f"reading {STATUS.name}: {follower.events_read} events so far"
            + (f", {follower.lag} to go" if follower.lag is not None else "")
        )
        return _status(503, "not ready", reason)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self._version))

    # -- the API ------------------------------------------------------------------------------

    def _not_ready(self) -> web.Response | None:
        if self.live.ready:
            return None
        return _problem(
            503,
            f"still reading {STATUS.name} after a start; try again in a moment",
            headers={"Retry-After": "1"},
        )

    async def _list(self, request: web.Request) -> web.Response:
        if (waiting := self._not_ready()) is not None:
            return waiting
        query = request.query
        try:
            flt = RequestFilter.parse(
                query.getall("status", []),
                query.getall("type", []),
                query.get("overdue"),
                query.get("q"),
            )
            limit = int(query.get("limit", "1000"))
            if not 1 <= limit <= 10_000:
                raise ValueError(f"limit={limit} must be between 1 and 10000")
        except ValueError as exc:
            message = str(exc)
            if message.startswith("invalid literal"):
                message = "limit must be a whole number"
            return _problem(400, message)
        page = list_requests(
            self.live.view,
            flt,
            now=datetime.now(UTC),
            due_soon_days=self.settings.due_soon_days,
            limit=limit,
        )
        return _json(page)

    async def _detail(self, request: web.Request) -> web.Response:
        if (waiting := self._not_ready()) is not None:
            return waiting
        request_id = request.match_info["request_id"]
        found = None
        if _REQUEST_ID.match(request_id):
            files = await asyncio.to_thread(self.files.listing, request_id)
            found = detail(
                self.live.view,
                request_id,
                files=files,
                now=datetime.now(UTC),
                due_soon_days=self.settings.due_soon_days,
                verification=self.verification,
            )
        if found is None:
            return _problem(404, f"no status events for request {request_id!r}")
        return _json(found)

    async def _complete(self, request: web.Request) -> web.Response:
        if (waiting := self._not_ready()) is not None:
            return waiting
        request_id = request.match_info["request_id"]
        system = request.match_info["system"]
        task = f"{request_id}/{system}"
        if not (_REQUEST_ID.match(request_id) and _SYSTEM.match(system)):
            return _problem(404, f"no task {task!r}: unknown request or system")
        if request.content_type != "application/json":
            return _problem(415, "send the completion as JSON (Content-Type: application/json)")
        try:
            body = TaskCompletion.model_validate_json(await request.read())
        except ValidationError as exc:
            return _problem(400, f"invalid completion: {describe_validation_error(exc)}")
        try:
            manual = waiting_task(self.live.view.get(request_id), system, task)
            await asyncio.to_thread(
                complete_task,
                self.kafka,
                manual,
                body.evidence,
                completed_by=body.by,
                outcome=body.outcome,
                source="dsr-dashboard",
            )
        except UnknownTask as exc:
            return _problem(404, str(exc))
        except TaskNotWaiting as exc:
            return _problem(409, str(exc))
        except TaskError as exc:
            return _problem(400, str(exc))
        except PublishError as exc:
            log.error("manual task %s not published: %s", task, exc)
            return _problem(503, f"not recorded: {exc}")
        log.info("manual task %s recorded as %s from the dashboard", task, body.outcome)
        self._record(
            request,
            "task_completion",
            request_id=request_id,
            system=system,
            outcome=str(body.outcome),
        )
        recorded = TaskRecorded(
            task_id=manual.task_id,
            outcome=body.outcome,
            message=f"task {manual.task_id} recorded as {body.outcome}",
        )
        return _json(recorded, status=202)

    # -- officers' steps: the same signed events as `dsr decide`, `verify-identity`, `extend` --

    def _officer_steps(self) -> dict[str, _Step]:
        """Per route: the body (model, what it is called, the step it asks), how its event is
        built, and how the client publishes it."""
        return {
            "decisions": (
                (DecisionBody, "decision", lambda body: body.decision.value),
                self._decision,
                RequestPublisher.publish_decision,
            ),
            "verifications": (
                (VerificationBody, "verification", "verify"),
                self._verification,
                RequestPublisher.verify_identity,
            ),
            "extensions": (
                (ExtensionBody, "extension", "extend"),
                self._extension,
                RequestPublisher.extend_deadline,
            ),
            "deliveries": (
                (DeliveryBody, "delivery", "deliver"),
                self._delivery,
                RequestPublisher.record_delivery,
            ),
        }

    def _decision(
        self, status: RequestStatusChanged, body: DecisionBody, officer: str
    ) -> DecisionRecorded | web.Response:
        try:
            event = DecisionRecorded.model_validate(
                {
                    **body.model_dump(exclude_none=True),
                    "request_id": status.request_id,
                    "decided_by": officer,
                    "decided_at": datetime.now(UTC),
                }
            )
        except ValidationError as exc:
            return _problem(400, f"invalid decision: {describe_validation_error(exc)}")
        if event.system is not None and (refused := _system_not_offered(status, event)):
            return refused
        return event

    def _verification(
        self, status: RequestStatusChanged, body: VerificationBody, officer: str
    ) -> IdentityVerified | web.Response:
        # Art. 12(6) GDPR, EDPB Guidelines 01/2022 section 3.3: only the methods the policy
        # accepts for the right count; any other keeps the request waiting.
        why = self.verification.refusal(status.request_type, body.method)
        if why is not None:
            return _problem(400, why)
        now = datetime.now(UTC)
        if body.copy_destroyed_at is not None and body.copy_destroyed_at > now + _CLOCK_SKEW:
            return _problem(400, "copy_destroyed_at is in the future; give when it was destroyed")
        return IdentityVerified(
            request_id=status.request_id,
            method=body.method,
            verified_at=now,
            verified_by=officer,
            copy_destroyed_at=body.copy_destroyed_at,
        )

    def _delivery(
        self, status: RequestStatusChanged, body: DeliveryBody, officer: str
    ) -> DeliveryRecorded:
        return delivered_now(status.request_id, body.channel, officer)

    def _extension(
        self, status: RequestStatusChanged, body: ExtensionBody, officer: str
    ) -> DeadlineExtended | web.Response:
        kinds = identifier_kinds(body.reason)
        if kinds:
            return _problem(
                400,
                f"the reason seems to contain personal data ({', '.join(kinds)}); give the "
                "reason for the delay without identifying the subject",
            )
        return DeadlineExtended(
            request_id=status.request_id,
            months=body.months,
            reason=body.reason,
            extended_at=datetime.now(UTC),
            extended_by=officer,
        )

    async def _officer_step(self, request: web.Request) -> web.Response:
        """One officer's step (`_officer_steps`): the request's latest status and the posted
        body, checked against what the request offers now, built into its event and published
        signed, as the CLI does."""
        step_name = request.path.rsplit("/", 1)[-1]  # the route's fixed last segment
        posted, build, publish = self._officer_steps()[step_name]
        model, what, action = posted
        if (waiting := self._not_ready()) is not None:
            return waiting
        request_id = request.match_info["request_id"]
        status = self.live.view.get(request_id) if _REQUEST_ID.match(request_id) else None
        if status is None:
            return _problem(404, f"no status events for request {request_id!r}")
        if request.content_type != "application/json":
            return _problem(415, f"send the {what} as JSON (Content-Type: application/json)")
        try:
            body = model.model_validate_json(await request.read())
        except ValidationError as exc:
            return _problem(400, f"invalid {what}: {describe_validation_error(exc)}")
        step = action(body) if callable(action) else action
        if (refused := _not_offered(status, cast(Action, step))) is not None:
            return refused
        officer = self._officer(request)
        if isinstance(officer, web.Response):
            return officer
        event = build(status, body, officer)
        if isinstance(event, web.Response):
            return event
        response = await self._publish(event, publish)
        if response.status == 202:
            self._audit_as(officer, _AUDITED[step_name], **_audit_fields(event))
        return response

    def _officer(self, request: web.Request) -> str | web.Response:
        """Who takes this step: the signed-in person the proxy names in DSR_DASHBOARD_USER_HEADER
        (only when the operator set it), else the user of the token or session (a users-file
        name; with the one shared token DSR_DASHBOARD_OFFICER, else "officer"), else (anonymous
        mode) DSR_DASHBOARD_OFFICER, else "dashboard".

        The id reaches status events, so it must be a staff id, never an e-mail address or
        another identifier; a refusal never repeats the header's value."""
        header = self.settings.dashboard_user_header
        user = request.headers.get(header, "").strip() if header else ""
        if not user:
            return cast(str, request.get(USER) or self.officer)
        problem = staff_id_problem(user)
        if problem is not None:
            log.warning("officer's step refused: header %s holds no staff id", header)
            return _problem(
                403,
                f"the signed-in user in header {header} is not a staff id: {problem}; configure "
                "the proxy to pass the staff id",
            )
        return user

    async def _publish(
        self, event: _Event, publish: Callable[[RequestPublisher, _Event], None]
    ) -> web.Response:
        """Publish an officer's step, signed, as the CLI does; 202 once the broker acked it."""
        kind = TYPE_OF[type(event)]
        try:
            await asyncio.to_thread(self._send, event, publish)
        except PublishError as exc:
            log.error("%s for request %s not published: %s", kind, event.request_id, exc)
            return _problem(503, f"not recorded: {exc}")
        log.info("%s for request %s published from the dashboard", kind, event.request_id)
        published = EventPublished(
            request_id=event.request_id,
            event=kind,
            message=f"{kind} published for {event.request_id}; the status follows once the "
            "orchestrator has processed it",
        )
        return _json(published, status=202)

    def _send(self, event: _Sent, publish: Callable[[RequestPublisher, _Sent], None]) -> None:
        with RequestPublisher(self.kafka, source="dsr-dashboard", signer=self._signer()) as client:
            publish(client, event)

    def _sweeps(self) -> SweepRoutes:
        """The sweep pages' API, taking steps as the request decisions do."""
        return SweepRoutes(
            self.live,
            self.files,
            self.register,
            not_ready=self._not_ready,
            officer=self._officer,
            send=self._send_sweep,
            audit=self._record,
        )

    def _send_sweep(self, event: SweepStep) -> None:
        self._send(event, publish_sweep_step)
        if isinstance(event, SweepRequested):
            self._audit_as(
                event.requested_by,
                "sweep_requested",
                sweep_id=event.sweep_id,
                system=event.system,
                dry_run=str(event.dry_run).lower(),
            )
        else:
            self._audit_as(event.approved_by, "sweep_approved", sweep_id=event.sweep_id)

    def _signer(self) -> RequestSigner | None:
        """The key officers' steps are signed with: DSR_PUBLISHER_*, else the local publisher
        `dsr up` created next to the keys file the orchestrator reads (one machine)."""
        try:
            signer = RequestSigner.from_env()
        except PublisherKeyError as exc:
            raise PublishError(str(exc)) from None
        keys = self.settings.publisher_keys
        if signer is None and keys is not None and keys.name == LOCAL_KEYS_FILE:
            key_file = keys.parent / f"{LOCAL_PUBLISHER}.pem"
            if key_file.exists():
                signer = RequestSigner.from_key_file(LOCAL_PUBLISHER, key_file)
        return signer

    async def _file(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["request_id"]
        name = request.match_info["name"]
        path = None
        if _REQUEST_ID.match(request_id):
            path = await asyncio.to_thread(self.files.get, request_id, name)
        if path is None:
            return _problem(404, f"request {request_id!r} has no document {name!r}")
        if name == "export":
            # Exports are encrypted at rest: hand out a link that expires in five minutes and
            # decrypts as it streams (still behind the dashboard's sign-in).
            token = await asyncio.to_thread(self._downloads().make_token, request_id, "export")
            raise web.HTTPFound(f"/api/downloads/{token}")
        self._record(request, "download", request_id=request_id, document=name)
        disposition = f'attachment; filename="{download_name(request_id, path)}"'
        return web.FileResponse(
            path,
            headers={
                "Content-Disposition": disposition,
                "Content-Type": "application/octet-stream",
            },
        )

    def _downloads(self) -> Any:
        if self._download_service is None:
            from orchestrator.artifacts.downloads import Downloads

            self._download_service = Downloads.from_settings(self.settings)
        return self._download_service

    async def _download(self, request: web.Request) -> web.StreamResponse:
        from orchestrator.artifacts.downloads import InvalidToken, NotAvailable, TokenExpired

        token = request.match_info["token"]
        try:
            grant = await asyncio.to_thread(self._downloads().check_token, token)
            download = await asyncio.to_thread(self._downloads().open, token)
        except TokenExpired as exc:
            return _problem(410, str(exc))
        except (InvalidToken, NotAvailable) as exc:
            return _problem(404, str(exc))
        self._record(request, "download", request_id=grant.request_id, document=grant.kind)
        return await stream(request, download)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        subscription = self.live.subscribe()
        try:
            async with sse_response(request, ping_interval=15) as stream:
                with contextlib.suppress(ConnectionResetError):
                    await stream.send("{}", event="hello", retry=2000)
                    while stream.is_connected() and not subscription.closed:
                        await self._send_changes(stream, await subscription.changes(timeout=5))
                        if subscription.overflowed:
                            subscription.overflowed = False
                            await stream.send("{}", event="reload")
            return stream
        finally:
            self.live.unsubscribe(subscription)

    async def _send_changes(self, stream: Any, request_ids: list[str]) -> None:
        now = datetime.now(UTC)
        for request_id in request_ids:
            if request_id.startswith(SWEEP_CHANGED):
                await self._send_sweep_change(stream, request_id.removeprefix(SWEEP_CHANGED))
                continue
            status = self.live.view.get(request_id)
            if status is not None:
                summary = summarise(status, now=now, due_soon_days=self.settings.due_soon_days)
                await stream.send(
                    summary.model_dump_json(), event="request", id=f"{request_id}@{status.sequence}"
                )

    async def _send_sweep_change(self, stream: Any, sweep_id: str) -> None:
        sweep = self.live.view.sweep(sweep_id)
        if sweep is not None:
            summary = summarise_sweep(sweep)
            await stream.send(
                summary.model_dump_json(), event="sweep", id=f"sweep:{sweep_id}@{sweep.sequence}"
            )


def _not_offered(status: RequestStatusChanged, action: Action) -> web.Response | None:
    """409 naming why `action` does not fit the request now, or None when it does."""
    step = next_step(status, now=datetime.now(UTC))
    if action in step.actions:
        return None
    rid = status.request_id
    if status.status.is_final:
        return _problem(409, f"request {rid!r} is already final ({status.status})")
    if action == "extend":
        if step.code != "overdue":
            return _problem(409, f"request {rid!r}: the deadline was already extended once")
        # Art. 12(3) GDPR: the subject is told of an extension within the first period.
        return _problem(
            409,
            f"request {rid!r}: the deadline {status.deadline.date()} has passed; an extension "
            "is possible only before it (Art. 12(3) GDPR)",
        )
    possible = ", ".join(step.actions) or "nothing"
    return _problem(
        409,
        f"request {rid!r} is {status.status}: {action} is not possible now; possible: {possible}",
    )


def _system_not_offered(
    status: RequestStatusChanged, event: DecisionRecorded
) -> web.Response | None:
    """404/409 when the decision's system is not one the request can take it for."""
    name, rid = event.system, status.request_id
    if name not in status.systems:
        return _problem(404, f"request {rid!r} has no system {name!r}")
    step = next_step(status, now=datetime.now(UTC))
    if event.decision == DecisionKind.LEGAL_HOLD:
        if name in step.holdable_systems:
            return None
        # Art. 17(3)(e) GDPR: the data is kept only if the hold comes before the erasure task.
        return _problem(
            409,
            f"request {rid!r}: system {name!r} cannot be put on legal hold now (a hold applies "
            "to erasure requests, before that system's task is sent)",
        )
    if name in step.refusable_systems:
        return None
    return _problem(409, f"request {rid!r}: system {name!r} has already answered")


@cache
def _login_template() -> jinja2.Template:
    """The sign-in page; autoescaped, as `next` comes from the request."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(STATIC), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("login.html")


def _secure(request: web.Request, headers: Any, *, hsts: bool = False) -> None:
    for name, value in _SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if hsts:  # RFC 6797: only over HTTPS, where a browser believes it
        headers.setdefault("Strict-Transport-Security", HSTS)
    if not request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")


def _auth(settings: Settings, sessions: SessionSettings | None) -> Auth:
    """Users (the shared token, a users file, or anonymous on purpose) and sessions."""
    try:
        sessions = sessions or SessionSettings()
        sessions.proxies()
        hashed = load_users(sessions.users, staff_id_problem) if sessions.users else {}
    except (ValidationError, UsersFileError, ValueError) as exc:
        raise ConfigError(f"dashboard sign-in: {exc}") from None
    token = settings.dashboard_token
    if token is None and not hashed and not settings.dashboard_allow_anonymous:
        raise ConfigError(
            "the dashboard needs a token: set DSR_DASHBOARD_TOKEN (at least 16 characters, "
            "e.g. `openssl rand -hex 32`) or DSR_DASHBOARD_USERS (a token per officer); only "
            "behind a proxy that authenticates, set DSR_DASHBOARD_ALLOW_ANONYMOUS=true instead"
        )
    users = Users(
        shared=token.get_secret_value() if token else None,
        shared_user=settings.dashboard_officer or SHARED_USER,
        hashed=hashed,
    )
    return Auth(users, sessions)


#: The audit log's name for each officer's step route.
_AUDITED: dict[str, AuditAction] = {
    "decisions": "decision",
    "verifications": "verification",
    "extensions": "extension",
    "deliveries": "delivery",
}


def _audit_fields(event: BaseModel) -> dict[str, str | None]:
    """What the audit log keeps of an officer's step: ids and fixed vocabulary only."""
    fields: dict[str, str | None] = {"request_id": getattr(event, "request_id", None)}
    if isinstance(event, DecisionRecorded):
        fields.update(decision=str(event.decision), system=event.system)
    elif isinstance(event, IdentityVerified):
        fields["method"] = str(event.method)
    elif isinstance(event, DeliveryRecorded):
        fields["channel"] = str(event.channel)
    elif isinstance(event, DeadlineExtended):
        fields["months"] = str(event.months)
    return fields


def _too_many(wait: int) -> web.Response:
    return _problem(
        429,
        f"too many wrong tokens from this address; try again in {wait} seconds",
        headers={"Retry-After": str(wait)},
    )


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


def _status(code: int, status: str, reason: str | None = None) -> web.Response:
    body = {"status": status} if reason is None else {"status": status, "reason": reason}
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")


__all__ = ["PUBLIC", "STATIC", "Dashboard"]
