"""Benchmark: one in-process decision (`Engine.decide`) → p50/p99/max latency against the bare LightGBM predict.

Makes (or reuses) a world of `--cardholders` (default 100,000) under /tmp and a model trained on it with
`train_model` (see bench_train.py), then, in a child process so its peak resident memory is its own:

- builds the engine with `training.engine_job.load_engine` (the profile snapshot: load time,
  `Profiles.nbytes`, and what the ids and their index cost beside it as Python objects);
- draws `--calls` different cardholders at random (plus `--warmup` others, decided first and not counted),
  collects each one's candidate matrix with the engine's own `_candidates` and `_matrix`, then times, call by
  call, `Engine.decide(id, "general", 3)` and the bare `Booster.predict(X, num_threads=1)` on that call's
  candidate rows, alternating which goes first, so both see the same machine at the same moment; each in
  wall-clock time and in the thread's CPU time (which leaves out waiting for a core on a busy machine);
- times the stages of a decision on their own (candidates, matrix, predict + calibration, choice, reasons,
  suggestions) for the same cardholders, to show where the rest of the time goes;
- times `decide` again on as many other cardholders with nothing between the calls: what calling LightGBM
  between decisions (above) costs them in cache turned over. The goals are judged on the interleaved run.

With `--big N` it does the same on a profile of an N-cardholder world scored by the same model (default
off; 900,000 took about 6.3 GB and 2 minutes to build). Prints the numbers and writes bench/results/engine.json.

    python bench/bench_engine.py
    python bench/bench_engine.py --big 1000000
    python bench/bench_engine.py --every-benefit     # every catalog benefit a candidate on every call
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from bench_train import ROOT, Measured, ensure_model, ensure_world, in_child, machine, peak_rss_gb

RESULTS_PATH = ROOT / "bench" / "results" / "engine.json"
CALL_REASON = "general"
TOP_K = 3
P99_GOAL_US = 1000.0


def _current_rss_gb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 1024**3


def latency_summary(ns: list[int] | np.ndarray[Any, Any]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max in microseconds, and the mean."""
    us = np.asarray(ns, dtype=np.float64) / 1e3
    if len(us) == 0:
        return {}
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p90_us": round(float(np.percentile(us, 90)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "p999_us": round(float(np.percentile(us, 99.9)), 1),
        "max_us": round(float(us.max()), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def _engine_child(
    conn: Connection,
    model_dir: str,
    data_dir: str,
    calls: int,
    warmup: int,
    seed: int,
    every_benefit: bool = False,
) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.decision import StageTimes
    from nba.model import load_bundle
    from training.engine_job import load_engine

    rss_before = _current_rss_gb()
    started = time.perf_counter()
    engine = load_engine(Path(model_dir), Path(data_dir))
    load_s = time.perf_counter() - started
    rss_after = _current_rss_gb()
    t = time.perf_counter()
    load_bundle(Path(model_dir))
    bundle_s = time.perf_counter() - t
    if every_benefit:
        # The stress case: every benefit in the catalog is a candidate for every cardholder (the
        # contact policy and the card's own benefits no longer narrow it), so each call scores them all.
        everything = np.arange(len(engine.benefits.ids), dtype=np.int64)
        engine._candidates = lambda row, call_reason, recent: (everything, None)  # type: ignore[method-assign]
    profiles = engine.profiles
    n = len(profiles)
    if calls + warmup > n:
        raise SystemExit(f"`--calls` + `--warmup` ({calls + warmup}) exceed the {n} cardholders")

    rng = np.random.default_rng(seed)
    drawn = rng.choice(n, size=calls + warmup, replace=False)
    warm_ids = [profiles.ids[i] for i in drawn[:warmup]]
    ids = [profiles.ids[i] for i in drawn[warmup:]]
    for cardholder_id in warm_ids:
        engine.decide(cardholder_id, CALL_REASON, TOP_K)

    # Each call's candidate matrix, as decide's scorer sees it (after the value floor), for the bare predict.
    matrices: list[np.ndarray[Any, Any] | None] = []
    for cardholder_id in ids:
        probe = StageTimes()
        engine.decide(cardholder_id, CALL_REASON, TOP_K, stages=probe)
        matrices.append(probe.matrix)
    booster = engine.bundle.model.booster_

    decide_ns = np.zeros(calls, dtype=np.int64)
    predict_ns = np.full(calls, -1, dtype=np.int64)
    # CPU time of this thread as well: on a busy 2-core machine the wall-clock tail is mostly the time
    # the process waits to be scheduled, which CPU time leaves out.
    decide_cpu_ns = np.zeros(calls, dtype=np.int64)
    predict_cpu_ns = np.full(calls, -1, dtype=np.int64)
    suggestions = np.zeros(calls, dtype=np.int64)
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    for k, (cardholder_id, X) in enumerate(zip(ids, matrices, strict=True)):
        # Alternate which goes first so neither always finds the caches warmed by the other.
        if k % 2 and X is not None:
            c0, t0 = cpu(), clock()
            booster.predict(X, num_threads=1)
            predict_ns[k], predict_cpu_ns[k] = clock() - t0, cpu() - c0
        c0, t0 = cpu(), clock()
        decision = engine.decide(cardholder_id, CALL_REASON, TOP_K)
        decide_ns[k], decide_cpu_ns[k] = clock() - t0, cpu() - c0
        if not k % 2 and X is not None:
            c0, t0 = cpu(), clock()
            booster.predict(X, num_threads=1)
            predict_ns[k], predict_cpu_ns[k] = clock() - t0, cpu() - c0
        suggestions[k] = len(decision.suggestions)

    # The stages of `decide`, for the same cardholders, timed by decide itself (`StageTimes`); the calls
    # that reach the suggestions only, as the bare predict's.
    stages: dict[str, list[int]] = {k: [] for k in (*StageTimes.STAGES, "all_stages", "bare_predict")}
    if engine.scorer.name != "tree_walk":
        raise SystemExit(
            "the engine's scorer is not 'tree_walk': the stage timings follow decide's default path"
        )
    for cardholder_id in ids:
        probe = StageTimes()
        engine.decide(cardholder_id, CALL_REASON, TOP_K, stages=probe)
        if probe.matrix is None:
            continue
        t0 = clock()
        booster.predict(probe.matrix, num_threads=1)
        bare = clock() - t0
        for name, ns in probe.ns.items():
            stages[name].append(ns)
        stages["all_stages"].append(sum(probe.ns.values()))
        stages["bare_predict"].append(bare)

    # The same calls' cost with nothing run between them (other cardholders, drawn from the ones left):
    # what the loop above adds by calling LightGBM between decisions, which turns over the core's caches.
    rest = np.setdiff1d(np.arange(n), drawn)
    alone = np.random.default_rng(seed + 1).choice(rest, size=min(calls, len(rest)), replace=False)
    alone_ns = np.zeros(len(alone), dtype=np.int64)
    alone_cpu_ns = np.zeros(len(alone), dtype=np.int64)
    for k, cardholder_id in enumerate(profiles.ids[i] for i in alone):
        c0, t0 = cpu(), clock()
        engine.decide(cardholder_id, CALL_REASON, TOP_K)
        alone_ns[k], alone_cpu_ns[k] = clock() - t0, cpu() - c0

    has_candidates = predict_ns >= 0
    rows_per_call = np.array([len(X) for X in matrices if X is not None])
    ratio_ns = decide_ns[has_candidates] / np.maximum(predict_ns[has_candidates], 1)
    conn.send(
        Measured(
            load_s,
            peak_rss_gb(),
            {
                "cardholders": n,
                "profile_as_of": profiles.as_of.isoformat(),
                "load_engine_s": round(load_s, 2),
                "load_bundle_s": round(bundle_s, 3),
                "profiles_nbytes": profiles.nbytes,
                "profiles_id_bytes": profiles.ids.nbytes,  # in profiles_nbytes: no Python object per id
                "rss_growth_on_load_gb": round(rss_after - rss_before, 3),
                "history_rows": len(profiles.history_benefit),
                "holder_columns": int(profiles.holder.shape[1]),
                "holder_count_columns": len(profiles.holder.count_columns),
                "calls": calls,
                "warmup_calls": warmup,
                "calls_with_candidates": int(has_candidates.sum()),
                "suggestions_per_call_mean": round(float(suggestions.mean()), 3),
                "candidate_rows_per_call": {
                    "median": float(np.median(rows_per_call)) if len(rows_per_call) else 0.0,
                    "max": int(rows_per_call.max()) if len(rows_per_call) else 0,
                },
                "model_features": int(matrices[int(np.argmax(has_candidates))].shape[1])  # type: ignore[union-attr]
                if has_candidates.any()
                else 0,
                "decide": latency_summary(decide_ns),
                "decide_with_candidates": latency_summary(decide_ns[has_candidates]),
                "bare_predict": latency_summary(predict_ns[has_candidates]),
                "decide_cpu": latency_summary(decide_cpu_ns),
                "decide_alone_calls": len(alone),
                "decide_alone": latency_summary(alone_ns) if len(alone) else None,
                "decide_alone_cpu": latency_summary(alone_cpu_ns) if len(alone) else None,
                "bare_predict_cpu": latency_summary(predict_cpu_ns[has_candidates]),
                "ratio_decide_to_predict": {
                    "p50": round(
                        float(np.percentile(decide_ns[has_candidates], 50))
                        / float(np.percentile(predict_ns[has_candidates], 50)),
                        2,
                    ),
                    "p99": round(
                        float(np.percentile(decide_ns[has_candidates], 99))
                        / float(np.percentile(predict_ns[has_candidates], 99)),
                        2,
                    ),
                    "median_of_paired": round(float(np.median(ratio_ns)), 2),
                    "p50_cpu": round(
                        float(np.percentile(decide_cpu_ns[has_candidates], 50))
                        / float(np.percentile(predict_cpu_ns[has_candidates], 50)),
                        2,
                    ),
                    "p99_cpu": round(
                        float(np.percentile(decide_cpu_ns[has_candidates], 99))
                        / float(np.percentile(predict_cpu_ns[has_candidates], 99)),
                        2,
                    ),
                },
                "stages_p50_us": {k: round(float(np.median(v)) / 1e3, 1) for k, v in stages.items() if v},
                "stages_p99_us": {
                    k: round(float(np.percentile(v, 99)) / 1e3, 1) for k, v in stages.items() if v
                },
            },
        )
    )


def _report(label: str, d: dict[str, Any]) -> None:
    decide, bare, ratio = d["decide"], d["bare_predict"], d["ratio_decide_to_predict"]
    print(
        f"{label}: {d['cardholders']:,} cardholders; load_engine {d['load_engine_s']:.1f} s; profiles "
        f"{d['profiles_nbytes'] / 1e6:,.1f} MB of arrays (ids {d['profiles_id_bytes'] / 1e6:,.1f} MB; "
        f"{d['holder_count_columns']} whole-number columns in 2 bytes); RSS grew {d['rss_growth_on_load_gb']:.2f} GB"
    )
    print(
        f"  decide x {d['calls']:,} different cardholders: p50 {decide['p50_us']:.0f} µs, p99 {decide['p99_us']:.0f} µs, "
        f"max {decide['max_us']:.0f} µs (goal p99 <= {P99_GOAL_US:.0f} µs)"
    )
    print(
        f"  bare Booster.predict(num_threads=1) on the same {d['calls_with_candidates']:,} candidate matrices "
        f"(median {d['candidate_rows_per_call']['median']:.0f} rows x {d['model_features']}): "
        f"p50 {bare['p50_us']:.0f} µs, p99 {bare['p99_us']:.0f} µs, max {bare['max_us']:.0f} µs; "
        f"decide/predict p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x"
    )
    cpu, bare_cpu = d["decide_cpu"], d["bare_predict_cpu"]
    print(
        f"  CPU time of the same calls (leaves out waiting for a core): decide p50 {cpu['p50_us']:.0f} µs, "
        f"p99 {cpu['p99_us']:.0f} µs, max {cpu['max_us']:.0f} µs; bare predict p50 {bare_cpu['p50_us']:.0f} µs, "
        f"p99 {bare_cpu['p99_us']:.0f} µs; ratio p50 {ratio['p50_cpu']:.2f}x, p99 {ratio['p99_cpu']:.2f}x"
    )
    if d.get("decide_alone"):
        alone, alone_cpu = d["decide_alone"], d["decide_alone_cpu"]
        print(
            f"  decide x {d['decide_alone_calls']:,} other cardholders with nothing between the calls: p50 "
            f"{alone['p50_us']:.0f} µs, p99 {alone['p99_us']:.0f} µs (CPU p50 {alone_cpu['p50_us']:.0f}, p99 "
            f"{alone_cpu['p99_us']:.0f} µs)"
        )
    stages = ", ".join(f"{k} {v:.0f}" for k, v in d["stages_p50_us"].items())
    print(f"  stages, p50 µs: {stages}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders", type=int, default=100_000, help="cardholders in the world (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument("--calls", type=int, default=10_000, help="measured calls (default 10000)")
    parser.add_argument("--warmup", type=int, default=500, help="calls before measuring (default 500)")
    parser.add_argument(
        "--big", type=int, default=0, help="also a profile of a world this large, e.g. 1000000 (default off)"
    )
    parser.add_argument("--data", type=Path, help="use this data directory instead of a generated world")
    parser.add_argument(
        "--every-benefit",
        action="store_true",
        help="make every catalog benefit a candidate on every call (the most rows a decision can score)",
    )
    args = parser.parse_args(argv)
    for name in ("cardholders", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"`--{name}` must be a positive integer, got {getattr(args, name)}")
    if args.warmup < 0 or args.big < 0:
        parser.error("`--warmup` and `--big` must be >= 0")

    data_dir, _ = ensure_world(args.cardholders, args.seed, args.data)
    model_dir = ensure_model(data_dir)
    result: dict[str, Any] = {
        "benchmark": "Engine.decide",
        "call_reason": CALL_REASON,
        "top_k": TOP_K,
        "model_dir": str(model_dir),
        "p99_goal_us": P99_GOAL_US,
    }
    measured = in_child(
        _engine_child, str(model_dir), str(data_dir), args.calls, args.warmup, args.seed, args.every_benefit
    )
    result["candidates"] = "every catalog benefit" if args.every_benefit else "the engine's own"
    result["profile"] = {
        **measured.detail,
        "data_dir": str(data_dir),
        "peak_rss_gb": round(measured.peak_rss_gb, 3),
    }
    result["meets_goal"] = measured.detail["decide"]["p99_us"] <= P99_GOAL_US
    result["meets_goal_on_cpu_time"] = measured.detail["decide_cpu"]["p99_us"] <= P99_GOAL_US
    _report("engine", result["profile"])
    n = measured.detail["cardholders"]
    result["estimate_1m_from_this_run"] = {
        "method": "linear in cardholders",
        "profiles_nbytes": round(measured.detail["profiles_nbytes"] / n * 1e6),  # ids included
        "load_engine_s": round(measured.detail["load_engine_s"] / n * 1e6, 1),
    }
    if args.big:
        big_dir, _ = ensure_world(args.big, args.seed)
        big = in_child(_engine_child, str(model_dir), str(big_dir), args.calls, args.warmup, args.seed)
        result["big_profile"] = {
            **big.detail,
            "data_dir": str(big_dir),
            "peak_rss_gb": round(big.peak_rss_gb, 3),
        }
        _report("engine on the big profile", result["big_profile"])
    result["machine"] = machine()
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = RESULTS_PATH.with_name("engine_every_benefit.json") if args.every_benefit else RESULTS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
