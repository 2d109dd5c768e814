"""Benchmark: the value floor's cost and gain → adoptions and value-weighted adoptions against the oracle,
floor $0 beside the default $12, on the sample world and a larger generated one.

For each world (generated under /tmp, or reused), a model is trained once with `nba train`'s defaults
(the floor plays no part in training), then evaluated twice as `nba evaluate --oracle` does: with no
floor and with the default one. Against the oracle (a general call for every cardholder at the data's
as-of, true adoption probabilities and true values): expected adoptions per cardholder and their oracle
ratio, value-weighted adoptions (true probability × true yearly value, dollars per cardholder) and their
ratio to the oracle's best top 3, suggestions shown per cardholder; on the held-out logged calls, the
IPS estimate of adoptions per call. Prints a table and writes bench/results/value_floor.json.

    python bench/bench_value_floor.py                       # the sample world (3,000) and 20,000 cardholders
    python bench/bench_value_floor.py --worlds 3000:7
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nba.decision import ArbitrationConfig
from nba.vocab import DEFAULT_VALUE_FLOOR_USD
from training.synth import generate_world
from training.train_job import TrainOptions, evaluate_model, train_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "value_floor.json"
FOLDER = Path("/tmp/nba-bench-value-floor")
# The sample world is `make sample-data`'s: 3,000 cardholders, seed 7.
WORLDS = ("3000:7", "20000:11")
FLOORS = (0.0, DEFAULT_VALUE_FLOOR_USD)
MEASURES = (
    "oracle_expected_adoptions_top_k",
    "oracle_ratio",
    "oracle_value_weighted_usd",
    "oracle_best_value_weighted_usd",
    "oracle_value_weighted_ratio",
    "oracle_shown_per_cardholder",
    "expected_adoptions_top_k",
)


def _world(cardholders: int, seed: int) -> tuple[Path, Path, Path]:
    """The world's data directory, oracle and model folder, generated and trained the first time."""
    folder = FOLDER / f"{cardholders}-{seed}"
    data, oracle, models = folder / "data", folder / "oracle.parquet", folder / "models"
    if not (folder / "_generated").exists():
        generate_world(cardholders, seed, data, fmt="parquet", oracle_path=oracle)
        (folder / "_generated").touch()
    trained = sorted(p for p in models.glob("*") if (p / "manifest.json").exists()) if models.exists() else []
    if not trained:
        train_model(data, models, TrainOptions(oracle=oracle, backtest_months=0))
        trained = sorted(p for p in models.glob("*") if (p / "manifest.json").exists())
    return data, oracle, trained[-1]


def measure(cardholders: int, seed: int) -> dict[str, Any]:
    data, oracle, model = _world(cardholders, seed)
    by_floor: dict[str, dict[str, float]] = {}
    for floor in FLOORS:
        started = time.perf_counter()
        options = TrainOptions(oracle=oracle, arbitration=ArbitrationConfig(value_floor_usd=floor))
        evaluation = evaluate_model(model, data, options)
        row = {name: float(evaluation.metrics[name]) for name in MEASURES if name in evaluation.metrics}
        row["seconds"] = round(time.perf_counter() - started, 1)
        by_floor[f"{floor:g}"] = row
    return {"cardholders": cardholders, "seed": seed, "model": model.name, "by_floor": by_floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), help="cardholders:seed, one per world")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "note": "evaluation only (the floor plays no part in training); wall times on a shared, loaded machine",
        "worlds": {},
    }
    for world in args.worlds:
        cardholders, seed = (int(part) for part in world.split(":"))
        results["worlds"][str(cardholders)] = measure(cardholders, seed)
    header = f"{'world':>7} {'floor':>5} " + " ".join(
        f"{name.removeprefix('oracle_'):>28}" for name in MEASURES
    )
    print(header)
    for name, world_result in results["worlds"].items():
        for floor, row in world_result["by_floor"].items():
            cells = " ".join(f"{row.get(m, float('nan')):>28.4f}" for m in MEASURES)
            print(f"{name:>7} {floor:>5} {cells}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written: {RESULTS_PATH}")


if __name__ == "__main__":
    main()
