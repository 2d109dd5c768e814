"""Benchmark: `nba score` (score_all) over every cardholder → wall time, rows/s, peak RSS against the bare predict.

Makes (or reuses) a world of `--cardholders` (default 100,000) under /tmp and a model trained on it with
`train_model` (see bench_train.py), then, in a child process so its peak resident memory is its own:

- builds the engine with `training.engine_job.load_engine` (timed on its own: `nba score` does it first),
- runs `score_all(engine, top_k=3, call_reason="general", out=<parquet under /tmp>)`,
- as the reference, in the same process: every cardholder's candidate rows, built with the engine's own
  `_candidates` and `_matrix` (timed too), fed to the bare `Booster.predict(num_threads=1)` once per
  cardholder, as score_all does through `decide`, and in batches of about `--batch-rows` rows, the floor
  a batch job could reach on one thread.

`--repeat 2` (or more) alternates score_all and the reference and reports medians. With `--big N` the same runs
on an N-cardholder world scored by the same model (default off; 900,000 took about 17 minutes). Prints the
numbers and merges them into bench/results/score.json under the cardholder count.

    python bench/bench_score.py
    python bench/bench_score.py --big 1000000
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from bench_train import (
    ROOT,
    Measured,
    ensure_model,
    ensure_world,
    in_child,
    machine,
    peak_rss_gb,
    save_run,
)

RESULTS_PATH = ROOT / "bench" / "results" / "score.json"
CALL_REASON = "general"
TOP_K = 3
CHUNK_CARDHOLDERS = 20_000  # candidate matrices are built and predicted this many cardholders at a time


def _reference(engine: Any, batch_rows: int) -> dict[str, float]:
    """Builds every cardholder's candidate rows and times the bare predict on them, per cardholder and batched."""
    booster = engine.bundle.model.booster_
    clock = time.perf_counter
    build_s = per_call_s = batch_s = 0.0
    rows = calls = 0
    ids = engine.profiles.ids
    for start in range(0, len(ids), CHUNK_CARDHOLDERS):
        t = clock()
        matrices = []
        for cardholder_id in ids[start : start + CHUNK_CARDHOLDERS]:
            row = engine.profiles.index[cardholder_id]
            candidates, _ = engine._candidates(row, CALL_REASON)
            if len(candidates):
                holder = engine.profiles.holder_rows(row)
                matrices.append(engine._matrix(row, holder, candidates, CALL_REASON)[0])
        build_s += clock() - t
        t = clock()
        for X in matrices:
            booster.predict(X, num_threads=1)
        per_call_s += clock() - t
        stacked = np.vstack(matrices) if matrices else np.zeros((0, 1))
        t = clock()
        for begin in range(0, len(stacked), batch_rows):
            booster.predict(stacked[begin : begin + batch_rows], num_threads=1)
        batch_s += clock() - t
        rows += len(stacked)
        calls += len(matrices)
    return {
        "candidate_rows": rows,
        "predict_calls": calls,
        "build_candidates_s": build_s,
        "per_call_predict_s": per_call_s,
        "batch_predict_s": batch_s,
    }


def _score_child(
    conn: Connection, model_dir: str, data_dir: str, out_dir: str, repeat: int, batch_rows: int
) -> None:
    sys.path.insert(0, str(ROOT))
    from training.engine_job import load_engine, score_all

    started = time.perf_counter()
    engine = load_engine(Path(model_dir), Path(data_dir))
    load_s = time.perf_counter() - started
    score_s: list[float] = []
    references: list[dict[str, float]] = []
    served = rows = 0
    for round_ in range(repeat):
        for which in ("score", "reference") if round_ % 2 == 0 else ("reference", "score"):
            gc.collect()
            if which == "score":
                out = Path(out_dir) / f"scores-{round_}.parquet"
                t = time.perf_counter()
                result = score_all(engine, TOP_K, CALL_REASON, out)
                score_s.append(time.perf_counter() - t)
                served, rows = result.cardholders, result.rows
                out.unlink()
            else:
                references.append(_reference(engine, batch_rows))
    reference = {
        key: statistics.median(r[key] for r in references) for key in references[0] if key.endswith("_s")
    }
    conn.send(
        Measured(
            time.perf_counter() - started,
            peak_rss_gb(),
            {
                "cardholders": len(engine.profiles),
                "load_engine_s": round(load_s, 2),
                "score_all_s": [round(s, 2) for s in score_s],
                "cardholders_served": served,
                "output_rows": rows,
                "candidate_rows": int(references[0]["candidate_rows"]),
                "predict_calls": int(references[0]["predict_calls"]),
                "reference_s": {k: [round(r[k], 2) for r in references] for k in reference},
                "reference_median_s": {k: round(v, 2) for k, v in reference.items()},
            },
        )
    )


def run_one(model_dir: Path, data_dir: Path, repeat: int, batch_rows: int) -> dict[str, Any]:
    out_dir = Path(tempfile.mkdtemp(prefix="nba-bench-score-", dir="/tmp"))
    try:
        measured = in_child(_score_child, str(model_dir), str(data_dir), str(out_dir), repeat, batch_rows)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    d = measured.detail
    score_s = statistics.median(d["score_all_s"])
    ref = d["reference_median_s"]
    n = d["cardholders"]
    return {
        **d,
        "data_dir": str(data_dir),
        "score_all_median_s": round(score_s, 2),
        "cardholders_per_s": round(n / score_s),
        "output_rows_per_s": round(d["output_rows"] / score_s),
        "candidate_rows_per_s": round(d["candidate_rows"] / score_s),
        "bare_per_call_candidate_rows_per_s": round(d["candidate_rows"] / ref["per_call_predict_s"]),
        "bare_batch_candidate_rows_per_s": round(d["candidate_rows"] / ref["batch_predict_s"]),
        "ratio_score_to_per_call_predict": round(score_s / ref["per_call_predict_s"], 2),
        "ratio_score_to_batch_predict": round(score_s / ref["batch_predict_s"], 2),
        "us_per_cardholder": {
            "score_all": round(score_s / n * 1e6, 1),
            "build_candidates": round(ref["build_candidates_s"] / n * 1e6, 1),
            "per_call_predict": round(ref["per_call_predict_s"] / n * 1e6, 1),
            "batch_predict": round(ref["batch_predict_s"] / n * 1e6, 1),
        },
        "peak_rss_gb": round(measured.peak_rss_gb, 3),
    }


def _print(r: dict[str, Any]) -> None:
    ref = r["reference_median_s"]
    print(
        f"score_all: {r['cardholders']:,} cardholders ({r['cardholders_served']:,} served, {r['output_rows']:,} rows) "
        f"in {r['score_all_median_s']:.1f} s = {r['cardholders_per_s']:,} cardholders/s, "
        f"{r['output_rows_per_s']:,} output rows/s, {r['candidate_rows_per_s']:,} candidate rows/s; "
        f"load_engine {r['load_engine_s']:.1f} s before it; peak RSS {r['peak_rss_gb']:.2f} GB"
    )
    print(
        f"  reference on the same {r['candidate_rows']:,} candidate rows: bare predict once per cardholder "
        f"{ref['per_call_predict_s']:.1f} s (score_all takes {r['ratio_score_to_per_call_predict']:.1f}x that), "
        f"batched {ref['batch_predict_s']:.1f} s ({r['ratio_score_to_batch_predict']:.1f}x); building the candidate "
        f"rows with _candidates/_matrix {ref['build_candidates_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders", type=int, default=100_000, help="cardholders in the world (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of score_all and the reference, alternating (default 1)"
    )
    parser.add_argument(
        "--batch-rows", type=int, default=100_000, help="rows per batched reference predict (default 100000)"
    )
    parser.add_argument(
        "--big", type=int, default=0, help="also score a world this large, e.g. 1000000 (default off)"
    )
    parser.add_argument("--data", type=Path, help="use this data directory instead of a generated world")
    args = parser.parse_args(argv)
    for name in ("cardholders", "repeat", "batch_rows"):
        if getattr(args, name) < 1:
            parser.error(
                f"`--{name.replace('_', '-')}` must be a positive integer, got {getattr(args, name)}"
            )
    if args.big < 0:
        parser.error(f"`--big` must be >= 0, got {args.big}")

    data_dir, _ = ensure_world(args.cardholders, args.seed, args.data)
    model_dir = ensure_model(data_dir)
    targets = [data_dir]
    if args.big:
        targets.append(ensure_world(args.big, args.seed)[0])
    for target in targets:
        result = run_one(model_dir, target, args.repeat, args.batch_rows)
        result.update(
            {
                "model_dir": str(model_dir),
                "top_k": TOP_K,
                "call_reason": CALL_REASON,
                "repeat": args.repeat,
                "machine": machine(),
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        _print(result)
        save_run(result, RESULTS_PATH, "score_all")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
