"""Fixtures for the service: the shared sample model → in service beside its profile snapshot, once per run."""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext, suppress
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ROOT, SampleModel, cache_lock

# The service, nba and training are imported where they are used, not by this module: it is a plugin
# of the root conftest, so pytest-xdist's controller process, which runs no test, imported all of them
# too (~1.7 s of CPU in every quick loop).
if TYPE_CHECKING:
    from api.settings import Settings
    from nba.profiles import Profiles

# Profile snapshots of the sample model, by model version, kept between sessions as the model is.
SNAPSHOT_CACHE = ROOT / "var" / "test-cache" / "sample-profiles"


@dataclass(frozen=True)
class Deployment:
    """A models folder with CURRENT, a profiles folder with CURRENT and the data directory (catalog)."""

    data_dir: Path
    models_dir: Path
    profiles_dir: Path
    version: str
    as_of: date
    # An empty feedback store at the newest revision: each test's SQLite file starts as a copy of it, so
    # an app's start-up finds nothing to migrate (a full migration is ~0.15 s of every test's set-up).
    migrated_store: Path | None = None

    def copy(self, root: Path) -> Deployment:
        """This deployment's models, profiles and profile cache copied under `root` (for a test that changes
        them): an app over the copy maps the cache entry already built instead of building it again in a
        child process (~5 s of imports on a busy machine)."""
        from api.settings import Settings

        shutil.copytree(self.models_dir, root / "models")
        shutil.copytree(self.profiles_dir, root / "profiles")
        cache = Settings.model_validate({"profiles_dir": self.profiles_dir}).profile_cache_dir
        if cache.is_dir():
            shutil.copytree(cache, root / "profile-cache")
        return replace(self, models_dir=root / "models", profiles_dir=root / "profiles")

    def settings(self, var: Path, **overrides: object) -> Settings:
        """The service's settings over this deployment, its state under `var`; the feedback store a fresh
        copy of `migrated_store` unless `database_url` is given or `var` already holds one."""
        from api.settings import Settings

        database = var / "feedback.db"
        if "database_url" not in overrides and self.migrated_store is not None and not database.exists():
            var.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.migrated_store, database)
        values: dict[str, object] = {
            "models_dir": self.models_dir,
            "profiles_dir": self.profiles_dir,
            "data_dir": self.data_dir,
            "database_url": f"sqlite:///{database}",
            "buffer_path": var / "buffer.jsonl",
            "watch_interval_s": 0,
            **overrides,
        }
        return Settings.model_validate(values)


@pytest.fixture(scope="session")
def sample_snapshot(sample_model: SampleModel) -> Path:
    """The folder of the sample cardholders' profile snapshot for the session's sample model, promoted in a
    profiles folder beside its models folder, once per test run (read-only). Tests that need the sample's
    profiles and no service load them from here (`profiles_from_snapshot`: the spend estimates are stored)
    rather than compute them from the data (~0.7 s of CPU)."""
    profiles = sample_model.models_dir.parent / "profiles"
    return profiles / _sample_snapshot(sample_model, profiles).isoformat()


@pytest.fixture(scope="session")
def sample_deployment(sample_model: SampleModel, sample_snapshot: Path) -> Deployment:
    """The session's sample model with the sample cardholders' profile snapshot built and promoted beside
    it, once per test run (read-only: copy it to change it)."""
    from api.serving import kept_model
    from api.settings import Settings
    from nba.contract import catalog_for, load_catalog
    from nba.features import BenefitTable
    from nba.feedback import FeedbackStore
    from nba.profiles import cached_profiles

    profiles, as_of = sample_snapshot.parent, date.fromisoformat(sample_snapshot.name)
    # The profile cache entry every app of this run maps, built here in process (~0.3 s) rather than by
    # the first app, which builds a missing entry in a child process it starts (~5 s of imports on a busy
    # machine); and the model, loaded here, is the one that app finds loaded (api.serving.kept_model).
    bundle, _ = kept_model(sample_model.model_dir)
    benefits = BenefitTable.from_catalog(load_catalog(catalog_for(sample_model.data_dir)))
    cached_profiles(
        Settings.model_validate({"profiles_dir": profiles}).profile_cache_dir,
        profiles / as_of.isoformat(),
        bundle,
        benefits,
    )
    migrated = sample_model.models_dir.parent / "migrated-feedback.db"
    store = FeedbackStore(f"sqlite:///{migrated}")
    try:
        store.migrate()
    finally:
        store.dispose()
    return Deployment(
        sample_model.data_dir,
        sample_model.models_dir,
        profiles,
        sample_model.model_dir.name,
        as_of,
        migrated,
    )


def _sample_snapshot(sample_model: SampleModel, profiles: Path) -> date:
    """The sample cardholders' profile snapshot for the sample model, promoted in `profiles`: copied from
    var/test-cache/ when an earlier session built it for the same model version (the version names the
    model trained from the same code and data: see `sample_model`), else built (~2 s per xdist worker) and
    kept there. Its as-of date. The profile cache checks the copy's checksums when it maps it."""
    from nba.files import move_into_place, staging_dir
    from nba.profiles import read_current_snapshot
    from training.engine_job import build_snapshot

    cached = SNAPSHOT_CACHE / sample_model.model_dir.name
    use_cache = os.environ.get("NBA_TEST_MODEL_CACHE") != "0"
    # One xdist worker builds it, the others wait and copy it (as `sample_model` does).
    with cache_lock(SNAPSHOT_CACHE) if use_cache else nullcontext():
        if use_cache and cached.is_dir():
            shutil.copytree(cached, profiles)
            as_of = read_current_snapshot(profiles)
            assert as_of is not None, f"{cached} has no CURRENT snapshot"
            return date.fromisoformat(as_of)
        snapshot = build_snapshot(sample_model.data_dir, sample_model.model_dir, profiles, promote=True)
        SNAPSHOT_CACHE.mkdir(parents=True, exist_ok=True)
        with staging_dir(SNAPSHOT_CACHE, "tmp-profiles") as temp:
            shutil.copytree(profiles, temp, dirs_exist_ok=True)
            with suppress(OSError):  # another session put the same snapshot there meanwhile: theirs stays
                move_into_place(temp, cached)
        for stale in SNAPSHOT_CACHE.iterdir():  # snapshots of models no session uses any more
            if stale != cached and not stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True)
    return snapshot.manifest.as_of


def twin_model(models_dir: Path, version: str, created_at: datetime | None = None) -> str:
    """A new model version holding the same artifacts as `version` (a retrain, as the service sees it),
    written through the registry; its name."""
    from nba.model._registry import load_model_dir, write_model_dir

    manifest = load_model_dir(models_dir / version)
    return write_model_dir(
        models_dir,
        {name: models_dir / version / name for name in manifest.files},
        created_at=created_at or datetime.now(UTC),
        feature_names=manifest.feature_names,
        catalog_fingerprint=manifest.catalog_fingerprint,
        data_summary=manifest.data_summary,
        metrics=manifest.metrics,
        params=manifest.params,
        categorical_features=manifest.categorical_features,
        extra=manifest.extra,
    ).name


# Every array of a Profiles, by attribute path: two profiles are the same when all of these are.
PROFILE_ARRAYS = (
    "holder.counts",
    "holder.floats.values",
    "holder.floats.columns",
    "holder.floats.offsets",
    "holder.count_columns",
    "holder.float_columns",
    "est_spend",
    "product_index",
    "offsets",
    "history_benefit",
    "history_used",
    "history_values",
    "history_days_since_declined",
    "history_presented_90d",
)


def assert_same_profiles(got: Profiles, expected: Profiles) -> None:
    import numpy as np

    assert got.as_of == expected.as_of
    assert got.model_version == expected.model_version
    assert list(got.ids) == list(expected.ids)
    assert dict(got.index) == dict(expected.index) == {c: i for i, c in enumerate(expected.ids)}
    for name in PROFILE_ARRAYS:
        a, b = attrgetter(name)(got), attrgetter(name)(expected)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
