"""PostgreSQL fixture: a throwaway cluster (initdb, pg_ctl) on 127.0.0.1 for the session → a database URL.

Registered from tests/conftest.py (`pytest_plugins`). The server binaries come from the system
package (`make system-deps`); without them the fixture fails and says so, it never skips. As root
the cluster runs as the `postgres` system user, since initdb refuses root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "nba"
PG_DATABASE = "nba_test"
_SERVER_USER = "postgres"


@dataclass(frozen=True)
class PgServer:
    """A running throwaway cluster: its URL (database `nba_test`, no password) and how to reach it."""

    url: str
    port: int
    data_dir: Path
    bindir: Path


def find_pg_bindir() -> Path | None:
    """The folder with initdb and pg_ctl: pg_config's bindir, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates.extend(
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def require_pg_bindir() -> Path:
    """`find_pg_bindir`, or a test failure that says how to install PostgreSQL (never a silent skip)."""
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under pg_config --bindir or "
            "/usr/lib/postgresql/*/bin: run `make system-deps` to install them",
            pytrace=False,
        )
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], as_root: bool) -> None:
    command = ["runuser", "-u", _SERVER_USER, "--", *argv] if as_root else argv
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


def start_pg_server(root: Path, bindir: Path) -> PgServer:
    """initdb into `root/data` and start a server on a free 127.0.0.1 port with its socket in `root`."""
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, _SERVER_USER, _SERVER_USER)
    data_dir = root / "data"
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        as_root,
    )
    port = _free_port()
    _pg_ctl_start(bindir, data_dir, port)
    server = PgServer(
        url=f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres",
        port=port,
        data_dir=data_dir,
        bindir=bindir,
    )
    return PgServer(create_database(server, PG_DATABASE), port, data_dir, bindir)


def _pg_ctl_start(bindir: Path, data_dir: Path, port: int) -> None:
    root = data_dir.parent
    # Durability is not the point of a test server: fsync off makes it start and write fast.
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c synchronous_commit=off"
    )
    log = root / "server.log"
    try:
        _run(
            [str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "start"],
            os.geteuid() == 0,
        )
    except RuntimeError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        raise RuntimeError(f"{exc}; server log: {' | '.join(tail)}") from None


def restart_pg_server(server: PgServer) -> None:
    """Starts a stopped server again on its port (the fault tests stop it under load)."""
    _pg_ctl_start(server.bindir, server.data_dir, server.port)


def create_database(server: PgServer, name: str) -> str:
    """Creates an empty database on the server and returns its URL."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=server.port, user=PG_USER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def stop_pg_server(bindir: Path, data_dir: Path, mode: str = "immediate") -> None:
    """Stops the server: at once by default (nothing to keep); `fast` shuts down cleanly, keeping every
    commit (the cluster runs with synchronous_commit off, so an immediate stop loses the last ones)."""
    _run([str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "stop"], os.geteuid() == 0)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session, removed at the end."""
    bindir = require_pg_bindir()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root needs `runuser` to start PostgreSQL as the postgres user", pytrace=False)
    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="nba-pg-"))
    try:
        yield start_pg_server(root, bindir)
    finally:
        try:
            if (root / "data" / "postmaster.pid").exists():
                stop_pg_server(bindir, root / "data")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """The URL of an empty database on the session's PostgreSQL server."""
    return pg_server.url
