"""Fixtures for the fault tests: a PostgreSQL cluster of their own (they stop and pause it)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import resume_pg, server_processes
from tests.pg import PgServer, require_pg_bindir, start_pg_server, stop_pg_server


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    """A throwaway cluster for this module alone: the tests stop, start and pause it under load."""
    bindir = require_pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="nba-faults-pg-"))
    try:
        server = start_pg_server(root, bindir)
        yield server
    finally:
        try:
            resume_pg(server_processes(root / "data"))
            if (root / "data" / "postmaster.pid").exists():
                stop_pg_server(bindir, root / "data")
        finally:
            shutil.rmtree(root, ignore_errors=True)
