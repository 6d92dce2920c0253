"""The code's layout holds: layers point one way, the orchestrator root is only a package,
no function in product code grows past 80 lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns("__pycache__", "static", "json")
STAGES = {
    "intake",
    "gateway",
    "lifecycle",
    "fanout",
    "artifacts",
    "status",
    "dashboard",
    "runtime",
    "cli",
}


def _lint_imports(tree: Path = ROOT) -> subprocess.CompletedProcess[str]:
    args = [
        str(Path(sys.executable).parent / "lint-imports"),
        "--config",
        str(ROOT / "pyproject.toml"),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_import_layers_are_kept() -> None:
    """lint-imports passes with the contracts in pyproject.toml."""
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_connector_importing_the_orchestrator_breaks_the_contract(tmp_path: Path) -> None:
    """The contract really checks: a connector module that imports the orchestrator fails it."""
    for package in ("schemas", "connectors", "orchestrator"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=_IGNORE)
    offender = tmp_path / "connectors" / "_layout_probe_offender.py"
    offender.write_text("from orchestrator.runtime.config import Settings  # noqa: F401\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "connectors never import the orchestrator BROKEN" in result.stdout
    assert "connectors._layout_probe_offender -> orchestrator" in result.stdout


def test_orchestrator_root_holds_only_the_package_init() -> None:
    """Every module of the orchestrator lives in the folder of its stage."""
    root = ROOT / "orchestrator"
    modules = sorted(p.name for p in root.glob("*.py"))
    assert modules == ["__init__.py"]
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == STAGES


def test_no_function_over_80_lines_in_product_code() -> None:
    """scripts/long_functions.py finds nothing (or only its listed exceptions)."""
    result = subprocess.run(
        [sys.executable, "scripts/long_functions.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout


def test_long_function_checker_catches_a_long_function(tmp_path: Path) -> None:
    """The checker itself works: an 81-line function is reported."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import long_functions
    finally:
        sys.path.pop(0)
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "long.py").write_text(textwrap.dedent("def f():\n") + body + "\n")
    (tmp_path / "short.py").write_text("def g():\n    return 1\n")
    found = long_functions.long_functions(tmp_path, 80)
    assert [where.rsplit("/", 1)[-1] for where, _ in found] == ["long.py:f"]


@pytest.mark.parametrize("package", ["schemas", "connectors"])
def test_lower_layers_import_without_the_orchestrator(package: str) -> None:
    """Importing contracts or connectors never pulls in the orchestrator."""
    code = (
        f"import sys, pkgutil, importlib, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    if '.fakes' in m.name or m.name.endswith('conformance'): continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] == 'orchestrator')\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
