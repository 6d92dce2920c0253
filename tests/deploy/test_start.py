"""The application, started with exactly the environment the chart gives its containers.

The chart is rendered against the embedded broker; each container's env, args and working
directory are taken from the manifests, ConfigMap and volume mounts become local directories,
and the process runs with that environment plus PATH, nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from kafka.admin import KafkaAdminClient

from orchestrator.artifacts.keys import KeyStore
from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import create_publisher
from orchestrator.runtime.broker import EmbeddedBroker, free_port, terminate
from orchestrator.runtime.config import load_settings
from orchestrator.status.view import read_status
from schemas.events import (
    Identifier,
    IdentityVerification,
    RequestStatus,
    RequestSubmitted,
    RequestType,
    Subject,
    VerificationMethod,
)
from schemas.kafka import KafkaSettings
from schemas.register import RegisterError, load_register
from schemas.topics import ALL_TOPICS
from tests.deploy.conftest import Container, Helm, Manifest, containers

pytestmark = pytest.mark.broker

EMAIL = "deploy.subject@example.nl"
#: The embedded broker's group timeouts (shared/reference/embedded-broker.md), set through the
#: chart's kafka.consumer values like any other installation would.
EMBEDDED_CONSUMER = {
    "sessionTimeoutMs": 2000,
    "heartbeatIntervalMs": 500,
    "rebalanceTimeoutMs": 2000,
    "fetchMaxWaitMs": 25,
}


@dataclass(frozen=True)
class LocalPod:
    """A rendered container, made runnable on this machine."""

    where: str
    args: list[str]
    env: dict[str, str]
    cwd: Path

    def start(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """The container's command with its environment plus PATH."""
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *self.args],
            env={**self.env, "PATH": os.environ["PATH"]},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def run(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run to completion (a Job, or a worker expected to refuse to start)."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *self.args],
            env={**self.env, "PATH": os.environ["PATH"]},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def local_pod(
    manifests: list[Manifest],
    container: Container,
    root: Path,
    secrets: dict[str, Path] | None = None,
) -> LocalPod:
    """Mounts become directories under `root`: ConfigMaps filled with their data, Secrets with
    the files of `secrets[name]` (what `kubectl create secret --from-file` would hold), claims
    shared between pods (as a ReadWriteMany volume is), emptyDirs per pod."""
    config_maps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in container.pod.get("volumes", [])}
    pod_name = container.workload["metadata"]["name"]
    mapped: dict[str, Path] = {}
    for mount in container.spec.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            local = root / "claims" / volume["persistentVolumeClaim"]["claimName"]
        else:
            local = root / pod_name / mount["name"]
        local = local / mount.get("subPath", "")
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (local / key).write_text(text)
        sources = [{"name": volume["secret"]["secretName"]}] if "secret" in volume else []
        sources += [s["secret"] for s in volume.get("projected", {}).get("sources", [])]
        for source in sources:
            name = source["name"]
            assert secrets and name in secrets, f"{container.where}: no Secret {name} here"
            shutil.copytree(secrets[name], local, dirs_exist_ok=True)
        mapped[mount["mountPath"]] = local

    def localise(value: str) -> str:
        for path in sorted(mapped, key=len, reverse=True):
            if value == path or value.startswith(path + "/"):
                return str(mapped[path]) + value[len(path) :]
        return value

    env = {}
    for name, entry in container.env().items():
        assert "value" in entry, f"{container.where}: {name} is not a plain value in these values"
        env[name] = localise(entry["value"])
    assert not container.spec.get("envFrom"), "these test values reference no Secret"
    cwd = Path(localise(container.spec.get("workingDir", "/tmp")))
    return LocalPod(container.where, list(container.spec["args"]), env, cwd)


def pod_for(
    manifests: list[Manifest], component: str, root: Path, secrets: dict[str, Path] | None = None
) -> LocalPod:
    """The LocalPod of the one container of this component."""
    (container,) = [
        c
        for c in containers(manifests)
        if c.workload["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return local_pod(manifests, container, root, secrets)


def values_for(bootstrap: str, group: str, health_port: int) -> dict[str, Any]:
    """An installation against the embedded broker, with one in-memory system, publisher keys
    in the Secret `dsr-publisher-keys` and signing keys in `dsr-signing-keys`."""
    register = {
        "controller": {"name": "Deploy Test B.V."},
        "systems": [
            {
                **_system("crm", group),
                "settings": {
                    "records": [{"collection": "contacts", "data": {"email": EMAIL, "id": "7"}}]
                },
            }
        ],
    }
    return {
        # Its own consumer groups: other tests' workers on the session broker stay apart.
        "appId": f"deploytest-{group}",
        # The embedded broker speaks PLAINTEXT: acknowledged explicitly, as the chart demands.
        "allowInsecureKafka": True,
        "kafka": {
            "bootstrapServers": bootstrap,
            "consumer": EMBEDDED_CONSUMER,
            "tls": {"enabled": False},
            "sasl": {"enabled": False},
        },
        "connectorGroups": [{"name": group}],
        "register": {"inline": yaml.safe_dump(register, sort_keys=False)},
        "dashboard": {"enabled": False},
        "persistence": {"enabled": True, "existingClaim": "dsr-data"},
        "secrets": {
            "publisherKeys": {"existingSecret": "dsr-publisher-keys"},
            "signingKeys": {"existingSecret": "dsr-signing-keys"},
            "busKey": {"existingSecret": "dsr-bus-key"},
        },
        "health": {"port": health_port},
    }


def render(helm: Helm, values: dict[str, Any], path: Path) -> list[Manifest]:
    path.write_text(yaml.safe_dump(values))
    return helm.template(path)


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until /readyz answers 200; fails with the worker's log if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                assert json.load(answer) == {"status": "ready"}
                return
        except urllib.error.HTTPError as exc:
            last = exc.read().decode()
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"not ready after {timeout}s ({last}):\n{log.read_text()[-3000:]}")


def get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
        return answer.status, answer.read().decode()


@pytest.fixture
def group() -> str:
    return f"deploy{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    terminate(started, timeout=20)


def test_workers_start_and_serve_a_request_from_the_chart_environment(
    helm: Helm,
    broker: EmbeddedBroker,
    tmp_path: Path,
    group: str,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    # What an operator does before installing: a publisher with its keys file, and the
    # certificate signing key with the subject-hash salt, each in a Secret.
    publisher_keys = tmp_path / "secrets" / "dsr-publisher-keys"
    # It checks identity itself, so it is allowed to say so (issue 16: submit only by default).
    issued = create_publisher(
        publisher_keys / "publisher-keys.yaml",
        "web-form",
        out_dir=tmp_path / "web-form",
        events=["dsr.request.submitted.v1", "dsr.request.identity_verified.v1"],
    )
    signing_keys = tmp_path / "secrets" / "dsr-signing-keys"
    KeyStore(signing_keys).create()
    (signing_keys / "subject-salt").write_bytes(os.urandom(32))
    before = sorted(p.name for p in signing_keys.iterdir())
    # Each component signs what it publishes with its own key, each in its own Secret.
    component_keys = {
        "orchestrator": ["dsr.task.dispatched.v1", "dsr.sweep.dispatched.v1"],
        f"connectors-{group}": ["dsr.task.outcome.v1", "dsr.sweep.outcome.v1"],
    }
    for publisher, events in component_keys.items():
        create_publisher(
            publisher_keys / "publisher-keys.yaml",
            publisher,
            out_dir=tmp_path / "secrets" / f"dsr-publisher-{publisher}",
            events=events,
            key_file_name="publisher.pem",
        )
    bus_key = tmp_path / "secrets" / "dsr-bus-key"
    bus_key.mkdir(parents=True)
    (bus_key / "bus.key").write_bytes(base64.b64encode(os.urandom(32)))
    secrets = {
        "dsr-publisher-keys": publisher_keys,
        "dsr-signing-keys": signing_keys,
        "dsr-bus-key": bus_key,
        **{
            f"dsr-publisher-{p}": tmp_path / "secrets" / f"dsr-publisher-{p}"
            for p in component_keys
        },
    }
    ports = {"orchestrator": free_port(), "connectors": free_port()}
    pods = {}
    for component, port in ports.items():
        values = values_for(broker.bootstrap, group, port)
        values["orchestrator"] = {"publisherKey": {"existingSecret": "dsr-publisher-orchestrator"}}
        values["connectorGroups"][0]["publisherKey"] = {
            "existingSecret": f"dsr-publisher-connectors-{group}"
        }
        manifests = render(helm, values, tmp_path / f"{component}-values.yaml")
        pods[component] = pod_for(manifests, component, tmp_path / "cluster", secrets)
        if component == "orchestrator":
            # The pre-install hook first, as on a cluster.
            job = pod_for(manifests, "topics", tmp_path / "cluster").run()
            assert job.returncode == 0, job.stdout + job.stderr
    for component, pod in pods.items():
        assert pod.env["DSR_KAFKA_BOOTSTRAP"] == broker.bootstrap
        assert pod.env["DSR_HEALTH_PORT"] == str(ports[component])

    logs = {name: tmp_path / f"{name}.log" for name in pods}
    for name, pod in pods.items():
        with logs[name].open("wb") as log:
            workers.append(pod.start(log))
    for (name, port), process in zip(ports.items(), workers, strict=True):
        wait_ready(port, process, logs[name], timeout=60)
        assert get(port, "/healthz") == (200, '{"status": "ok"}')
        status, metrics = get(port, "/metrics")
        assert status == 200 and 'dsr_worker_ready{component="' in metrics
        assert "process_resident_memory_bytes" in metrics

    kafka = KafkaSettings().for_embedded(broker.bootstrap)
    now = datetime.now(UTC)
    request = RequestSubmitted(
        request_id=f"deploy-{uuid.uuid4().hex[:12]}",
        type=RequestType.ERASURE,
        subject=Subject(identifiers=[Identifier(type="email", value=EMAIL)]),
        received_at=now,
        verification=IdentityVerification(
            verified=True, method=VerificationMethod.ID_DOCUMENT, verified_at=now
        ),
        requested_by="tests",
    )
    with RequestPublisher(kafka, source="web-form", signer=issued.signer()) as publisher:
        publisher.publish(request)

    def finished(view: Any) -> bool:
        found = view.get(request.request_id)
        return found is not None and found.status.is_final

    view = asyncio.run(read_status(kafka, until=finished, timeout=60))
    final = view.get(request.request_id)
    assert final is not None, "no status event for the request: " + logs["orchestrator"].read_text()
    assert final.status == RequestStatus.COMPLETED, final.model_dump_json(indent=2)
    assert final.systems["crm"].counts.deleted == 1
    # Signed with the key from the Secret, which the orchestrator only read.
    mounted = tmp_path / "cluster" / "dsr-dsr-orchestrator-orchestrator" / "signing-keys"
    assert sorted(p.name for p in mounted.iterdir()) == before
    data = tmp_path / "cluster" / "claims" / "dsr-data"
    certificates = [p.name for p in data.rglob("*.json") if p.parent.name == "certificates"]
    assert f"{request.request_id}.json" in certificates, certificates


def test_the_topics_job_creates_every_topic_the_application_uses(
    helm: Helm, tmp_path: Path
) -> None:
    with EmbeddedBroker() as fresh:
        values = values_for(fresh.bootstrap, "default", free_port())
        manifests = render(helm, values, tmp_path / "values.yaml")
        job = pod_for(manifests, "topics", tmp_path / "cluster").run()
        assert job.returncode == 0, job.stdout + job.stderr
        admin = KafkaAdminClient(**KafkaSettings(bootstrap=fresh.bootstrap).kafka_python_options())
        try:
            topics = set(admin.list_topics())
        finally:
            admin.close()
    assert topics == {topic.name for topic in ALL_TOPICS}


@pytest.mark.parametrize(
    ("component", "change", "named"),
    [
        ("orchestrator", {"DSR_KAFKA_SECURITY_PROTOCOL": "bogus"}, ["DSR_KAFKA_SECURITY_PROTOCOL"]),
        (
            "connectors",
            {"DSR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DSR_KAFKA_SASL_MECHANISM": "PLAIN"},
            ["DSR_KAFKA_SASL_USERNAME", "DSR_KAFKA_SASL_PASSWORD"],
        ),
        (
            "orchestrator",
            {"DSR_HEALTH_PORT": "http", "DSR_MAX_ATTEMPTS": "0"},
            ["DSR_HEALTH_PORT", "DSR_MAX_ATTEMPTS"],
        ),
        ("connectors", {"DSR_KAFKA_BOOTSTRAP": None}, ["DSR_KAFKA_BOOTSTRAP"]),
    ],
)
def test_a_wrong_variable_stops_the_start_with_its_name(
    helm: Helm, tmp_path: Path, component: str, change: dict[str, str | None], named: list[str]
) -> None:
    # No broker needed: the configuration is refused before any connection.
    manifests = render(helm, values_for("127.0.0.1:9", "default", 8080), tmp_path / "v.yaml")
    (tmp_path / "keys").mkdir()
    # Never read: the start fails first.
    secrets = {
        "dsr-publisher-keys": tmp_path / "keys",
        "dsr-signing-keys": tmp_path / "keys",
        "dsr-bus-key": tmp_path / "keys",
    }
    pod = pod_for(manifests, component, tmp_path / "cluster", secrets)
    env = {k: v for k, v in {**pod.env, **change}.items() if v is not None}
    result = LocalPod(pod.where, pod.args, env, pod.cwd).run(timeout=30)
    assert result.returncode != 0
    for name in named:
        assert name in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def non_loopback_address() -> str:
    """An IPv4 address of this machine other than loopback (the pod IP a Service reaches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


def test_dashboard_from_the_chart_environment_is_ready_on_a_non_loopback_address(
    helm: Helm, broker: EmbeddedBroker, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    values = values_for(broker.bootstrap, "default", free_port())
    port = free_port()
    values["dashboard"] = {"enabled": True, "port": port, "tokenSecret": {"name": "dsr-token"}}
    manifests = render(helm, values, tmp_path / "values.yaml")
    token = tmp_path / "secrets" / "dsr-token"
    token.mkdir(parents=True)
    bus_key = tmp_path / "secrets" / "dsr-bus-key"
    bus_key.mkdir()
    (bus_key / "bus.key").write_bytes(base64.b64encode(os.urandom(32)))
    (container,) = [c for c in containers(manifests) if "-dashboard" in c.where]
    # The token comes from a Secret by reference; everything else is the rendered env.
    env = dict(container.env())
    token_ref = env.pop("DSR_DASHBOARD_TOKEN")["valueFrom"]["secretKeyRef"]
    assert token_ref["name"] == "dsr-token"
    spec = {**container.spec, "env": list(env.values())}
    pod = local_pod(
        manifests,
        Container(container.workload, container.pod, spec),
        tmp_path / "cluster",
        {"dsr-bus-key": bus_key},
    )
    assert pod.env["DSR_DASHBOARD_HOST"] == "0.0.0.0"
    pod_env = {**pod.env, "DSR_DASHBOARD_TOKEN": uuid.uuid4().hex}
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        workers.append(LocalPod(pod.where, pod.args, pod_env, pod.cwd).start(out))
    address = non_loopback_address()
    deadline = time.monotonic() + 60
    while True:
        if workers[0].poll() is not None:
            pytest.fail(f"dashboard exited with {workers[0].returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/readyz", timeout=2) as answer:
                assert answer.status == 200
                break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"/readyz not answered on {address}:{port}:\n{log.read_text()}")
            time.sleep(0.2)
    assert "INSECURE KAFKA" in log.read_text()


def test_a_connector_group_expands_only_its_own_systems_credentials(tmp_path: Path) -> None:
    """The register's ${VAR} are filled only for the worker's group: another group's secret
    is neither needed nor read, and its system keeps the reference text."""
    register = {
        "controller": {"name": "Deploy Test B.V."},
        "systems": [
            {**_system("crm", "default"), "settings": {"token": "${CRM_TOKEN}"}},
            {**_system("desk", "support"), "settings": {"api_key": "${DESK_KEY}"}},
        ],
    }
    path = tmp_path / "register.yaml"
    path.write_text(yaml.safe_dump(register))
    loaded = load_register(path, {"CRM_TOKEN": "crm-secret"}, group="default")
    assert loaded.get("crm").settings == {"token": "crm-secret"}
    assert loaded.get("desk").settings == {"api_key": "${DESK_KEY}"}
    # Without a group (dsr up runs every connector) every reference must resolve.
    with pytest.raises(RegisterError, match="DESK_KEY is not set"):
        load_register(path, {"CRM_TOKEN": "crm-secret"})


def _system(name: str, group: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "crm",
        "connector": "memory",
        "data_categories": ["email address"],
        "purposes": ["testing the chart"],
        "legal_basis": ["consent"],
        "profiling": "none",
        "retention": "30 days",
        "group": group,
    }


def test_allow_insecure_kafka_is_logged_loudly_at_start_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DSR_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("DSR_ALLOW_INSECURE_KAFKA", "true")
    with caplog.at_level("WARNING", logger="dsr.config"):
        load_settings()
    (record,) = [r for r in caplog.records if r.name == "dsr.config"]
    assert "INSECURE KAFKA" in record.getMessage() and "PLAINTEXT" in record.getMessage()
    caplog.clear()
    monkeypatch.delenv("DSR_ALLOW_INSECURE_KAFKA")
    load_settings()
    assert not [r for r in caplog.records if r.name == "dsr.config"]
