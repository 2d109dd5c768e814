"""Synthetic world, writing: chunks of tables → the data directory's files and the oracle file."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from nba.contract import DEFAULT_CATALOG_PATH, MCC_OVERRIDE_FILE, load_catalog, load_mcc_map
from nba.errors import DataError, check_param
from training.synth._counterfactual import UpliftMix, assign_classes
from training.synth._parameters import (
    _EPOCH,
    _NEVER,
    AGENT_COUNT,
    CHUNK_CARDHOLDERS,
    DEFAULT_AS_OF,
    LEGACY_EPSILON,
    TABLE_NAMES,
    _day_number,
)
from training.synth._personas import _calibrate_truth, _reference_adoption
from training.synth._simulation import _generate_chunk
from training.synth._truth import LAUNCHED_BENEFIT, LAUNCHED_ON_PRODUCTS, TRUTH, RegimeShift
from training.synth._world import _calendar, _catalog_arrays, _mcc_sampler, _World


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote: rows per table, oracle rows, and how long it took."""

    out_dir: Path
    oracle_path: Path
    fmt: Literal["csv", "parquet"]
    seed: int
    as_of: date
    rows_by_table: Mapping[str, int]
    oracle_rows: int
    seconds: float
    regime_shift: date | None = None
    uplift_mix: str | None = None  # SURE:PERSUADABLE:BETWEEN of a counterfactual world
    exploration_rate: float = LEGACY_EPSILON
    call_truth_path: Path | None = None  # with `call_truth`: <oracle>.calls.parquet


# --- writing ---------------------------------------------------------------------------------------------------


class _TableSink:
    """Appends chunks of one table to a file (Parquet or CSV), written under a temporary name until closed."""

    def __init__(self, path: Path, fmt: Literal["csv", "parquet"]) -> None:
        self.path = path
        self.fmt = fmt
        self.partial = path.with_name(f".{path.name}.partial")
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.partial, table.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        table = _csv_ready(table)
        if self._csv is None:
            self._csv = pacsv.CSVWriter(
                self.partial, table.schema, write_options=pacsv.WriteOptions(quoting_style="none")
            )
        self._csv.write_table(table)

    def close(self) -> None:
        writer = self._parquet or self._csv
        if writer is not None:
            writer.close()
            os.replace(self.partial, self.path)

    def discard(self) -> None:
        writer = self._parquet or self._csv
        if writer is not None:
            writer.close()
        self.partial.unlink(missing_ok=True)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 text (`2026-03-05T14:02:11`, UTC); dates are written as YYYY-MM-DD already."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            values = table.column(i).to_numpy().astype("datetime64[s]")
            text = np.datetime_as_string(values, unit="s")
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _check_arguments(n_cardholders: int, seed: int, fmt: str, out_dir: Path, oracle_path: Path) -> None:
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    in_range = is_int(n_cardholders) and 1 <= n_cardholders <= 99_999_999
    check_param("n_cardholders", n_cardholders, in_range, "an int in [1, 99999999]", DataError)
    check_param("seed", seed, is_int(seed) and seed >= 0, "a non-negative int", DataError)
    check_param("fmt", fmt, fmt in ("csv", "parquet"), "'csv' or 'parquet'", DataError)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"`out_dir` must be a directory, got the file {out_dir}")
    if out_dir.resolve() in oracle_path.resolve().parents:
        raise DataError(f"`oracle_path` must be outside `out_dir` (it holds hidden truth), got {oracle_path}")
    other = "csv" if fmt == "parquet" else "parquet"
    for name in TABLE_NAMES:
        if (out_dir / f"{name}.{other}").exists():
            raise DataError(
                f"{out_dir / f'{name}.{other}'} exists; remove it or write {other} (a table in two files is ambiguous)"
            )


def generate_world(
    n_cardholders: int,
    seed: int,
    out_dir: Path,
    fmt: Literal["csv", "parquet"] = "parquet",
    as_of: date = DEFAULT_AS_OF,
    oracle_path: Path | None = None,
    catalog_path: Path | None = None,
    regime_shift: RegimeShift | date | None = None,
    uplift_mix: UpliftMix | str | None = None,
    exploration_rate: float = LEGACY_EPSILON,
    call_truth: bool = False,
) -> WorldSummary:
    """Writes a synthetic data directory (the six contract tables and catalog.yaml) and its oracle file.

    Takes the number of cardholders, a seed (same seed, same rows), the output directory (created if
    needed; the six tables in it are replaced), the file format, the as-of date (every date written is
    before it), where to write the oracle (default `<out_dir>.oracle.parquet` beside the directory; never
    inside it) and the catalog (default: the shipped one; copied to out_dir). An `mcc_map.csv` already in
    out_dir is honoured. `regime_shift` (a RegimeShift, or a date for the default one) makes the world
    change from that date on (see RegimeShift); the catalog written then has the launched benefit, and the
    oracle an `as_of` column. `uplift_mix` (an UpliftMix or 'SURE:PERSUADABLE:BETWEEN' weights) makes a
    counterfactual world (see `_counterfactual`): benefits people take up on their own, ones they take up
    only when told, and pitches that cost a call's NPS; its oracle gains `p_natural` and `uplift_class`.
    `exploration_rate` is the share of calls on which the legacy policy shows eligible benefits in a random
    order instead of its own (its ε). `call_truth` also writes `<oracle stem>.calls.parquet` beside the
    oracle: for every logged call and every benefit eligible on it, its expected adoptions within the
    label window were it shown at rank 1, 2, 3 (`expected_adoption_rank_<r>`), from which the true value of
    any policy on the logged calls follows; it draws no random number, so the world is the same without it.
    Returns a WorldSummary. Raises DataError for bad arguments, CatalogError or
    ValidationError for a bad catalog or MCC map.

    Example:
        >>> summary = generate_world(2_000, seed=7, out_dir=Path("/tmp/world"), fmt="csv")
        >>> summary.rows_by_table["cardholders"]
        2000
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    oracle_path = (
        Path(oracle_path) if oracle_path is not None else out_dir.parent / f"{out_dir.name}.oracle.parquet"
    )
    _check_arguments(n_cardholders, seed, fmt, out_dir, oracle_path)
    check_param(
        "exploration_rate",
        exploration_rate,
        isinstance(exploration_rate, float | int) and 0.0 <= exploration_rate <= 1.0,
        "a number in [0, 1]",
        DataError,
    )
    shift = RegimeShift(regime_shift) if isinstance(regime_shift, date) else regime_shift
    mix = UpliftMix.parse(uplift_mix) if isinstance(uplift_mix, str) else uplift_mix
    if mix is not None and shift is not None:
        raise DataError("`uplift_mix` and `regime_shift` cannot be combined: choose one kind of world")
    calendar = _calendar(as_of)
    if shift is not None and not calendar.start_day < _day_number(shift.starts) < calendar.as_of_day:
        history_start = _EPOCH + timedelta(days=calendar.start_day)
        raise DataError(
            f"`regime_shift` must be a date inside the history, after {history_start} and "
            f"before the as-of {as_of}, got {shift.starts}"
        )
    catalog_file = Path(catalog_path) if catalog_path is not None else DEFAULT_CATALOG_PATH
    catalog = load_catalog(catalog_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    oracle_path.parent.mkdir(parents=True, exist_ok=True)
    target = out_dir / "catalog.yaml"
    if shift is not None:
        # The data directory's catalog has the launched benefit; the world reads it from there.
        replace_text = _catalog_with_launch(catalog_file.read_text(encoding="utf-8"))
        target.write_text(replace_text, encoding="utf-8")
        catalog_file = target
        catalog = load_catalog(target)

    root = np.random.SeedSequence(seed)
    # The first stream once calibrated the products (now `_calibrate_truth` does, on a fixed population);
    # spawning it still keeps the others as they were.
    _, agent_seed, chunks_seed, uplift_seed = root.spawn(4)
    # Transactions are drawn with the MCC map the data directory will be read with (its override too).
    override = out_dir / MCC_OVERRIDE_FILE
    mcc = _mcc_sampler(load_mcc_map(override if override.exists() else None))
    arrays = _catalog_arrays(catalog)
    launch_day, choice_slots = None, None
    if shift is not None:
        launched = np.array([b == LAUNCHED_BENEFIT["id"] for b in arrays.benefit_ids])
        launch_day = np.where(launched, _day_number(shift.starts), -_NEVER).astype(np.int64)
        choice_slots = np.where(
            np.isin(arrays.product_slots, np.flatnonzero(launched)), -1, arrays.product_slots
        )
    cat, product_constant = _calibrate_truth(arrays, mcc, choice_slots)
    counterfactual = (
        None
        if mix is None
        else assign_classes(
            mix, _reference_adoption(cat, mcc, choice_slots), np.random.default_rng(uplift_seed)
        )
    )
    agent_rng = np.random.default_rng(agent_seed)
    world = _World(
        shift=shift,
        launch_day=launch_day,
        choice_slots=choice_slots,
        catalog=cat,
        calendar=calendar,
        mcc=mcc,
        agent_effect=agent_rng.normal(0.0, TRUTH.agent_sd, AGENT_COUNT),
        agent_not_discussed=agent_rng.normal(0.0, 0.4, AGENT_COUNT),
        product_constant=product_constant,
        id_width=max(7, len(str(n_cardholders))),
        counterfactual=counterfactual,
        exploration_rate=float(exploration_rate),
        call_truth=call_truth,
    )
    sinks = {name: _TableSink(out_dir / f"{name}.{fmt}", fmt) for name in TABLE_NAMES}
    sinks["oracle"] = _TableSink(oracle_path, "parquet")
    call_truth_path = oracle_path.with_name(f"{oracle_path.stem}.calls.parquet") if call_truth else None
    if call_truth_path is not None:
        sinks["call_truth"] = _TableSink(call_truth_path, "parquet")
    n_chunks = -(-n_cardholders // CHUNK_CARDHOLDERS)
    try:
        next_call = 1
        for index, chunk_seed in enumerate(chunks_seed.spawn(n_chunks)):
            first = index * CHUNK_CARDHOLDERS
            size = min(CHUNK_CARDHOLDERS, n_cardholders - first)
            tables = _generate_chunk(world, chunk_seed, first + 1, size, next_call)
            next_call += tables["calls"].num_rows
            for name, table in tables.items():
                sinks[name].write(table)
        for sink in sinks.values():
            sink.close()
    except BaseException:
        for sink in sinks.values():
            sink.discard()
        raise
    if not (target.exists() and target.samefile(catalog_file)):
        shutil.copyfile(catalog_file, target)
    return WorldSummary(
        out_dir=out_dir,
        oracle_path=oracle_path,
        fmt=fmt,
        seed=seed,
        as_of=as_of,
        rows_by_table={name: sinks[name].rows for name in TABLE_NAMES},
        oracle_rows=sinks["oracle"].rows,
        seconds=time.perf_counter() - started,
        regime_shift=shift.starts if shift is not None else None,
        uplift_mix=str(mix) if mix is not None else None,
        exploration_rate=float(exploration_rate),
        call_truth_path=call_truth_path,
    )


def _catalog_with_launch(text: str) -> str:
    """Catalog YAML with `LAUNCHED_BENEFIT` added (unless it is there) to the products in
    `LAUNCHED_ON_PRODUCTS`, or to every product when the catalog has none of them."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("benefits"), list):
        return text  # load_catalog has said what is wrong with it already
    if any(isinstance(b, dict) and b.get("id") == LAUNCHED_BENEFIT["id"] for b in raw["benefits"]):
        return text
    raw["benefits"].append(dict(LAUNCHED_BENEFIT))
    products = [p for p in raw.get("products", []) if isinstance(p, dict)]
    named = [p for p in products if p.get("id") in LAUNCHED_ON_PRODUCTS] or products
    for product in named:
        product["benefits"] = [*product.get("benefits", []), LAUNCHED_BENEFIT["id"]]
    dumped: str = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110)
    return "# The shipped catalog with the benefit launched on the regime shift's date.\n" + dumped
