"""Benchmark: uplift ranking against adoption ranking on a counterfactual world's truth → caused adoptions.

Generates a world with an uplift mix (a third of the catalog's benefits sure things, a third persuadables, a
third in between: `nba generate --uplift-mix 1:1:1`, fixed before any model is fitted), trains two models on
it with the same seed (`nba train --objective adoption` and `--objective uplift`), then ranks every
cardholder's candidates on a general call at the data's as-of with each and asks the oracle what the top 3
truly cause: Σ (p_true − p_natural). Prints, and merges into bench/results/uplift.json under the world:

- each policy's caused adoptions per cardholder, the uplift policy's over the adoption policy's
  (issue 18's target: ≥ 1.2), and each one's oracle uplift ratio (caused ÷ the best top 3 by true
  uplift; target ≥ 0.85 for the uplift policy);
- the uplift model's held-out Qini coefficient and AUUC beside the adoption ranking's (from its manifest);
- the wall time of each step (inflated when other jobs share the machine: the load average is recorded).

    python bench/bench_uplift.py                         # 20,000 cardholders, seed 1, mix 1:1:1
    python bench/bench_uplift.py --cardholders 40000 --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nba.model import load_bundle
from training.synth import generate_world
from training.train_job import train_model
from training.training_run import TrainOptions
from training.uplift_truth import caused_adoptions

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "uplift.json"
WORK_DIR = Path("/tmp/nba-bench-uplift")


def run(cardholders: int, seed: int, mix: str, threads: int) -> dict[str, Any]:
    world = WORK_DIR / f"world-{cardholders}-{seed}-{mix.replace(':', '-')}"
    data, oracle = world / "data", world / "oracle.parquet"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if world.exists():
        shutil.rmtree(world)
    generate_world(cardholders, seed, data, uplift_mix=mix, oracle_path=oracle)
    timings["generate_s"] = round(time.perf_counter() - started, 1)
    model_dirs: dict[str, Path] = {}
    qini: dict[str, float] = {}
    for objective in ("adoption", "uplift"):
        started = time.perf_counter()
        options = TrainOptions(objective=objective, seed=seed, threads=threads, backtest_months=0)
        result = train_model(data, world / f"models-{objective}", options)
        timings[f"train_{objective}_s"] = round(time.perf_counter() - started, 1)
        model_dirs[objective] = result.model_dir
        if objective == "uplift":
            metrics = load_bundle(result.model_dir).manifest.metrics
            qini = {
                k: metrics[k]
                for k in (
                    "qini_coefficient",
                    "auuc",
                    "qini_coefficient_adoption_ranking",
                    "auuc_adoption_ranking",
                )
                if k in metrics
            }
    started = time.perf_counter()
    truth = caused_adoptions(data, oracle, model_dirs, top_k=3, seed=seed)
    timings["truth_s"] = round(time.perf_counter() - started, 1)
    caused_ratio = truth.caused["uplift"] / truth.caused["adoption"] if truth.caused["adoption"] > 0 else None
    return {
        "cardholders": cardholders,
        "seed": seed,
        "uplift_mix": mix,
        "ranked_cardholders": truth.cardholders,
        "caused_adoptions_per_cardholder_top3": truth.caused,
        "adoptions_per_cardholder_top3": truth.adopted,
        "best_caused_top3": truth.best,
        "oracle_uplift_ratio": {name: truth.ratio(name) for name in truth.caused},
        "uplift_over_adoption_caused": caused_ratio,
        "targets": {"uplift_over_adoption_caused": 1.2, "oracle_uplift_ratio_uplift": 0.85},
        "held_out_qini": qini,
        "timings": timings,
        "load_average_1m_at_end": os.getloadavg()[0],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", default="1:1:1", help="SURE:PERSUADABLE:BETWEEN weights of the catalog")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = run(args.cardholders, args.seed, args.mix, args.threads)
    print(json.dumps(out, indent=2))
    results = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    results[f"{args.cardholders}-seed{args.seed}-mix{args.mix}"] = out
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
