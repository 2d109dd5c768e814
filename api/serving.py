"""Serving: models/CURRENT + profiles/CURRENT + the catalog → the engine in service, swapped atomically on reload.

A reload loads the new model or profile snapshot beside the one in service, checks checksums, the
catalog and the feature lists, builds a whole new engine and only then swaps one reference: requests
in flight finish on the engine they started with, and a bad artifact leaves the old engine serving.

Profiles are served from the profile cache (`nba.profiles.cached_profiles`): a model-encoded copy per
(snapshot, model, catalog) that every worker on the machine maps read-only, so N workers share one copy
in the page cache. A new entry (the costliest part: ~1 s of a core per 20,000 cardholders, which held
the GIL against the event loop and put p99 at 229 ms around a swap) is built aside, in a child process
at a lower priority, which writes it into the cache; this process then maps it. Only the model's
loading, the mapping and the engine's assembly run here. After a swap, cache entries that are neither
the one in service nor the one before are pruned (once PRUNE_GRACE_S old).

A refused artifact is described twice: in the caller's terms (which artifact, what is wrong with it; no
file-system paths), for answers and /readyz, and in full, for the log.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final, Generic, Literal, TypeVar

from api.settings import Settings
from nba.contract import Catalog, catalog_for, load_catalog
from nba.decision import ArbitrationConfig, Engine, EngineConfig, Reasoner, default_reasoner
from nba.drift import FeatureShift, load_drift_reference, profile_shifts
from nba.errors import DataError, ModelError, NbaError, NotFoundError
from nba.features import BenefitTable
from nba.model import ModelBundle, ModelManifest, load_bundle, load_model_dir, read_current
from nba.profiles import (
    Profiles,
    cached_entry_of,
    cached_profiles,
    find_cached_profiles,
    open_cache_entry,
    prune_profile_cache,
    read_current_snapshot,
)

# PSI needs thousands of rows, not millions: at most this many cardholders of a snapshot (every k-th)
# are measured at load, so a reload of a large snapshot does not wait on it.
DRIFT_MAX_ROWS = 200_000
K = TypeVar("K")
V = TypeVar("V")


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


class _Kept(Generic[K, V]):
    """The last `size` values computed by key, in process: a small LRU that a lock makes safe to share."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value kept for `key`, else `compute()` (outside the lock), kept."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


# A loaded model (with its reasons) and a snapshot's drift are pure functions of checked files: a process
# that loads the same model folder again (a rollback to the version before; the tests' many apps over one
# sample model) takes them from here instead of parsing every tree again (~0.16 s) and measuring again
# (~0.1 s). Keyed by the folder and its manifest (which names every file's SHA-256; the files are checked
# against it on every load, so a file changed since is refused as before) and, for drift, the profile
# cache entry (named by a digest of its snapshot, model and catalog). The two most recent are kept: the
# one serving and the one before.
KEPT_MODELS: Final = 2
ModelKey = tuple[str, str]
_MODELS: Final[_Kept[ModelKey, tuple[ModelBundle, Reasoner]]] = _Kept(KEPT_MODELS)
_DRIFTS: Final[_Kept[tuple[ModelKey, Path], ServingDrift]] = _Kept(KEPT_MODELS)


def _model_key(model_dir: Path, manifest: ModelManifest) -> ModelKey:
    return str(model_dir.resolve()), manifest.model_dump_json()


def kept_model(model_dir: Path) -> tuple[ModelBundle, Reasoner]:
    """`load_bundle(model_dir)` and the reasons for its model, loaded once per process for the same folder
    and manifest; the folder's files are checked against the manifest's checksums every time.

    Raises what `load_bundle` raises.
    """

    def load() -> tuple[ModelBundle, Reasoner]:
        bundle = load_bundle(model_dir)
        return bundle, default_reasoner(bundle)

    return _MODELS.get(_model_key(model_dir, load_model_dir(model_dir)), load)


def kept_drift(bundle: ModelBundle, profiles: Profiles) -> ServingDrift:
    """`measure_drift(bundle, profiles)`, measured once per process for the same model folder and profile
    cache entry (profiles held in memory, outside the cache, are measured every time)."""
    entry = cached_entry_of(profiles)
    if entry is None:
        return measure_drift(bundle, profiles)
    key = (_model_key(bundle.path, bundle.manifest), entry.resolve())
    return _DRIFTS.get(key, lambda: measure_drift(bundle, profiles))


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


ArtifactKind = Literal["model", "profiles", "catalog"]
_NOUN: Final[dict[ArtifactKind, str]] = {
    "model": "the model",
    "profiles": "the profile snapshot",
    "catalog": "the catalog",
}
# What is left of a file-system path once the folders the service knows are taken out: an absolute path,
# or a relative one with a folder in it.
_PATH: Final = re.compile(r"(?<![\w.:/])(?:/|\.{1,2}/|~/)[^\s'\",;:()]*|(?<![\w./:])[\w.-]+/[\w./-]*")


def without_paths(text: str, folders: Iterable[Path] = ()) -> str:
    """`text` with the file-system paths taken out: the known `folders` (and a `: ` after them), then
    anything else that looks like a path, shown as `…`.

    >>> without_paths("/srv/models/v1: model.txt: checksum mismatch", [Path("/srv/models/v1")])
    'model.txt: checksum mismatch'
    """
    for folder in sorted(
        {str(f) for f in folders} | {str(f.resolve()) for f in folders}, key=len, reverse=True
    ):
        text = text.replace(folder + ": ", "").replace(folder, "…")
    return _PATH.sub("…", text)


@dataclass(frozen=True)
class Refusal:
    """A newer artifact that a CURRENT file or the catalog named and that was refused, in the caller's terms."""

    kind: ArtifactKind
    name: str  # the model version, the snapshot's as-of date, or "catalog.yaml"
    reason: str  # what is wrong with it, without file-system paths

    def describe(self) -> str:
        """`the new model 20261123T101500Z-3f2a9c was refused: model.txt: checksum mismatch (…)`."""
        return f"the new {_NOUN[self.kind].removeprefix('the ')} {self.name} was refused: {self.reason}"


class RefusedError(ModelError):
    """An artifact was refused: the message in the caller's terms, `detail` in full (paths and all) for the log."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal
        self.detail = detail


Pointers = tuple[Path, Path, Path]
# The child building profiles aside runs at this niceness: the core goes to the service first.
BUILDER_NICENESS: Final = 10
BUILD_TIMEOUT_S: Final = 600.0


def build_profiles_aside(
    model_dir: Path, snapshot_dir: Path, catalog_path: Path, cache_dir: Path
) -> tuple[Profiles, ServingDrift]:
    """`cached_profiles` and their `measure_drift` for a model and catalog, run in a child process
    started for it (spawned:
    the service's threads are not forked) at a lower priority from its first instruction (its imports
    too); the child writes the profiles into the cache under `cache_dir` (or finds them there) and sends
    back the entry's folder and the drift; this process maps the entry.

    The child loads and checks the model and the catalog itself; what it refuses comes back as a
    ModelError with its message, as does its death or a build over BUILD_TIMEOUT_S.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_profiles_in_child,
        args=(sender, model_dir, snapshot_dir, catalog_path, cache_dir),
        name="nba-profiles-builder",
        daemon=True,
    )
    child.start()
    with suppress(OSError):  # it is still starting Python: nothing has run at the service's priority
        os.setpriority(os.PRIO_PROCESS, child.pid or 0, BUILDER_NICENESS)
    sender.close()
    try:
        if not receiver.poll(BUILD_TIMEOUT_S):
            child.kill()
            raise ModelError(f"building the profiles took over {BUILD_TIMEOUT_S:g} s; gave up")
        entry, drift, error = receiver.recv()
    except EOFError:
        raise ModelError("the process building the profiles died (out of memory?)") from None
    finally:
        receiver.close()
        child.join()
    if error is not None:
        raise ModelError(error)
    assert isinstance(entry, Path) and isinstance(drift, ServingDrift)
    return open_cache_entry(entry), drift


def _profiles_in_child(
    sender: Connection, model_dir: Path, snapshot_dir: Path, catalog_path: Path, cache_dir: Path
) -> None:
    try:
        catalog = load_catalog(catalog_path)
        bundle = load_bundle(model_dir)
        profiles = cached_profiles(cache_dir, snapshot_dir, bundle, BenefitTable.from_catalog(catalog))
        result: tuple[Path | None, ServingDrift | None, str | None] = (
            cached_entry_of(profiles),
            measure_drift(bundle, profiles),
            None,
        )
    # The message, not the exception: it comes back as a ModelError, which the reload refuses with.
    except NbaError as exc:
        result = (None, None, str(exc))
    except OSError as exc:
        result = (None, None, f"cannot read {exc.filename}: {exc.strerror}")
    sender.send(result)
    sender.close()


class ServingState:
    """Holds the engine in service; `reload` swaps it when a CURRENT file or the catalog changed."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock
        self.serving: Serving | None = None
        self.problem: str | None = "not loaded yet"
        self.problem_detail: str | None = None
        # The newer artifact that a CURRENT file or the catalog names and that was refused, while the one
        # loaded before keeps serving (None when what is named is what serves).
        self.refused: Refusal | None = None
        self._refused_wanted: tuple[Path, Path, str] | None = None
        self._refused_error: RefusedError | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _refusing(self, kind: ArtifactKind, name: str, *folders: Path) -> Iterator[None]:
        """Turns a failure to load `kind` into a RefusedError: the reason without paths, the detail in full."""
        try:
            yield
        except NbaError as exc:
            detail = str(exc)
            raise RefusedError(Refusal(kind, name, self._public(detail, folders)), detail) from None
        except OSError as exc:
            detail = f"cannot read {exc.filename}: {exc.strerror}"
            raise RefusedError(
                Refusal(kind, name, f"cannot read one of its files: {exc.strerror}"), detail
            ) from None

    def _public(self, detail: str, folders: Iterable[Path]) -> str:
        s = self.settings
        return without_paths(
            detail, [*folders, s.models_dir, s.profiles_dir, s.profile_cache_dir, s.data_dir]
        )

    def _pointers(self) -> Pointers:
        models = self.settings.models_dir
        with self._refusing("model", "named by models/CURRENT", models):
            version = read_current(models) if models.is_dir() else None
        if version is None:
            raise NotFoundError(
                "no model in service: the models folder has no CURRENT (train one with `nba train --promote`)"
            )
        profiles = self.settings.profiles_dir
        with self._refusing("profiles", "named by profiles/CURRENT", profiles):
            as_of = read_current_snapshot(profiles) if profiles.is_dir() else None
        if as_of is None:
            raise NotFoundError(
                "no profile snapshot in service: the profiles folder has no CURRENT "
                "(build one with `nba profiles build --promote`)"
            )
        return models / version, profiles / as_of, catalog_for(self.settings.data_dir)

    def _build(self, model_dir: Path, snapshot_dir: Path, catalog_path: Path, catalog_sha256: str) -> Serving:
        current = self.serving
        same_model = current is not None and current.model_dir == model_dir
        # What changed is what is refused when the pieces do not fit together.
        new_kind: ArtifactKind = (
            "model"
            if not same_model
            else "profiles"
            if current and current.snapshot_dir != snapshot_dir
            else "catalog"
        )
        with self._refusing("catalog", catalog_path.name, catalog_path.parent):
            catalog: Catalog = load_catalog(catalog_path)
        with self._refusing("model", model_dir.name, model_dir):
            # The reasoner depends on the model alone, and building it (a dump of every tree, parsed) held
            # the GIL for 60-150 ms at a stretch: a new snapshot or catalog keeps the one in service.
            bundle, reasoner = (
                (current.engine.bundle, current.engine.reasoner)
                if current is not None and same_model
                else kept_model(model_dir)
            )
        with self._refusing(new_kind, _name_of(new_kind, model_dir, snapshot_dir, catalog_path), model_dir):
            bundle.check_catalog(catalog)
        benefits = BenefitTable.from_catalog(catalog)
        same_profiles = (
            current is not None
            and same_model
            and current.snapshot_dir == snapshot_dir
            and current.catalog_sha256 == catalog_sha256
        )
        # Drift is measured at load, never on the request path (beside the profiles' build, aside when
        # something is being served: ~0.16 s of numpy for 10,000 cardholders); unchanged profiles keep theirs.
        with self._refusing("profiles", snapshot_dir.name, snapshot_dir):
            if current is not None and same_profiles:
                profiles: Profiles = current.engine.profiles
                drift = current.drift
            elif (
                current is None
                and (
                    found := find_cached_profiles(
                        self.settings.profile_cache_dir, snapshot_dir, bundle, benefits
                    )
                )
                is not None
            ):
                # The first load, the entry there already (another worker built it): mapped, in milliseconds.
                profiles, drift = found, kept_drift(bundle, found)
            else:
                # A missing entry is built aside even on the first load: encoding a million profiles here
                # left ~190 MB of heap to the allocator for the process's life (1 M: 423 against 233 MB).
                profiles, drift = build_profiles_aside(
                    model_dir, snapshot_dir, catalog_path, self.settings.profile_cache_dir
                )
        engine = Engine(bundle, profiles, catalog, self._engine_config(), reasoner=reasoner)
        return Serving(engine, model_dir, snapshot_dir, catalog_sha256, drift)

    def _engine_config(self) -> EngineConfig:
        """The engine's knobs from the settings: ε-exploration and the value floor."""
        return EngineConfig(
            arbitration=ArbitrationConfig(
                value_floor_usd=self.settings.value_floor_usd,
                detractor_weight=self.settings.detractor_weight,
            ),
            epsilon=self.settings.epsilon,
        )

    def reload(self, retry_refused: bool = True) -> ReloadResult:
        """Loads what the CURRENT files name beside what is serving, then swaps.

        With `retry_refused=False` (the watcher), the same artifacts refused last time are not loaded
        again: they stay refused, and `refused` says so, until a CURRENT file or the catalog changes or an
        admin asks for a reload.

        Raises NbaError (the old engine keeps serving) when the new one cannot be loaded: RefusedError
        for an artifact that fails its checks, NotFoundError when a CURRENT file is missing.
        """
        with self._lock:
            model_dir, snapshot_dir, catalog_path = self._pointers()
            with self._refusing("catalog", catalog_path.name, catalog_path.parent):
                catalog_sha256 = hashlib.sha256(catalog_path.read_bytes()).hexdigest()
            wanted = (model_dir, snapshot_dir, catalog_sha256)
            current = self.serving
            if (
                current is not None
                and (current.model_dir, current.snapshot_dir, current.catalog_sha256) == wanted
            ):
                self.refused, self._refused_wanted = None, None  # CURRENT was put back: nothing is refused
                return ReloadResult(current, changed=False)
            if not retry_refused and self._refused_wanted == wanted and self._refused_error is not None:
                raise self._refused_error
            try:
                serving = self._build(model_dir, snapshot_dir, catalog_path, catalog_sha256)
            except RefusedError as exc:
                self.refused, self._refused_wanted, self._refused_error = exc.refusal, wanted, exc
                raise
            self.serving = serving
            self.problem = None
            self.refused, self._refused_wanted, self._refused_error = None, None, None
            self._prune_cache(current, serving)
            return ReloadResult(serving, changed=True)

    def _prune_cache(self, *in_service: Serving | None) -> None:
        """Removes the cache entries neither served before this swap nor now; a failure only skips it."""
        keep = {
            entry.name
            for serving in in_service
            if serving is not None and (entry := cached_entry_of(serving.engine.profiles)) is not None
        }
        with suppress(OSError):
            prune_profile_cache(self.settings.profile_cache_dir, keep)

    def load_at_start(self) -> None:
        """The first load: a failure leaves the service up, answering 503 with the reason (in the caller's
        terms; the detail is in `problem_detail`, for the log)."""
        try:
            self.reload()
        except NbaError as exc:
            self.problem = str(exc)
            self.problem_detail = getattr(exc, "detail", str(exc))


def _name_of(kind: ArtifactKind, model_dir: Path, snapshot_dir: Path, catalog_path: Path) -> str:
    return {"model": model_dir, "profiles": snapshot_dir, "catalog": catalog_path}[kind].name
