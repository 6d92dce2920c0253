"""A real MariaDB server per test session, started from the installed server binaries.

Needs `mariadbd` (or `mysqld`) and `mariadb-install-db` (or `mysql_install_db`), on PATH or in
/usr/sbin and /usr/bin. Under root the server runs as the `mysql` user in a directory it owns.
The server reads no option files (`--no-defaults`), so the machine's configuration and any
system-wide server stay out of it. Its tables therefore default to latin1, as many older
MySQL databases do: the connector must not assume UTF-8 columns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_postgres import free_port, server_directory, unavailable

INSTALL_HINT = (
    "MariaDB server binaries (mariadbd, mariadb-install-db) not found on PATH or in "
    "/usr/sbin, /usr/bin; install them with: apt-get install -y mariadb-server"
)
DATABASE = "dsr_test"
USER = "dsr"
PASSWORD = "dsr-test-only"  # a throwaway server on loopback
_START_TIMEOUT = 60
_STOP_TIMEOUT = 30
_COMMAND_TIMEOUT = 120


def _find(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")
        if found:
            return Path(found)
    return None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A SQLAlchemy URL (PyMySQL) of a fresh database on a MariaDB server for this session."""
    server = _find("mariadbd", "mysqld")
    install_db = _find("mariadb-install-db", "mysql_install_db")
    if server is None or install_db is None:
        unavailable(INSTALL_HINT)
    root, switch = server_directory("dsr-mariadb-", "mysql", INSTALL_HINT)
    as_user = ["--user=mysql"] if switch else []
    data, sock, server_log = root / "data", root / "mysqld.sock", root / "server.log"
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        done = subprocess.run(
            [
                str(install_db),
                "--no-defaults",  # must come first: ignore /etc/mysql
                f"--datadir={data}",
                *as_user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
        )
        if done.returncode != 0:
            pytest.fail(f"{install_db.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        process = subprocess.Popen(
            [
                str(server),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--pid-file={root / 'mysqld.pid'}",
                f"--log-error={server_log}",
                f"--tmpdir={root}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                # A throwaway server: durability only costs test time.
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=64M",
                *as_user,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import pymysql

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"mariadbd exited with {process.returncode}:\n{_tail(server_log)}")
            try:
                # root@localhost exists only on the socket: create a TCP user for the tests.
                admin = pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=5)
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mariadbd did not accept connections:\n{_tail(server_log)}")
                time.sleep(0.2)
        with admin, admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            # Every database: tests create one of their own per test.
            cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1'")
        yield f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}?charset=utf8mb4"
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)
        shutil.rmtree(root, ignore_errors=True)
