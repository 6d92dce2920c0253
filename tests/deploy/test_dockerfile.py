"""The image the chart runs, read from the Dockerfile (no Docker engine needed)."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import CHART, REPO

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    found = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_every_stage_uses_a_pinned_python_3_11_slim_base() -> None:
    bases = [rest.split()[0] for word, rest in _instructions() if word == "FROM"]
    assert len(bases) >= 2, "multi-stage: build the wheel in one stage, run in another"
    for base in bases:
        assert PINNED_PYTHON.match(base), f"{base}: pin python:3.11.<patch>-slim-bookworm"
    assert len(set(bases)) == 1, "build and run stages must share the interpreter"


def test_the_final_stage_runs_dsr_as_the_charts_non_root_user() -> None:
    final = _final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric uid lets Kubernetes verify runAsNonRoot"
    values = (CHART / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values, "the chart must run the image's user"
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["dsr"]


def test_the_final_stage_installs_from_built_wheels_only() -> None:
    final = _final_stage()
    assert any(word == "COPY" and "--from=build" in rest for word, rest in final)
    assert not any(word == "RUN" and "pip install" in rest for word, rest in final)


def test_the_build_context_is_the_package_sources_only() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "allow-list: everything else (.venv, data, keys) stays out"
    for needed in ("!pyproject.toml", "!README.md", "!schemas/", "!orchestrator/", "!connectors/"):
        assert needed in lines
