"""Benchmark: nba's uplift learner against its adoption model on worlds nba did not generate → true caused
adoptions of the top k by uplift ÷ top k by adoption score, the oracle uplift ratio and the ceiling.

The worlds are causalml's published synthetic uplift generators (`pip install -e '.[external]'`: causalml 0.18,
bench only, never a runtime dependency), each with its true effect per unit:

- `nie_wager_a` … `nie_wager_d`: `causalml.dataset.synthetic_data(mode=1..4)`, Nie & Wager (2018)'s setups A-D
  (A: hard nuisance, easy effect, confounded; B: a randomised trial; C: easy propensity, hard baseline, a
  constant effect; D: treated and untreated outcomes unrelated, confounded). Their outcome is continuous,
  y = b + (w − ½)·τ + noise, so the untreated and treated means are μ0 = b − τ/2 and μ1 = b + τ/2. They become
  chances of adoption by one fixed linear map of the world's own scale, p = clip((μ − q1) / (q99 − q1), 0.01,
  0.99), q1 and q99 the 1st and 99th percentiles of μ0 and μ1 together (the map keeps the order of the
  effects; only the clipped tails change them); the outcome is a Bernoulli draw from p at the generator's own
  treatment w.
- `louizos_hidden`: `synthetic_data(mode=5)`, Louizos et al. (2018)'s hidden confounder: binary already (the
  generator's own y), the chance of treatment and the effect both driven by a latent z the features only
  proxy.
- `logistic_t1` … `logistic_t3`: `causalml.dataset.make_uplift_classification_logistic` with its defaults
  (a control group and three treatments, the effect +0.02, +0.05 and −0.05 on average; binary; its own true
  chances `control_conversion_prob` and `treatment<k>_conversion_prob`): one world per treatment, its units the
  control group and that treatment's (a randomised trial, chance of treatment ½).

Each world has 20,000 units (the default), split at random: half train, a fifth stops early, the rest (30%)
is held out. Fitted on the first two slices with the models nba ships, not re-implementations:

- the adoption model: `nba.model.PropensityModel` (LightGBM, early stopping, calibrated), on the treated units
  only, as `nba train` fits it on presentations: P(adopt | treated, x);
- the uplift model: `nba.model.UpliftModel` (the DR-learner `nba train --objective uplift` fits), every unit a
  unit of its own group, `shown` = the generator's treatment, `discussed` always, `shown_prob` = the generator's
  propensity (logged, as `logging_prob` is).

On the held-out units, each ranking's top k (10%, 30%, 50% of them; 30% is the headline, chosen before any
number was seen) causes Σ (p_treated − p_untreated) adoptions, from the generator's truth. Ratios: uplift ÷
adoption (issue 18's 1.2), the oracle uplift ratio (÷ the best top k by true uplift; 0.85), the ceiling (best
÷ adoption) and the same for a perfect adoption ranking (by the true p_treated). Nothing is tuned to a world:
every model runs with the settings `nba train` uses. Writes bench/results/uplift_external.json.

    python bench/bench_uplift_external.py                    # every world, seeds 1 2 3, 20,000 units each
    python bench/bench_uplift_external.py --worlds nie_wager_d --seeds 1 --units 5000
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.model import PropensityModel, UpliftModel, UpliftSample

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "uplift_external.json"
TOP_SHARES = (0.1, 0.3, 0.5)
HEADLINE_SHARE = 0.3
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExternalWorld:
    """One external world's units: features, the generator's treatment and its chance, the observed binary
    outcome, and the truth: each unit's chance of adoption treated and untreated."""

    name: str
    X: FloatArray
    treated: npt.NDArray[np.bool_]
    propensity: FloatArray
    adopted: FloatArray
    p_treated: FloatArray
    p_untreated: FloatArray

    @property
    def uplift(self) -> FloatArray:
        result: FloatArray = self.p_treated - self.p_untreated
        return result


def _seed_generators(seed: int) -> None:
    # causalml's generators draw from numpy's and Python's global generators.
    np.random.seed(seed)
    random.seed(seed)


def _as_chances(mu0: FloatArray, mu1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Continuous means → chances by one linear map of their joint 1st-99th percentile range, clipped."""
    low, high = np.percentile(np.concatenate([mu0, mu1]), [1, 99])

    def scaled(mu: FloatArray) -> FloatArray:
        chance: FloatArray = np.clip((mu - low) / (high - low), 0.01, 0.99)
        return chance

    return scaled(mu0), scaled(mu1)


def nie_wager(mode: int) -> Callable[[int, int], ExternalWorld]:
    def make(units: int, seed: int) -> ExternalWorld:
        from causalml.dataset import synthetic_data

        _seed_generators(seed)
        _, X, w, tau, b, e = synthetic_data(mode=mode, n=units, p=5)
        p0, p1 = _as_chances(b - tau / 2, b + tau / 2)
        treated = w.astype(bool)
        draw = np.random.default_rng(seed + 10_000).random(units)
        adopted = (draw < np.where(treated, p1, p0)).astype(np.float64)
        return ExternalWorld(f"nie_wager_{'abcd'[mode - 1]}", X, treated, e, adopted, p1, p0)

    return make


def louizos_hidden(units: int, seed: int) -> ExternalWorld:
    from causalml.dataset import synthetic_data

    _seed_generators(seed)
    y, X, w, tau, b, e = synthetic_data(mode=5, n=units, p=5)
    treated = w.astype(bool)
    # b is the chance in the arm the unit got; τ the difference between the arms.
    p1 = np.where(treated, b, b + tau)
    p0 = np.where(treated, b - tau, b)
    return ExternalWorld("louizos_hidden", X, treated, e, y.astype(np.float64), p1, p0)


def logistic(arm: int) -> Callable[[int, int], ExternalWorld]:
    def make(units: int, seed: int) -> ExternalWorld:
        from causalml.dataset import make_uplift_classification_logistic

        _seed_generators(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' fragmentation warnings from the generator's frame
            frame, names = make_uplift_classification_logistic(n_samples=units // 2, random_seed=seed)
        group = f"treatment{arm}"
        rows = frame[frame["treatment_group_key"].isin(["control", group])]
        return ExternalWorld(
            f"logistic_t{arm}",
            rows[names].to_numpy(dtype=np.float64),
            (rows["treatment_group_key"] == group).to_numpy(),
            np.full(len(rows), 0.5),
            rows["conversion"].to_numpy(dtype=np.float64),
            rows[f"{group}_conversion_prob"].to_numpy(dtype=np.float64),
            rows["control_conversion_prob"].to_numpy(dtype=np.float64),
        )

    return make


WORLDS: dict[str, Callable[[int, int], ExternalWorld]] = {
    "nie_wager_a": nie_wager(1),
    "nie_wager_b": nie_wager(2),
    "nie_wager_c": nie_wager(3),
    "nie_wager_d": nie_wager(4),
    "louizos_hidden": louizos_hidden,
    "logistic_t1": logistic(1),
    "logistic_t2": logistic(2),
    "logistic_t3": logistic(3),
}


def caused_by_top(score: FloatArray, uplift: FloatArray, share: float) -> float:
    """True caused adoptions per chosen unit of the `share` of units `score` ranks highest (ties: first)."""
    k = max(1, round(share * len(score)))
    top = np.argsort(-score, kind="stable")[:k]
    return float(uplift[top].mean())


def _ratio(numerator: float, denominator: float) -> float | None:
    # A ratio of caused adoptions means something only over a positive number of them.
    return numerator / denominator if denominator > 0 else None


def run_world(name: str, units: int, seed: int, threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    world = WORLDS[name](units, seed)
    generate_s = time.perf_counter() - started
    n = len(world.X)
    names = [f"x{i}" for i in range(world.X.shape[1])]
    slice_of = np.random.default_rng(seed).permutation(n) / n
    train, valid, test = slice_of < 0.5, (slice_of >= 0.5) & (slice_of < 0.7), slice_of >= 0.7
    started = time.perf_counter()
    adoption = PropensityModel(params={"seed": seed}, num_threads=threads).fit(
        world.X[train & world.treated],
        world.adopted[train & world.treated],
        names,
        [],
        world.X[valid & world.treated],
        world.adopted[valid & world.treated],
    )
    adoption_s = time.perf_counter() - started
    started = time.perf_counter()
    fit = train | valid
    sample = UpliftSample(
        world.X[fit],
        world.treated[fit],
        np.ones(int(fit.sum()), dtype=bool),
        world.adopted[fit],
        world.propensity[fit],
        names,
        [],
        np.arange(n)[fit],
    )
    uplift = UpliftModel(seed=seed).fit(sample, valid[fit])
    uplift_s = time.perf_counter() - started
    X_test, truth = world.X[test], world.uplift[test]
    rankings = {
        "adoption": adoption.predict_proba(X_test)[:, 1],
        "uplift": uplift.predict(X_test),
        "perfect_adoption": world.p_treated[test],
        "best": truth,
        "random": np.random.default_rng(seed + 1).random(int(test.sum())),
    }
    by_share = {}
    for share in TOP_SHARES:
        caused = {policy: caused_by_top(score, truth, share) for policy, score in rankings.items()}
        by_share[f"{share:g}"] = {
            "caused_per_chosen_unit": caused,
            "uplift_over_adoption": _ratio(caused["uplift"], caused["adoption"]),
            "oracle_uplift_ratio_uplift": _ratio(caused["uplift"], caused["best"]),
            "oracle_uplift_ratio_adoption": _ratio(caused["adoption"], caused["best"]),
            "ceiling_best_over_adoption": _ratio(caused["best"], caused["adoption"]),
            "ceiling_best_over_perfect_adoption": _ratio(caused["best"], caused["perfect_adoption"]),
        }
    return {
        "world": name,
        "seed": seed,
        "units": n,
        "held_out_units": int(test.sum()),
        "treated_share": float(world.treated.mean()),
        "mean_true_uplift": float(world.uplift.mean()),
        "mean_p_untreated": float(world.p_untreated.mean()),
        # How far baseline and effect diverge: the rank correlation of a unit's chance treated with its uplift.
        "spearman_p_treated_vs_uplift": float(
            pd.Series(world.p_treated).corr(pd.Series(world.uplift), method="spearman")
        ),
        "uplift_trees": uplift.best_iteration_,
        "adoption_trees": adoption.best_iteration_,
        "by_top_share": by_share,
        "seconds": {
            "generate": round(generate_s, 1),
            "adoption_fit": round(adoption_s, 1),
            "uplift_fit": round(uplift_s, 1),
        },
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per world, the median over its seeds of each headline ratio (top 30%), and the seeds' own values."""
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["world"] for r in runs):
        mine = [r["by_top_share"][f"{HEADLINE_SHARE:g}"] for r in runs if r["world"] == name]
        row: dict[str, Any] = {}
        for key in (
            "uplift_over_adoption",
            "oracle_uplift_ratio_uplift",
            "oracle_uplift_ratio_adoption",
            "ceiling_best_over_adoption",
            "ceiling_best_over_perfect_adoption",
        ):
            values = [m[key] for m in mine]
            known = [v for v in values if v is not None]
            row[f"median_{key}"] = statistics.median(known) if len(known) == len(values) else None
            row[f"per_seed_{key}"] = values
        summary[name] = row
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2, help="the adoption model's LightGBM threads")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for name in args.worlds:
        for seed in args.seeds:
            run = run_world(name, args.units, seed, args.threads)
            headline = run["by_top_share"][f"{HEADLINE_SHARE:g}"]
            print(
                f"{name:>15} seed {seed}: caused per chosen unit (top 30%) "
                + ", ".join(f"{k} {v:.4f}" for k, v in headline["caused_per_chosen_unit"].items())
                + f"; uplift ÷ adoption {headline['uplift_over_adoption']}",
                flush=True,
            )
            runs.append(run)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at the end",
        "causalml": importlib.metadata.version("causalml"),
        "units_per_world": args.units,
        "seeds": args.seeds,
        "headline_top_share": HEADLINE_SHARE,
        "targets": {"uplift_over_adoption": 1.2, "oracle_uplift_ratio_uplift": 0.85},
        "summary_top_30_percent": summarise(runs),
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary_top_30_percent"], indent=2))
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
