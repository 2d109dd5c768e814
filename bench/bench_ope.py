"""Benchmark: doubly robust off-policy evaluation against the generator's truth → coverage and width of
the DR, SNDR, IPS and SNIPS intervals over fixed seeds.

For each seed a world is generated under /tmp with ε-exploration (`--epsilon`, default 0.1) and its call
truth (`call_truth=True`: per logged call and eligible benefit, the expected adoptions at each rank), a
model is trained on it (`train_model`, no backtest, no refit, `--rounds` boosting rounds at most), and the
held-out evaluation gives, for the model's policy and the baselines, the IPS, SNIPS, DR and SNDR
estimates with their 95% bootstrap intervals beside the policy's true adoptions per held-out call. Counts
how often each interval holds the truth (issue 18's target: the DR interval in ≥ 17 of 20 seeds for the
model's policy) and the mean interval widths (target: DR narrower than IPS on average). Prints a table and
writes bench/results/ope.json.

    python bench/bench_ope.py                              # 20 seeds of 4,000 cardholders
    python bench/bench_ope.py --seeds 5 --cardholders 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.synth import generate_world
from training.train_job import TrainOptions, train_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "ope.json"
FOLDER = Path("/tmp/nba-bench-ope")
FIRST_SEED = 1_000


def _interval(low: float, high: float, truth: float) -> dict[str, Any]:
    return {"low": low, "high": high, "width": high - low, "holds_truth": bool(low <= truth <= high)}


def measure(seed: int, cardholders: int, epsilon: float, rounds: int) -> dict[str, Any]:
    """One world: generate, train, and each policy's estimates beside its truth."""
    folder = FOLDER / f"{cardholders}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    world = generate_world(cardholders, seed, folder / "data", exploration_rate=epsilon, call_truth=True)
    options = TrainOptions(
        call_truth=world.call_truth_path,
        num_boost_round=rounds,
        refit=False,
        ship_all_rows=False,
        backtest_months=0,
        threads=1,
    )
    evaluation = train_model(folder / "data", folder / "models", options).evaluation
    policies: dict[str, Any] = {}
    for name, dr in evaluation.doubly_robust.items():
        truth = evaluation.true_per_call.get(name)
        ips = evaluation.off_policy.get(name)
        if truth is None or ips is None:
            continue
        policies[name] = {
            "truth": truth,
            "dr": dr.dr,
            "sndr": dr.sndr,
            "direct": dr.direct,
            "ips": ips.ips,
            "snips": ips.snips_per_call,
            "dr_ci": _interval(*dr.dr_ci, truth),
            "sndr_ci": _interval(*dr.sndr_ci, truth),
            "ips_ci": _interval(*ips.ips_ci, truth),
            "snips_ci": _interval(*ips.snips_per_call_ci, truth),
            "n_calls": dr.n_calls,
        }
    shutil.rmtree(folder, ignore_errors=True)
    return {"seed": seed, "seconds": time.perf_counter() - started, "policies": policies}


def summarise(runs: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    """Coverage counts and mean widths of each interval over the seeds, for one policy."""
    rows = [run["policies"][policy] for run in runs if policy in run["policies"]]
    summary: dict[str, Any] = {"seeds": len(rows)}
    for estimator in ("dr", "sndr", "ips", "snips"):
        key = f"{estimator}_ci"
        summary[f"{estimator}_holds_truth"] = sum(row[key]["holds_truth"] for row in rows)
        summary[f"{estimator}_mean_width"] = sum(row[key]["width"] for row in rows) / max(len(rows), 1)
        summary[f"{estimator}_mean_error"] = sum(row[estimator] - row["truth"] for row in rows) / max(
            len(rows), 1
        )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=20, help="worlds, seeds 1000, 1001, ... (default 20)")
    parser.add_argument("--cardholders", type=int, default=4_000, help="cardholders per world (default 4000)")
    parser.add_argument("--epsilon", type=float, default=0.1, help="the logging policy's ε (default 0.1)")
    parser.add_argument("--rounds", type=int, default=300, help="boosting rounds at most (default 300)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    runs = []
    for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
        run = measure(seed, args.cardholders, args.epsilon, args.rounds)
        runs.append(run)
        model = run["policies"].get("model", {})
        if model:
            print(
                f"seed {seed}: truth {model['truth']:.4f}  DR {model['dr']:.4f} "
                f"[{model['dr_ci']['low']:.4f}, {model['dr_ci']['high']:.4f}]  IPS {model['ips']:.4f} "
                f"[{model['ips_ci']['low']:.4f}, {model['ips_ci']['high']:.4f}]  ({run['seconds']:.0f} s)",
                flush=True,
            )
    policies = sorted({name for run in runs for name in run["policies"]})
    summary = {name: summarise(runs, name) for name in policies}
    print(
        f"\n{'policy':<16} {'seeds':>5} {'DR holds':>9} {'SNDR':>5} {'IPS':>5} {'SNIPS':>6}   mean width DR / IPS"
    )
    for name, row in summary.items():
        print(
            f"{name:<16} {row['seeds']:>5} {row['dr_holds_truth']:>9} {row['sndr_holds_truth']:>5} "
            f"{row['ips_holds_truth']:>5} {row['snips_holds_truth']:>6}   "
            f"{row['dr_mean_width']:.4f} / {row['ips_mean_width']:.4f}"
        )
    result = {
        "benchmark": "bench_ope",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "cardholders": args.cardholders,
        "seeds": args.seeds,
        "epsilon": args.epsilon,
        "rounds": args.rounds,
        "seconds": time.perf_counter() - started,
        "summary": summary,
        "runs": runs,
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
