"""Audit the hash-locked requirements for published vulnerabilities; exit 1 on any finding.

    python scripts/audit_lock.py requirements.lock requirements-test.lock

`pip-audit` audits each lock first, against PyPI's vulnerability data for the exact pinned
version (which PyPI takes from OSV). Where that per-version lookup cannot be reached (some
networks let through only PyPI's project pages), pip-audit skips the package and calls the
result clean; this script does not. It asks the project's PyPI JSON page instead, which lists
the vulnerabilities of the newest release: a pin that *is* the newest release is audited from it.
A pin behind the newest release cannot be audited from there, so it is listed as not audited,
with the newest version, and `--strict` turns that into a failure too.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PYPI = "https://pypi.org/pypi/{name}/json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass
class Report:
    """What the audit found: vulnerable pins, pins it could not audit, and how many it did."""

    findings: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    audited: int = 0


def pins(lock: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements lock file, by normalised name."""
    found = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def _pip_audit(lock: Path) -> list[dict]:
    """pip-audit's JSON `dependencies` for the lock (hash-checked, without installing)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--require-hashes"]
        command += ["--disable-pip", "--progress-spinner", "off", "-f", "json", "-o", str(out)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if not out.exists():
            raise SystemExit(f"pip-audit could not audit {lock}:\n{done.stderr}")
        return list(json.loads(out.read_text())["dependencies"])


def _latest(name: str) -> tuple[str, list[dict]]:
    """The newest release of a project on PyPI and its vulnerabilities."""
    with urllib.request.urlopen(PYPI.format(name=name), timeout=60) as response:  # noqa: S310
        page = json.load(response)
    return page["info"]["version"], page.get("vulnerabilities") or []


def _describe(name: str, version: str, vuln: dict) -> str:
    ids = ", ".join([vuln.get("id", "?"), *vuln.get("aliases", [])])
    fixed = ", ".join(vuln.get("fixed_in", [])) or "no fixed version"
    return f"{name}=={version}: {ids} (fixed in {fixed})"


def audit(locks: list[Path]) -> Report:
    """Audit every pin of the lock files: pip-audit first, the project page for what it skips."""
    report = Report()
    skipped: dict[str, str] = {}
    for lock in locks:
        versions = pins(lock)
        for dep in _pip_audit(lock):
            name = dep["name"]
            if "skip_reason" in dep:
                skipped[name] = versions.get(name, dep.get("version", "?"))
                continue
            report.audited += 1
            report.findings += [_describe(name, dep["version"], v) for v in dep.get("vulns", [])]
    with ThreadPoolExecutor(max_workers=8) as pool:
        latest = dict(zip(skipped, pool.map(_latest, skipped), strict=True))
    for name, version in sorted(skipped.items()):
        newest, vulns = latest[name]
        if newest != version:
            report.unaudited.append(f"{name}=={version} (newest {newest})")
            continue
        report.audited += 1
        current = [v for v in vulns if not v.get("withdrawn")]
        report.findings += [_describe(name, version, v) for v in current]
    return report


def main() -> int:
    """Audit the given lock files; print findings and unaudited pins; 1 on findings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="also fail on unaudited pins")
    args = parser.parse_args()
    report = audit(args.locks)
    for line in report.findings:
        print(f"VULNERABLE {line}")
    if report.unaudited:
        print(
            f"not audited ({len(report.unaudited)}; no vulnerability data reachable for an "
            "older release; refresh the locks, docs/development.md): " + "; ".join(report.unaudited)
        )
    print(f"audited {report.audited} pins: {len(report.findings)} known vulnerabilities")
    failed = bool(report.findings) or (args.strict and bool(report.unaudited))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
