"""Benchmark: the one-node LightGBM fit at 1 M, 3 M and 10 M training rows → time and peak memory per size.

Issue 17, item 6: training stays one LightGBM fit on one node, fed by a training set of presentations
(about 1 M rows a month at 100 M cardholders). How far does one node go?

The rows. `train_model`'s real training matrix of a generated world (`--world-cardholders`, default 20,000:
its 231 columns, float64, with the model's categorical columns, exactly as `build_pair_matrix` lays them
out) is rebuilt once, in a child process, with the functions `train_model` calls
(`bench_train.rebuild_training_matrix`). Each size's rows are then drawn from its heard training rows with
replacement (numpy's generator, seed 0), labels with them: a bootstrap of real rows, so each column keeps
its values, its missing share and its categorical levels. LightGBM's cost depends on rows × columns ×
bins, not on whether two rows are alike, so duplicated rows cost what new ones would; the trees fitted
are not a model of anything and their quality is not measured.

The fit. `PropensityModel.fit_rounds` (the shipped model's fit on every labelled row: one `lgb.Dataset`,
then `lgb.train` with `DEFAULT_PARAMS`) for a fixed `--rounds` (default 100: early stopping on
bootstrapped rows would stop anywhere). The 900,000-cardholder world's held-out fit ran 792 rounds
(early stopping at 692 + 100), so `projected_800_rounds_s` = construction + 800 × the measured seconds
per round is given beside it: a projection, not a measurement.

Each size runs in its own spawned child process, so `ru_maxrss` is its own peak resident memory:

- `in_memory`: as `nba train` does it today, the float64 matrix in memory (`train_model` holds the
  whole matrix and a masked copy of it: the child holds one, so `nba train` needs more than this);
  skipped, with the memory it would need, where that passes `--memory-budget-gb` (default: 80% of
  MemAvailable at the start, so other processes on the machine are not pushed out);
- `streamed` (`--streamed` sizes, default 10 M): the same rows handed to LightGBM through `lgb.Sequence`
  in 100,000-row batches, so no float matrix is ever held: the peak is LightGBM's own binned Dataset
  (about a byte per cell) and the boosting. This is how one node gets past its RAM for the raw matrix.

Results → bench/results/fit_scale.json. Long (tens of minutes on 2 busy cores): run it once.

    python bench/bench_fit_scale.py                           # 1 M, 3 M, 10 M in memory; 10 M streamed
    python bench/bench_fit_scale.py --sizes 100000 --streamed 100000 --rounds 20   # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# As `nba` sets it (training/cli.py) before LightGBM's OpenMP loads: waiting threads sleep, so a busy machine's
# lagging thread gets the core. Spawned children inherit it.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "passive"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import (
    WORK_DIR,
    Measured,
    ensure_model,
    ensure_world,
    in_child,
    machine,
    peak_rss_gb,
    rebuild_training_matrix,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "fit_scale.json"
SOURCE_DIR = WORK_DIR / "fit-scale-source"
BATCH_ROWS = 100_000
HELD_OUT_ROUNDS_1M = 792  # bench/results/train.json, 900,000 cardholders: best iteration 692 + 100 patience
PROJECTED_ROUNDS = 800
BYTES_PER_BINNED_CELL = 1.0  # LightGBM's bins: max_bin 255 fits a byte (row-wise layout)


def _source_child(conn: Connection, data_dir_s: str, model_dir_s: str, out_dir_s: str) -> None:
    """Saves the heard training rows of `train_model`'s matrix (X float64, y) and the column names."""
    import numpy as np

    rebuilt = rebuild_training_matrix(Path(data_dir_s), Path(model_dir_s))
    heard = rebuilt.train_mask | rebuilt.valid_mask
    out = Path(out_dir_s)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "X.npy", np.ascontiguousarray(rebuilt.X[heard], dtype=np.float64))
    np.save(out / "y.npy", rebuilt.y[heard])
    columns = {"feature_names": rebuilt.feature_names, "categorical": rebuilt.categorical}
    (out / "columns.json").write_text(json.dumps(columns))
    conn.send(Measured(rebuilt.rebuild_s, peak_rss_gb(), {"rows": int(heard.sum()), **columns}))


class _Rounds:
    """A progress hook whose bar notes the time of every boosting round (the first marks construction's end)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def track(self, description: str, total: int) -> Any:
        import contextlib

        hook = self

        class _Bar:
            def advance(self, steps: int = 1) -> None:
                hook.times.append(time.perf_counter())

        return contextlib.nullcontext(_Bar())

    def query(self, con: Any, description: str) -> Any:
        import contextlib

        return contextlib.nullcontext()


def _fit_child(conn: Connection, source_s: str, rows: int, rounds: int, streamed: bool) -> None:
    """Draws `rows` rows from the source with replacement and fits `rounds` trees on them."""
    import lightgbm as lgb
    import numpy as np

    from nba.model import DEFAULT_PARAMS, Calibrator, PropensityModel
    from nba.progress import advance_each_round

    source = Path(source_s)
    X_source = np.load(source / "X.npy", mmap_mode="r")
    y_source = np.load(source / "y.npy")
    columns = json.loads((source / "columns.json").read_text())
    rng = np.random.default_rng(0)
    # Sorted: row order means nothing to the fit (bagging draws its own), and the streamed batches then read
    # the memory-mapped source forwards.
    take = np.sort(rng.integers(0, len(y_source), rows))
    y = y_source[take]
    names, categorical = columns["feature_names"], columns["categorical"]
    rounds_hook = _Rounds()
    started = time.perf_counter()
    if streamed:

        class Bootstrap(lgb.Sequence):
            """The bootstrapped rows, made batch by batch as LightGBM reads them: never held whole."""

            batch_size = BATCH_ROWS

            def __getitem__(self, index: Any) -> np.ndarray:
                return np.asarray(X_source[take[index]], dtype=np.float64)

            def __len__(self) -> int:
                return rows

        draw_s = 0.0
        fit_started = time.perf_counter()
        # What fit_rounds does (its shape check needs an ndarray): one Dataset, then lgb.train.
        train = lgb.Dataset(Bootstrap(), y, feature_name=names, categorical_feature=categorical)
        params = {**DEFAULT_PARAMS, "num_threads": 0}
        with rounds_hook.track("rounds", rounds) as bar:
            booster = lgb.train(params, train, rounds, callbacks=[advance_each_round(bar)])
        trees = booster.current_iteration()
    else:
        X = np.asarray(X_source)[take]  # float64, C order: what build_pair_matrix gives train_model
        draw_s = time.perf_counter() - started
        fit_started = time.perf_counter()
        model = PropensityModel(num_boost_round=rounds, calibrate=False)
        model.fit_rounds(X, y, names, categorical, Calibrator("identity"), rounds_hook)
        trees = model.best_iteration_
    fit_s = time.perf_counter() - fit_started
    first = rounds_hook.times[0] - fit_started
    per_round = (rounds_hook.times[-1] - rounds_hook.times[0]) / max(1, len(rounds_hook.times) - 1)
    construct_s = max(0.0, first - per_round)
    conn.send(
        Measured(
            time.perf_counter() - started,
            peak_rss_gb(),
            {
                "rows": rows,
                "features": len(columns["feature_names"]),
                "positives": int(y.sum()),
                "draw_rows_s": round(draw_s, 2),
                "fit_s": round(fit_s, 2),
                "dataset_construct_s": round(construct_s, 2),
                "seconds_per_round": round(per_round, 4),
                "trees": int(trees),
                "projected_800_rounds_s": round(construct_s + PROJECTED_ROUNDS * per_round, 1),
            },
        )
    )


def _mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def needed_gb(rows: int, features: int, streamed: bool) -> float:
    """What a size needs beyond the interpreter: the float64 matrix (unless streamed) and LightGBM's bins."""
    matrix = 0.0 if streamed else rows * features * 8
    bins = rows * features * BYTES_PER_BINNED_CELL
    return (matrix + bins + rows * 8 * 3) / 1024**3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--streamed", type=int, nargs="*", default=[10_000_000], help="sizes to stream too")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds per fit (default 100)")
    parser.add_argument("--world-cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument("--memory-budget-gb", type=float, default=None)
    args = parser.parse_args(argv)
    for name in ("rounds", "world_cardholders"):
        if getattr(args, name) < 1:
            parser.error(
                f"`--{name.replace('_', '-')}` must be a positive integer, got {getattr(args, name)}"
            )
    budget = args.memory_budget_gb if args.memory_budget_gb is not None else 0.8 * _mem_available_gb()

    data_dir, _ = ensure_world(args.world_cardholders, args.seed)
    model_dir = ensure_model(data_dir)
    source = SOURCE_DIR / data_dir.name
    print(f"the source rows: train_model's matrix of {data_dir} ...", flush=True)
    made = in_child(_source_child, str(data_dir), str(model_dir), str(source))
    features = len(made.detail["feature_names"])
    print(f"  {made.detail['rows']:,} heard rows × {features} columns in {made.seconds:.0f} s", flush=True)

    runs: list[dict[str, Any]] = []
    plan = [(rows, False) for rows in args.sizes] + [(rows, True) for rows in args.streamed]
    for rows, streamed in plan:
        mode = "streamed" if streamed else "in_memory"
        need = needed_gb(rows, features, streamed)
        entry: dict[str, Any] = {"rows": rows, "mode": mode, "estimated_need_gb": round(need, 1)}
        if need > budget:
            entry["skipped"] = f"needs about {need:.1f} GB, over the budget of {budget:.1f} GB"
            print(f"{rows:>11,} {mode:<9}: skipped ({entry['skipped']})", flush=True)
            runs.append(entry)
            continue
        load = os.getloadavg()[0]
        print(f"{rows:>11,} {mode:<9}: fitting {args.rounds} rounds (load {load:.1f}) ...", flush=True)
        fitted = in_child(_fit_child, str(source), rows, args.rounds, streamed)
        entry.update(
            {
                **fitted.detail,
                "wall_s": round(fitted.seconds, 2),
                "peak_rss_gb": round(fitted.peak_rss_gb, 2),
                "load_average_before": round(load, 2),
            }
        )
        print(
            f"    fit {entry['fit_s']:.1f} s (construct {entry['dataset_construct_s']:.1f} s, "
            f"{entry['seconds_per_round']:.3f} s a round), peak RSS {entry['peak_rss_gb']:.2f} GB, "
            f"800 rounds projected {entry['projected_800_rounds_s']:.0f} s",
            flush=True,
        )
        runs.append(entry)

    result = {
        "benchmark": "fit_scale",
        "source": {
            "world": str(data_dir),
            "model": str(model_dir),
            "heard_rows": made.detail["rows"],
            "features": features,
            "categorical": made.detail["categorical"],
            "rows_made_by": "bootstrap (with replacement, seed 0) of train_model's heard training rows",
        },
        "rounds": args.rounds,
        "held_out_rounds_at_1m_rows": HELD_OUT_ROUNDS_1M,
        "memory_budget_gb": round(budget, 1),
        "runs": runs,
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
