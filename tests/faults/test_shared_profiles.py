"""Two real `nba serve` processes on one machine share one profile cache: both map the same entry's files
read-only, and while one reloads onto a new model the other keeps answering; the second to reload maps the
entry the first built instead of building its own."""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from nba.model._registry import set_current
from tests.deployment import Deployment, twin_model
from tests.serving import ADMIN, AGENT, Clock, ServedProcess, served_process, some_cardholders

pytestmark = pytest.mark.slow  # two served processes and two reloads

RATE_PER_S = 40


def mapped_entries(pid: int, cache: Path) -> set[str]:
    """The cache entries whose files process `pid` maps (from /proc/PID/maps)."""
    prefix = str(cache) + "/"
    entries = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1] if len(line.split()) >= 6 else ""
        if path.startswith(prefix) and path.endswith(".npy"):
            entries.add(path[len(prefix) :].split("/")[0])
    return entries


def _serve(
    deployment: Deployment, var: Path, models: Path, cache: Path
) -> AbstractContextManager[ServedProcess]:
    return served_process(deployment, var, models_dir=models, profile_cache=cache, log_level="warning")


def _version(server: ServedProcess) -> str:
    version: str = httpx.get(f"{server.base}/v1/model", headers={"X-API-Key": ADMIN}).json()["version"]
    return version


def test_one_process_reloads_while_the_other_keeps_serving_from_the_shared_cache(
    sample_deployment: Deployment, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(sample_deployment.models_dir, models)
    new_version = twin_model(models, sample_deployment.version, Clock().now + timedelta(days=1))
    cache = tmp_path / "cache"
    cardholders = some_cardholders(sample_deployment, 100)
    with (
        _serve(sample_deployment, tmp_path / "a", models, cache) as a,
        _serve(sample_deployment, tmp_path / "b", models, cache) as b,
    ):
        (old_entry,) = mapped_entries(a.pid, cache)
        assert mapped_entries(b.pid, cache) == {old_entry}  # one copy on disk, mapped by both
        statuses: list[int] = []
        stop = threading.Event()

        def ask_b() -> None:
            with httpx.Client(base_url=b.base, headers={"X-API-Key": AGENT}, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    response = client.get(f"/v1/cardholders/{cardholders[i % len(cardholders)]}/suggestions")
                    statuses.append(response.status_code)
                    i += 1
                    time.sleep(1 / RATE_PER_S)

        asker = threading.Thread(target=ask_b)
        asker.start()
        try:
            time.sleep(0.5)
            set_current(models, new_version)
            during = len(statuses)
            reload = httpx.post(f"{a.base}/v1/admin/reload", headers={"X-API-Key": ADMIN}, timeout=120)
            answered_during_reload = len(statuses) - during
            time.sleep(0.5)
        finally:
            stop.set()
            asker.join()
        assert reload.status_code == 200 and reload.json()["model_version"] == new_version, reload.text
        assert answered_during_reload > 0 and set(statuses) == {200}  # b never stopped
        assert _version(a) == new_version and _version(b) == sample_deployment.version
        # a maps the entry it built (the old one may stay mapped until the old engine is freed).
        (new_entry,) = mapped_entries(a.pid, cache) - {old_entry}
        assert mapped_entries(b.pid, cache) == {old_entry}
        # b reloads onto the entry a built: it maps it, and no third entry appears.
        built_at = (cache / new_entry / "manifest.json").stat().st_mtime_ns
        reload_b = httpx.post(f"{b.base}/v1/admin/reload", headers={"X-API-Key": ADMIN}, timeout=120)
        assert reload_b.status_code == 200 and _version(b) == new_version
        assert new_entry in mapped_entries(b.pid, cache)
        assert (cache / new_entry / "manifest.json").stat().st_mtime_ns == built_at
        assert sorted(name for name in os.listdir(cache) if not name.startswith(".")) == sorted(
            {old_entry, new_entry}
        )
        answer = httpx.get(
            f"{b.base}/v1/cardholders/{cardholders[0]}/suggestions", headers={"X-API-Key": AGENT}
        )
        assert answer.status_code == 200
