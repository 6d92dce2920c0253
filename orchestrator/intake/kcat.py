"""Run a distribution's `kcat` with the librdkafka from the confluent-kafka wheel.

Debian's kcat links librdkafka 2.0.2, which cannot parse the ApiVersions v3 reply of the
embedded broker ("ApiVersionRequest failed: Local: Read underflow"). The confluent-kafka wheel
bundles librdkafka 2.16, which works. Pointing LD_LIBRARY_PATH at a folder holding a
`librdkafka.so.1` link to the wheel's copy makes the same kcat binary use it.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path

from schemas.errors import DsrError

LIBRARY_NAME = "librdkafka.so.1"


class LibrdkafkaError(DsrError, RuntimeError):
    """The librdkafka of the confluent-kafka wheel cannot be found."""


def bundled_librdkafka() -> Path:
    """Path of the librdkafka shared library inside the installed confluent-kafka wheel."""
    try:
        dist = importlib.metadata.distribution("confluent-kafka")
    except importlib.metadata.PackageNotFoundError:
        raise LibrdkafkaError(
            "kcat needs a recent librdkafka from the confluent-kafka wheel: "
            "pip install 'confluent-kafka>=2.5'"
        ) from None
    candidates = sorted(
        Path(str(dist.locate_file(file)))
        for file in dist.files or []
        if file.name.startswith("librdkafka") and ".so" in file.name
    )
    found = [path for path in candidates if path.is_file()]
    if not found:
        raise LibrdkafkaError(
            f"confluent-kafka {dist.version} is installed but bundles no librdkafka shared "
            "library (a source build?); install a binary wheel: "
            "pip install --only-binary=:all: 'confluent-kafka>=2.5'"
        )
    return found[0]


def librdkafka_dir(tmp: Path) -> Path:
    """Create `tmp` holding a `librdkafka.so.1` link to the wheel's library; return `tmp`."""
    library = bundled_librdkafka()
    tmp.mkdir(parents=True, exist_ok=True)
    link = tmp / LIBRARY_NAME
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(library)
    return tmp


def kcat_library_env(tmp: Path) -> dict[str, str]:
    """`LD_LIBRARY_PATH` for kcat (`tmp`, absolute, holding the link), or nothing when the
    confluent-kafka wheel is not installed (`pip install -e '.[kcat]'`): `dsr up` writes it
    into `.dsr/publisher.env`, which the README's kcat line sources."""
    try:
        return {"LD_LIBRARY_PATH": str(librdkafka_dir(tmp.resolve()))}
    except LibrdkafkaError:
        return {}


def kcat_environment(tmp: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running kcat with the wheel's librdkafka (LD_LIBRARY_PATH prepended)."""
    env = dict(os.environ if base is None else base)
    previous = env.get("LD_LIBRARY_PATH")
    directory = str(librdkafka_dir(tmp))
    env["LD_LIBRARY_PATH"] = f"{directory}{os.pathsep}{previous}" if previous else directory
    return env


__all__ = [
    "LIBRARY_NAME",
    "LibrdkafkaError",
    "bundled_librdkafka",
    "kcat_environment",
    "kcat_library_env",
    "librdkafka_dir",
]
