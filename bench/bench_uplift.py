"""Benchmark: uplift ranking against adoption ranking on counterfactual worlds' truth → caused adoptions,
the ceiling, and what serving an uplift model costs a decision.

For each seed it generates a world with an uplift mix (`nba generate --uplift-mix 1:1:1`: the catalog's
benefits split in thirds by how popular they are in the reference population, the most popular third sure
things, the least popular persuadables; fixed before any model is fitted), trains `nba train --objective
uplift` on it (which fits the adoption model first, as `--objective adoption` would with the same seed,
and ships it beside the uplift model), then ranks every cardholder's candidates on a general call at the
data's as-of twice — by the shipped adoption model (the adoption policy) and by the uplift model — and asks
the oracle what each top 3 truly causes: Σ (p_true − p_natural). Per seed:

- the ceiling: the best possible top 3 by true uplift (arbitration's rules ignored) ÷ the adoption policy's
  caused adoptions (what any ranking could gain over ranking by adoption);
- the uplift policy's caused adoptions ÷ the adoption policy's (issue 18's target: ≥ 1.2);
- both oracle uplift ratios (caused ÷ the best top 3's; target ≥ 0.85 for the uplift policy);
- the held-out Qini coefficient and AUUC (the uplift model's manifest);
- the wall time of each step (inflated when other jobs share the machine: the load average is recorded).

Then, on the last seed's world, `Engine.decide(id, "general", 3)` per call with the adoption model, with
the uplift model (its trees walked in compiled code, as served), and with the uplift model called through
`Booster.predict` (as served before), alternating per call. Results merge into bench/results/uplift.json
after each seed, and a summary (medians over the seeds) at the end.

    python bench/bench_uplift.py                          # 20,000 cardholders, seeds 1 2 3, mix 1:1:1
    python bench/bench_uplift.py --seeds 4 --cardholders 40000
    python bench/bench_uplift.py --seeds 1 2 3 --summary-only     # seeds run apart (in parallel), then this
    python bench/bench_uplift.py --serving-only MODEL_DIR DATA_DIR --calls 2000   # decide timings alone
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nba.decision import Engine
from nba.model import ModelBundle, load_bundle
from training.engine_job import load_engine
from training.synth import generate_world
from training.train_job import train_model
from training.training_run import TrainOptions
from training.uplift_truth import caused_adoptions

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "uplift.json"
WORK_DIR = Path("/tmp/nba-bench-uplift")
QINI_KEYS = ("qini_coefficient", "auuc", "qini_coefficient_adoption_ranking", "auuc_adoption_ranking")


def _world(cardholders: int, seed: int, mix: str) -> Path:
    return WORK_DIR / f"world-{cardholders}-{seed}-{mix.replace(':', '-')}"


def run_seed(cardholders: int, seed: int, mix: str, threads: int) -> dict[str, Any]:
    world = _world(cardholders, seed, mix)
    data, oracle = world / "data", world / "oracle.parquet"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if world.exists():
        shutil.rmtree(world)
    generate_world(cardholders, seed, data, uplift_mix=mix, oracle_path=oracle)
    timings["generate_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    options = TrainOptions(objective="uplift", seed=seed, threads=threads, backtest_months=0)
    result = train_model(data, world / "models", options)
    timings["train_uplift_s"] = round(time.perf_counter() - started, 1)
    uplift = load_bundle(result.model_dir)
    metrics = uplift.manifest.metrics
    started = time.perf_counter()
    policies: dict[str, Path | ModelBundle] = {
        "adoption": dataclasses.replace(uplift, uplift=None),
        "uplift": uplift,
    }
    truth = caused_adoptions(data, oracle, policies, top_k=3, seed=seed)
    timings["truth_s"] = round(time.perf_counter() - started, 1)
    adoption = truth.caused["adoption"]
    return {
        "cardholders": cardholders,
        "seed": seed,
        "uplift_mix": mix,
        "model_dir": str(result.model_dir),
        "ranked_cardholders": truth.cardholders,
        "caused_adoptions_per_cardholder_top3": truth.caused,
        "adoptions_per_cardholder_top3": truth.adopted,
        "best_caused_top3": truth.best,
        "ceiling_best_over_adoption_caused": truth.best / adoption if adoption > 0 else None,
        "uplift_over_adoption_caused": truth.caused["uplift"] / adoption if adoption > 0 else None,
        "oracle_uplift_ratio": {name: truth.ratio(name) for name in truth.caused},
        "targets": {"uplift_over_adoption_caused": 1.2, "oracle_uplift_ratio_uplift": 0.85},
        "held_out_qini": {k: metrics[k] for k in QINI_KEYS if k in metrics},
        "uplift_trees": uplift.uplift.best_iteration_ if uplift.uplift is not None else None,
        "timings": timings,
        "load_average_1m_at_end": os.getloadavg()[0],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class _BoosterPredict:
    """The uplift model as it was served before: `Booster.predict` on every request."""

    def __init__(self, bundle: ModelBundle) -> None:
        assert bundle.uplift is not None
        self.booster = bundle.uplift.booster_
        self.num_iteration = bundle.uplift.best_iteration_

    def predict(self, X: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self.booster.predict(X, num_iteration=self.num_iteration, num_threads=1))


def time_decide(model_dir: Path, data_dir: Path, calls: int, warmup: int, seed: int) -> dict[str, Any]:
    """Per-call `Engine.decide` time with the adoption model, the uplift model as served (compiled walk)
    and the uplift model through Booster.predict, alternating the order per call: wall and thread CPU µs."""
    uplift_engine = load_engine(model_dir, data_dir)
    bundle = uplift_engine.bundle
    engines = {
        "adoption": _rebuilt(uplift_engine, dataclasses.replace(bundle, uplift=None)),
        "uplift_compiled": uplift_engine,
        "uplift_booster_predict": _rebuilt(
            uplift_engine,
            dataclasses.replace(bundle, uplift=_BoosterPredict(bundle)),  # type: ignore[arg-type]
        ),
    }
    ids = list(uplift_engine.profiles.ids)
    rng = np.random.default_rng(seed)
    drawn = [ids[i] for i in rng.choice(len(ids), size=calls + warmup, replace=False)]
    names = list(engines)
    for cardholder_id in drawn[:warmup]:
        for name in names:
            engines[name].decide(cardholder_id, "general", 3)
    wall = {name: np.zeros(calls) for name in names}
    cpu = {name: np.zeros(calls) for name in names}
    same_top = 0
    for k, cardholder_id in enumerate(drawn[warmup:]):
        order = names[k % len(names) :] + names[: k % len(names)]
        chosen = {}
        for name in order:
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            decision = engines[name].decide(cardholder_id, "general", 3)
            wall[name][k] = (time.perf_counter_ns() - t0) / 1e3
            cpu[name][k] = (time.thread_time_ns() - c0) / 1e3
            chosen[name] = [s.benefit_id for s in decision.suggestions]
        same_top += chosen["uplift_compiled"] == chosen["uplift_booster_predict"]
    assert bundle.uplift is not None
    return {
        "calls": calls,
        "uplift_trees": bundle.uplift.best_iteration_,
        "adoption_trees": bundle.model.best_iteration_,
        "decide_wall_us": {n: _percentiles(wall[n]) for n in names},
        "decide_cpu_us": {n: _percentiles(cpu[n]) for n in names},
        "uplift_compiled_same_suggestions_as_booster_predict": f"{same_top} of {calls}",
        "load_average_1m_at_end": os.getloadavg()[0],
    }


def _rebuilt(engine: Engine, bundle: ModelBundle) -> Engine:
    return Engine(bundle, engine.profiles, engine.catalog, engine.config)


def _percentiles(us: np.ndarray[Any, Any]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(us, q)), 1) for q in (50, 90, 99)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, sub: str | None = None) -> float:
        values = [r[key] if sub is None else r[key][sub] for r in runs]
        return float(statistics.median(values))

    return {
        "seeds": [r["seed"] for r in runs],
        "cardholders": runs[0]["cardholders"],
        "median_ceiling_best_over_adoption_caused": median("ceiling_best_over_adoption_caused"),
        "median_uplift_over_adoption_caused": median("uplift_over_adoption_caused"),
        "median_oracle_uplift_ratio_uplift": median("oracle_uplift_ratio", "uplift"),
        "median_oracle_uplift_ratio_adoption": median("oracle_uplift_ratio", "adoption"),
        "per_seed_uplift_over_adoption_caused": [r["uplift_over_adoption_caused"] for r in runs],
        "per_seed_ceiling": [r["ceiling_best_over_adoption_caused"] for r in runs],
    }


def _save(key: str, value: dict[str, Any]) -> None:
    results = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    results[key] = value
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cardholders", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--mix", default="1:1:1", help="SURE:PERSUADABLE:BETWEEN weights of the catalog")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2_000, help="decisions timed per model (default 2000)")
    parser.add_argument("--skip-serving", action="store_true", help="do not time Engine.decide")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="train nothing: summarise the seeds' saved results (and time decide on the last seed's model)",
    )
    parser.add_argument(
        "--serving-only",
        nargs=2,
        type=Path,
        metavar=("MODEL_DIR", "DATA_DIR"),
        help="only time Engine.decide with this uplift model folder on this data directory",
    )
    args = parser.parse_args()
    if args.serving_only is not None:
        model_dir, data_dir = args.serving_only
        serving = time_decide(model_dir, data_dir, args.calls, 200, 0)
        serving.update(model_dir=str(model_dir), data_dir=str(data_dir))
        serving["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        print(json.dumps(serving, indent=2))
        _save(f"serving-{data_dir.name}", serving)
        return
    prefix = f"popular-classes-{args.cardholders}-mix{args.mix}"
    runs = []
    saved = json.loads(RESULTS_PATH.read_text()) if args.summary_only and RESULTS_PATH.exists() else {}
    for seed in args.seeds:
        if args.summary_only:
            runs.append(saved[f"{prefix}-seed{seed}"])
            continue
        out = run_seed(args.cardholders, seed, args.mix, args.threads)
        print(json.dumps(out, indent=2), flush=True)
        _save(f"{prefix}-seed{seed}", out)
        runs.append(out)
    summary = summarise(runs)
    if not args.skip_serving:
        last = runs[-1]
        summary["serving"] = time_decide(
            Path(last["model_dir"]),
            _world(args.cardholders, last["seed"], args.mix) / "data",
            args.calls,
            200,
            0,
        )
    summary["load_average_1m_at_end"] = os.getloadavg()[0]
    summary["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(summary, indent=2))
    _save(f"{prefix}-summary-seeds{'-'.join(map(str, args.seeds))}", summary)


if __name__ == "__main__":
    main()
