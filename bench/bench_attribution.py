"""Benchmark: path attribution for a request's candidate rows → µs per call against a bare `booster.predict`.

Trains (once, cached under /tmp) a binary LightGBM model of `--trees` trees × `--leaves` leaves on
`--features` random features with signal (a few categorical, 5% missing), makes a pool of `--pool` rows
from the same distribution, and then makes `--calls` calls of `--rows` rows each, every call on rows
drawn afresh from the pool (the same rows again and again would sit in cache and flatter every figure).
Each call times, on the same rows and in an order that rotates from call to call:

- `predict`: the bare `booster.predict(rows, num_threads=1)`, the reference,
- `pred_leaf`: `booster.predict(rows, pred_leaf=True, num_threads=1)` alone,
- `contributions`: `PathAttributor.contributions` (pred_leaf + the leaf-table gather),
- `predict+contributions`: the bare predict, then `contributions` (two booster calls),
- `score_and_contributions`: raw scores and contributions from one booster call,
- `score_and_top3`: that, plus `rank_contributions(k=3)` for every row,
- `score_all_explain_3`: route once, score every row from the leaves, then contributions and top-3 reasons for
  the three best-scored rows only (what a request that shows three suggestions needs),

and, for the first `--shap-calls` calls only (it is slow), TreeSHAP: `pred_contrib=True`, which also gives
the agreement of the top-3 reasons with TreeSHAP's. Reports p50/p90/p99 and the ratio to bare predict,
prints them and writes bench/results/attribution.json.

    python bench/bench_attribution.py                   # 300 trees × 63 leaves, 230 features, 2,000 calls
    python bench/bench_attribution.py --calls 200 --shap-calls 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from nba.model import DEFAULT_PARAMS, PathAttributor, rank_contributions

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "attribution.json"
WORK_DIR = Path("/tmp/nba-bench-attribution")
N_CATEGORICAL = 8  # the first columns are integer-coded categories, as product and region codes are
REQUEST_PATH = (
    "predict",
    "pred_leaf",
    "contributions",
    "predict+contributions",
    "score_and_contributions",
    "score_and_top3",
    "score_all_explain_3",
)


def make_rows(n: int, n_features: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random rows and labels whose log-odds depend, nonlinearly and with interactions, on ~40 features."""
    X = rng.normal(size=(n, n_features))
    X[:, :N_CATEGORICAL] = rng.integers(0, 12, size=(n, N_CATEGORICAL))
    X[rng.random((n, n_features)) < 0.05] = np.nan
    Z = np.nan_to_num(X)
    logit = (
        -1.0
        + 1.0 * Z[:, N_CATEGORICAL]
        + 0.8 * np.sin(2 * Z[:, N_CATEGORICAL + 1])
        + 0.6 * (Z[:, N_CATEGORICAL + 2] > 0.5) * Z[:, N_CATEGORICAL + 3]
        + 0.06 * Z[:, N_CATEGORICAL + 4 : N_CATEGORICAL + 40].sum(axis=1)
        + 0.8 * (Z[:, 0] % 3 == 1)
        - 0.5 * (Z[:, 1] == 4)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return X, y


def load_or_train(args: argparse.Namespace) -> tuple[lgb.Booster, float | None]:
    """The benchmark model, from the cache under /tmp when the same arguments made it before."""
    params = {**DEFAULT_PARAMS, "num_leaves": args.leaves, "num_threads": os.cpu_count() or 1}
    key = json.dumps(
        {
            "params": params,
            "trees": args.trees,
            "features": args.features,
            "train_rows": args.train_rows,
            "seed": args.seed,
        },
        sort_keys=True,
    )
    path = WORK_DIR / f"model-{hashlib.sha256(key.encode()).hexdigest()[:12]}.txt"
    if path.exists():
        return lgb.Booster(model_file=str(path)), None
    X, y = make_rows(args.train_rows, args.features, np.random.default_rng(args.seed))
    started = time.perf_counter()
    train = lgb.Dataset(X, y, categorical_feature=list(range(N_CATEGORICAL)))
    booster = lgb.train(params, train, args.trees)
    seconds = time.perf_counter() - started
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    booster.save_model(str(partial))
    partial.replace(path)
    return booster, seconds


def _summary(samples_ns: list[int], reference_ns: list[int]) -> dict[str, Any]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    ref = np.asarray(reference_ns, dtype=np.float64) / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "calls": len(us),
        "p50_us": round(float(p50), 1),
        "p90_us": round(float(p90), 1),
        "p99_us": round(float(p99), 1),
        "mean_us": round(float(us.mean()), 1),
        "p50_ratio_to_predict": round(float(p50 / np.percentile(ref, 50)), 3),
        "p99_ratio_to_predict": round(float(p99 / np.percentile(ref, 99)), 3),
    }


def _agreement(ours: list[list[tuple[int, float]]], theirs: list[list[tuple[int, float]]]) -> dict[str, Any]:
    """How often the top-3 positive reasons by path attribution are TreeSHAP's."""
    overlap, same_set, top1 = [], [], []
    for a, b in zip(ours, theirs, strict=True):
        sa, sb = {f for f, _ in a}, {f for f, _ in b}
        overlap.append(1.0 if not sa and not sb else len(sa & sb) / max(len(sa), len(sb)))
        same_set.append(sa == sb)
        if a and b:
            top1.append(a[0][0] == b[0][0])
    return {
        "rows": len(ours),
        "top3_overlap": round(float(np.mean(overlap)), 3),
        "top3_same_set": round(float(np.mean(same_set)), 3),
        "top1_same": round(float(np.mean(top1)), 3),
        "top1_rows": len(top1),
    }


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the model and pool, times every method on the same fresh rows per call, returns the record."""
    booster, train_seconds = load_or_train(args)
    started = time.perf_counter()
    attributor = PathAttributor.from_booster(booster)
    fit_seconds = time.perf_counter() - started
    pool, _ = make_rows(args.pool, args.features, np.random.default_rng(args.seed + 1))
    rng = np.random.default_rng(args.seed + 2)

    def predict_and_contributions(rows: np.ndarray) -> object:
        booster.predict(rows, num_threads=1)
        return attributor.contributions(rows)

    def score_and_top3(rows: np.ndarray) -> object:
        _, contributions = attributor.score_and_contributions(rows)
        return rank_contributions(contributions, k=3)

    def score_all_explain_3(rows: np.ndarray) -> object:
        routes = attributor.route(rows)
        raw = attributor.raw_scores_of(routes)
        shown = np.argsort(-raw, kind="stable")[:3]
        return raw, rank_contributions(attributor.contributions_of(routes, shown), k=3)

    methods: dict[str, Callable[[np.ndarray], object]] = {
        "predict": lambda rows: booster.predict(rows, num_threads=1),
        "pred_leaf": lambda rows: booster.predict(rows, pred_leaf=True, num_threads=1),
        "contributions": attributor.contributions,
        "predict+contributions": predict_and_contributions,
        "score_and_contributions": attributor.score_and_contributions,
        "score_and_top3": score_and_top3,
        "score_all_explain_3": score_all_explain_3,
    }
    assert tuple(methods) == REQUEST_PATH
    samples: dict[str, list[int]] = {name: [] for name in (*methods, "treeshap")}
    ours_top3: list[list[tuple[int, float]]] = []
    shap_top3: list[list[tuple[int, float]]] = []
    worst_sum_error = 0.0
    load_before = os.getloadavg()
    names = list(methods)
    for call in range(args.calls):
        rows = pool[rng.choice(args.pool, size=args.rows, replace=False)]
        shift = call % len(names)
        for name in names[shift:] + names[:shift]:
            method = methods[name]
            begin = time.perf_counter_ns()
            method(rows)
            samples[name].append(time.perf_counter_ns() - begin)
        if call < args.shap_calls:
            begin = time.perf_counter_ns()
            shap = np.asarray(booster.predict(rows, pred_contrib=True, num_threads=1))
            samples["treeshap"].append(time.perf_counter_ns() - begin)
            raw, contributions = attributor.score_and_contributions(rows)
            worst_sum_error = max(
                worst_sum_error,
                float(np.abs(raw - booster.predict(rows, raw_score=True)).max()),
                float(np.abs(contributions.sum(axis=1) + attributor.bias_ - raw).max()),
            )
            ours_top3 += rank_contributions(contributions, k=3)
            shap_top3 += rank_contributions(shap[:, :-1], k=3)
    load_after = os.getloadavg()

    trees = booster.dump_model()["tree_info"]
    leaves_per_tree = [tree["num_leaves"] for tree in trees]
    result: dict[str, Any] = {
        "model": {
            "trees": len(trees),
            "leaves_per_tree_min_mean_max": [
                min(leaves_per_tree),
                round(float(np.mean(leaves_per_tree)), 1),
                max(leaves_per_tree),
            ],
            "features": booster.num_feature(),
            "categorical_features": N_CATEGORICAL,
            "train_rows": args.train_rows,
            "train_seconds": None if train_seconds is None else round(train_seconds, 1),
            "loaded_from_cache": train_seconds is None,
        },
        "attributor": {
            "fit_seconds": round(fit_seconds, 3),
            "leaves": int(attributor.leaf_offsets_[-1]),
            "table_entries": len(attributor.leaf_contrib_values_),
            "mean_features_per_leaf": round(
                len(attributor.leaf_contrib_values_) / int(attributor.leaf_offsets_[-1]), 2
            ),
            "table_mb": round(
                (
                    attributor.leaf_contrib_values_.nbytes
                    + attributor.leaf_contrib_features_.nbytes
                    + 3 * attributor.leaf_contrib_indptr_.nbytes
                    + attributor.leaf_values_.nbytes
                )
                / 1e6,
                2,
            ),
            "max_abs_error_vs_raw_score": worst_sum_error,
        },
        "pool_rows": args.pool,
        "rows_per_call": args.rows,
        "calls": args.calls,
        "timings": {
            name: _summary(samples[name], samples["predict"][: len(samples[name])])
            for name in samples
            if samples[name]
        },
        "treeshap_ms_per_row": (
            round(float(np.median(samples["treeshap"])) / 1e6 / args.rows, 2) if samples["treeshap"] else None
        ),
        "agreement_with_treeshap": _agreement(ours_top3, shap_top3) if ours_top3 else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "lightgbm": lgb.__version__,
            "numpy": np.__version__,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--leaves", type=int, default=63)
    parser.add_argument("--features", type=int, default=230)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--pool", type=int, default=100_000, help="rows the calls draw from (default 100000)")
    parser.add_argument("--rows", type=int, default=30, help="candidate rows per call (default 30)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--shap-calls", type=int, default=100, help="calls that also time TreeSHAP (default 100)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for name in ("trees", "features", "train_rows", "pool", "rows", "calls"):
        if getattr(args, name) < 1:
            parser.error(
                f"`--{name.replace('_', '-')}` must be a positive integer, got {getattr(args, name)}"
            )
    if args.leaves < 2:
        parser.error(f"`--leaves` must be an integer of 2 or more, got {args.leaves}")
    if args.features <= N_CATEGORICAL + 40:
        parser.error(f"`--features` must be more than {N_CATEGORICAL + 40}, got {args.features}")
    if args.rows > args.pool:
        parser.error(f"`--rows` must be at most `--pool` ({args.pool}), got {args.rows}")
    if not 0 <= args.shap_calls <= args.calls:
        parser.error(f"`--shap-calls` must be in [0, {args.calls}], got {args.shap_calls}")

    result = run_bench(args)
    model, attributor = result["model"], result["attributor"]
    print(
        f"model: {model['trees']} trees × {model['leaves_per_tree_min_mean_max'][1]} leaves, {model['features']} features; "
        f"leaf table {attributor['table_entries']:,} entries ({attributor['mean_features_per_leaf']} a leaf, "
        f"{attributor['table_mb']} MB) built in {attributor['fit_seconds']} s"
    )
    print(
        f"{result['calls']:,} calls of {result['rows_per_call']} rows from a pool of {result['pool_rows']:,}; "
        f"load average {result['machine']['load_average_before'][0]} → {result['machine']['load_average_after'][0]} "
        f"on {result['machine']['cpus']} CPUs"
    )
    print(
        f"{'':25} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'p50/predict':>12} {'p99/predict':>12} {'calls':>6}"
    )
    for name, timing in result["timings"].items():
        print(
            f"{name:25} {timing['p50_us']:9.1f} {timing['p90_us']:9.1f} {timing['p99_us']:9.1f} "
            f"{timing['p50_ratio_to_predict']:12.2f} {timing['p99_ratio_to_predict']:12.2f} {timing['calls']:6}"
        )
    agreement = result["agreement_with_treeshap"]
    if agreement is not None:
        print(
            f"TreeSHAP {result['treeshap_ms_per_row']} ms a row; top-3 reasons vs TreeSHAP over {agreement['rows']} "
            f"rows: overlap {agreement['top3_overlap']:.3f}, same set {agreement['top3_same_set']:.3f}, same top-1 "
            f"{agreement['top1_same']:.3f}; max |sum + bias − raw| {attributor['max_abs_error_vs_raw_score']:.1e}"
        )
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({"benchmark": "path_attribution", **result}, indent=2) + "\n")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
