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


# -- dependencies: installed from the hash-locked lock file, never resolved at build time --------

_PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+?)\s*(?:;[^\\]*)?\\?$", re.MULTILINE)


def _pins(lock: str) -> dict[str, str]:
    """`name==version` of a uv/pip-tools lock file, by normalised name."""
    text = (REPO / lock).read_text()
    return {re.sub(r"[-_.]+", "-", name): version for name, version in _PIN.findall(text)}


def _runs(stage: list[tuple[str, str]]) -> list[str]:
    return [rest for word, rest in stage if word == "RUN"]


def test_the_image_installs_dependencies_only_from_the_hash_checked_lock() -> None:
    """Every `pip install` is either the lock with `--require-hashes` or our wheel `--no-deps`,
    so no dependency version is chosen at build time and none goes unchecked."""
    instructions = _instructions()
    copies = [rest for word, rest in instructions if word == "COPY" and "--from" not in rest]
    assert any(rest.split()[0] == "requirements.lock" for rest in copies)
    commands = " && ".join(_runs(instructions)).split("&&")
    installs = [c for c in commands if re.search(r"\bpip\b.*\binstall\b", c)]
    assert any("--require-hashes" in c and "-r requirements.lock" in c for c in installs)
    for command in installs:
        assert "--require-hashes" in command or "--no-deps" in command, command
    assert any("--no-deps" in c and "/wheels/" in c for c in installs), "our wheel, nothing more"


def test_the_build_context_includes_the_lock() -> None:
    """The allow-list in .dockerignore must let the lock file into the build."""
    assert "!requirements.lock" in (REPO / ".dockerignore").read_text().splitlines()


def test_every_locked_requirement_is_pinned_with_hashes() -> None:
    for lock in ("requirements.lock", "requirements-test.lock"):
        blocks = re.split(r"\n(?=[a-z0-9])", (REPO / lock).read_text())
        requirements = [b for b in blocks if re.match(r"[a-z0-9]", b)]
        # A universal lock may pin a package twice, once per environment marker.
        assert len(requirements) == len(_PIN.findall((REPO / lock).read_text())) > 10, lock
        for block in requirements:
            assert "==" in block.splitlines()[0], block.splitlines()[0]
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block.splitlines()[0]


def test_the_locks_honour_the_dependency_floors_and_agree() -> None:
    """Each direct dependency is locked at a version its floor in pyproject.toml admits (the
    floors sit past the published advisories), and the tests run exactly what the image ships."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    for lock, specs in (
        (runtime, project["dependencies"]),
        (test, project["optional-dependencies"]["test"]),
    ):
        for spec in specs:
            requirement = Requirement(spec)
            name = re.sub(r"[-_.]+", "-", requirement.name.lower())
            assert name in lock, f"{name} is not in the lock: regenerate it (docs/development.md)"
            assert requirement.specifier.contains(lock[name], prereleases=True), (name, lock[name])
    assert {name: test[name] for name in runtime} == runtime
