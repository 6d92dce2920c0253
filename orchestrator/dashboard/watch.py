"""`dsr watch`: the dashboard's request list in a terminal, kept live from the status topic."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.dashboard.live import LiveView
from orchestrator.dashboard.model import RequestFilter, RequestPage, RequestSummary, list_requests
from schemas.errors import DsrError
from schemas.kafka import KafkaSettings
from schemas.topics import STATUS

_STATUS_STYLE = {
    "completed": "green",
    "partially_completed": "yellow",
    "failed": "bold red",
    "refused": "red",
    "action_required": "bold blue",
    "in_progress": "cyan",
    "awaiting_verification": "magenta",
}


class WatchError(DsrError, RuntimeError):
    """The status topic could not be read in time."""


def render(page: RequestPage, *, now: datetime) -> RenderableType:
    """The table `dsr watch` shows: the dashboard's list, most urgent first."""
    totals = page.totals
    title = (
        f"{totals.open} open, {totals.overdue} overdue, {totals.due_soon} due soon, "
        f"{totals.action_required} waiting for a person, {totals.finished} finished"
    )
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("request", no_wrap=True)
    table.add_column("type")
    table.add_column("status")
    table.add_column("systems", no_wrap=True)
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("deadline", no_wrap=True)
    table.add_column("days left", justify="right")
    for row in page.requests:
        table.add_row(
            row.request_id,
            row.type.value,
            _status(row),
            _progress(row),
            _running(row, now),
            row.deadline.date().isoformat(),
            Text(str(row.days_left), style=_urgency_style(row)) if row.open else Text("-"),
            style="on grey15" if row.overdue else None,
        )
    shown = len(page.requests)
    more = f" (the {shown} most urgent)" if page.matched > shown else ""
    footer = Text(
        f"{page.matched} request(s) match{more}; updated {now.astimezone():%H:%M:%S}",
        style="dim",
    )
    return Group(table, footer)


def _status(row: RequestSummary) -> Text:
    text = Text(row.status.value, style=_STATUS_STYLE.get(row.status.value, ""))
    if row.overdue:
        text.append(" OVERDUE", style="bold red")
    elif row.due_soon:
        text.append(" due soon", style="yellow")
    if row.manual_tasks:
        text.append(f" ({row.manual_tasks} manual)", style="blue")
    if row.finished_late:
        text.append(" late", style="red")
    return text


def _progress(row: RequestSummary) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=max(row.systems_total, 1), completed=row.systems_done, width=12),
        f"{row.systems_done}/{row.systems_total}",
    )
    return grid


def _running(row: RequestSummary, now: datetime) -> str:
    """How long the request has been (or was) under way."""
    end = row.finished_at or now
    return _duration(end - row.received_at)


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _urgency_style(row: RequestSummary) -> str:
    return "bold red" if row.overdue else "yellow" if row.due_soon else ""


async def watch(
    kafka: KafkaSettings,
    flt: RequestFilter,
    *,
    due_soon_days: int,
    limit: int = 40,
    once: bool = False,
    refresh: float = 1.0,
    timeout: float = 30.0,
    console: Console | None = None,
) -> None:
    """Show the request list, live until cancelled (or once, after reading the topic)."""
    console = console or Console()
    live_view = LiveView(kafka)
    follower = asyncio.create_task(live_view.run())

    def page() -> RenderableType:
        now = datetime.now(UTC)
        found = list_requests(
            live_view.view, flt, now=now, due_soon_days=due_soon_days, limit=limit
        )
        return render(found, now=now)

    try:
        with console.status(f"reading {STATUS.name}…"):
            try:
                await asyncio.wait_for(live_view.follower.caught_up.wait(), timeout)
            except TimeoutError:
                problem = live_view.follower.problem or "no answer from Kafka"
                raise WatchError(
                    f"could not read {STATUS.name} in {timeout:g}s: {problem}"
                ) from None
        if once:
            console.print(page())
            return
        with Live(page(), console=console, refresh_per_second=4, transient=False) as screen:
            while True:
                await asyncio.sleep(refresh)
                screen.update(page())
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


__all__ = ["WatchError", "render", "watch"]
