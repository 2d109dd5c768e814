"""Benchmark: the arbitration's NPS term against the generator's truth → true adoptions and true detractor share
per held-out logged call of the model's policy at several detractor weights λ, and the request path's cost.

One counterfactual world (`--uplift-mix 1:1:1`: its pitches on the wrong call lower the call's NPS, see
docs/counterfactual.md) with its call truth (the expected adoptions and the NPS truth of every eligible benefit
on every logged call, at each rank) is generated under /tmp; a model is trained on it (no backtest, no refit, at
most `--rounds` boosting rounds; its detractor model is fitted from the NPS answers); `evaluate_model` then ranks
the held-out calls with each λ and reports, from the truth, the policy's adoptions per call and its share of
detractor answers (beside the same for showing nothing at all). Last, `Engine.decide` is timed on the same
cardholders with λ = 0 and the largest λ (median µs per call over `--repeats` passes, the weights' passes
alternating so the machine's load falls on both). Prints a table and writes
bench/results/nps_<cardholders>.json.

    python bench/bench_nps.py                                # 20,000 cardholders, seed 5
    python bench/bench_nps.py --cardholders 3000 --weights 0,0.5,1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nba.decision import ArbitrationConfig, EngineConfig
from nba.vocab import CALL_REASONS
from training.engine_job import load_engine
from training.synth import generate_world
from training.train_job import TrainOptions, evaluate_model, train_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
FOLDER = Path("/tmp/nba-bench-nps")


def _time_decide(model_dir: Path, data_dir: Path, weights: list[float], repeats: int) -> dict[str, Any]:
    """Median µs per `decide` over the world's cardholders (each on a call reason drawn once, fixed seed), for
    each weight; the weights' passes alternate, so a change in the machine's load falls on all of them."""
    engines = {}
    for weight in weights:
        config = EngineConfig(arbitration=ArbitrationConfig(detractor_weight=weight))
        engines[f"{weight:g}"] = load_engine(model_dir, data_dir, None, config)
    first = next(iter(engines.values()))
    ids = list(first.profiles.index)[:2_000]
    rng = np.random.default_rng(0)
    reasons = [CALL_REASONS[i] for i in rng.integers(0, len(CALL_REASONS), len(ids))]
    for engine in engines.values():  # warm up (compiled kernels)
        for cardholder_id, reason in zip(ids[:200], reasons, strict=False):
            engine.decide(cardholder_id, reason)
    passes: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, engine in engines.items():
            started = time.perf_counter_ns()
            for cardholder_id, reason in zip(ids, reasons, strict=True):
                engine.decide(cardholder_id, reason)
            passes[name].append((time.perf_counter_ns() - started) / len(ids) / 1_000)
    return {
        name: {"median_us_per_decide": statistics.median(values), "passes_us": values, "calls": len(ids)}
        for name, values in passes.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--weights", default="0,0.25,0.5,1,2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    folder = FOLDER / f"{args.cardholders}-{args.seed}"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    world = generate_world(
        args.cardholders,
        args.seed,
        folder / "data",
        uplift_mix="1:1:1",
        exploration_rate=0.1,
        call_truth=True,
    )
    options = TrainOptions(
        call_truth=world.call_truth_path,
        num_boost_round=args.rounds,
        refit=False,
        ship_all_rows=False,
        backtest_months=0,
        threads=1,
    )
    trained = train_model(folder / "data", folder / "models", options)
    metrics = trained.evaluation.metrics
    print(f"trained in {time.perf_counter() - started:.0f} s; {trained.fits.get('detractor_fit')}")
    policies: dict[str, Any] = {}
    nothing = float("nan")
    for weight in weights:
        evaluation = evaluate_model(
            trained.model_dir,
            folder / "data",
            TrainOptions(
                call_truth=world.call_truth_path, arbitration=ArbitrationConfig(detractor_weight=weight)
            ),
        )
        nothing = evaluation.true_detractor_share.get("nothing", nothing)
        policies[f"{weight:g}"] = {
            "true_adoptions_per_call": evaluation.true_per_call["model"],
            "true_detractor_share": evaluation.true_detractor_share["model"],
            "dr_adoptions_per_call": evaluation.doubly_robust["model"].dr,
        }
    random = {
        "true_adoptions_per_call": evaluation.true_per_call.get("random"),
        "true_detractor_share": evaluation.true_detractor_share.get("random"),
    }
    print(f"{'λ':>6} {'true adoptions/call':>20} {'true detractor share':>21} {'DR adoptions/call':>18}")
    for weight, row in policies.items():
        print(
            f"{weight:>6} {row['true_adoptions_per_call']:>20.4f} {row['true_detractor_share']:>21.4f} "
            f"{row['dr_adoptions_per_call']:>18.4f}"
        )
    print(f"showing nothing: true detractor share {nothing:.4f}; random top K: {random}")
    timing = _time_decide(trained.model_dir, folder / "data", [0.0, max(weights)], args.repeats)
    for weight, row in timing.items():
        print(f"decide with λ = {weight}: median {row['median_us_per_decide']:.1f} µs per call")
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "cardholders": args.cardholders,
        "seed": args.seed,
        "detractor_fit": trained.fits.get("detractor_fit"),
        "detractor_auc": metrics.get("detractor_auc"),
        "policies": policies,
        "nothing_detractor_share": nothing,
        "random": random,
        "decide": timing,
        "seconds": time.perf_counter() - started,
    }
    path = RESULTS_DIR / f"nps_{args.cardholders}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
