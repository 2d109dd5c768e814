"""Benchmark: `nba train` (train_model) → step timings and peak RSS; its LightGBM fit against a bare `lightgbm.train`.

Makes (or reuses) a synthetic world of `--cardholders` under /tmp — 900,000 cardholders give about a million
labelled presentations — then, each in its own child process so its peak resident memory is its own:

1. `train_model` as `nba train` runs it: wall time, `TrainResult.timings_s` (validate, features, spend
   estimator, training set, model fit, evaluation), `TrainResult.rows`, peak RSS;
2. the fit alone: the same training matrix rebuilt with the functions `train_model` calls (labelled rows,
   snapshots, `build_pair_matrix`, with the holder encoding and spend estimator of the model step 1 stored),
   then `--repeat` rounds alternating `PropensityModel.fit` and a bare `lightgbm.train` with the same
   parameters (`nba.model._propensity.DEFAULT_PARAMS`, the same seed, num_boost_round and early stopping) on identical
   X/y; plus what the wrapper does besides (validation checks, predicting the validation slice,
   calibration) and what `train_model` does around it (the masked copies of X) timed on their own;
3. `--refit-pairs` pairs of `train_model` runs, as before issue 14 (shipping the held-out fit, no backtest
   month) and as now (the model refit on every labelled row and the latest months backtested within the
   run), alternating: the ratio of their medians (goal: at most 2).

Prints the numbers and merges them into bench/results/train.json under the cardholder count.
`bench_engine.py` and `bench_score.py` reuse the world and model helpers here.

    python bench/bench_train.py                          # 100,000 cardholders (about 110,000 rows)
    python bench/bench_train.py --cardholders 900000     # about 1 M rows; ~15 min on a quiet 2-core machine
    python bench/bench_train.py --profile                # also a cProfile of train_model (slower run)
    python bench/bench_train.py --refit-pairs 3          # the refit on every row's cost: 3 pairs of runs
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nba.vocab import UNHEARD_OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "train.json"
# Worlds and models shared by bench_train, bench_engine and bench_score; each is complete once its marker exists.
WORK_DIR = Path("/tmp/nba-bench-worlds")
DONE_MARKER = "_complete.json"
NUM_BOOST_ROUND = 2000  # TrainOptions' default, which `nba train` uses
EARLY_STOPPING_ROUNDS = 100  # PropensityModel's default


@dataclass(frozen=True)
class Measured:
    """What one child process did: its wall seconds, its own peak RSS, and what it reports."""

    seconds: float
    peak_rss_gb: float
    detail: dict[str, Any]


def peak_rss_gb() -> float:
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kilobytes / 1024**2


def in_child(target: Any, *args: Any) -> Measured:
    """Runs `target(conn, *args)` in a fresh (spawned) process and returns what it sends back."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(send, *args))
    process.start()
    send.close()
    try:
        measured: Measured = receive.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"{target.__name__} failed (exit code {process.exitcode})") from None
    process.join()
    return measured


def machine() -> dict[str, Any]:
    import lightgbm
    import numpy

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "lightgbm": lightgbm.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


# --- worlds and models, shared with bench_engine and bench_score ------------------------------------------


def _generate_child(conn: Connection, cardholders: int, seed: int, out_dir: str) -> None:
    sys.path.insert(0, str(ROOT))
    from training.synth import generate_world

    started = time.perf_counter()
    summary = generate_world(cardholders, seed=seed, out_dir=Path(out_dir), fmt="parquet")
    conn.send(
        Measured(time.perf_counter() - started, peak_rss_gb(), {"rows_by_table": dict(summary.rows_by_table)})
    )


def ensure_world(cardholders: int, seed: int, data: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """A Parquet world of `cardholders` under WORK_DIR (generated in a child process unless already there).

    With `data`, that directory is used as it is. Returns the directory and its rows per table.
    """
    if data is not None:
        return data, {}
    out_dir = WORK_DIR / f"world-{cardholders}-s{seed}"
    marker = out_dir / DONE_MARKER
    if marker.exists():
        rows: dict[str, Any] = json.loads(marker.read_text())["rows_by_table"]
        return out_dir, rows
    shutil.rmtree(out_dir, ignore_errors=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    print(f"generating {cardholders:,} cardholders into {out_dir} ...", flush=True)
    made = in_child(_generate_child, cardholders, seed, str(out_dir))
    rows = made.detail["rows_by_table"]
    marker.write_text(json.dumps({"cardholders": cardholders, "seed": seed, "rows_by_table": rows}))
    print(f"  generated in {made.seconds:.0f} s", flush=True)
    return out_dir, rows


def _train_child(
    conn: Connection, data_dir: str, models_root: str, profile: bool, ship_all_rows: bool = True
) -> None:
    sys.path.insert(0, str(ROOT))
    from training.cli_options import TRAIN_BACKTEST_MONTHS
    from training.train_job import train_model
    from training.training_run import TrainOptions

    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    # ship_all_rows=False is `nba train` as it was before issue 14: the held-out fit ships, no backtest months.
    months = TRAIN_BACKTEST_MONTHS if ship_all_rows else 0
    options = TrainOptions(ship_all_rows=ship_all_rows, backtest_months=months)
    result = train_model(Path(data_dir), Path(models_root), options)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    detail: dict[str, Any] = {
        "model_dir": str(result.model_dir),
        "timings_s": dict(result.timings_s),
        "rows": dict(result.rows),
        "best_iteration": result.evaluation.metrics.get("best_iteration"),
        "auc": result.evaluation.metrics.get("auc"),
    }
    if profiler is not None:
        detail["profile"] = _top_functions(profiler)
    conn.send(Measured(seconds, peak_rss_gb(), detail))


def _top_functions(profiler: cProfile.Profile, limit: int = 30) -> dict[str, list[str]]:
    """The functions with the most cumulative and the most own time, as pstats prints them."""
    out: dict[str, list[str]] = {}
    for key in ("cumulative", "tottime"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats(key).print_stats(limit)
        lines = [line.rstrip() for line in stream.getvalue().splitlines() if line.strip()]
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        out[key] = lines[start : start + limit + 1]
    return out


def train_once(
    data_dir: Path, models_root: Path, profile: bool = False, ship_all_rows: bool = True
) -> Measured:
    """`train_model` on `data_dir` into `models_root` (which should hold no CURRENT model), in a child process.

    `ship_all_rows=False` is `nba train` before issue 14: it ships the held-out fit and backtests no month
    within the run; True is `nba train` now (the refit on every row and TRAIN_BACKTEST_MONTHS months).
    """
    return in_child(_train_child, str(data_dir), str(models_root), profile, ship_all_rows)


def refit_cost(data_dir: Path, models_root: Path, pairs: int) -> dict[str, Any]:
    """`train_model` with and without the refit on every labelled row (and the backtest months within the
    run, which came with it), alternating `pairs` times."""
    with_refit: list[float] = []
    without: list[float] = []
    steps: dict[str, float] = {}
    for i in range(pairs):
        for ship_all_rows, into in ((False, without), (True, with_refit)):
            root = models_root / f"refit-{ship_all_rows}-{i}"
            root.mkdir()
            measured = train_once(data_dir, root, ship_all_rows=ship_all_rows)
            into.append(measured.seconds)
            if ship_all_rows:
                steps = measured.detail["timings_s"]
    ratio = statistics.median(with_refit) / statistics.median(without)
    from training.cli_options import TRAIN_BACKTEST_MONTHS

    return {
        "backtest_months": TRAIN_BACKTEST_MONTHS,
        "with_refit_s": [round(x, 2) for x in with_refit],
        "held_out_fit_only_s": [round(x, 2) for x in without],
        "ratio_median": round(ratio, 3),
        "goal_ratio": 2.0,
        "meets_goal": ratio <= 2.0,
        "timings_s_with_refit": steps,
    }


def ensure_model(data_dir: Path) -> Path:
    """A model trained on `data_dir` by `train_model` (cached beside the world); returns its folder."""
    models_root = WORK_DIR / f"models-{data_dir.name}"
    marker = models_root / DONE_MARKER
    if marker.exists():
        model_dir = Path(json.loads(marker.read_text())["model_dir"])
        if model_dir.exists():
            return model_dir
    shutil.rmtree(models_root, ignore_errors=True)
    models_root.mkdir(parents=True)
    print(f"training a model on {data_dir} ...", flush=True)
    trained = train_once(data_dir, models_root)
    model_dir = Path(trained.detail["model_dir"])
    marker.write_text(json.dumps({"model_dir": str(model_dir), "data_dir": str(data_dir)}))
    print(f"  trained in {trained.seconds:.0f} s: {model_dir}", flush=True)
    return model_dir


# --- the fit against bare LightGBM ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingMatrix:
    """`train_model`'s candidate matrix of a world, rebuilt with the functions it calls (see `_fit_child`)."""

    X: Any  # float64, rows × features, as train_model builds it
    y: Any
    train_mask: Any
    valid_mask: Any
    feature_names: list[str]
    categorical: list[str]
    bundle: Any
    rebuild_s: float


def rebuild_training_matrix(data_dir: Path, model_dir: Path) -> TrainingMatrix:
    """The training matrix `train_model` fitted for the model in `model_dir` (its encodings and spend
    estimator), with the labels and the train/valid masks of the held-out fit. Call it in a child process."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pandas as pd

    from nba.contract import MCC_OVERRIDE_FILE, catalog_for, load_catalog, load_mcc_map, open_data
    from nba.features import BenefitTable
    from nba.model import load_bundle, model_categorical, model_feature_names
    from training.pairs import build_pair_matrix, compute_snapshots
    from training.presentations import split_by_time
    from training.training_run import _labelled_rows, snapshots_of

    started = time.perf_counter()
    bundle = load_bundle(model_dir)
    catalog = load_catalog(catalog_for(data_dir))
    benefits = BenefitTable.from_catalog(catalog)
    override = data_dir / MCC_OVERRIDE_FILE
    mcc_map = load_mcc_map(override if override.exists() else None)
    as_of = date.fromisoformat(str(bundle.manifest.data_summary["as_of"]))
    with open_data(data_dir) as data:
        labelled = _labelled_rows(data, as_of, catalog)
        rows = labelled.table.to_pandas()
        rows["as_of"] = pd.to_datetime(rows["as_of"])
        split = split_by_time(rows["as_of"].to_numpy(dtype="datetime64[D]"))
        snapshots = compute_snapshots(data, snapshots_of(rows), mcc_map, bundle.extra)
    matrix = build_pair_matrix(
        rows, snapshots, bundle.holder, bundle.estimator, benefits, bundle.benefit_codes(benefits)
    )
    heard = ~rows["outcome"].isin(UNHEARD_OUTCOMES).to_numpy()
    return TrainingMatrix(
        X=matrix.X,
        y=rows["adopted"].to_numpy(dtype=np.float64),
        train_mask=split.train & heard,
        valid_mask=split.valid & heard,
        feature_names=list(model_feature_names(bundle.holder.feature_names)),
        categorical=list(model_categorical(bundle.holder.categorical)),
        bundle=bundle,
        rebuild_s=time.perf_counter() - started,
    )


def _fit_child(conn: Connection, data_dir_s: str, model_dir_s: str, repeat: int, seed: int) -> None:
    """Rebuilds train_model's training matrix, then alternates PropensityModel.fit and bare lgb.train."""
    import lightgbm as lgb
    import numpy as np

    from nba.model import DEFAULT_PARAMS, PropensityModel, fit_calibrator

    started = time.perf_counter()
    rebuilt = rebuild_training_matrix(Path(data_dir_s), Path(model_dir_s))
    matrix, y, bundle = rebuilt, rebuilt.y, rebuilt.bundle
    train_mask, valid_mask = rebuilt.train_mask, rebuilt.valid_mask
    rebuild_s = rebuilt.rebuild_s

    t = time.perf_counter()
    X_train, y_train = matrix.X[train_mask], y[train_mask]
    X_valid, y_valid = matrix.X[valid_mask], y[valid_mask]
    mask_copy_s = time.perf_counter() - t
    names, categorical = rebuilt.feature_names, rebuilt.categorical
    params = {**DEFAULT_PARAMS, "seed": seed, "num_threads": 0}

    def bare() -> lgb.Booster:
        train = lgb.Dataset(X_train, y_train, feature_name=names, categorical_feature=categorical)
        valid = lgb.Dataset(X_valid, y_valid, reference=train)
        return lgb.train(
            params,
            train,
            NUM_BOOST_ROUND,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )

    def wrapped() -> PropensityModel:
        model = PropensityModel(num_boost_round=NUM_BOOST_ROUND, params={"seed": seed})
        return model.fit(X_train, y_train, names, categorical, X_valid, y_valid)

    seconds: dict[str, list[float]] = {"fit": [], "bare": []}
    iterations: dict[str, set[int]] = {"fit": set(), "bare": set()}
    model: PropensityModel | None = None
    booster: lgb.Booster | None = None
    for round_ in range(repeat):
        for which in ("fit", "bare") if round_ % 2 == 0 else ("bare", "fit"):
            gc.collect()
            t = time.perf_counter()
            if which == "fit":
                model = wrapped()
                iterations["fit"].add(model.best_iteration_)
            else:
                booster = bare()
                iterations["bare"].add(int(booster.best_iteration or booster.current_iteration()))
            seconds[which].append(time.perf_counter() - t)
    assert model is not None and booster is not None

    # What PropensityModel.fit does besides lgb.train, and what lgb.train spends before boosting.
    t = time.perf_counter()
    for labels in (y_train, y_valid):
        bool(np.isin(labels, (0, 1)).all())
    checks_s = time.perf_counter() - t
    t = time.perf_counter()
    p_valid = np.asarray(booster.predict(X_valid, num_iteration=model.best_iteration_), dtype=np.float64)
    predict_valid_s = time.perf_counter() - t
    t = time.perf_counter()
    fit_calibrator(y_valid, p_valid)
    calibrate_s = time.perf_counter() - t
    t = time.perf_counter()
    dataset = lgb.Dataset(
        X_train, y_train, feature_name=names, categorical_feature=categorical, params=params
    ).construct()
    lgb.Dataset(
        X_valid, y_valid, feature_name=names, categorical_feature=categorical, reference=dataset
    ).construct()
    construct_s = time.perf_counter() - t
    # `nba train` refits its final trees on both slices; the timed fits above do not (the bare call cannot).
    as_trained = PropensityModel(num_boost_round=NUM_BOOST_ROUND, params={"seed": seed}, refit=True).fit(
        X_train, y_train, names, categorical, X_valid, y_valid
    )
    same_model = bool(
        np.allclose(as_trained.predict_raw(X_valid[:10_000]), bundle.model.predict_raw(X_valid[:10_000]))
    )
    conn.send(
        Measured(
            time.perf_counter() - started,
            peak_rss_gb(),
            {
                "rows": len(y),
                "train_rows": int(train_mask.sum()),
                "valid_rows": int(valid_mask.sum()),
                "features": int(matrix.X.shape[1]),
                "matrix_gb": round(matrix.X.nbytes / 1e9, 3),
                "rebuild_matrix_s": round(rebuild_s, 2),
                "mask_copy_s": round(mask_copy_s, 3),
                "fit_s": [round(s, 3) for s in seconds["fit"]],
                "bare_s": [round(s, 3) for s in seconds["bare"]],
                "best_iteration": sorted(iterations["fit"] | iterations["bare"]),
                "same_iterations": iterations["fit"] == iterations["bare"],
                "same_model_as_train_model": same_model,
                "wrapper_checks_s": round(checks_s, 3),
                "wrapper_predict_valid_s": round(predict_valid_s, 3),
                "wrapper_calibrate_s": round(calibrate_s, 3),
                "dataset_construct_s": round(construct_s, 3),
                "calibration": model.calibrator_.kind,
            },
        )
    )


# --- the run ----------------------------------------------------------------------------------------------


def run_bench(
    cardholders: int,
    seed: int,
    repeat: int,
    profile: bool,
    data: Path | None,
    keep: bool,
    refit_pairs: int = 0,
) -> dict[str, Any]:
    """Trains once, then compares the fit with bare LightGBM; returns the result record."""
    data_dir, rows_by_table = ensure_world(cardholders, seed, data)
    models_root = Path(tempfile.mkdtemp(prefix="nba-bench-train-models-", dir="/tmp"))
    try:
        print("train_model ...", flush=True)
        trained = train_once(data_dir, models_root)
        timings = trained.detail["timings_s"]
        print(f"  {trained.seconds:.1f} s, peak RSS {trained.peak_rss_gb:.2f} GB: {timings}", flush=True)
        print(f"fit vs bare lgb.train, {repeat} round(s) ...", flush=True)
        fit = in_child(_fit_child, str(data_dir), trained.detail["model_dir"], repeat, 0)
        refit = None
        if refit_pairs:
            print(
                f"train_model with and without the refit on every row, {refit_pairs} pair(s) ...", flush=True
            )
            refit = refit_cost(data_dir, models_root, refit_pairs)
        profiled = None
        if profile:
            print("train_model under cProfile ...", flush=True)
            profile_root = models_root / "profiled"
            profile_root.mkdir()
            profiled = train_once(data_dir, profile_root, profile=True)
    finally:
        if keep:
            print(f"kept {models_root}")
        else:
            shutil.rmtree(models_root, ignore_errors=True)

    steps = {k: v for k, v in timings.items() if k != "total"}
    fit_median = statistics.median(fit.detail["fit_s"])
    bare_median = statistics.median(fit.detail["bare_s"])
    paired = [f / b for f, b in zip(fit.detail["fit_s"], fit.detail["bare_s"], strict=True)]
    result: dict[str, Any] = {
        "cardholders": cardholders,
        "seed": seed,
        "data_dir": str(data_dir),
        "rows_by_table": rows_by_table,
        "train_model": {
            "wall_s": round(trained.seconds, 2),
            "timings_s": timings,
            "share_of_total": {k: round(v / timings["total"], 3) for k, v in steps.items()},
            "rows": trained.detail["rows"],
            "best_iteration": trained.detail["best_iteration"],
            "auc": trained.detail["auc"],
            "peak_rss_gb": round(trained.peak_rss_gb, 3),
        },
        "fit_vs_bare": {
            **fit.detail,
            "fit_median_s": round(fit_median, 3),
            "bare_median_s": round(bare_median, 3),
            "ratio_fit_to_bare": round(fit_median / bare_median, 3),
            "ratio_paired_median": round(statistics.median(paired), 3),
            "goal_ratio": 1.3,
            "meets_goal": fit_median / bare_median <= 1.3,
            "peak_rss_gb": round(fit.peak_rss_gb, 3),
        },
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if refit is not None:
        result["refit_on_every_row"] = refit
    if profiled is not None:
        result["profile"] = {
            "wall_s_under_cprofile": round(profiled.seconds, 2),
            "timings_s": profiled.detail["timings_s"],
            "top": profiled.detail["profile"],
        }
    return result


def save_run(result: dict[str, Any], path: Path, benchmark: str) -> None:
    """Merges one result into a results file, keyed by the number of cardholders (every bench's layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    if path.exists():
        runs = json.loads(path.read_text()).get("runs", {})
    runs[str(result["cardholders"])] = result
    ordered = dict(sorted(runs.items(), key=lambda item: int(item[0])))
    path.write_text(json.dumps({"benchmark": benchmark, "runs": ordered}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders",
        type=int,
        default=100_000,
        help="cardholders in the world (default 100000; 900000 gives about 1 M training rows)",
    )
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of fit vs bare lgb.train, alternating (default 3)"
    )
    parser.add_argument("--profile", action="store_true", help="also run train_model under cProfile")
    parser.add_argument("--data", type=Path, help="use this data directory instead of a generated world")
    parser.add_argument("--keep", action="store_true", help="keep the trained model folder under /tmp")
    parser.add_argument(
        "--refit-pairs",
        type=int,
        default=1,
        help="pairs of train_model runs with and without the refit on every labelled row (default 1; 0: none)",
    )
    args = parser.parse_args(argv)
    if args.cardholders < 1:
        parser.error(f"`--cardholders` must be a positive integer, got {args.cardholders}")
    if args.repeat < 1:
        parser.error(f"`--repeat` must be a positive integer, got {args.repeat}")
    result = run_bench(
        args.cardholders, args.seed, args.repeat, args.profile, args.data, args.keep, args.refit_pairs
    )
    train = result["train_model"]
    fit = result["fit_vs_bare"]
    print(
        f"train_model: {train['rows']['rows']:,} rows (train {train['rows']['train']:,}, valid "
        f"{train['rows']['valid']:,}) in {train['wall_s']:.1f} s, peak RSS {train['peak_rss_gb']:.2f} GB"
    )
    for step, seconds in train["timings_s"].items():
        share = train["share_of_total"].get(step)
        print(f"  {step:<16} {seconds:8.1f} s" + (f"  {share:6.1%}" if share is not None else ""))
    print(
        f"fit: PropensityModel.fit median {fit['fit_median_s']:.2f} s vs bare lgb.train {fit['bare_median_s']:.2f} s "
        f"= {fit['ratio_fit_to_bare']:.2f}x (goal <= 1.3; paired median {fit['ratio_paired_median']:.2f}x) on "
        f"{fit['train_rows']:,} x {fit['features']} rows, best iteration {fit['best_iteration']}"
    )
    print(
        f"  besides lgb.train: checks {fit['wrapper_checks_s']:.2f} s, predict valid {fit['wrapper_predict_valid_s']:.2f} s, "
        f"calibration {fit['wrapper_calibrate_s']:.2f} s; train_model's masked copies {fit['mask_copy_s']:.2f} s; "
        f"Dataset construction (inside both) {fit['dataset_construct_s']:.2f} s"
    )
    if "refit_on_every_row" in result:
        refit = result["refit_on_every_row"]
        print(
            f"refit on every labelled row and {refit['backtest_months']} backtest months: train_model "
            f"{refit['with_refit_s']} s vs the held-out fit alone, no backtest month "
            f"{refit['held_out_fit_only_s']} s = {refit['ratio_median']:.2f}x (goal <= 2)"
        )
    if "profile" in result:
        print("cProfile of train_model, by cumulative time:")
        for line in result["profile"]["top"]["cumulative"][:25]:
            print(f"  {line}")
    save_run(result, RESULTS_PATH, "train_model")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
