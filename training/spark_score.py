"""Batch scoring on Spark: profile tables as Spark DataFrames + a model folder → `nba score`'s rows.

`nba score --engine spark`. Every cardholder's feature row travels with its benefit history and contact
rows nested in it (one row per cardholder), so a partition holds whole cardholders; `mapInArrow` hands
each partition's Arrow batches to `_score_partition`, which runs what local `nba score` runs on them
(`assemble_profiles`, `Engine`, `score_rows`: the same compiled engine). The model folder goes to the
executors as a broadcast of its files' bytes and is loaded THERE by `load_bundle`, which checks every
file against the manifest's SHA-256 before anything is read: an executor never loads a model it has not
checked. The scores (five narrow columns) come back to the driver as Arrow and are written as local
`nba score` writes them, under a hidden name renamed into place: a job that fails leaves no file.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from nba.contract import Catalog, catalog_for, load_catalog
from nba.decision import Engine, EngineConfig
from nba.errors import ComputeEngineError, DataError, ModelError
from nba.features import (
    SPARK,
    BenefitTable,
    ExtraColumns,
    benefit_history_sql,
    cardholder_features_sql,
    mcc_category_table,
    snapshot_all_sql,
)
from nba.model import load_bundle
from nba.profiles import (
    CONTACT_FILE,
    FEATURES_FILE,
    HISTORY_FILE,
    assemble_profiles,
    check_snapshot,
    contact_history_sql,
    resolve_snapshot,
)
from training.engine_job import SCORE_SCHEMA, ScoreResult, resolve_model_dir, score_rows
from training.features_job import write_table
from training.spark_data import SparkData, open_engine
from training.spark_session import first_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

HISTORY_COLUMN: Final = "nba_history"
CONTACT_COLUMN: Final = "nba_contact"
# Cardholders assembled into one `Profiles` inside a partition: Spark's Arrow batches (10,000 rows by
# default) are gathered up to this many, so the engine's fixed costs are paid per 50,000, not per batch.
PARTITION_CARDHOLDERS: Final = 50_000
SCORING_MCC_VIEW: Final = "nba_scoring_mcc"


@dataclass(frozen=True)
class SparkProfileFrames:
    """`ProfileTables` as Spark DataFrames: feature rows, benefit history, contact history (same columns)."""

    features: DataFrame
    history: DataFrame
    contact: DataFrame


def nest_by_cardholder(frames: SparkProfileFrames) -> DataFrame:
    """One row per feature row, with its cardholder's history and contact rows as arrays of structs.

    A cardholder's rows then always land in the same partition, whatever the partitioning.
    """
    from pyspark.sql import functions as F

    def nested(frame: DataFrame, column: str) -> DataFrame:
        fields = [F.col(name) for name in frame.columns if name != "cardholder_id"]
        return frame.groupBy("cardholder_id").agg(F.collect_list(F.struct(*fields)).alias(column))

    return frames.features.join(nested(frames.history, HISTORY_COLUMN), "cardholder_id", "left").join(
        nested(frames.contact, CONTACT_COLUMN), "cardholder_id", "left"
    )


def read_model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file of a model folder by its name (the manifest's checksums travel with them, unchecked here:
    the executor that loads them checks them)."""
    files = {path.name: path.read_bytes() for path in sorted(model_dir.iterdir()) if path.is_file()}
    if "manifest.json" not in files:
        raise ModelError(f"{model_dir}: not a model folder (no manifest.json)")
    return files


def _unnest(table: pa.Table, column: str, names: list[str]) -> pa.Table:
    """A nested column back into rows: `cardholder_id` beside each struct's fields."""
    lists = table.column(column).combine_chunks()
    if pa.types.is_null(lists.type):  # nobody in the batch has such rows
        return pa.table({"cardholder_id": pa.array([], pa.string()), **{n: pa.array([]) for n in names}})
    parents = pc.list_parent_indices(lists)
    structs = pc.list_flatten(lists)
    columns = {"cardholder_id": table.column("cardholder_id").combine_chunks().take(parents)}
    for name in names:
        columns[name] = structs.field(name)
    return pa.table(columns)


def _gathered(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    gathered: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        gathered.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(gathered)
            gathered, count = [], 0
    if gathered:
        yield pa.Table.from_batches(gathered)


def _score_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    model_files: Any,
    model_name: str,
    catalog: Catalog,
    as_of: date,
    config: EngineConfig,
    top_k: int | None,
    call_reason: str,
    history_names: list[str],
    contact_names: list[str],
) -> Iterator[pa.RecordBatch]:
    """Runs on an executor: the model folder written from the broadcast bytes and checked by `load_bundle`,
    then `score_rows` over the partition's cardholders, as local `nba score` does."""
    with tempfile.TemporaryDirectory(prefix="nba-model-") as parent:
        folder = Path(parent) / model_name
        folder.mkdir()
        for name, data in model_files.value.items():
            (folder / name).write_bytes(data)
        bundle = load_bundle(folder)  # every file's SHA-256 against the manifest, or ModelError
    benefits = BenefitTable.from_catalog(catalog)
    for table in _gathered(batches, PARTITION_CARDHOLDERS):
        history = _unnest(table, HISTORY_COLUMN, history_names)
        contact = _unnest(table, CONTACT_COLUMN, contact_names)
        features = table.drop_columns([HISTORY_COLUMN, CONTACT_COLUMN])
        profiles = assemble_profiles(as_of, features, history, contact, bundle, benefits)
        scores, _ = score_rows(Engine(bundle, profiles, catalog, config), top_k, call_reason)
        yield from scores.to_batches()


def score_frames(
    session: SparkSession,
    frames: SparkProfileFrames,
    model_dir: Path,
    catalog: Catalog,
    as_of: date,
    config: EngineConfig,
    top_k: int | None,
    call_reason: str,
) -> DataFrame:
    """The score rows of every cardholder in `frames`, as a (lazy) Spark DataFrame of SCORE_SCHEMA."""
    from pyspark.sql.pandas.types import from_arrow_schema

    shipped = session.sparkContext.broadcast(read_model_files(model_dir))
    score = functools.partial(
        _score_partition,
        model_files=shipped,
        model_name=model_dir.name,
        catalog=catalog,
        as_of=as_of,
        config=config,
        top_k=top_k,
        call_reason=call_reason,
        history_names=[c for c in frames.history.columns if c != "cardholder_id"],
        contact_names=[c for c in frames.contact.columns if c != "cardholder_id"],
    )
    return nest_by_cardholder(frames).mapInArrow(score, from_arrow_schema(SCORE_SCHEMA))


def snapshot_frames(session: SparkSession, snapshot: Path) -> tuple[date, SparkProfileFrames]:
    """A profile snapshot folder (or a profiles folder's CURRENT), checked, as Spark DataFrames: its as-of
    and its three tables, which Spark reads from the folder itself."""
    folder = resolve_snapshot(snapshot)
    manifest = check_snapshot(folder)  # every file's SHA-256, before Spark reads any of them
    read = session.read.parquet
    frames = SparkProfileFrames(
        features=read(str(folder / FEATURES_FILE)),
        history=read(str(folder / HISTORY_FILE)),
        contact=read(str(folder / CONTACT_FILE)),
    )
    return manifest.as_of, frames


def data_frames(data: SparkData, as_of: date, extra: ExtraColumns) -> SparkProfileFrames:
    """The profile tables of every cardholder as of `as_of`, computed by the feature SQL on Spark (the same
    text `nba profiles build --engine spark` runs), as lazy DataFrames: nothing is collected."""
    snapshots = snapshot_all_sql(as_of, SPARK)
    data.sql.materialize(SCORING_MCC_VIEW, mcc_category_table(data.mcc_map()))
    sql = data.spark.sql
    return SparkProfileFrames(
        features=sql(cardholder_features_sql(snapshots, extra, SCORING_MCC_VIEW, SPARK)),
        history=sql(benefit_history_sql(snapshots, SPARK)),
        contact=sql(contact_history_sql(snapshots, SPARK)),
    )


def score_on_spark(
    master: str | None,
    conf_file: Path | None,
    model: Path,
    data_dir: Path,
    profiles: Path | None,
    config: EngineConfig,
    top_k: int | None,
    call_reason: str,
    out: Path,
    as_of: date | None = None,
) -> ScoreResult:
    """`nba score --engine spark`: every cardholder scored on Spark (see the module), from the `profiles`
    snapshot when given, else from the feature SQL run on Spark over `data_dir`.

    The model is a model folder or a models folder's CURRENT; the catalog comes from `data_dir` as for
    local `nba score`. Raises ModelError when the catalog or the snapshot does not fit the model, DataError
    when `as_of` is not the snapshot's date, ComputeEngineError when Spark cannot start or a Spark job
    fails (its first line: a ModelError raised on an executor says which file did not match).
    """
    model_dir = resolve_model_dir(model)
    bundle = load_bundle(model_dir)  # checked here too: a bad folder fails before Spark starts
    catalog = load_catalog(catalog_for(data_dir))
    bundle.check_catalog(catalog)
    with open_engine("spark", data_dir, master, conf_file) as data:
        assert data is not None
        if profiles is not None:
            day, frames = snapshot_frames(data.spark, profiles)
            if as_of is not None and as_of != day:
                raise DataError(f"{profiles}: the snapshot is as of {day}, not {as_of}; leave out --as-of")
        else:
            day = data.resolve_as_of(as_of)
            frames = data_frames(data, day, bundle.extra)
        try:
            return score_all_on_spark(
                data.spark, frames, model_dir, catalog, day, config, top_k, call_reason, out
            )
        except Exception as exc:
            if type(exc).__module__.startswith(("pyspark", "py4j")):
                raise ComputeEngineError(f"the Spark scoring job failed: {job_error(exc)}") from None
            raise


def job_error(exc: BaseException) -> str:
    """The line that says what went wrong in a failed Spark job: an nba error raised on an executor when
    there is one (`nba.errors.ModelError: ...`), else the error's first line."""
    for line in str(exc).splitlines():
        if line.startswith("nba.errors."):
            return line[len("nba.errors.") :]
    return first_line(exc)


def score_all_on_spark(
    session: SparkSession,
    frames: SparkProfileFrames,
    model_dir: Path,
    catalog: Catalog,
    as_of: date,
    config: EngineConfig,
    top_k: int | None,
    call_reason: str,
    out: Path,
) -> ScoreResult:
    """`score_frames` run and written to `out` as local `nba score` writes it: rows by cardholder id, then rank.

    Nothing is written unless every partition succeeded.
    """
    started = time.perf_counter()
    scores = score_frames(session, frames, model_dir, catalog, as_of, config, top_k, call_reason)
    table = scores.toArrow().cast(SCORE_SCHEMA)
    # Local `nba score` goes through the cardholders in the feature SQL's order: by id.
    table = table.sort_by([("cardholder_id", "ascending"), ("rank", "ascending")])
    write_table(table, out)
    served = len(pc.unique(table.column("cardholder_id")))
    return ScoreResult(out, served, table.num_rows, time.perf_counter() - started)
