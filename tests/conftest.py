"""Shared fixtures: small, hand-written data directories in the data contract, and the sample model.

The slowest thing a test can do is train: tests that need *a* model of the sample data share `sample_model`,
trained once per session and kept between sessions under var/test-cache/ for as long as nothing it is made
from changes (the sample data, `nba/`, `training/`, the installed libraries: see `_sample_model_key`), so
the quick loop does not train at all; tests that need a model of their own variant (another world, other
options) train it themselves and carry the `slow` marker, so `pytest -m "not slow"` is the quick loop.
NBA_TEST_MODEL_CACHE=0 trains afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

# Before anything loads LightGBM's OpenMP runtime: its threads spin-wait for work by default, which on
# a busy 2-core machine turns a 5 s fit into minutes. Waiting threads sleep at once, as in `nba`
# (training/cli.py): a short spin (GOMP_SPINCOUNT=10000, used here before) was still ~20× slower on a
# loaded machine (bench/bench_train_busy.py). A policy the caller sets wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"


def _pin_xdist_worker() -> None:
    """Gives an xdist worker its own share of the CPUs this run may use (one CPU each when there are at
    least as many workers as CPUs), before anything starts a thread pool.

    With `-n auto` on 2 cores each worker has one core's worth of work, yet DuckDB, LightGBM (OpenMP)
    and OpenBLAS each sized their pools to both cores, and the two workers' threads fought over them:
    the quick loop's tests spent ~13% more CPU (mostly system time), measured on test_cli, test_uplift,
    test_detractor and test_snapshots in one process with two CPUs and with one (45.3 against 39.5 s).
    nba sizes its pools by the affinity mask (`usable_cpus`), so a worker runs as nba does on a smaller
    machine; LightGBM's results do not depend on its threads (test_estimator checks it).
    """
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if worker is None or count is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus, index, workers = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count)
    os.sched_setaffinity(0, cpus[index::workers] if workers < len(cpus) else [cpus[index % len(cpus)]])


_pin_xdist_worker()

# Every test process compiles what it imports to bytecode and caches it (`__pycache__`), even where
# PYTHONDONTWRITEBYTECODE is set (as in this project's sandboxed sessions): without the cache each xdist
# worker compiled nba/, api/, training/ and tests/ afresh and pytest rewrote the asserts of every test
# module and of hypothesis and schemathesis (packages of pytest plugins are rewritten too), ~5 of the
# ~10 s of CPU a worker spent collecting the quick loop. Set here, before any test module is imported.
sys.dont_write_bytecode = False

# The throwaway PostgreSQL server (`pg_server`, `pg_url`) for the feedback store's tests, and the
# sample model deployed with its profile snapshot (`sample_deployment`) for the service's tests.
pytest_plugins = ["tests.pg", "tests.deployment", "tests.spark"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "data_samples"
MODEL_CACHE = ROOT / "var" / "test-cache" / "sample-model"
# What a trained model depends on besides the files of these folders.
MODEL_LIBRARIES = ("lightgbm", "numpy", "pandas", "pyarrow", "duckdb", "scikit-learn", "scipy", "numba")

VALID_TABLES: dict[str, str] = {
    "cardholders": (
        "cardholder_id,product_id,open_date,birth_year,region,segment,credit_limit_usd\n"
        "C1,gold,2023-01-15,1980,north,mass,5000\n"
        "C2,voyager,2024-06-01,,south,affluent,12000\n"
        "C3,everyday,2025-02-10,1999,,,\n"
    ),
    "transactions": (
        "cardholder_id,transaction_date,amount,mcc\n"
        "C1,2025-01-03,45.10,5812\n"
        "C1,2025-01-09,120.00,5411\n"
        "C1,2025-01-12,-20.00,5411\n"
        "C2,2025-02-01,410.25,4511\n"
        "C2,2025-02-02,12.99,5815\n"
        "C3,2025-03-01,33.00,9999\n"
    ),
    "benefit_usage": "cardholder_id,benefit_id,first_used_date\nC1,dining_4x,2025-01-03\nC2,travel_3x,2025-02-01\n",
    "conversations": (
        "call_id,cardholder_id,benefit_id,presented_at,outcome,rank,call_reason,logging_prob\n"
        "K1,C1,grocery_4x,2025-01-20T10:15:00Z,accepted,1,general,0.8\n"
        "K1,C1,dining_credit,2025-01-20T10:15:00Z,declined,2,general,0.5\n"
        "K2,C3,grocery_3x,2025-03-02 09:00:00,not_discussed,1,payment,1\n"
    ),
    "calls": (
        "call_id,cardholder_id,started_at,call_reason,agent_id\n"
        "K1,C1,2025-01-20T10:14:00Z,general,A7\n"
        "K2,C3,2025-03-02T08:59:00+00:00,payment,A7\n"
        "K3,C2,2025-03-03T12:00:00Z,fraud,A9\n"
    ),
    "nps": "call_id,score,responded_at\nK1,9,2025-01-21T08:00:00Z\nK3,3,\n",
}


def write_tables(data_dir: Path, tables: dict[str, str]) -> Path:
    """Writes CSV tables into `data_dir` (created) and returns it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (data_dir / f"{name}.csv").write_text(text, encoding="utf-8")
    return data_dir


@pytest.fixture
def valid_dir(tmp_path: Path) -> Path:
    """A small valid data directory (CSV, default catalog)."""
    return write_tables(tmp_path / "data", VALID_TABLES)


@dataclass(frozen=True)
class SampleModel:
    """A copy of data_samples/ and the model trained on it, in service in its models folder."""

    data_dir: Path
    models_dir: Path
    model_dir: Path


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> SampleModel:
    """The sample data trained with the default options and promoted, once per test session (read-only:
    copy it to change it)."""
    from nba.files import read_pointer
    from nba.model import load_model_dir
    from training.train_job import train_model  # after GOMP_SPINCOUNT is set, above
    from training.training_run import TrainOptions

    root = tmp_path_factory.mktemp("sample")
    data_dir, models_dir = root / "data", root / "models"
    shutil.copytree(SAMPLE_DATA, data_dir)
    cached = MODEL_CACHE / _sample_model_key()
    use_cache = os.environ.get("NBA_TEST_MODEL_CACHE") != "0"
    # Every xdist worker of a run needs this model: after a change to nba/ or training/ the first worker
    # here trains it and the others wait for it (under the lock) and copy it, rather than each training
    # the same model beside it (~25 s of CPU each).
    with cache_lock(MODEL_CACHE) if use_cache else nullcontext():
        if use_cache and cached.is_dir():
            shutil.copytree(cached, models_dir)
            model_dir = models_dir / str(read_pointer(models_dir / "CURRENT"))
            load_model_dir(model_dir)  # its checksums: a cache entry changed since is refused, not used
            return SampleModel(data_dir, models_dir, model_dir)
        result = train_model(data_dir, models_dir, TrainOptions(promote=True))
        _keep_in_cache(models_dir, cached)
    return SampleModel(data_dir, models_dir, result.model_dir)


@contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Holds `folder`'s lock (an advisory `flock` on `folder/.lock`, created with its parents) for the
    block: one process at a time of every test run on this machine fills or reads that cache."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _keep_in_cache(models_dir: Path, cached: Path) -> None:
    """Copies a freshly trained models folder to the cache entry `cached`, and removes the entries of
    code or data as it was before."""
    from nba.files import move_into_place, staging_dir

    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    with staging_dir(MODEL_CACHE, "tmp-model") as temp:
        shutil.copytree(models_dir, temp, dirs_exist_ok=True)
        # Another session may have put the same model there meanwhile: theirs stays.
        with suppress(OSError):
            move_into_place(temp, cached)
    for stale in MODEL_CACHE.iterdir():  # models of code or data as it was before: never used again
        if stale != cached and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)


def _sample_model_key() -> str:
    """A digest of everything the sample model is made from: the files of data_samples/, nba/ and
    training/ (names and bytes) and the versions of the libraries that fit and feed it."""
    digest = hashlib.sha256()
    for folder in (SAMPLE_DATA, ROOT / "nba", ROOT / "training"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(ROOT)}\0{path.stat().st_size}\0".encode())
                digest.update(path.read_bytes())
    for library in MODEL_LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}\0".encode())
    return digest.hexdigest()[:32]
