"""The detractor model (nba/model/_detractor.py), its units (training/detractor_units.py), the arbitration's NPS
term, and the generator's NPS truth (training/synth/_nps_truth.py)."""

from __future__ import annotations

import itertools
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.decision import ArbitrationConfig, Engine, EngineConfig, with_detractor_cost
from nba.errors import ModelError
from nba.model import DETRACTOR_FILE, MIN_DETRACTOR_CALLS, DetractorModel, load_bundle
from tests.conftest import SampleModel
from training.detractor_units import build_detractor_units
from training.metrics import ranking_auc
from training.synth import detractor_chance
from training.synth._parameters import NPS_NOISE_SD, NPS_RELEVANT_ACCEPT_LIFT, NPS_TENSE_PITCH_DROP

NAMES = ("x0", "x1", "reason")


def _units(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Units whose chance of a detractor is 0.15, or 0.55 where `reason` is 1 and x0 > 0 (the wrong call)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n)]).astype(np.float64)
    wrong = (X[:, 2] == 1) & (X[:, 0] > 0)
    detractor = (rng.random(n) < np.where(wrong, 0.55, 0.15)).astype(np.float64)
    valid = np.arange(n) >= int(0.8 * n)
    return X, detractor, wrong, valid


def test_the_detractor_model_learns_a_known_wrong_call_and_round_trips_through_its_text_file() -> None:
    X, detractor, _, valid = _units(6_000, 1)
    model = DetractorModel(seed=0).fit(X, detractor, np.ones(len(X)), NAMES, ["reason"], valid)
    test_X, _, test_wrong, _ = _units(2_000, 2)
    assert ranking_auc(test_wrong.astype(np.float64), model.predict(test_X)) > 0.9
    files = model.to_artifacts()
    assert list(files) == [DETRACTOR_FILE] and files[DETRACTOR_FILE].startswith(b"tree")
    again = DetractorModel.from_artifacts(files, NAMES)
    assert np.array_equal(again.predict(test_X[:50]), model.predict(test_X[:50]))
    with pytest.raises(ModelError, match="its features do not match the manifest"):
        DetractorModel.from_artifacts(files, ("a", "b"))
    with pytest.raises(ModelError, match=r"detractor\.txt: not a LightGBM model"):
        DetractorModel.from_artifacts({DETRACTOR_FILE: b"not a model"}, NAMES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detractor": np.full(100, 2.0)}, "must hold only 0 and 1"),
        ({"weight": -np.ones(100)}, "must be >= 0"),
        ({"detractor": np.zeros(100)}, "got 0 detractors among 80 training units"),
        ({"valid": np.ones(99, dtype=bool)}, "must have one row per unit"),
    ],
)
def test_the_detractor_model_refuses_bad_units(change: dict[str, np.ndarray], message: str) -> None:
    X, detractor, _, valid = _units(100, 3)
    args = {"detractor": detractor, "weight": np.ones(100), "valid": valid} | change
    with pytest.raises(ValueError, match=message):
        DetractorModel().fit(X, args["detractor"], args["weight"], NAMES, [], args["valid"])


def test_an_unfitted_detractor_model_says_what_to_do() -> None:
    with pytest.raises(ModelError, match=r"This DetractorModel is not fitted yet. Call 'fit' first."):
        DetractorModel().predict(np.zeros((1, 3)))


def _rows(outcomes: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(outcomes, columns=["call_id", "outcome"])


def test_units_share_the_call_answer_among_its_discussed_suggestions_and_count_what_is_left_out() -> None:
    rows = _rows(
        [
            ("c1", "accepted"),
            ("c1", "declined"),
            ("c1", "not_discussed"),
            ("c2", "already_aware"),
            ("c3", "accepted"),  # no answer
            ("c4", "unmarked"),
            ("c5", "not_discussed"),  # nothing discussed: the no-pitch baseline
            ("c5", "not_discussed"),
            ("c6", "not_discussed"),  # and an unmarked one, which may have been said: not a baseline
            ("c6", "unmarked"),
        ]
    )
    answers = pd.DataFrame({"call_id": ["c1", "c2", "c2", "c4", "c5", "c6"], "score": [3, 9, 6, 10, 8, 1]})
    units = build_detractor_units(rows, answers, np.ones(len(rows), dtype=bool))
    assert units.at.tolist() == [0, 1, 3]
    assert units.weight.tolist() == [0.5, 0.5, 1.0]  # each answered call weighs one in all
    assert units.detractor.tolist() == [1.0, 1.0, 1.0]  # c2 answered twice: its lowest score, 6, counts
    assert units.pitchless_at.tolist() == [6] and units.pitchless_detractor.tolist() == [0.0]
    assert units.counts == {
        "answers": 6,
        "calls_answered_twice": 1,
        "units": 3,
        "answered_calls": 2,
        "detractor_calls": 2,
        "training_calls": 2,
        "training_detractor_calls": 2,
        "no_answer": 1,
        "not_discussed": 4,
        "unmarked": 2,
        "pitchless_calls": 1,
    }
    assert units.too_few == (
        f"no detractor model: 2 answered calls with a discussed suggestion in the training slice (of 6 NPS "
        f"answers); it needs at least {MIN_DETRACTOR_CALLS}"
    )


def test_units_say_when_there_are_no_answers_or_one_kind_of_answer() -> None:
    rows = _rows([(f"c{i}", "accepted") for i in range(300)])
    none = build_detractor_units(rows, pd.DataFrame({"call_id": [], "score": []}), np.ones(300, dtype=bool))
    assert (
        none.too_few
        == "no detractor model: the data has no NPS answers at all (the nps table is empty or missing)"
    )
    happy = pd.DataFrame({"call_id": [f"c{i}" for i in range(300)], "score": [10] * 295 + [2] * 5})
    units = build_detractor_units(rows, happy, np.ones(300, dtype=bool))
    assert units.too_few == (
        "no detractor model: 5 detractors and 295 other answers among the training slice's 300 answered calls; "
        "it needs at least 20 of each"
    )
    answers = pd.DataFrame({"call_id": [f"c{i}" for i in range(300)], "score": [10, 3] * 150})
    assert build_detractor_units(rows, answers, np.ones(300, dtype=bool)).too_few is None


def test_the_nps_term_is_validated_and_subtracts_weight_times_the_chance() -> None:
    assert ArbitrationConfig().detractor_weight == 0.0
    with pytest.raises(ValueError, match=r"`detractor_weight` must be a float in \[0, 10\], got -0.5"):
        ArbitrationConfig(detractor_weight=-0.5)
    score = with_detractor_cost(np.array([0.3, 0.2, 0.1]), np.array([0.5, 0.0, 0.3]), 0.4)
    assert score.tolist() == pytest.approx([0.1, 0.2, -np.inf])  # the last pitch adds more than it brings
    same = np.array([0.3, -0.1])  # weight 0: the score itself, an uplift model's negative one too
    assert with_detractor_cost(same, np.array([0.5, 0.5]), 0.0) is same


def test_a_pitch_left_out_by_the_nps_term_is_never_chosen() -> None:
    from nba.decision._arbitration import select_diverse

    priority = np.array([0.2, -np.inf, 0.5, np.nan])
    categories = np.zeros((4, 2), dtype=bool)
    assert select_diverse(priority, categories, 4).tolist() == [2, 0, 3]
    assert select_diverse(np.full(2, -np.inf), np.zeros((2, 1), dtype=bool), 3).tolist() == []


def _slow_detractor_chance(mean: float, tense: bool, slots: list[tuple[float, float, float]]) -> float:
    """The reference: every (not discussed, discussed, discussed and a relevant take-up) state of every slot,
    one at a time."""
    total = 0.0
    for states in itertools.product(range(3), repeat=len(slots)):
        probability, latent = 1.0, mean
        for state, (discussed, relevant, points) in zip(states, slots, strict=True):
            probability *= (1 - discussed, discussed * (1 - relevant), discussed * relevant)[state]
            latent += points if state else 0.0
        if any(s == 2 for s in states):
            latent += NPS_RELEVANT_ACCEPT_LIFT
        if tense and any(states):
            latent -= NPS_TENSE_PITCH_DROP
        total += probability * 0.5 * math.erfc(-((6.5 - latent) / NPS_NOISE_SD) / math.sqrt(2))
    return total


def test_the_true_detractor_chance_equals_a_slow_loop_over_every_state() -> None:
    rng = np.random.default_rng(4)
    calls = [
        (7.0 + rng.normal(), bool(i % 2), [(*rng.random(2), -rng.random() * 2) for _ in range(i % 4)])
        for i in range(12)
    ]
    slot_call = np.array([c for c, (_, _, slots) in enumerate(calls) for _ in slots], dtype=np.int64)
    flat = [slot for _, _, slots in calls for slot in slots]
    got = detractor_chance(
        np.array([m for m, _, _ in calls]),
        np.array([t for _, t, _ in calls]),
        slot_call[::-1].copy(),  # any order of the slots
        np.array([s[0] for s in flat])[::-1].copy(),
        np.array([s[1] for s in flat])[::-1].copy(),
        np.array([s[2] for s in flat])[::-1].copy(),
    )
    want = [_slow_detractor_chance(m, t, slots) for m, t, slots in calls]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_the_sample_model_ships_a_detractor_model_under_its_checksums_and_a_tampered_one_is_refused(
    sample_model: SampleModel, tmp_path: Path
) -> None:
    bundle = load_bundle(sample_model.model_dir)
    assert bundle.detractor is not None
    assert DETRACTOR_FILE in bundle.manifest.files
    counts = bundle.manifest.data_summary["detractor_units"]
    assert counts["training_calls"] >= MIN_DETRACTOR_CALLS
    copy = tmp_path / sample_model.model_dir.name
    shutil.copytree(sample_model.model_dir, copy)
    with (copy / DETRACTOR_FILE).open("ab") as file:
        file.write(b"\n")
    with pytest.raises(ModelError) as refused:
        load_bundle(copy)
    assert DETRACTOR_FILE in str(refused.value) and "\n" not in str(refused.value)


@pytest.fixture(scope="module")
def sample_engine(sample_model: SampleModel, sample_snapshot: Path) -> Engine:
    """The sample model's engine over the sample data's profiles, built once for this module from the session's
    snapshot (computing them from the data is ~0.7 s of CPU; five tests built them seven times): tests make
    engines of its parts (`_engine`) and only read them."""
    from training.engine_job import load_engine

    return load_engine(sample_model.model_dir, sample_model.data_dir, None, EngineConfig(), sample_snapshot)


def _engine(sample_engine: Engine, weight: float, without_detractor: bool = False) -> Engine:
    config = EngineConfig(arbitration=ArbitrationConfig(detractor_weight=weight))
    bundle = replace(sample_engine.bundle, detractor=None) if without_detractor else sample_engine.bundle
    return Engine(
        bundle, sample_engine.profiles, sample_engine.catalog, config, reasoner=sample_engine.reasoner
    )


def test_weight_zero_scores_no_detractor_model_and_decides_as_a_model_without_one(
    sample_engine: Engine,
) -> None:
    with_model = _engine(sample_engine, 0.0)
    without = _engine(sample_engine, 0.0, without_detractor=True)
    assert with_model._detractor_walk is None
    ids = list(with_model.profiles.index)[:300]
    for i, cardholder_id in enumerate(ids):
        reason = ("general", "payment", "lost_card", "travel_notice")[i % 4]
        assert with_model.decide(cardholder_id, reason) == without.decide(cardholder_id, reason)


def test_a_positive_weight_ranks_by_score_less_weight_times_the_detractors_a_pitch_adds(
    sample_engine: Engine,
) -> None:
    engine = _engine(sample_engine, 2.0)
    detractor = engine.bundle.detractor
    assert detractor is not None
    lever = {b.id: b.lever for b in engine.catalog.benefits}
    changed = 0
    reference = _engine(sample_engine, 0.0)
    for i, cardholder_id in enumerate(list(engine.profiles.index)[:200]):
        reason = ("general", "payment", "lost_card")[i % 3]
        decision = engine.decide(cardholder_id, reason)
        changed += decision != reference.decide(cardholder_id, reason)
        for suggestion in decision.suggestions:
            x = np.frombuffer(suggestion.features, dtype="<f8")[None, :]
            # The request path's tree walk gives LightGBM's own chances (Booster.predict) to rounding: the
            # pitch's and the call's with nothing pitched.
            added = float(detractor.added_detractors(x)[0])
            expected = (suggestion.p_adopt - 2.0 * added) * lever[suggestion.benefit_id]
            assert suggestion.priority == pytest.approx(expected, abs=1e-9)
            assert suggestion.p_adopt > 2.0 * added  # what is shown is worth its detractors
    assert changed > 0


def test_a_heavy_weight_leaves_out_pitches_worth_less_than_their_detractors_and_says_so(
    sample_engine: Engine,
) -> None:
    light, heavy = _engine(sample_engine, 0.0), _engine(sample_engine, 10.0)
    shown = {"light": 0, "heavy": 0}
    notes = set()
    for i, cardholder_id in enumerate(list(light.profiles.index)[:200]):
        reason = ("general", "payment", "lost_card", "complaint")[i % 4]
        shown["light"] += len(light.decide(cardholder_id, reason).suggestions)
        decision = heavy.decide(cardholder_id, reason)
        shown["heavy"] += len(decision.suggestions)
        if not decision.suggestions and decision.candidates:
            notes.add(decision.note)
    assert shown["heavy"] < shown["light"]
    assert notes == {"no pitch on this call is worth the detractors it would add"}


def test_a_positive_weight_without_a_detractor_model_is_refused_in_one_line(
    sample_engine: Engine,
) -> None:
    with pytest.raises(
        ModelError, match=r"a detractor weight of 0.5 needs a detractor model, and model .* has none"
    ):
        _engine(sample_engine, 0.5, without_detractor=True)


@pytest.mark.slow
def test_on_a_counterfactual_world_the_detractor_model_ranks_wrong_call_pitches_above_the_others(
    tmp_path: Path,
) -> None:
    """A world whose pitches of some kinds on some calls lower the call's NPS (WRONG_CALL_NPS_DROP): the model
    learnt from its answers puts those pitches above the same call's other pitches, scored at the as-of (after
    every row it learnt from) for each call reason the table names pitches on."""
    from training.engine_job import load_engine
    from training.synth import WRONG_CALL_NPS_DROP, UpliftMix, generate_world
    from training.train_job import TrainOptions, train_model

    generate_world(10_000, 5, tmp_path / "data", uplift_mix=UpliftMix(1, 1, 1), exploration_rate=0.1)
    options = TrainOptions(
        num_boost_round=100, refit=False, ship_all_rows=False, backtest_months=0, threads=1
    )
    result = train_model(tmp_path / "data", tmp_path / "models", options)
    # Held-out answers, every call reason: most of an answer is the caller's own mood, so the whole-model AUC
    # is modest (0.59 on this world); the wrong-call pitches below are what it must rank.
    assert result.evaluation.metrics["detractor_auc"] > 0.55
    engine = load_engine(result.model_dir, tmp_path / "data", None, EngineConfig())
    detractor = engine.bundle.detractor
    assert detractor is not None
    kinds = {b.id: b.kind for b in engine.catalog.benefits}
    for reason in ("lost_card", "payment"):
        chances, wrong = [], []
        for row in range(2_000):
            candidates, _ = engine._candidates(row, reason, ())
            if len(candidates) == 0:
                continue
            X, _ = engine._matrix(row, engine.profiles.holder_rows(row), candidates, reason)
            chances += detractor.predict(X).tolist()
            wrong += [kinds[engine.benefits.ids[int(c)]] in WRONG_CALL_NPS_DROP[reason] for c in candidates]
        auc = ranking_auc(np.array(wrong, dtype=np.float64), np.array(chances))
        assert auc > 0.6, f"{reason}: AUC {auc:.3f} of P(detractor) for wrong-call pitches"


def test_evaluating_with_a_positive_weight_needs_a_detractor_model(
    sample_model: SampleModel, sample_engine: Engine
) -> None:
    from nba.features import BenefitTable
    from training.training_run import bundle_parts

    bundle = load_bundle(sample_model.model_dir)
    benefits = BenefitTable.from_catalog(_engine(sample_engine, 0.0).catalog)
    assert bundle_parts(bundle, benefits).detractor is None  # weight 0: nothing to score
    assert bundle_parts(bundle, benefits, 0.5).detractor is not None
    with pytest.raises(
        ModelError, match=r"--detractor-weight 0.5 needs a detractor model, and model .* has none"
    ):
        bundle_parts(replace(bundle, detractor=None), benefits, 0.5)
