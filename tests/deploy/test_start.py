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
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (local / key).write_text(text)
        if "secret" in volume:
            name = volume["secret"]["secretName"]
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
                "name": "crm",
                "kind": "crm",
                "connector": "memory",
                "settings": {
                    "records": [{"collection": "contacts", "data": {"email": EMAIL, "id": "7"}}]
                },
                "data_categories": ["email address"],
                "purposes": ["testing the chart"],
                "legal_basis": ["consent"],
                "profiling": "none",
                "retention": "30 days",
                "group": group,
            }
        ],
    }
    return {
        # Its own consumer groups: other tests' workers on the session broker stay apart.
        "appId": f"deploytest-{group}",
        "kafka": {"bootstrapServers": bootstrap, "consumer": EMBEDDED_CONSUMER},
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
    issued = create_publisher(
        publisher_keys / "publisher-keys.yaml", "web-form", out_dir=tmp_path / "web-form"
    )
    signing_keys = tmp_path / "secrets" / "dsr-signing-keys"
    KeyStore(signing_keys).create()
    (signing_keys / "subject-salt").write_bytes(os.urandom(32))
    before = sorted(p.name for p in signing_keys.iterdir())
    bus_key = tmp_path / "secrets" / "dsr-bus-key"
    bus_key.mkdir(parents=True)
    (bus_key / "bus.key").write_bytes(base64.b64encode(os.urandom(32)))
    secrets = {
        "dsr-publisher-keys": publisher_keys,
        "dsr-signing-keys": signing_keys,
        "dsr-bus-key": bus_key,
    }
    ports = {"orchestrator": free_port(), "connectors": free_port()}
    pods = {}
    for component, port in ports.items():
        values = values_for(broker.bootstrap, group, port)
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
