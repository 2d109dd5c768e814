"""Benchmark: profile snapshots → time to build one, time and peak memory to load it into Profiles, beside bare pyarrow.

Makes (or reuses) a world of `--cardholders` (default 100,000) and a model trained on it with the helpers of
bench_train.py, then, each step in its own (spawned) child process so its peak resident memory is its own:

1. build: `compute_profile_tables` (the feature SQL), `estimate_spend` (the model's spend estimator: what
   `nba profiles build --model` stores beside the tables), `write_snapshot`; then a second snapshot of the
   same tables without the estimates, which is what any other model finds;
2. `--repeat` rounds alternating `profiles_from_snapshot` on the snapshot with the model's estimates (the
   nightly refresh, served by the model it was built with) and the reference: bare
   `pyarrow.parquet.read_table` of the same three Parquet files (the columns the model reads);
3. one `profiles_from_snapshot` on the snapshot without estimates (a newly promoted model loading
   today's snapshot), which runs the spend estimator.

Each load reports its seconds, peak RSS, RSS growth, `Profiles.nbytes` and the bytes of the id arrays
(part of it); the time to check the checksums is measured on its own after the load. With
`--big N` the same runs on an N-cardholder world scored by the same model (a 900,000-cardholder world is
at /tmp/nba-bench-worlds/world-900000-s7). Prints the numbers and merges them into
bench/results/profiles.json under the cardholder count.

    python bench/bench_profiles.py
    python bench/bench_profiles.py --big 900000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench_engine import _current_rss_gb
from bench_train import (
    ROOT,
    WORK_DIR,
    Measured,
    ensure_model,
    ensure_world,
    in_child,
    machine,
    peak_rss_gb,
    save_run,
)

RESULTS_PATH = ROOT / "bench" / "results" / "profiles.json"
GOAL_LOAD_S = 10.0  # "in seconds", for a million cardholders
GOAL_PEAK_GB = 1.5


def _cpu_s() -> float:
    """CPU seconds of this process so far, every thread: what a busy machine does not inflate."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _build_child(conn: Connection, data_dir_s: str, model_dir_s: str, root_s: str) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.contract import open_data
    from nba.model import load_bundle
    from nba.profiles import compute_profile_tables, estimate_spend, write_snapshot
    from training.engine_job import mcc_map_for

    data_dir, root = Path(data_dir_s), Path(root_s)
    started = time.perf_counter()
    bundle = load_bundle(Path(model_dir_s))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    with open_data(data_dir) as data:
        as_of = data.resolve_as_of(None)
        tables = compute_profile_tables(data, as_of, mcc_map_for(data_dir), bundle.extra)
    timings["feature_sql_s"] = time.perf_counter() - t
    t = time.perf_counter()
    estimates = {bundle.version: estimate_spend(tables.features, bundle)}
    timings["spend_estimates_s"] = time.perf_counter() - t
    t = time.perf_counter()
    manifest = write_snapshot(root / "with-estimates", tables, as_of, estimates=estimates)
    timings["write_s"] = time.perf_counter() - t
    build_s = time.perf_counter() - started
    write_snapshot(root / "without-estimates", tables, as_of)
    folder = root / "with-estimates" / as_of.isoformat()
    detail = {
        "as_of": as_of.isoformat(),
        "cardholders": manifest.cardholders,
        "history_rows": manifest.history_rows,
        "feature_columns": len(manifest.feature_names),
        "timings_s": {name: round(value, 2) for name, value in timings.items()},
        "file_mb": {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(folder.iterdir())},
        "arrow_tables_mb": round(
            (tables.features.nbytes + tables.history.nbytes + tables.contact.nbytes) / 1e6
        ),
    }
    conn.send(Measured(build_s, peak_rss_gb(), detail))


def _load_child(conn: Connection, folder_s: str, model_dir_s: str, data_dir_s: str) -> None:
    sys.path.insert(0, str(ROOT))
    from nba.contract import catalog_for, load_catalog
    from nba.features import BenefitTable
    from nba.model import load_bundle
    from nba.profiles import check_snapshot, profiles_from_snapshot

    folder = Path(folder_s)
    bundle = load_bundle(Path(model_dir_s))
    benefits = BenefitTable.from_catalog(load_catalog(catalog_for(Path(data_dir_s))))
    rss_before = _current_rss_gb()
    cpu = _cpu_s()
    started = time.perf_counter()
    profiles = profiles_from_snapshot(folder, bundle, benefits)
    load_s = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    rss_growth = _current_rss_gb() - rss_before
    t = time.perf_counter()
    manifest = check_snapshot(folder)
    check_s = time.perf_counter() - t
    detail = {
        "cardholders": len(profiles),
        "used_stored_estimates": bundle.version in manifest.estimates,
        "cpu_s": round(cpu, 2),
        "check_checksums_s": round(check_s, 2),
        "profiles_nbytes": profiles.nbytes,
        "profiles_id_bytes": profiles.ids.nbytes,  # in profiles_nbytes: no Python object per id
        "rss_growth_on_load_gb": round(rss_growth, 3),
    }
    conn.send(Measured(load_s, peak_rss_gb(), detail))


def _reference_child(conn: Connection, folder_s: str, model_dir_s: str) -> None:
    """Bare pyarrow: the same three files, the same feature columns, into Arrow tables."""
    sys.path.insert(0, str(ROOT))
    import pyarrow.parquet as pq

    from nba.model import load_bundle
    from nba.profiles import CONTACT_COLUMNS, CONTACT_FILE, FEATURES_FILE, HISTORY_FILE, HISTORY_TABLE_COLUMNS

    folder = Path(folder_s)
    names = load_bundle(Path(model_dir_s)).holder.feature_names
    columns = list(dict.fromkeys(("cardholder_id", "product_id", *names)))
    cpu = _cpu_s()
    started = time.perf_counter()
    tables = [
        pq.read_table(folder / FEATURES_FILE, columns=columns),
        pq.read_table(folder / HISTORY_FILE, columns=list(HISTORY_TABLE_COLUMNS)),
        pq.read_table(folder / CONTACT_FILE, columns=list(CONTACT_COLUMNS)),
    ]
    seconds = time.perf_counter() - started
    detail = {"arrow_nbytes": sum(t.nbytes for t in tables), "cpu_s": round(_cpu_s() - cpu, 2)}
    conn.send(Measured(seconds, peak_rss_gb(), detail))


def measure(data_dir: Path, model_dir: Path, repeat: int) -> dict[str, Any]:
    """Build a snapshot of `data_dir` for `model_dir`, then time loading it against bare pyarrow."""
    root = WORK_DIR / f"profiles-{data_dir.name}"
    shutil.rmtree(root, ignore_errors=True)
    print(f"building a snapshot of {data_dir} ...", flush=True)
    built = in_child(_build_child, str(data_dir), str(model_dir), str(root))
    as_of = built.detail["as_of"]
    with_estimates = root / "with-estimates" / as_of
    without_estimates = root / "without-estimates" / as_of
    loads: list[Measured] = []
    references: list[Measured] = []
    for i in range(repeat):
        # Alternate which goes first, so both see the machine (and the page cache) alike.
        order = ("load", "reference") if i % 2 == 0 else ("reference", "load")
        for what in order:
            if what == "load":
                loads.append(in_child(_load_child, str(with_estimates), str(model_dir), str(data_dir)))
            else:
                references.append(in_child(_reference_child, str(with_estimates), str(model_dir)))
    computed = in_child(_load_child, str(without_estimates), str(model_dir), str(data_dir))
    load_s = statistics.median(m.seconds for m in loads)
    reference_s = statistics.median(m.seconds for m in references)
    load_peak = statistics.median(m.peak_rss_gb for m in loads)
    load_cpu = statistics.median(m.detail["cpu_s"] for m in loads)
    reference_cpu = statistics.median(m.detail["cpu_s"] for m in references)
    reference_peak = statistics.median(m.peak_rss_gb for m in references)
    shutil.rmtree(root, ignore_errors=True)
    return {
        "cardholders": built.detail["cardholders"],
        "data_dir": str(data_dir),
        "model_dir": str(model_dir),
        "build": {
            **built.detail,
            "seconds": round(built.seconds, 2),
            "peak_rss_gb": round(built.peak_rss_gb, 3),
        },
        "load": {
            **loads[0].detail,
            "seconds_median": round(load_s, 2),
            "seconds_all": [round(m.seconds, 2) for m in loads],
            "cpu_s_median": load_cpu,
            "peak_rss_gb_median": round(load_peak, 3),
        },
        "reference_pyarrow": {
            **references[0].detail,
            "seconds_median": round(reference_s, 2),
            "seconds_all": [round(m.seconds, 2) for m in references],
            "cpu_s_median": reference_cpu,
            "peak_rss_gb_median": round(reference_peak, 3),
        },
        "load_without_stored_estimates": {
            **computed.detail,
            "seconds": round(computed.seconds, 2),
            "peak_rss_gb": round(computed.peak_rss_gb, 3),
        },
        "ratio_load_to_reference_s": round(load_s / reference_s, 2),
        "ratio_load_to_reference_cpu_s": round(load_cpu / reference_cpu, 2),
        "ratio_load_to_reference_peak_rss": round(load_peak / reference_peak, 2),
        "repeat": repeat,
    }


def _report(r: dict[str, Any]) -> None:
    b, load, ref, computed = r["build"], r["load"], r["reference_pyarrow"], r["load_without_stored_estimates"]
    n = r["cardholders"]
    print(
        f"profiles: {n:,} cardholders, {b['history_rows']:,} history rows, {b['feature_columns']} feature columns; "
        f"files {b['file_mb']} MB"
    )
    print(f"  build {b['seconds']:.1f} s ({b['timings_s']}), peak RSS {b['peak_rss_gb']:.2f} GB")
    print(
        f"  load (stored estimates) median {load['seconds_median']:.2f} s {load['seconds_all']} "
        f"({load['cpu_s_median']:.1f} s of CPU), "
        f"peak RSS {load['peak_rss_gb_median']:.2f} GB, RSS growth {load['rss_growth_on_load_gb']:.2f} GB; "
        f"checksums alone {load['check_checksums_s']:.2f} s"
    )
    print(f"  Profiles.nbytes {load['profiles_nbytes'] / 1e6:.1f} MB (ids included: no Python object per id)")
    print(
        f"  bare pyarrow read of the same files: median {ref['seconds_median']:.2f} s {ref['seconds_all']} "
        f"({ref['cpu_s_median']:.1f} s of CPU), "
        f"peak RSS {ref['peak_rss_gb_median']:.2f} GB, {ref['arrow_nbytes'] / 1e6:.0f} MB of Arrow; "
        f"ratios load/reference: time {r['ratio_load_to_reference_s']:.2f}x, "
        f"CPU {r['ratio_load_to_reference_cpu_s']:.2f}x, "
        f"peak RSS {r['ratio_load_to_reference_peak_rss']:.2f}x"
    )
    print(
        f"  load without stored estimates (another model): {computed['seconds']:.1f} s, "
        f"peak RSS {computed['peak_rss_gb']:.2f} GB"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cardholders", type=int, default=100_000, help="cardholders in the world (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of load vs bare pyarrow (default 3)")
    parser.add_argument(
        "--big", type=int, default=0, help="also a world this large, with the same model, e.g. 900000"
    )
    parser.add_argument("--data", type=Path, help="use this data directory instead of a generated world")
    args = parser.parse_args(argv)
    if args.cardholders < 1 or args.repeat < 1 or args.big < 0:
        parser.error("`--cardholders` and `--repeat` must be positive and `--big` >= 0")
    data_dir, _ = ensure_world(args.cardholders, args.seed, args.data)
    model_dir = ensure_model(data_dir)
    worlds = [data_dir] + ([ensure_world(args.big, args.seed)[0]] if args.big else [])
    for world in worlds:
        result = measure(world, model_dir, args.repeat)
        result["goal"] = {"load_s_at_1m": GOAL_LOAD_S, "peak_rss_gb_at_1m": GOAL_PEAK_GB}
        result["machine"] = machine()
        result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        _report(result)
        save_run(result, RESULTS_PATH, "profile snapshots: build, load, bare pyarrow")
    print(f"saved to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
