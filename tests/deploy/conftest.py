"""The Helm chart under test: finding helm, rendering the chart, walking the manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "dsr-orchestrator"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
#: The values files CI renders the chart with: none (the defaults) and the production-like one.
VALUES_FILES = {"default": None, "production": PRODUCTION_VALUES}

Manifest = dict[str, Any]


def find_helm() -> str | None:
    """helm on PATH, else the binary scripts/fetch-helm unpacked into .cache/bin."""
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = REPO / ".cache" / "bin" / "helm"
    return str(cached) if os.access(cached, os.X_OK) else None


@dataclass(frozen=True)
class Helm:
    """The helm binary, run against our chart."""

    binary: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm; the caller looks at the exit code."""
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=60, check=False
        )

    def template_args(
        self, values: Path | None = None, sets: dict[str, str] | None = None
    ) -> list[str]:
        args = ["template", "dsr", str(CHART), "--namespace", "privacy"]
        if values is not None:
            args += ["--values", str(values)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        return args

    def template(
        self, values: Path | None = None, sets: dict[str, str] | None = None
    ) -> list[Manifest]:
        """The rendered manifests; fails the test with helm's message if rendering fails."""
        result = self.run(*self.template_args(values, sets))
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def template_error(self, values: Path | None = None, sets: dict[str, str] | None = None) -> str:
        """helm's error message for values that must be refused."""
        result = self.run(*self.template_args(values, sets))
        assert result.returncode != 0, "helm template accepted values it should refuse"
        return result.stderr


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The helm binary. Missing on a laptop: skip. Missing in CI: fail, never skip."""
    binary = find_helm()
    if binary is None:
        message = "helm not found on PATH or in .cache/bin: run scripts/fetch-helm"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must have helm)")
        pytest.skip(message)
    return Helm(binary)


@pytest.fixture(scope="session", params=sorted(VALUES_FILES))
def rendered(request: pytest.FixtureRequest, helm: Helm) -> list[Manifest]:
    """The chart rendered with each values file CI checks."""
    return helm.template(VALUES_FILES[request.param])


@dataclass(frozen=True)
class Container:
    """One container of a rendered workload, with its pod spec."""

    workload: Manifest
    pod: dict[str, Any]
    spec: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']}:{self.spec['name']}"

    def env(self) -> dict[str, dict[str, Any]]:
        """Environment entries by name."""
        return {entry["name"]: entry for entry in self.spec.get("env", [])}


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod spec of a workload, or None for other kinds."""
    kind = manifest["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return manifest["spec"]["template"]["spec"]
    if kind == "CronJob":
        return manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(manifests: list[Manifest]) -> Iterator[Container]:
    """Every container (init containers too) of every workload."""
    for manifest in manifests:
        pod = pod_spec(manifest)
        if pod is None:
            continue
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            yield Container(manifest, pod, spec)


def find(manifests: list[Manifest], kind: str, name_suffix: str) -> Manifest:
    """The one manifest of this kind whose name ends with `name_suffix`."""
    found = [
        m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]
