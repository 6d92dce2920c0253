"""`dsr intake`: the HTTP intake process (intake API, request page, OpenDSR) until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import DsrCommand, command_settings, setup_logging

if TYPE_CHECKING:
    from orchestrator.gateway.server import Gateway
    from orchestrator.gateway.settings import IntakeSettings


@click.command(cls=DsrCommand)
def intake() -> None:
    """Serve requests over HTTP: the intake API, the request page and OpenDSR.

    Settings come from DSR_* variables (Kafka, register, publisher keys) and DSR_INTAKE_*
    (host, port, public URL, largest body). It signs what it publishes with its own key,
    DSR_PUBLISHER_ID=intake and DSR_PUBLISHER_KEY_FILE, as every worker does; `dsr up`
    gives it one. Health: GET /healthz and /readyz on the same port.
    """
    from orchestrator.gateway.server import Gateway
    from schemas.primitives.signing import RequestSigner

    setup_logging()
    settings = command_settings()
    settings.kafka.require_bootstrap()
    gateway = Gateway(settings, intake_settings(), signer=RequestSigner.from_env())
    asyncio.run(_serve(gateway))


def intake_settings() -> IntakeSettings:
    """DSR_INTAKE_* settings; a ConfigError naming each wrong variable."""
    from pydantic import ValidationError

    from orchestrator.gateway.settings import IntakeSettings
    from orchestrator.runtime.config import ConfigError

    try:
        return IntakeSettings()
    except ValidationError as exc:
        problems = [
            f"DSR_INTAKE_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


async def _serve(gateway: Gateway) -> None:
    """Serve until SIGINT or SIGTERM, then stop serving and following the topics."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await gateway.start()
        click.echo(
            f"Intake on {gateway.url}/ (public URL {gateway.public_url}/); Ctrl-C stops.", err=True
        )
        await stopped.wait()
    finally:
        await gateway.stop()


__all__ = ["intake", "intake_settings"]
