"""The HTTP intake process (`dsr intake`): the intake API, the public request page, OpenDSR.

Everything it accepts becomes an ordinary signed event on the requests topic, signed with the
intake component's own key (publisher `intake`) after the intake checked the HTTP caller's
own signature and permissions. See `orchestrator.gateway.server.Gateway`.
"""
