"""The documents of a finished request or sweep, as the dashboard offers them for download.

A request's are found through `results/<request id>.json` in the data dir, which the
orchestrator writes when a request finishes; a sweep's certificate through the path its status
event names. Only files that resolve to a regular file inside the data dir are offered; a
download names one of them, never a path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from orchestrator.dashboard.model import ResultFile
from schemas.sweeps import SweepStatusChanged

log = logging.getLogger("dsr.dashboard")

_LETTER_TITLES = {
    "refusal": "Refusal letter",
    "missing": "Letter: what is missing",
    "confirmation": "Confirmation letter",
    "extension": "Extension notice",
}


class ResultFiles:
    """Export, certificate and letters of requests, under one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()

    def paths(self, request_id: str) -> dict[str, tuple[str, Path]]:
        """name -> (title, path) of every document of a finished request that exists."""
        result = self._result(request_id)
        if result is None:
            return {}
        found: dict[str, tuple[str, Path]] = {}
        export = result.get("export")
        if isinstance(export, str):
            found["export"] = ("Export (ZIP: data per system, manifest, report)", Path(export))
        certificate = result.get("certificate")
        if isinstance(certificate, str):
            found.update(_certificate("Deletion certificate", Path(certificate)))
        documents = result.get("documents")
        if isinstance(documents, dict):
            for kind, path in sorted(documents.items()):
                if isinstance(kind, str) and isinstance(path, str):
                    found[f"letter-{kind}"] = (
                        _LETTER_TITLES.get(kind, f"Letter: {kind}"),
                        Path(path),
                    )
        return {
            name: (title, resolved)
            for name, (title, path) in found.items()
            if (resolved := self._inside(path)) is not None
        }

    def listing(self, request_id: str) -> list[ResultFile]:
        """The documents of a request, with their download links."""
        return _listed(request_id, self.paths(request_id), f"/api/requests/{request_id}/files")

    def sweep_paths(self, status: SweepStatusChanged) -> dict[str, tuple[str, Path]]:
        """name -> (title, path) of a sweep's certificate (signed JSON, nl and en HTML) that
        exist; a relative path in the status event is inside the data dir."""
        if status.certificate is None:
            return {}
        signed = Path(status.certificate)
        if not signed.is_absolute():
            signed = self.root / signed
        found = _certificate("Sweep certificate", signed)
        return {
            name: (title, resolved)
            for name, (title, path) in found.items()
            if (resolved := self._inside(path)) is not None
        }

    def sweep_listing(self, status: SweepStatusChanged) -> list[ResultFile]:
        """A sweep's certificate files, with their download links."""
        href = f"/api/sweeps/{status.sweep_id}/files"
        return _listed(status.sweep_id, self.sweep_paths(status), href)

    def get(self, request_id: str, name: str) -> Path | None:
        """The path of one named document, or None."""
        entry = self.paths(request_id).get(name)
        return entry[1] if entry else None

    def _result(self, request_id: str) -> dict[str, Any] | None:
        path = self.root / "results" / f"{request_id}.json"
        if self._inside(path) is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("result file of request %s unreadable: %s", request_id, type(exc).__name__)
            return None
        return data if isinstance(data, dict) else None

    def _inside(self, path: Path) -> Path | None:
        """The resolved path when it is a regular file inside the data dir, else None."""
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved


def _certificate(title: str, signed: Path) -> dict[str, tuple[str, Path]]:
    """A signed certificate and the nl/en HTML written beside it."""
    found = {"certificate": (f"{title} (signed JSON)", signed)}
    for language, name in (("nl", "Dutch"), ("en", "English")):
        rendering = signed.with_name(f"{signed.stem}.{language}.html")
        found[f"certificate-{language}"] = (f"{title} ({name})", rendering)
    return found


def _listed(key: str, paths: dict[str, tuple[str, Path]], href: str) -> list[ResultFile]:
    return [
        ResultFile(
            name=name,
            title=title,
            filename=download_name(key, path),
            size=path.stat().st_size,
            href=f"{href}/{name}",
        )
        for name, (title, path) in paths.items()
    ]


def download_name(request_id: str, path: Path) -> str:
    """The file name a download is saved under: always names the request."""
    return path.name if request_id in path.name else f"{request_id}-{path.name}"


__all__ = ["ResultFiles", "download_name"]
