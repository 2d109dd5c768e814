"""Registry: trained artifacts → checked model folders `models/<version>/`, the version in service, rollback.

A model folder holds the LightGBM model (`model.txt`), other text or JSON artifacts, a report and
`manifest.json`, which records the SHA-256 of every other file. The folder's version is the UTC
time of training plus a short hash of the manifest's content, so editing the manifest is caught too.
`models/CURRENT` names the version in service; `models/HISTORY` logs every change of it.

Example:
    >>> path = write_model_dir(Path("models"), {"model.txt": booster_text}, created_at=now, ...)
    >>> set_current(Path("models"), path.name)
    >>> manifest = load_model_dir(Path("models") / read_current(Path("models")))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from nba.errors import ModelError, NotFoundError
from nba.files import (
    SHOWN_DIGEST_LENGTH,
    FeatureNames,
    UtcTime,
    folder_problem,
    move_into_place,
    one_line,
    read_pointer,
    replace_file,
    sha256_of_file,
    staging_dir,
    write_file,
)
from nba.vocab import DEFAULT_OBJECTIVE

FORMAT_VERSION: Final = 1
MANIFEST_FILE: Final = "manifest.json"
# The one file every model folder must have (nba.model._propensity writes it under the same name).
REQUIRED_FILE: Final = "model.txt"
CURRENT_FILE: Final = "CURRENT"
HISTORY_FILE: Final = "HISTORY"
DEFAULT_PROMOTION_METRIC: Final = "expected_adoptions_top_k"
VERSION_EXAMPLE: Final = "20261123T120501Z-3f9a2c1"
# Pickles run code when loaded: a model folder holds only text and JSON (and plots).
PICKLE_SUFFIXES: Final = frozenset({".pkl", ".pickle", ".joblib"})

_VERSION_TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_VERSION_HASH_LENGTH: Final = 7
_VERSION_RE: Final = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{7}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
HistoryAction = Literal["promote", "forced", "rollback", "found"]
_HISTORY_ACTIONS: Final[dict[str, HistoryAction]] = {
    "promote": "promote",
    "forced": "forced",  # promoted with --force past the promotion gate
    "rollback": "rollback",
    "found": "found",
}
# The promotion gate's metrics: the held-out fit's number, and the prefix of each baseline's on the same rows.
GATE_METRICS: Final = (
    ("auc", "AUC", "baseline_auc_"),
    ("expected_adoptions_top_k", "IPS adoptions/call", "baseline_ips_"),
)
# An uplift model is meant to raise the adoptions its suggestions cause, not the adoptions that follow them
# (ranking sure things last lowers the latter on purpose): its gate compares the doubly robust estimate of
# caused adoptions per held-out call instead of IPS adoptions. AUC stays: it judges the adoption model that
# an uplift model ships beside its effect model (its p_adopt is what the answer shows and the store logs).
UPLIFT_GATE_METRICS: Final = (
    ("auc", "AUC", "baseline_auc_"),
    ("dr_caused_adoptions_top_k", "DR caused adoptions/call", "baseline_dr_caused_"),
)
# The same held-out calls scored by the challenger and by the model in service, in one training run.
VERSUS_CHAMPION: Final = {
    "auc": ("vs_champion_auc", "champion_auc"),
    "expected_adoptions_top_k": ("vs_champion_ips", "champion_ips"),
    "dr_caused_adoptions_top_k": ("vs_champion_dr_caused", "champion_dr_caused"),
}
CHAMPION_KEY: Final = "champion_version"
# Metric names manifests written before they were named for any top K (`params.top_k` says which K):
# a model folder's manifest is read under today's names (after its version check, which covers it as
# written), so the promotion gate compares a model in service trained before with a new one.
RENAMED_METRICS: Final = {
    f"{stem}_top3{suffix}": f"{stem}_top_k{suffix}"
    for stem, suffix in (
        ("expected_adoptions", ""),
        ("expected_adoptions", "_snips"),
        ("oracle_expected_adoptions", ""),
        ("oracle_best_expected_adoptions", ""),
        ("oracle_value_usd", ""),
    )
}


def artifact_name_problem(name: str) -> str | None:
    """Why `name` cannot be a file of a model folder, or None when it can.

    A name is a plain file name (no folders, not hidden), not the manifest itself, and not a pickle.
    """
    if name in ("", ".", "..") or any(sep in name for sep in ("/", "\\", "\0", os.sep)):
        return "must be a plain file name, without folders"
    if name.startswith("."):
        return "must not start with '.' (hidden and temporary files are not artifacts)"
    if name.casefold() == MANIFEST_FILE:
        return f"is written by the registry itself; do not pass {MANIFEST_FILE}"
    if Path(name).suffix.casefold() in PICKLE_SUFFIXES:
        return "pickles are not allowed in a model folder (they run code when loaded); store JSON or LightGBM text"
    return None


class ModelManifest(BaseModel):
    """What `manifest.json` records about one trained model.

    `files` maps every other file of the folder to its SHA-256 (hex); `data_summary`, `params` and
    `extra` hold JSON values only (dates as ISO strings), so the manifest round-trips exactly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    version: str
    created_at: UtcTime
    feature_names: FeatureNames
    categorical_features: list[str] = Field(default_factory=list)
    catalog_fingerprint: str = Field(min_length=1)
    data_summary: dict[str, JsonValue]
    metrics: dict[str, float]
    params: dict[str, JsonValue]
    extra: dict[str, JsonValue] = Field(default_factory=dict)
    files: dict[str, str]

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not _VERSION_RE.fullmatch(value):
            raise ValueError(f"must look like {VERSION_EXAMPLE}, got {value!r}")
        return value

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name, number in value.items():
            if not math.isfinite(number):
                raise ValueError(f"{name!r} is {number}; leave out a metric that could not be computed")
        return value

    @field_validator("files")
    @classmethod
    def _check_files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            problem = artifact_name_problem(name)
            if problem is not None:
                raise ValueError(f"{name!r} {problem}")
            if not _SHA256_RE.fullmatch(digest):
                raise ValueError(f"{name!r}: {digest!r} is not a SHA-256 in lowercase hex")
        if REQUIRED_FILE not in value:
            raise ValueError(f"{REQUIRED_FILE} is not listed; every model folder holds the LightGBM model")
        return value

    @model_validator(mode="after")
    def _check_categorical(self) -> ModelManifest:
        unknown = sorted(set(self.categorical_features) - set(self.feature_names))
        if unknown:
            raise ValueError(f"categorical_features names columns that are not features: {unknown}")
        return self


@dataclass(frozen=True)
class ModelInfo:
    """One row of `list_models`: a version, when it was trained, its metrics, and whether it checks out.

    A folder that fails its checks has `problem` set and no metrics (nothing in it is trusted).
    """

    version: str
    created_at: datetime
    metrics: Mapping[str, float]
    is_current: bool
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger model should replace the champion in service, and why in one sentence.

    `forced` when only --force put it past the gate; `warning` when it goes in service although it is
    no better than a baseline (nothing else was in service).
    """

    promote: bool
    reason: str
    forced: bool = False
    warning: str | None = None


# --- JSON artifacts ---------------------------------------------------------------------------------


def dump_json_artifact(obj: Any) -> bytes:
    """`obj` as UTF-8 JSON with sorted keys and a final newline; NaN and infinity raise ModelError.

    The same object always gives the same bytes, so artifacts checksum reproducibly.
    """
    try:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ModelError(f"cannot store a JSON artifact: {exc}") from None
    except TypeError as exc:
        raise ModelError(f"cannot store a JSON artifact: {exc}") from None
    return (text + "\n").encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json_artifact(data: bytes, *, source: str = "JSON artifact") -> Any:
    """Parses UTF-8 JSON bytes; malformed JSON, NaN or infinity raise ModelError naming `source`."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ModelError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise ModelError(f"{source}: not valid JSON ({exc})") from None


# --- versions --------------------------------------------------------------------------------------


def new_version(now: datetime, content: bytes) -> str:
    """A version name: `now` in UTC to the second, then the first 7 hex digits of SHA-256(`content`).

    Versions sort by time of training. `now` must be timezone-aware.

    Example:
        >>> new_version(datetime(2026, 11, 23, 12, 5, 1, tzinfo=UTC), b"...")
        '20261123T120501Z-…'
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime (use datetime.now(UTC)), got a naive one")
    digest = hashlib.sha256(content).hexdigest()[:_VERSION_HASH_LENGTH]
    return f"{now.astimezone(UTC).strftime(_VERSION_TIME_FORMAT)}-{digest}"


def is_version(name: str) -> bool:
    """Whether `name` has the shape of a version (`20261123T120501Z-3f9a2c1`)."""
    return _VERSION_RE.fullmatch(name) is not None


def _version_time(version: str) -> datetime:
    return datetime.strptime(version.split("-", 1)[0], _VERSION_TIME_FORMAT).replace(tzinfo=UTC)


def _manifest_content(manifest: ModelManifest) -> bytes:
    """What a version's hash covers: the whole manifest except the version itself."""
    return dump_json_artifact(manifest.model_dump(mode="json", exclude={"version"}))


def _check_version_name(models_root: Path, version: str) -> None:
    if not is_version(version):
        raise NotFoundError(
            f"{models_root}: no model version {version!r}; versions look like {VERSION_EXAMPLE}"
        )


# --- writing and checking model folders -------------------------------------------------------------


def _read_source(name: str, source: Path) -> bytes:
    try:
        return source.read_bytes()
    except OSError as exc:
        raise ModelError(f"`files`: {name!r}: cannot read {source}: {exc.strerror}") from None


def write_model_dir(
    models_root: Path,
    files: Mapping[str, bytes | Path],
    *,
    created_at: datetime,
    feature_names: Sequence[str],
    catalog_fingerprint: str,
    data_summary: Mapping[str, JsonValue],
    metrics: Mapping[str, float],
    params: Mapping[str, JsonValue],
    categorical_features: Sequence[str] = (),
    extra: Mapping[str, JsonValue] | None = None,
) -> Path:
    """Writes a new model folder `models_root/<version>/` atomically and returns its path.

    `files` maps file names to their bytes or to a file to copy; it must hold `model.txt`. Everything
    is written into a temporary folder inside `models_root`, every file's SHA-256 goes into
    `manifest.json` (written last), and the folder is renamed to its version in one step, so a
    reader sees a whole model folder or none.

    Raises ModelError for a refused file name (folders, `manifest.json`, pickles), an invalid
    manifest field (a NaN metric, a naive `created_at`), or a version that already exists.
    """
    for name in files:
        problem = artifact_name_problem(name)
        if problem is not None:
            raise ModelError(f"`files`: {name!r} {problem}")
    if REQUIRED_FILE not in files:
        raise ModelError(f"`files`: {REQUIRED_FILE} is missing; every model folder holds the LightGBM model")
    with staging_dir(models_root, "tmp-model") as temp_dir:
        for name, source in sorted(files.items()):
            write_file(temp_dir / name, source if isinstance(source, bytes) else _read_source(name, source))
        digests = {name: sha256_of_file(temp_dir / name) for name in sorted(files)}
        fields: dict[str, Any] = {
            "created_at": created_at,
            "feature_names": list(feature_names),
            "categorical_features": list(categorical_features),
            "catalog_fingerprint": catalog_fingerprint,
            "data_summary": dict(data_summary),
            "metrics": dict(metrics),
            "params": dict(params),
            "extra": dict(extra or {}),
            "files": digests,
        }
        try:
            # Validated once with a placeholder version so the hash covers normalised values.
            draft = ModelManifest(version=VERSION_EXAMPLE, **fields)
            manifest = draft.model_copy(
                update={"version": new_version(draft.created_at, _manifest_content(draft))}
            )
        except PydanticValidationError as exc:
            raise ModelError(f"cannot write a model manifest: {one_line(exc)}") from None
        write_file(temp_dir / MANIFEST_FILE, dump_json_artifact(manifest.model_dump(mode="json")))
        target = models_root / manifest.version
        try:
            move_into_place(temp_dir, target)
        except FileExistsError:
            raise ModelError(
                f"{target}: already exists; the same model was written in the same second"
            ) from None
        except OSError as exc:
            raise ModelError(
                f"{target}: cannot move the new model folder into place: {exc.strerror}"
            ) from None
        return target


def _read_manifest(path: Path) -> ModelManifest:
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(f"{path}: {MANIFEST_FILE} is missing; this is not a finished model folder")
    raw = load_json_artifact(manifest_path.read_bytes(), source=f"{path}: {MANIFEST_FILE}")
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: {MANIFEST_FILE}: expected a JSON object, got {type(raw).__name__}")
    found = raw.get("format_version")
    if isinstance(found, int) and not isinstance(found, bool) and found > FORMAT_VERSION:
        raise ModelError(
            f"{path}: {MANIFEST_FILE}: format_version {found} was written by a newer nba "
            f"(this one reads {FORMAT_VERSION}); upgrade nba to load this model"
        )
    try:
        manifest = ModelManifest.model_validate(raw)
    except PydanticValidationError as exc:
        raise ModelError(f"{path}: {MANIFEST_FILE}: {one_line(exc)}") from None
    expected = new_version(manifest.created_at, _manifest_content(manifest))
    if expected != manifest.version:
        raise ModelError(
            f"{path}: {MANIFEST_FILE}: its content does not match its version {manifest.version} "
            f"(the content gives {expected}); the manifest was edited after training"
        )
    # Renamed after the check: the version covers the manifest as it was written.
    metrics = {RENAMED_METRICS.get(name, name): number for name, number in manifest.metrics.items()}
    return manifest if metrics == manifest.metrics else manifest.model_copy(update={"metrics": metrics})


def load_model_dir(path: Path) -> ModelManifest:
    """Reads a model folder's manifest and checks every file against it; returns it only if all is well.

    Checks: `manifest.json` is valid and unedited (its content matches the version's hash), every
    listed file is there with the recorded SHA-256, and no other file is in the folder.

    Raises NotFoundError when `path` is not a folder, and ModelError naming the folder, the file and
    what is wrong for anything else, e.g.
    `models/2026…: model.txt: checksum mismatch (expected 3f9a…, got 77c1…); the file was changed after training`.
    """
    if not path.exists():
        raise NotFoundError(f"{path}: no such model folder")
    if not path.is_dir():
        raise NotFoundError(f"{path}: not a folder; a model is a folder holding {MANIFEST_FILE}")
    manifest = _read_manifest(path)
    problem = folder_problem(path, manifest.files, MANIFEST_FILE, since="training")
    if problem is not None:
        raise ModelError(f"{path}: {problem}")
    return manifest


def read_model_file(path: Path, manifest: ModelManifest, name: str) -> bytes:
    """The bytes of one file of a checked model folder, checked again as read.

    Re-checking the bytes returned (not the file on disk a moment earlier) catches a file swapped
    after `load_model_dir`. Raises ModelError when `name` is not in the manifest or does not match.
    """
    expected = manifest.files.get(name)
    if expected is None:
        listed = ", ".join(sorted(manifest.files))
        raise ModelError(f"{path}: {name}: not in the manifest (it lists {listed})")
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"{path}: {name}: listed in the manifest but missing; the folder is incomplete"
        ) from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ModelError(
            f"{path}: {name}: checksum mismatch (expected {expected[:SHOWN_DIGEST_LENGTH]}…, "
            f"got {got[:SHOWN_DIGEST_LENGTH]}…); the file was changed after it was checked"
        )
    return data


def _load_version(models_root: Path, version: str) -> ModelManifest:
    """`load_model_dir` on `models_root/version`, also checking the folder holds that version."""
    _check_version_name(models_root, version)
    path = models_root / version
    manifest = load_model_dir(path)
    if manifest.version != version:
        raise ModelError(
            f"{path}: {MANIFEST_FILE}: describes version {manifest.version}; the folder was renamed or copied"
        )
    return manifest


# --- the version in service ------------------------------------------------------------------------


def read_current(models_root: Path) -> str | None:
    """The version named by `models_root/CURRENT`, or None when no model has been put in service.

    Raises ModelError when CURRENT holds something other than a version.
    """
    path = models_root / CURRENT_FILE
    text = read_pointer(path)
    if text is None:
        return None
    if not is_version(text):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ModelError(f"{path}: {shown!r} is not a version name; versions look like {VERSION_EXAMPLE}")
    return text


@dataclass(frozen=True)
class _HistoryLine:
    at: str
    version: str
    action: HistoryAction


def _read_history(models_root: Path) -> list[_HistoryLine]:
    path = models_root / HISTORY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines: list[_HistoryLine] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        # `timestamp version` lines (no action) are promotions.
        action = _HISTORY_ACTIONS.get(parts[2] if len(parts) == 3 else "promote")
        if len(parts) not in (2, 3) or not is_version(parts[1]) or action is None:
            raise ModelError(
                f"{path}: line {number}: {line.strip()!r} is not "
                "'TIMESTAMP VERSION [promote|forced|rollback|found]'"
            )
        try:
            datetime.fromisoformat(parts[0])
        except ValueError:
            raise ModelError(f"{path}: line {number}: {parts[0]!r} is not an ISO timestamp") from None
        lines.append(_HistoryLine(parts[0], parts[1], action))
    return lines


def _replay(history: Sequence[_HistoryLine]) -> list[str]:
    """The versions in service, oldest first, with rolled-back ones removed: the top is the present one."""
    stack: list[str] = []
    for line in history:
        if line.action == "rollback" and stack:
            stack.pop()
        # A promotion always stacks (promoting A, B, A again makes B the one to roll back to);
        # a rollback or a found version only when it is not on top already.
        if line.action in ("promote", "forced") or not stack or stack[-1] != line.version:
            stack.append(line.version)
    return stack


def _write_current(models_root: Path, version: str) -> None:
    """Replaces CURRENT in one step: readers see the old version or the new one, never half a file."""
    replace_file(models_root / CURRENT_FILE, (version + "\n").encode("utf-8"))


def _append_history(models_root: Path, entries: Sequence[tuple[str, HistoryAction]], now: datetime) -> None:
    stamp = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with (models_root / HISTORY_FILE).open("a", encoding="utf-8") as stream:
        for version, action in entries:
            stream.write(f"{stamp} {version} {action}\n")
        stream.flush()
        os.fsync(stream.fileno())


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime, got a naive one")
    return now


def set_current(
    models_root: Path, version: str, *, now: datetime | None = None, forced: bool = False
) -> str | None:
    """Puts `version` in service: checks its folder, replaces CURRENT atomically, logs it in HISTORY
    (as `forced` when --force put it past the promotion gate; the model folder itself never changes).

    Returns the version that was in service before (None if there was none); when that is `version`
    itself nothing is written. Raises NotFoundError for an unknown version and ModelError for a folder
    that fails its checks; CURRENT is then left unchanged.
    """
    at = _now(now)
    _load_version(models_root, version)
    try:
        previous = read_current(models_root)
    except ModelError:
        previous = None  # a broken CURRENT is exactly what promoting a good version repairs
    if previous == version:
        return previous
    stack = _replay(_read_history(models_root))
    entries: list[tuple[str, HistoryAction]] = []
    if previous is not None and (not stack or stack[-1] != previous):
        # CURRENT was set outside nba (or before HISTORY existed): record it so rollback can return to it.
        entries.append((previous, "found"))
    entries.append((version, "forced" if forced else "promote"))
    # CURRENT first: if we stop in between, the next promotion records the version as found.
    _write_current(models_root, version)
    _append_history(models_root, entries, at)
    return previous


def rollback(models_root: Path, *, now: datetime | None = None) -> str:
    """Puts back the version that was in service before the present one and returns it.

    Raises ModelError when no model is in service, when HISTORY records no earlier version, when
    CURRENT was changed outside nba, or when the earlier version's folder fails its checks
    (CURRENT is then left unchanged).
    """
    at = _now(now)
    current = read_current(models_root)
    if current is None:
        raise ModelError(
            f"{models_root / CURRENT_FILE}: no model is in service; there is nothing to roll back"
        )
    stack = _replay(_read_history(models_root))
    if stack and stack[-1] != current:
        raise ModelError(
            f"{models_root / HISTORY_FILE}: ends with {stack[-1]} but {CURRENT_FILE} names {current} "
            "(changed outside nba); promote the version you want instead"
        )
    if len(stack) < 2:
        raise ModelError(
            f"{models_root / HISTORY_FILE}: no version was in service before {current}; there is nothing to roll back to"
        )
    target = stack[-2]
    try:
        _load_version(models_root, target)
    except (ModelError, NotFoundError) as exc:
        raise ModelError(f"cannot roll back to {target}: {exc}") from None
    _write_current(models_root, target)
    _append_history(models_root, [(target, "rollback")], at)
    return target


def list_models(models_root: Path) -> list[ModelInfo]:
    """Every model folder under `models_root`, newest first, each checked; a failing one carries its problem.

    Folders whose names are not versions (such as unfinished `.tmp-…` ones) are skipped.
    Raises NotFoundError when `models_root` is not a folder.
    """
    if not models_root.is_dir():
        raise NotFoundError(f"{models_root}: no models folder")
    try:
        current = read_current(models_root)
    except ModelError:
        current = None
    infos: list[ModelInfo] = []
    for name in sorted(os.listdir(models_root), reverse=True):
        if not is_version(name) or not (models_root / name).is_dir():
            continue
        try:
            manifest = _load_version(models_root, name)
        except (ModelError, NotFoundError) as exc:
            problem = str(exc).removeprefix(f"{models_root / name}: ")
            infos.append(ModelInfo(name, _version_time(name), {}, name == current, problem))
            continue
        infos.append(ModelInfo(name, manifest.created_at, dict(manifest.metrics), name == current))
    return infos


# --- champion and challenger -----------------------------------------------------------------------


def gate_metrics(manifest: ModelManifest) -> tuple[tuple[str, str, str], ...]:
    """What the gate compares for a model: (metric, label, baseline prefix) — UPLIFT_GATE_METRICS for a
    model trained with `--objective uplift` (params.objective), GATE_METRICS otherwise."""
    objective = manifest.params.get("objective", DEFAULT_OBJECTIVE)
    return UPLIFT_GATE_METRICS if objective == "uplift" else GATE_METRICS


def baseline_problem(challenger: ModelManifest) -> str | None:
    """Why the challenger's held-out fit is not above the best baseline on the same rows, or None.

    Each `gate_metrics` number (AUC and IPS adoptions; AUC and DR caused adoptions for an uplift model)
    must be above every baseline's measured in the same run on the same
    held-out rows (the manifest's `baseline_auc_*`, `baseline_ips_*`). A metric neither the model nor
    a baseline could be measured on (no logging_prob: no IPS) is not checked.
    """
    metrics = challenger.metrics
    for metric, label, prefix in gate_metrics(challenger):
        baselines = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
        ours = metrics.get(metric)
        if not baselines:
            if metric == "auc":
                return "its manifest records no baseline numbers to compare with (trained by an older nba)"
            continue
        if ours is None:
            return f"it has no held-out {label} to compare with the baselines'"
        best = max(baselines, key=lambda name: baselines[name])
        if not ours > baselines[best]:
            return (
                f"its held-out {label} {ours:.4f} is not above the best baseline's "
                f"({best} {baselines[best]:.4f}) on the same rows"
            )
    return None


def _learnt_until(manifest: ModelManifest) -> str | None:
    """The first presentation date (ISO) a model did not learn from, as its manifest says, or None."""
    summary = manifest.data_summary
    value = summary.get("shipped_rows_until", summary.get("test_from"))
    return value if isinstance(value, str) else None


def champion_problem(challenger: ModelManifest, champion: ModelManifest) -> tuple[str | None, str]:
    """Why the challenger is not above the champion, or None; and what the comparison was.

    The fair comparison is on the same held-out calls in one training run (the challenger's
    `vs_champion_*` and `champion_*` metrics, when `data_summary.champion_version` names this champion);
    otherwise each manifest's own held-out numbers, which the comparison says are only roughly comparable.
    A challenger that learnt only from older presentations than the champion is refused outright: its
    held-out numbers come from an older period (before a regime shift, say) and cannot show it is better now.
    """
    same_run = challenger.data_summary.get(CHAMPION_KEY) == champion.version
    if not same_run:
        learnt, learnt_by_champion = _learnt_until(challenger), _learnt_until(champion)
        if learnt is not None and learnt_by_champion is not None and learnt < learnt_by_champion:
            return (
                f"it learnt only from presentations before {learnt} and {champion.version} from those "
                f"before {learnt_by_champion}: held-out numbers from an older period cannot show it is better now "
                "(`nba models rollback` goes back to the previous model)"
            ), ""
    compared: list[str] = []
    for metric, label, _ in gate_metrics(challenger):
        if same_run:
            ours_key, theirs_key = VERSUS_CHAMPION[metric]
            ours, theirs = challenger.metrics.get(ours_key), challenger.metrics.get(theirs_key)
        else:
            ours, theirs = challenger.metrics.get(metric), champion.metrics.get(metric)
        if ours is None or theirs is None:
            continue
        comparison = f"{label} {ours:.4f} {'>' if ours > theirs else 'is not above'} {theirs:.4f}"
        if not ours > theirs:
            basis = (
                "on the same held-out calls"
                if same_run
                else "from the manifests (each on its own held-out data)"
            )
            return f"its held-out {comparison} of {champion.version} {basis}", ""
        compared.append(comparison)
    if not compared:
        return f"no held-out metric of {champion.version} to compare with", ""
    basis = (
        "on the same held-out calls"
        if same_run
        else "from the manifests (each measured on its own held-out data, so only roughly comparable)"
    )
    return None, f"{', '.join(compared)} of {champion.version} {basis}"


def gate_promotion(
    challenger: ModelManifest, champion: ModelManifest | None, *, force: bool = False
) -> PromotionDecision:
    """The promotion gate: the challenger goes in service only when its held-out fit's AUC and IPS
    adoptions are above the best baseline's on the same rows and above the model in service's. For an
    uplift model the second number is the DR estimate of the adoptions its top K causes per held-out call
    (`gate_metrics`), so ranking sure things last is not held against it.

    With nothing in service, a challenger that fails the baseline check still goes in service, with a
    warning (a fresh install must serve something). `force` promotes past the gate; the decision says
    so and `set_current(..., forced=True)` records it. The gate never reads the refit's numbers: the
    manifest's metrics are the held-out fit's.

    Example:
        >>> gate_promotion(new, old).reason
        'keep 2026…: 2026… has its held-out AUC 0.6100 is not above 0.6200 of 2026… on the same held-out calls'
    """
    against_baselines = baseline_problem(challenger)
    if champion is None:
        if against_baselines is None:
            return PromotionDecision(
                True,
                f"promote {challenger.version}: it goes in service because no model is in service to compare it with",
            )
        warning = (
            f"WARNING: {challenger.version} goes in service only because nothing else is: {against_baselines}"
        )
        return PromotionDecision(
            True,
            f"promote {challenger.version}: it goes in service because no model is in service (see the warning)",
            warning=warning,
        )
    against_champion, comparison = champion_problem(challenger, champion)
    problem = against_baselines or against_champion
    if problem is None:
        return PromotionDecision(True, f"promote {challenger.version}: {comparison}; above every baseline")
    if force:
        return PromotionDecision(
            True, f"promote {challenger.version} (forced past the gate: {problem})", forced=True
        )
    return PromotionDecision(
        False,
        f"keep {champion.version}: {challenger.version} is refused, {problem} (--force promotes it anyway)",
    )
