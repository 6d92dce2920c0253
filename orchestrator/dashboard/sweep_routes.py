"""The dashboard's sweep pages and API: the list of systems' retention sweeps, one sweep, and an
officer's two steps on them, starting a dry run and approving the deletion it counted.

Both steps are officers' decisions (`schemas.topics.DECISION_EVENT_TYPES`): published signed
with the dashboard's publisher key, attributed to the signed-in officer exactly as the request
decisions are (`Dashboard._officer`), and accepted by the orchestrator only from a publisher
allowed to decide. Sweeps carry no identifiers: counts per collection, cutoffs and rules.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from orchestrator.dashboard.files import ResultFiles, download_name
from orchestrator.dashboard.live import LiveView
from orchestrator.dashboard.responses import json_response, problem
from orchestrator.dashboard.sweeps import (
    OPEN_SWEEP,
    SweepApprovalBody,
    SweepPublished,
    SweepStartBody,
    list_sweeps,
    sweep_detail,
)
from orchestrator.intake.client import PublishError, RequestPublisher
from schemas.envelope import TYPE_OF, describe_validation_error
from schemas.events import REQUEST_ID_PATTERN
from schemas.register import Register, RegisterError, WatchedRegister
from schemas.sweeps import (
    SweepApproved,
    SweepRequested,
    SweepStatus,
    SweepStatusChanged,
    SweepTrigger,
)

log = logging.getLogger("dsr.dashboard")

_SWEEP_ID = re.compile(REQUEST_ID_PATTERN)
#: What the two steps publish.
SweepStep = SweepRequested | SweepApproved
_B = TypeVar("_B", bound=BaseModel)


class SweepRegister:
    """The register the sweep pages read schedules from, re-read when the file changes; a
    dashboard without a readable register still shows the sweeps on the status topic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._watched: WatchedRegister | None = None

    def current(self) -> tuple[Register | None, str | None]:
        """The register, or None and why not (no personal data: a path and what is wrong)."""
        if self._watched is None:
            try:
                self._watched = WatchedRegister(self.path)
            except RegisterError as exc:
                return None, f"{exc}; set DSR_REGISTER to the register to see sweep schedules"
            except OSError as exc:
                return None, (
                    f"{self.path}: cannot read the register ({exc.strerror}); set DSR_REGISTER "
                    "to the register to see sweep schedules"
                )
        return self._watched.current(), None


def publish_sweep_step(client: RequestPublisher, event: SweepStep) -> None:
    """Publish a sweep's start or approval on the requests topic, signed like a decision, and
    wait for the broker's ack."""
    client.publish_sweep(event)


@dataclass
class SweepRoutes:
    """The sweep pages' API, on the dashboard's view, files, register, officer and publisher."""

    live: LiveView
    files: ResultFiles
    register: SweepRegister
    #: 503 while the status topic is still being read after a start, else None.
    not_ready: Callable[[], web.Response | None]
    #: Who takes a step: the signed-in officer's staff id, or a 403 naming the fix.
    officer: Callable[[web.Request], str | web.Response]
    #: Publishes a step signed (blocking; raises PublishError).
    send: Callable[[SweepStep], None]
    #: Appends to the audit log as the request's officer (downloads of certificates).
    audit: Callable[..., None] | None = None

    def routes(self) -> list[web.RouteDef]:
        """The API routes (the pages are the dashboard's one HTML page)."""
        return [
            web.get("/api/sweeps", self.list),
            web.post("/api/sweeps", self.start),
            web.get("/api/sweeps/{sweep_id}", self.detail),
            web.post("/api/sweeps/{sweep_id}/approval", self.approve),
            web.get("/api/sweeps/{sweep_id}/files/{name}", self.file),
        ]

    async def list(self, request: web.Request) -> web.Response:
        """Systems with a sweep policy (awaiting approval, then overdue, first) and sweeps."""
        if (waiting := self.not_ready()) is not None:
            return waiting
        try:
            limit = int(request.query.get("limit", "200"))
        except ValueError:
            return problem(400, "limit must be a whole number")
        if not 1 <= limit <= 10_000:
            return problem(400, f"limit={limit} must be between 1 and 10000")
        register, why = self.register.current()
        page = list_sweeps(
            self.live.view, register, now=datetime.now(UTC), limit=limit, register_problem=why
        )
        return json_response(page)

    async def detail(self, request: web.Request) -> web.Response:
        """One sweep: rules, counts per collection, retained duties, approver, certificate."""
        status = self._sweep(request)
        if isinstance(status, web.Response):
            return status
        sweep_id = status.sweep_id
        files = await asyncio.to_thread(self.files.sweep_listing, status)
        found = sweep_detail(self.live.view, sweep_id, files=files)
        assert found is not None
        return json_response(found)

    async def start(self, request: web.Request) -> web.Response:
        """Start a sweep of one system (a dry run unless the body says otherwise)."""
        if (waiting := self.not_ready()) is not None:
            return waiting
        body = await _body(request, SweepStartBody, "sweep to start")
        if isinstance(body, web.Response):
            return body
        register, why = self.register.current()
        if register is None:
            return problem(503, f"the register cannot be read: {why}")
        system = next((s for s in register.systems if s.name == body.system), None)
        if system is None:
            return problem(404, f"the register has no system {body.system!r}")
        if system.sweep is None:
            return problem(
                409,
                f"system {body.system!r} has no sweep policy: add 'sweep' (schedule, approval, "
                "collections) to it in the register",
            )
        running = [
            s.sweep_id
            for s in self.live.view.sweeps.values()
            if s.system == body.system and s.status in OPEN_SWEEP
        ]
        if running:
            return problem(
                409,
                f"system {body.system!r} has a sweep under way ({', '.join(sorted(running))}); "
                "approve it or wait until it is done",
            )
        officer = self.officer(request)
        if isinstance(officer, web.Response):
            return officer
        now = datetime.now(UTC)
        event = SweepRequested(
            sweep_id=f"sweep-{body.system}-{now:%Y%m%d%H%M%S}",
            system=body.system,
            dry_run=body.dry_run,
            trigger=SweepTrigger.MANUAL,
            requested_by=officer,
            requested_at=now,
        )
        return await self._publish(event)

    async def approve(self, request: web.Request) -> web.Response:
        """Approve deleting what an awaiting sweep's dry run counted."""
        status = self._sweep(request)
        if isinstance(status, web.Response):
            return status
        sweep_id = status.sweep_id
        body = await _body(request, SweepApprovalBody, "approval")
        if isinstance(body, web.Response):
            return body
        if status.status != SweepStatus.AWAITING_APPROVAL:
            return problem(
                409,
                f"sweep {sweep_id!r} is {status.status}: only a sweep awaiting approval can be "
                "approved",
            )
        officer = self.officer(request)
        if isinstance(officer, web.Response):
            return officer
        event = SweepApproved(sweep_id=sweep_id, approved_by=officer, approved_at=datetime.now(UTC))
        return await self._publish(event)

    async def file(self, request: web.Request) -> web.StreamResponse:
        """A sweep's certificate (signed JSON, or its nl/en HTML), as a download."""
        sweep_id, name = request.match_info["sweep_id"], request.match_info["name"]
        status = self.live.view.sweep(sweep_id) if _SWEEP_ID.match(sweep_id) else None
        paths = await asyncio.to_thread(self.files.sweep_paths, status) if status else {}
        if name not in paths:
            return problem(404, f"sweep {sweep_id!r} has no document {name!r}")
        path = paths[name][1]
        if self.audit is not None:
            self.audit(request, "download", sweep_id=sweep_id, document=name)
        return web.FileResponse(
            path,
            headers={
                "Content-Disposition": f'attachment; filename="{download_name(sweep_id, path)}"',
                "Content-Type": "application/octet-stream",
            },
        )

    def _sweep(self, request: web.Request) -> SweepStatusChanged | web.Response:
        """The latest status of the sweep the path names, or the 503/404 answer."""
        if (waiting := self.not_ready()) is not None:
            return waiting
        sweep_id = request.match_info["sweep_id"]
        status = self.live.view.sweep(sweep_id) if _SWEEP_ID.match(sweep_id) else None
        if status is None:
            return problem(404, f"no status events for sweep {sweep_id!r}")
        return status

    async def _publish(self, event: SweepStep) -> web.Response:
        kind = TYPE_OF[type(event)]
        try:
            await asyncio.to_thread(self.send, event)
        except PublishError as exc:
            log.error("%s for sweep %s not published: %s", kind, event.sweep_id, exc)
            return problem(503, f"not recorded: {exc}")
        log.info("%s for sweep %s published from the dashboard", kind, event.sweep_id)
        published = SweepPublished(
            sweep_id=event.sweep_id,
            event=kind,
            message=f"{kind} published for {event.sweep_id}; the status follows once the "
            "orchestrator has processed it",
        )
        return json_response(published, status=202)


async def _body(request: web.Request, model: type[_B], what: str) -> _B | web.Response:
    """The posted JSON as `model`, or the 415/400 that says what is wrong."""
    if request.content_type != "application/json":
        return problem(415, f"send the {what} as JSON (Content-Type: application/json)")
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        return problem(400, f"invalid {what}: {describe_validation_error(exc)}")


__all__ = ["SweepRegister", "SweepRoutes", "SweepStep", "publish_sweep_step"]
