"""The `dsr` command line: the root group, with one module per group of commands.

`options` holds what the groups share (flags, settings, Kafka, error reporting); each other
module is a group of commands, registered below. Heavy modules load inside the commands, so
`dsr --help` stays fast.
"""

from __future__ import annotations

import click

from orchestrator.cli.casefiles import casefiles
from orchestrator.cli.connectors import connectors_group
from orchestrator.cli.dashboard import dashboard, watch
from orchestrator.cli.demo import demo
from orchestrator.cli.exports import export
from orchestrator.cli.init import init
from orchestrator.cli.intake import intake
from orchestrator.cli.keys import keys, verify
from orchestrator.cli.options import DsrGroup
from orchestrator.cli.publishers import publishers
from orchestrator.cli.register import register_group
from orchestrator.cli.requests import decide, deliver, extend, status, submit, verify_identity
from orchestrator.cli.run import topics, up, worker
from orchestrator.cli.sweeps import sweep
from orchestrator.cli.tasks import tasks


@click.group(
    cls=DsrGroup,
    commands=[
        init,
        up,
        worker,
        intake,
        topics,
        submit,
        verify_identity,
        extend,
        decide,
        deliver,
        status,
        tasks,
        connectors_group,
        register_group,
        demo,
        sweep,
        keys,
        verify,
        publishers,
        export,
        casefiles,
        dashboard,
        watch,
    ],
)
@click.version_option(package_name="dsr-orchestrator")
def main() -> None:
    """dsr-orchestrator: GDPR data-subject requests over Kafka."""


__all__ = ["main"]
