"""A real PostgreSQL server per test session, started from the installed server binaries.

Needs `initdb` and `pg_ctl` (on PATH or in /usr/lib/postgresql/*/bin). PostgreSQL refuses to
run as root, so under root the server runs as the `postgres` user in a directory it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
    "/usr/lib/postgresql/*/bin; install them with: apt-get install -y postgresql"
)
DATABASE = "dsr_test"
_START_TIMEOUT = 60
_COMMAND_TIMEOUT = 120


def find_postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, newest version first, or None."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the MariaDB fixture uses it too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of a server binary; in CI, fail it instead."""
    # In CI a missing server is a broken image, not a reason to skip the database tests.
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def server_directory(prefix: str, user: str, hint: str) -> tuple[Path, bool]:
    """A fresh directory for a database server's files, and whether the server must run as
    `user` (who then owns it): database servers refuse to run as root."""
    # mkdtemp, not tmp_path_factory: pytest's base directory is 0700 and root-owned.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() != 0:
        return root, False
    try:
        owner = pwd.getpwnam(user)
    except KeyError:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"running as root needs a {user!r} user; {hint}")
    os.chown(root, owner.pw_uid, owner.pw_gid)
    return root, True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh database on a PostgreSQL server started for this session."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        unavailable(INSTALL_HINT)
    root, switch = server_directory("dsr-pg-", "postgres", INSTALL_HINT)
    as_user = ["runuser", "-u", "postgres", "--"] if switch else []
    data, server_log = root / "data", root / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
        )
        if done.returncode != 0:
            tail = server_log.read_text()[-2000:] if server_log.exists() else ""
            pytest.fail(f"{Path(args[0]).name} failed:\n{done.stdout}\n{done.stderr}\n{tail}")

    port = free_port()
    started = False
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{root}'\n"
                # A throwaway server: durability only costs test time.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        started = True  # from here on, stop it even if start only timed out
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(server_log),
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "start",
        )
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            subprocess.run(
                [
                    *as_user,
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
