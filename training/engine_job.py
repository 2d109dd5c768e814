"""Engine jobs: a model + a data directory (or a profile snapshot) → a decision (`nba recommend`), a batch
(`nba score`), or a profile snapshot (`nba profiles build`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from nba.contract import (
    MCC_OVERRIDE_FILE,
    MccMap,
    catalog_for,
    load_catalog,
    load_mcc_map,
    open_data,
)
from nba.decision import Decision, Engine, EngineConfig, format_usd
from nba.errors import DataError, NotFoundError
from nba.features import BenefitTable
from nba.files import staging_dir
from nba.model import load_bundle, read_current
from nba.profiles import (
    SnapshotManifest,
    build_profiles,
    compute_profile_tables,
    estimate_spend,
    new_snapshot_dir,
    parse_snapshot_name,
    profiles_from_snapshot,
    resolve_snapshot,
    set_current_snapshot,
    write_snapshot,
    write_snapshot_parts,
)
from training.features_job import write_table
from training.progress import SILENT, Reporter

if TYPE_CHECKING:
    from training.spark_data import SparkData


def resolve_model_dir(model: Path) -> Path:
    """A model folder itself, or a models folder whose CURRENT names the version in service."""
    if (model / "manifest.json").exists():
        return model
    current = read_current(model) if model.is_dir() else None
    if current is None:
        raise NotFoundError(f"{model}: neither a model folder nor a models folder with a CURRENT version")
    return model / current


def mcc_map_for(data_dir: Path) -> MccMap:
    """The shipped MCC map, patched by the data directory's `mcc_map.csv` when it has one."""
    override = data_dir / MCC_OVERRIDE_FILE
    return load_mcc_map(override if override.exists() else None)


def load_engine(
    model: Path,
    data_dir: Path,
    as_of: date | None = None,
    config: EngineConfig | None = None,
    profiles: Path | None = None,
) -> Engine:
    """An engine over a data directory's profiles as of a date (default: the day after its latest date).

    With `profiles` (a snapshot folder, or a profiles folder whose CURRENT names one), the profiles are
    loaded from that snapshot instead of computed from the data; the catalog still comes from
    `data_dir`. Raises ModelError when the data's catalog no longer fits the model or the snapshot
    lacks a feature it needs, and DataError when `as_of` is not the snapshot's date.
    """
    bundle = load_bundle(resolve_model_dir(model))
    catalog = load_catalog(catalog_for(data_dir))
    bundle.check_catalog(catalog)
    benefits = BenefitTable.from_catalog(catalog)
    if profiles is not None:
        folder = resolve_snapshot(profiles)
        if as_of is not None and parse_snapshot_name(folder.name) != as_of:
            raise DataError(f"{folder}: the snapshot is as of {folder.name}, not {as_of}; leave out --as-of")
        return Engine(bundle, profiles_from_snapshot(folder, bundle, benefits), catalog, config)
    with open_data(data_dir) as data:
        built = build_profiles(data, data.resolve_as_of(as_of), bundle, mcc_map_for(data_dir), benefits)
    return Engine(bundle, built, catalog, config)


@dataclass(frozen=True)
class SnapshotResult:
    """What `nba profiles build` wrote: the folder, its manifest, and the snapshot in service before."""

    folder: Path
    manifest: SnapshotManifest
    seconds: float
    promoted: bool
    previous: str | None


def build_snapshot(
    data_dir: Path,
    model: Path,
    out: Path,
    as_of: date | None = None,
    promote: bool = False,
    progress: Reporter = SILENT,
    spark: SparkData | None = None,
) -> SnapshotResult:
    """Computes a data directory's profile tables as of a date and writes them as `out/<as_of>/`.

    The model (a model folder, or a models folder's CURRENT) gives the extra (CRM) columns to compute,
    and its spend estimates are stored beside the tables, so it loads the snapshot without running its
    spend estimator; any other model with the same features can load it too. With `promote`, CURRENT
    then names the new snapshot. `progress` is told each step and watches the SQL.

    With `spark` (the data opened in Spark, `open_engine`) the three statements run there and the
    executors write their rows as Parquet parts into a hidden staging folder inside `out`; this process
    streams them, a row group at a time, into the same single-file tables (`write_snapshot_parts`: the same
    bytes, checksums and write-then-rename), so no table is held whole and a Spark job failing mid-way
    leaves no folder behind (training/spark_snapshot.py).
    """
    started = time.perf_counter()
    progress.step(f"loading the model {model}")
    bundle = load_bundle(resolve_model_dir(model))
    if spark is not None:
        from training.spark_snapshot import write_profile_parts

        progress.step(f"{spark.uri}: the data's last date (Spark)")
        day = spark.resolve_as_of(as_of)
        new_snapshot_dir(out, day)  # before minutes of work, not after
        with staging_dir(out, "tmp-spark-rows") as staging:
            progress.step(
                f"profiles as of {day} on Spark ({spark.spark.sparkContext.master}), written by the executors"
            )
            parts = write_profile_parts(spark, day, spark.mcc_map(), bundle.extra, staging)
            progress.step(f"streaming them into {out / day.isoformat()}, spend estimates per row group")
            manifest = write_snapshot_parts(
                out,
                parts,
                day,
                versions=[bundle.version],
                estimate=lambda group, _: {bundle.version: estimate_spend(group, bundle)},
            )
        previous = set_current_snapshot(out, day) if promote else None
        return SnapshotResult(
            out / day.isoformat(), manifest, time.perf_counter() - started, promote, previous
        )
    with open_data(data_dir) as data:
        progress.step(f"{data_dir}: the data's last date")
        day = data.resolve_as_of(as_of)
        new_snapshot_dir(out, day)  # before minutes of work, not after
        progress.step(f"profiles as of {day}")
        tables = compute_profile_tables(data, day, mcc_map_for(data_dir), bundle.extra, progress)
    progress.step(f"spend estimates of {tables.features.num_rows:,} cardholders")
    estimates = {bundle.version: estimate_spend(tables.features, bundle)}
    progress.step(f"writing the snapshot to {out / day.isoformat()}")
    manifest = write_snapshot(out, tables, day, estimates=estimates)
    previous = set_current_snapshot(out, day) if promote else None
    return SnapshotResult(out / day.isoformat(), manifest, time.perf_counter() - started, promote, previous)


def _value_words(value_usd: float) -> str:
    # The suggestion's value as the panel and the talking point show it (rounded once, by the engine).
    if not math.isfinite(value_usd) or value_usd <= 0:
        return ""
    return f"about {format_usd(value_usd, estimate=True)} a year for them; "


def format_decision(decision: Decision) -> str:
    """A decision as an agent or analyst would want to read it."""
    lines = [
        f"{decision.cardholder_id} — {decision.call_reason.replace('_', ' ')} call "
        f"(model {decision.model_version}, profile as of {decision.profile_as_of})"
    ]
    if not decision.suggestions:
        lines.append(f"  nothing to suggest: {decision.note or 'no candidates'}")
    if decision.shared_reasons:
        # Said once for the call: true of the cardholder whatever the benefit, or of every card.
        lines.append(f"  why these: {'; '.join(decision.shared_reasons)}")
    for s in decision.suggestions:
        lines.append(f"  {s.rank}. {s.benefit_name}  ({_value_words(s.value_usd)}chance {s.p_adopt:.0%})")
        lines.append(f"     {s.talking_point}")
        if s.reasons:
            lines.append(f"     why: {'; '.join(s.reasons)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ScoreResult:
    out: Path
    cardholders: int
    rows: int
    seconds: float


SCORE_CHUNK = 4096
SCORE_SCHEMA = pa.schema(
    [
        pa.field("cardholder_id", pa.string()),
        pa.field("rank", pa.int32()),
        pa.field("benefit_id", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("diversity", pa.bool_()),
    ]
)


def score_all(engine: Engine, top_k: int | None, call_reason: str, out: Path) -> ScoreResult:
    """Every cardholder with at least one candidate worth the value floor: their top K as (cardholder_id,
    rank, benefit_id, score, diversity), written to `out` (see `score_rows`).
    """
    started = time.perf_counter()
    table, served = score_rows(engine, top_k, call_reason)
    write_table(table, out)
    return ScoreResult(out, served, table.num_rows, time.perf_counter() - started)


def score_rows(engine: Engine, top_k: int | None, call_reason: str) -> tuple[pa.Table, int]:
    """The score rows of every cardholder in `engine.profiles`, in their order, and how many got one.

    Columns (cardholder_id, rank, benefit_id, score, diversity): `score` is the arbitration priority;
    ranks follow it except where the diversity rule moved a suggestion that shares a spend category with
    one ranked above it after the others: that row has `diversity` true (it ranks below a row with a
    lower score). Every other row has it false. `nba score --engine spark` runs this in each partition.
    """
    ids: list[str] = []
    ranks: list[int] = []
    benefits: list[str] = []
    scores: list[float] = []
    moved: list[bool] = []
    served = 0
    holders = engine.profiles.ids
    # One candidate matrix and one booster call per chunk, the same choice as `Engine.decide`.
    for start in range(0, len(holders), SCORE_CHUNK):
        chunk = holders[start : start + SCORE_CHUNK]
        for cardholder_id, (chosen, priority) in zip(
            chunk, engine.rank_batch(chunk, call_reason, top_k), strict=True
        ):
            served += bool(chosen)
            lowest_above = float("inf")
            for rank, (benefit_id, score) in enumerate(zip(chosen, priority.tolist(), strict=True), start=1):
                ids.append(cardholder_id)
                ranks.append(rank)
                benefits.append(benefit_id)
                scores.append(score)
                moved.append(score > lowest_above)
                lowest_above = min(lowest_above, score)
    table = pa.table(
        {
            "cardholder_id": pa.array(ids, pa.string()),
            "rank": pa.array(ranks, pa.int32()),
            "benefit_id": pa.array(benefits, pa.string()),
            "score": pa.array(scores, pa.float64()),
            "diversity": pa.array(moved, pa.bool_()),
        },
        schema=SCORE_SCHEMA,
    )
    return table, served
