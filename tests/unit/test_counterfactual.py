"""Counterfactual worlds (`generate_world(..., uplift_mix=...)`): the catalog splits into sure things,
persuadables and in between as the mix says, the oracle's p_natural follows from the same hazard that
decides when people start on their own, and a pitch on the wrong call lowers the call's NPS answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import training.synth._counterfactual as counterfactual
from nba.errors import DataError
from training.cli import main
from training.synth import TABLE_NAMES, UPLIFT_CLASSES, UpliftMix, generate_world
from training.synth._counterfactual import NATURAL_WINDOW_DAYS, draw_natural_tau, p_natural

CARDHOLDERS = 1_500


@dataclass(frozen=True)
class Generated:
    tables: dict[str, pd.DataFrame]
    oracle: pd.DataFrame


def _generate(out_dir: Path, **options: object) -> Generated:
    summary = generate_world(CARDHOLDERS, seed=4, out_dir=out_dir, **options)  # type: ignore[arg-type]
    tables = {name: pq.read_table(out_dir / f"{name}.parquet").to_pandas() for name in TABLE_NAMES}
    return Generated(tables, pq.read_table(summary.oracle_path).to_pandas())


@pytest.fixture(scope="module")
def thirds(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return _generate(tmp_path_factory.mktemp("thirds") / "data", uplift_mix="1:1:1")


def test_the_mix_splits_the_catalog_and_each_class_keeps_its_ratio(thirds: Generated) -> None:
    oracle = thirds.oracle
    assert set(oracle["uplift_class"]) == set(UPLIFT_CLASSES)
    # Each benefit has one class; the shipped catalog's 27 benefits split 9 / 9 / 9.
    classes = oracle.groupby("benefit_id")["uplift_class"].nunique()
    assert (classes == 1).all()
    per_class = oracle.drop_duplicates("benefit_id")["uplift_class"].value_counts()
    assert per_class.max() - per_class.min() <= 1
    assert (oracle["p_natural"] <= oracle["p_true"] + 1e-12).all()
    ratio = (oracle["p_natural"] / oracle["p_true"]).groupby(oracle["uplift_class"]).mean()
    assert ratio["sure_thing"] >= 0.5
    assert ratio["persuadable"] <= 0.1
    assert ratio["persuadable"] < ratio["in_between"] < ratio["sure_thing"]


def test_sure_things_are_used_more_without_being_pitched(thirds: Generated) -> None:
    # Cardholders never called found their benefits on their own: sure things far more often.
    cardholders = thirds.tables["cardholders"]
    called = set(thirds.tables["calls"]["cardholder_id"])
    usage = thirds.tables["benefit_usage"]
    usage = usage[~usage["cardholder_id"].isin(called)]
    classes = thirds.oracle.drop_duplicates("benefit_id").set_index("benefit_id")["uplift_class"]
    used = usage["benefit_id"].map(classes).value_counts()
    assert len(cardholders) - len(called) > 500
    assert used["sure_thing"] > 2 * used["persuadable"]


def test_p_natural_is_the_chance_of_a_natural_start_in_the_window() -> None:
    # The days people start on their own and the oracle's p_natural come from one hazard: among draws
    # not started by day t, the share starting in [t, t + 30) is p_natural at t.
    rng = np.random.default_rng(0)
    rate = np.full(400_000, 0.004)
    tau = draw_natural_tau(rng, rate)
    for day in (0.0, 100.0, 700.0):
        alive = tau >= day
        started = (tau[alive] < day + NATURAL_WINDOW_DAYS).mean()
        expected = float(p_natural(np.asarray(0.004), np.asarray(day)))
        assert started == pytest.approx(expected, abs=0.005)
    # New cardholders explore: the first month's chance is higher than a settled one's.
    assert p_natural(np.asarray(0.004), np.asarray(0.0)) > p_natural(np.asarray(0.004), np.asarray(900.0))


def test_a_pitch_on_the_wrong_call_lowers_its_nps(
    thirds: Generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same world with the wrong-call effect switched off draws the same random numbers: scores differ
    # only on calls where a pitch was discussed on a complaint, dispute, hardship, lost-card or payment call.
    monkeypatch.setattr(counterfactual, "WRONG_CALL_NPS_DROP", {})
    harmless = _generate(tmp_path / "data", uplift_mix="1:1:1")
    pd.testing.assert_frame_equal(thirds.tables["conversations"], harmless.tables["conversations"])
    scores = thirds.tables["nps"].merge(harmless.tables["nps"], on="call_id", suffixes=("", "_harmless"))
    assert len(scores) == len(thirds.tables["nps"])
    conversations = thirds.tables["conversations"]
    discussed = conversations[conversations["outcome"] != "not_discussed"]
    wrong = discussed[
        discussed["call_reason"].isin(["complaint", "dispute", "hardship", "lost_card", "payment"])
    ]
    on_wrong_call = scores["call_id"].isin(wrong["call_id"])
    lowered = scores["score"] < scores["score_harmless"]
    assert lowered.sum() > 10
    assert not (lowered & ~on_wrong_call).any()
    assert (scores["score"] <= scores["score_harmless"]).all()


def test_the_default_world_has_no_counterfactual_columns(tmp_path: Path) -> None:
    oracle = pq.read_table(generate_world(50, seed=1, out_dir=tmp_path / "data").oracle_path)
    assert oracle.column_names == ["cardholder_id", "benefit_id", "p_true", "value_usd"]


def test_the_exploration_rate_sets_the_logged_probabilities(tmp_path: Path) -> None:
    # With ε = 1 every call is shown in a random order: each eligible benefit has k / eligible of a chance.
    summary = generate_world(400, seed=2, out_dir=tmp_path / "data", exploration_rate=1.0)
    conversations = pq.read_table(summary.out_dir / "conversations.parquet").to_pandas()
    assert summary.exploration_rate == 1.0
    per_call = conversations.groupby("call_id")["logging_prob"].nunique()
    assert (per_call == 1).all()
    assert conversations["logging_prob"].max() <= 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"uplift_mix": "1:1"}, "`uplift_mix` must be SURE:PERSUADABLE:BETWEEN"),
        ({"uplift_mix": "0:0:0"}, "not all zero"),
        ({"uplift_mix": "1:1:1", "regime_shift": pd.Timestamp("2026-04-01").date()}, "cannot be combined"),
        ({"exploration_rate": 1.5}, "`exploration_rate` must be a number in \\[0, 1\\], got 1.5"),
    ],
)
def test_bad_options_are_refused_by_name(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_world(10, seed=1, out_dir=tmp_path / "data", **options)  # type: ignore[arg-type]


def test_mix_counts_use_largest_remainders() -> None:
    assert UpliftMix(1, 1, 1).counts(27) == (9, 9, 9)
    assert UpliftMix(1, 1, 1).counts(28) == (10, 9, 9)
    assert UpliftMix(2, 1, 0).counts(10) == (7, 3, 0)
    assert UpliftMix.parse(" 1 : 2 : 3 ") == UpliftMix(1, 2, 3)


def test_nba_generate_takes_the_mix_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    assert main(["generate", "--cardholders", "40", "--out", str(out), "--uplift-mix", "1:1:1"]) == 0
    assert "uplift mix 1:1:1" in capsys.readouterr().out
    assert "p_natural" in pq.read_table(tmp_path / "data.oracle.parquet").column_names
    assert main(["generate", "--cardholders", "40", "--out", str(out), "--uplift-mix", "x"]) != 0
    assert "`uplift_mix` must be" in capsys.readouterr().err
