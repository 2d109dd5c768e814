"""Serving: models/CURRENT + profiles/CURRENT + the catalog → the engine in service, swapped atomically on reload.

A reload loads the new model or profile snapshot beside the one in service, checks checksums, the
catalog and the feature lists, builds a whole new engine and only then swaps one reference: requests
in flight finish on the engine they started with, and a bad artifact leaves the old engine serving.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

from api.settings import Settings
from nba.bundle import ModelBundle, load_bundle
from nba.catalog import Catalog, catalog_for, load_catalog
from nba.drift import FeatureShift, load_drift_reference, profile_shifts
from nba.engine import Engine, EngineConfig
from nba.errors import DataError, ModelError, NbaError, NotFoundError
from nba.matrix import BenefitTable
from nba.profiles import Profiles
from nba.registry import read_current
from nba.snapshots import profiles_from_snapshot, read_current_snapshot

# PSI needs thousands of rows, not millions: at most this many cardholders of a snapshot (every k-th)
# are measured at load, so a reload of a large snapshot does not wait on it.
DRIFT_MAX_ROWS = 200_000


@dataclass(frozen=True)
class ServingDrift:
    """How the snapshot in service differs from the model's training data, measured at load.

    `features` are the cardholder features most shifted first; `training_acceptance` is each benefit's
    acceptance rate in the training rows; `problem` says why there is nothing to show (a model trained
    before model folders kept a drift reference).
    """

    features: tuple[FeatureShift, ...] = ()
    training_acceptance: dict[str, float] = field(default_factory=dict)
    problem: str | None = None


def measure_drift(bundle: ModelBundle, profiles: Profiles) -> ServingDrift:
    """The drift of `profiles` against `bundle`'s training data; never raises for a model or snapshot
    that cannot be measured (the reason is in `problem`)."""
    try:
        reference = load_drift_reference(bundle.path, bundle.manifest)
        if reference is None:
            return ServingDrift(
                problem=f"model {bundle.version} keeps no drift reference (trained before drift.json)"
            )
        acceptance = {
            b.benefit_id: b.acceptance_rate for b in reference.benefits if b.acceptance_rate is not None
        }
        if len(profiles) == 0:
            return ServingDrift(training_acceptance=acceptance, problem="the profile snapshot is empty")
        shifts = profile_shifts(reference, profiles, bundle.holder.feature_names, max_rows=DRIFT_MAX_ROWS)
        return ServingDrift(shifts, acceptance)
    except (DataError, ModelError) as exc:
        return ServingDrift(problem=str(exc))


@dataclass(frozen=True, eq=False)
class Serving:
    """One consistent set of what is in service: never mutated, replaced whole on reload."""

    engine: Engine
    model_dir: Path
    snapshot_dir: Path
    catalog_sha256: str
    drift: ServingDrift = field(default_factory=ServingDrift)

    @property
    def model_version(self) -> str:
        return self.engine.bundle.version

    @property
    def model_created_at(self) -> datetime:
        return self.engine.bundle.manifest.created_at

    @property
    def profile_as_of(self) -> date:
        return self.engine.profiles.as_of

    @property
    def profile_as_of_time(self) -> datetime:
        return datetime.combine(self.profile_as_of, time(), tzinfo=UTC)


@dataclass(frozen=True)
class ReloadResult:
    serving: Serving
    changed: bool


class ServingState:
    """Holds the engine in service; `reload` swaps it when a CURRENT file or the catalog changed."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock
        self.serving: Serving | None = None
        self.problem: str | None = "not loaded yet"
        self._lock = threading.Lock()

    def _pointers(self) -> tuple[Path, Path, Path]:
        models = self.settings.models_dir
        version = read_current(models) if models.is_dir() else None
        if version is None:
            raise NotFoundError(
                f"no model in service: {models}/CURRENT is missing (train one with `nba train --promote`)"
            )
        profiles = self.settings.profiles_dir
        as_of = read_current_snapshot(profiles) if profiles.is_dir() else None
        if as_of is None:
            raise NotFoundError(
                f"no profile snapshot in service: {profiles}/CURRENT is missing "
                "(build one with `nba profiles build --promote`)"
            )
        return models / version, profiles / as_of, catalog_for(self.settings.data_dir)

    def _build(self, model_dir: Path, snapshot_dir: Path, catalog_path: Path) -> Serving:
        current = self.serving
        catalog_bytes = catalog_path.read_bytes()
        catalog_sha256 = hashlib.sha256(catalog_bytes).hexdigest()
        catalog: Catalog = load_catalog(catalog_path)
        same_model = current is not None and current.model_dir == model_dir
        bundle: ModelBundle = (
            current.engine.bundle if current is not None and same_model else load_bundle(model_dir)
        )
        bundle.check_catalog(catalog)
        benefits = BenefitTable.from_catalog(catalog)
        same_profiles = (
            current is not None
            and same_model
            and current.snapshot_dir == snapshot_dir
            and current.catalog_sha256 == catalog_sha256
        )
        profiles: Profiles = (
            current.engine.profiles
            if current is not None and same_profiles
            else profiles_from_snapshot(snapshot_dir, bundle, benefits)
        )
        engine = Engine(bundle, profiles, catalog, EngineConfig(epsilon=self.settings.epsilon))
        # Drift is measured here, at load, never on the request path; unchanged profiles keep theirs.
        drift = current.drift if current is not None and same_profiles else measure_drift(bundle, profiles)
        return Serving(engine, model_dir, snapshot_dir, catalog_sha256, drift)

    def reload(self) -> ReloadResult:
        """Loads what the CURRENT files name beside what is serving, then swaps.

        Raises NbaError (the old engine keeps serving) when the new one cannot be loaded.
        """
        with self._lock:
            model_dir, snapshot_dir, catalog_path = self._pointers()
            current = self.serving
            if current is not None and (current.model_dir, current.snapshot_dir) == (model_dir, snapshot_dir):
                catalog_sha256 = hashlib.sha256(catalog_path.read_bytes()).hexdigest()
                if catalog_sha256 == current.catalog_sha256:
                    return ReloadResult(current, changed=False)
            try:
                serving = self._build(model_dir, snapshot_dir, catalog_path)
            except OSError as exc:
                raise ModelError(f"cannot read {exc.filename}: {exc.strerror}") from None
            self.serving = serving
            self.problem = None
            return ReloadResult(serving, changed=True)

    def load_at_start(self) -> None:
        """The first load: a failure leaves the service up, answering 503 with the reason."""
        try:
            self.reload()
        except NbaError as exc:
            self.problem = str(exc)
