"""`python -m orchestrator.cli`: the `dsr` command, as the stack starts its workers."""

from orchestrator.cli import main

main()
