"""Fixtures for the service: the sample data → a trained model in service and a profile snapshot, once per run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from api.settings import Settings
from nba.model._registry import load_model_dir, write_model_dir
from training.engine_job import build_snapshot
from training.train_job import TrainOptions, train_model

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "data_samples"


@dataclass(frozen=True)
class Deployment:
    """A models folder with CURRENT, a profiles folder with CURRENT and the data directory (catalog)."""

    data_dir: Path
    models_dir: Path
    profiles_dir: Path
    version: str
    as_of: date

    def settings(self, var: Path, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "models_dir": self.models_dir,
            "profiles_dir": self.profiles_dir,
            "data_dir": self.data_dir,
            "database_url": f"sqlite:///{var / 'feedback.db'}",
            "buffer_path": var / "buffer.jsonl",
            "watch_interval_s": 0,
            **overrides,
        }
        return Settings.model_validate(values)


def deploy(data_dir: Path, root: Path) -> Deployment:
    """Trains on `data_dir`, promotes the model and builds + promotes its profile snapshot under `root`."""
    models = root / "models"
    result = train_model(data_dir, models, TrainOptions(promote=True))
    profiles = root / "profiles"
    snapshot = build_snapshot(data_dir, result.model_dir, profiles, promote=True)
    return Deployment(data_dir, models, profiles, result.model_dir.name, snapshot.manifest.as_of)


@pytest.fixture(scope="session")
def sample_deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The sample data trained and deployed once per test run (read-only: copy it to change it)."""
    root = tmp_path_factory.mktemp("deployment")
    data_dir = root / "data"
    shutil.copytree(SAMPLE_DATA, data_dir)
    return deploy(data_dir, root)


def twin_model(models_dir: Path, version: str, created_at: datetime | None = None) -> str:
    """A new model version holding the same artifacts as `version` (a retrain, as the service sees it),
    written through the registry; its name."""
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
