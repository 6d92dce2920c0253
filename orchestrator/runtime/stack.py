"""Running the whole system: broker (if embedded), topics, orchestrator and connector workers.

Workers are separate processes, as in production, so one can crash or be killed without the
others. Every setting reaches them through DSR_* environment variables: the same variables a
container gets from the Helm chart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, NamedTuple

from pydantic import SecretStr

from orchestrator.intake.publishers import (
    LOCAL_PUBLISHER,
    IssuedKey,
    create_publisher,
    local_publisher,
    read_keys_document,
    rotate_publisher,
    write_keys_document,
)
from orchestrator.runtime.broker import (
    EmbeddedBroker,
    ends_with_this_process,
    free_port,
    terminate,
)
from orchestrator.runtime.config import Settings
from orchestrator.runtime.topics import ensure_topics
from schemas.errors import DsrError
from schemas.primitives.signing import (
    ED25519,
    INTAKE_PUBLISHER,
    ORCHESTRATOR_PUBLISHER,
    OUTCOME_EVENT_TYPES,
    TASK_EVENT_TYPES,
    PublisherKeyError,
    RequestSigner,
    connector_publisher,
)
from schemas.register import Register, load_register
from schemas.topics import REQUEST_EVENT_TYPES

log = logging.getLogger("dsr.stack")


def settings_env(settings: Settings) -> dict[str, str]:
    """DSR_* environment variables that reproduce these settings in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude={"kafka"}).items():
        if value is not None:
            secret = getattr(settings, name)
            if isinstance(secret, SecretStr):
                value = secret.get_secret_value()
            env[_env_name(name)] = str(value)
    kafka = settings.kafka
    for name, value in kafka.model_dump().items():
        if value is None:
            continue
        if name == "sasl_password" and kafka.sasl_password is not None:
            value = kafka.sasl_password.get_secret_value()
        env[f"DSR_KAFKA_{name.upper()}"] = str(value)
    return env


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
    for choice in choices:
        if isinstance(choice, str) and choice.startswith("DSR_"):
            return choice
    return f"DSR_{field.upper()}"


class StackError(DsrError, RuntimeError):
    """A part of the stack failed to start or died."""


#: The manual-task outcome a person signs (with the local publisher on one machine).
_TASK_OUTCOME = OUTCOME_EVENT_TYPES[0]


def component_keys(
    keys_file: Path, directory: Path, groups: list[str]
) -> dict[str, dict[str, str]]:
    """Each component's signing key (created once in `directory`, listed in `keys_file`): the
    DSR_PUBLISHER_* variables of the orchestrator, the intake process and each connector worker
    group."""
    wanted = {ORCHESTRATOR_PUBLISHER: list(TASK_EVENT_TYPES)}
    # Every request event: the intake checks each HTTP caller's own permissions before it
    # publishes on the caller's behalf (orchestrator.intake.publishers.check_claims).
    wanted[INTAKE_PUBLISHER] = list(REQUEST_EVENT_TYPES)
    wanted |= {connector_publisher(g): list(OUTCOME_EVENT_TYPES) for g in groups}
    document = read_keys_document(keys_file)
    listed = {p.get("id"): p for p in document["publishers"] if isinstance(p, dict)}
    env: dict[str, dict[str, str]] = {}
    for publisher, events in wanted.items():
        key_file = directory / f"{publisher}.pem"
        kid = RequestSigner.from_key_file(publisher, key_file).key_id if key_file.exists() else None
        record = listed.get(publisher)
        known = [k.get("id") for k in (record or {}).get("keys", []) if isinstance(k, dict)]
        if kid is None or kid not in known:
            key_file.unlink(missing_ok=True)
            if record is None:
                name = key_file.name
                issued = create_publisher(
                    keys_file, publisher, ED25519, out_dir=directory, events=events,
                    key_file_name=name,
                )  # fmt: skip
            else:
                # Listed already (another stack sharing this keys file, or a lost key file):
                # add a key, as a rotation does; the keys others sign with stay valid.
                issued = rotate_publisher(keys_file, publisher, ED25519, out_dir=directory)
                issued.key_file.replace(key_file)
            document = read_keys_document(keys_file)
            listed = {p.get("id"): p for p in document["publishers"] if isinstance(p, dict)}
            kid = issued.key_id
        env[publisher] = {
            "DSR_PUBLISHER_ID": publisher,
            "DSR_PUBLISHER_KEY_FILE": str(key_file.resolve()),
            "DSR_PUBLISHER_KEY_ID": kid,
        }
    return env


def _allow_manual_outcomes(keys_file: Path) -> None:
    """The local publisher (the officer on one machine) may also complete manual tasks."""
    document = read_keys_document(keys_file)
    for record in document["publishers"]:
        if isinstance(record, dict) and record.get("id") == LOCAL_PUBLISHER:
            events = record.setdefault("events", [])
            if _TASK_OUTCOME not in events:
                events.append(_TASK_OUTCOME)
                write_keys_document(keys_file, document)


def _require_free(host: str, port: int, setting: str, server: str) -> None:
    """Fail before starting a server on a port that is taken, naming the setting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"the {server} cannot listen on {host}:{port} ({exc.strerror}); set "
                f"{setting} to a free port (0: any free port)"
            ) from None


class Address(NamedTuple):
    """Where a server of the stack listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Its base URL (a wildcard address shown as loopback), with a trailing slash."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/"


class Stack:
    """Broker (when no bootstrap is configured), topics and worker processes."""

    def __init__(
        self,
        settings: Settings,
        *,
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        dashboard: bool = False,
        intake: Address | None = None,
    ) -> None:
        self.settings = settings
        self.dashboard = dashboard
        #: Where the intake process listens (port 0: a free one, chosen in `start`); None: none.
        self.intake = intake
        #: The token `start` made up for the dashboard when none was configured.
        self.dashboard_session_token: str | None = None
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.broker: EmbeddedBroker | None = None
        #: The publisher `dsr up`/`dsr demo` sign with on the embedded broker.
        self.local_publisher: IssuedKey | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._own: dict[str, dict[str, str]] = {}  # each child's own variables, by name
        #: Each component's DSR_PUBLISHER_* variables (its own signing key).
        self.component_env: dict[str, dict[str, str]] = {}
        self._logs: list[IO[bytes]] = []
        self.register: Register = load_register(
            settings.register_file, {**os.environ, **self.extra_env}
        )

    @property
    def embedded(self) -> bool:
        """True when this stack runs its own broker."""
        return self.broker is not None

    def start(self) -> Stack:
        """Start everything; returns once all processes are launched."""
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.dashboard and self.settings.dashboard_port:
            _require_free(
                self.settings.dashboard_host,
                self.settings.dashboard_port,
                "DSR_DASHBOARD_PORT",
                "dashboard",
            )
        if self.intake is not None and self.intake.port:
            _require_free(*self.intake, "DSR_INTAKE_PORT", "intake")
        embedded = not self.settings.kafka.bootstrap
        if embedded and self.settings.publisher_keys is None:
            # No configuration on a laptop: a local publisher, created once in the data dir,
            # which `dsr submit` finds through the state directory.
            self.local_publisher = local_publisher(self.settings.data_dir.resolve() / "publishers")
            _allow_manual_outcomes(self.local_publisher.keys_file)
            self.settings = self.settings.model_copy(
                update={"publisher_keys": self.local_publisher.keys_file}
            )
        self._component_keys()
        self.settings.request_verifier()  # no publisher keys: refuse here, not in a child
        self.settings.data_keys()  # a bad bus key file: likewise; else create it once, here
        if embedded:
            log_path = self.log_dir / "broker.log" if self.log_dir else None
            self.broker = EmbeddedBroker(log_path=log_path).start()
            self.settings = self.settings.for_embedded(self.broker.bootstrap)
        ensure_topics(self.settings.kafka, case_files=self.register.case_files)
        for n in range(self.settings.orchestrator_workers):
            name = f"orchestrator-{n}" if n else "orchestrator"
            self.spawn(name, ["worker", "orchestrator"], self.component_env.get("orchestrator"))
        for group in self._groups():
            publisher = connector_publisher(group)
            args = ["worker", "connectors", "--group", group]
            self.spawn(publisher, args, self.component_env.get(publisher))
        if self.dashboard:
            self._start_dashboard()
        if self.intake is not None:
            self._start_intake(self.intake)
        return self

    def _groups(self) -> list[str]:
        return sorted({s.group for s in self.register.systems})

    def _component_keys(self) -> None:
        """Keys for the orchestrator and each worker group, created once in the data dir and
        added to the publisher keys file the workers read (none without one: unsigned test
        mode)."""
        keys_file = self.settings.publisher_keys
        if keys_file is None:
            return
        directory = self.settings.data_dir.resolve() / "publishers" / "components"
        try:
            self.component_env = component_keys(keys_file, directory, self._groups())
        except PublisherKeyError as exc:
            raise StackError(f"cannot set up the components' signing keys: {exc}") from None

    def _start_dashboard(self) -> None:
        settings = self.settings
        port = settings.dashboard_port or free_port()
        update: dict[str, object] = {"dashboard_port": port}
        if settings.dashboard_token is None and not settings.dashboard_allow_anonymous:
            # A laptop without configuration: a token for this session, printed with the URL.
            self.dashboard_session_token = secrets.token_urlsafe(24)
            update["dashboard_token"] = SecretStr(self.dashboard_session_token)
        self.settings = settings.model_copy(update=update)
        # Officers complete manual tasks there: signed with the local publisher's key.
        own = dict(self.local_publisher.env()) if self.local_publisher else {}
        if settings.dashboard_host in ("127.0.0.1", "localhost", "::1"):
            # Served on loopback over plain HTTP: a Secure cookie would not come back in every
            # browser. Anywhere else the cookie stays Secure (DSR_DASHBOARD_COOKIE_SECURE).
            own.setdefault("DSR_DASHBOARD_COOKIE_SECURE", "false")
        process = self.spawn("dashboard", ["dashboard"], own or None)
        # The workers come first: the dashboard is only a view, and on a small machine its
        # start-up (about 1 s of CPU) competes with theirs.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, process.pid, 10)

    def _start_intake(self, address: Address) -> None:
        """The HTTP intake, signing with its own component key, on a free port unless one is
        configured."""
        self.intake = address._replace(port=address.port or free_port())
        own = {
            **self.component_env.get(INTAKE_PUBLISHER, {}),
            "DSR_INTAKE_HOST": self.intake.host,
            "DSR_INTAKE_PORT": str(self.intake.port),
        }
        if not self.settings.smtp_host:  # try the request page on a laptop: mails as files
            own.setdefault("DSR_PUBLIC_OUTBOX", str(self.settings.data_dir.resolve() / "outbox"))
        self.spawn("intake", ["intake"], own)

    @property
    def intake_url(self) -> str | None:
        """Where the intake process answers (None without one)."""
        return self.intake.url if self.intake is not None else None

    @property
    def dashboard_url(self) -> str | None:
        """Where the dashboard answers (None without one); with `?token=` when made up here."""
        if not self.dashboard:
            return None
        host = self.settings.dashboard_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a listening address, shown as loopback
            host = "127.0.0.1"
        url = f"http://{host}:{self.settings.dashboard_port}/"
        if self.dashboard_session_token:
            url += f"?token={self.dashboard_session_token}"
        return url

    def spawn(
        self, name: str, args: list[str], own: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one `dsr` sub-command as a child process with our settings (and `own`
        variables: a component's signing key; a restart under the same name keeps them)."""
        if own is None:
            own = self._own.get(name)
        else:
            self._own[name] = own
        env = {**os.environ, **settings_env(self.settings), **self.extra_env, **(own or {})}
        output: IO[bytes] | None = None
        if self.log_dir:
            output = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(output)
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=ends_with_this_process(),
        )
        self.processes[name] = process
        return process

    def check(self) -> None:
        """Raise if a worker process (or the embedded broker) has died."""
        if self.broker is not None and not self.broker.running:
            from orchestrator.lifecycle.recovery import broker_lost_message

            raise StackError(broker_lost_message(self.settings.data_dir, self.broker.exit_code))
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                where = f"; see {self.log_dir / (name + '.log')}" if self.log_dir else ""
                raise StackError(f"worker {name} exited with code {code}{where}")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop workers (SIGTERM, then SIGKILL), then the broker."""
        terminate(list(self.processes.values()), timeout)
        self.processes.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = ["Address", "Stack", "StackError", "settings_env"]
