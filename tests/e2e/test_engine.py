"""Engine: decisions for real cardholders of a generated world, through the trained model."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nba.contract._catalog import load_catalog
from nba.contract._mcc import load_mcc_map
from nba.contract._tables import open_data
from nba.decision import ArbitrationConfig, ContactPolicy, Engine, EngineConfig, RecentContact, StageTimes
from nba.decision._talking_points import category_words
from nba.errors import DataError, ModelError, NotFoundError
from nba.features._matrix import BenefitTable
from nba.feedback._records import feature_values
from nba.model._bundle import load_bundle
from nba.profiles._profiles import HolderMatrix
from nba.profiles._snapshots import profiles_from_snapshot
from nba.vocab import SPEND_CATEGORIES, TRAVEL_CATEGORIES
from tests.conftest import SampleModel
from training.pairs import build_pair_matrix, compute_snapshots

AS_OF = date(2026, 10, 1)


@pytest.fixture(scope="module")
def setup(sample_model: SampleModel, sample_snapshot: Path) -> tuple[Path, Engine]:
    # The session's sample model (3,000 generated cardholders, default options): no world or model of its own;
    # the profiles the service loads, from the session's snapshot of the sample as of AS_OF (the same arrays
    # build_profiles computes from the data: test_snapshots, test_profile_cache).
    data_dir = sample_model.data_dir
    bundle = load_bundle(sample_model.model_dir)
    catalog = load_catalog(data_dir / "catalog.yaml")
    assert sample_snapshot.name == AS_OF.isoformat()
    profiles = profiles_from_snapshot(sample_snapshot, bundle, BenefitTable.from_catalog(catalog))
    return data_dir, Engine(bundle, profiles, catalog, rng=np.random.default_rng(0))


def _used(data_dir: Path) -> set[tuple[str, str]]:
    frame = pd.read_parquet(data_dir / "benefit_usage.parquet")
    return set(zip(frame["cardholder_id"], frame["benefit_id"], strict=True))


def test_suggestions_are_on_the_card_unused_diverse_and_deterministic(setup: tuple[Path, Engine]) -> None:
    data_dir, engine = setup
    used = _used(data_dir)
    holders = pd.read_parquet(data_dir / "cardholders.parquet").set_index("cardholder_id")["product_id"]
    shown = 0
    for cardholder_id in engine.profiles.ids[:300]:
        decision = engine.decide(cardholder_id, "general")
        on_card = set(engine.catalog.product_by_id[holders[cardholder_id]].benefits)
        ids = [s.benefit_id for s in decision.suggestions]
        assert len(ids) == len(set(ids)) <= 3
        assert set(ids) <= on_card
        assert not {(cardholder_id, b) for b in ids} & used
        assert [s.rank for s in decision.suggestions] == list(range(1, len(ids) + 1))
        scores = [s.priority for s in decision.suggestions]
        categories = [set(engine.catalog.benefit_by_id[b].spend_categories) for b in ids]
        if len(ids) == 2 and decision.candidates > 2:
            assert not (categories[0] & categories[1]) or scores == sorted(scores, reverse=True)
        assert all(s.logging_prob == 1.0 for s in decision.suggestions)
        assert all("{" not in s.talking_point for s in decision.suggestions)
        again = engine.decide(cardholder_id, "general")
        assert [(s.benefit_id, s.priority, s.talking_point) for s in again.suggestions] == [
            (s.benefit_id, s.priority, s.talking_point) for s in decision.suggestions
        ]
        shown += len(ids)
    assert shown > 300


def test_sensitive_and_complaint_calls(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    # A cardholder with more than one candidate on a complaint call: one is shown, and none on a fraud call.
    cardholder_id = next(c for c in engine.profiles.ids if engine.decide(c, "complaint").candidates > 1)
    assert len(engine.decide(cardholder_id, "complaint").suggestions) == 1
    assert len(engine.decide(cardholder_id, "general").suggestions) > 1
    fraud = engine.decide(cardholder_id, "fraud")
    assert fraud.suggestions == () and fraud.note == "nothing is pitched on fraud calls"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cardholder_id": "NOPE"}, NotFoundError, "cardholder 'NOPE' is not in the profile snapshot"),
        ({"call_reason": "weather"}, DataError, r"`call_reason` must be one of general, .*; got 'weather'"),
        ({"top_k": 0}, DataError, r"`top_k` must be an int in \[1, 10\], got 0"),
        ({"top_k": 11}, DataError, r"`top_k` must be an int in \[1, 10\], got 11"),
    ],
)
def test_bad_requests(
    setup: tuple[Path, Engine], kwargs: dict[str, object], error: type, message: str
) -> None:
    _, engine = setup
    arguments: dict[str, object] = {
        "cardholder_id": engine.profiles.ids[0],
        "call_reason": "general",
        "top_k": 3,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        engine.decide(**arguments)  # type: ignore[arg-type]


def test_profiles_of_another_model_are_refused(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    other = replace(engine.profiles, model_version="20200101T000000Z-0000000")
    with pytest.raises(ModelError, match="built for model 20200101T000000Z-0000000"):
        Engine(engine.bundle, other, engine.catalog)
    narrow = replace(
        engine.profiles, holder=HolderMatrix.from_float32(engine.profiles.holder.to_float32()[:, :10])
    )
    with pytest.raises(ModelError, match="has 10 feature columns"):
        Engine(engine.bundle, narrow, engine.catalog)


def test_every_suggestion_of_a_call_starts_with_the_same_cardholder_columns(
    setup: tuple[Path, Engine],
) -> None:
    # What the feedback store relies on to keep them once per call (Engine.holder_bytes).
    _, engine = setup
    width = engine.holder_bytes
    assert width == 8 * len(engine.bundle.holder.feature_names)
    checked = 0
    for cardholder_id in engine.profiles.ids[:40]:
        rows = [s.features for s in engine.decide(cardholder_id, "general").suggestions]
        holder = engine.profiles.holder_rows(engine.profiles.index[cardholder_id])[0]
        for row in rows:
            assert len(row) == 8 * len(engine.bundle.manifest.feature_names)
            assert row[:width] == holder.astype("<f8").tobytes()
        checked += len(rows) > 1
    assert checked >= 10


def test_served_features_equal_the_training_jobs_for_the_same_date(setup: tuple[Path, Engine]) -> None:
    data_dir, engine = setup
    sample = list(engine.profiles.ids[:40])
    decisions = {c: engine.decide(c, "travel_notice") for c in sample}
    pairs = pd.DataFrame(
        [(c, AS_OF, s.benefit_id, "travel_notice", 1) for c, d in decisions.items() for s in d.suggestions],
        columns=["cardholder_id", "as_of", "benefit_id", "call_reason", "rank"],
    )
    import pyarrow as pa

    with open_data(data_dir) as data:
        keys = pairs[["cardholder_id"]].drop_duplicates()
        snap = pa.table(
            {
                "cardholder_id": keys["cardholder_id"].tolist(),
                "as_of": pa.array([AS_OF] * len(keys), pa.date32()),
            }
        )
        snapshots = compute_snapshots(data, snap, load_mcc_map(), engine.bundle.extra)
    bundle = engine.bundle
    matrix = build_pair_matrix(
        pairs, snapshots, bundle.holder, bundle.estimator, engine.benefits, engine.benefit_codes
    )
    served = np.array([feature_values(s.features) for d in decisions.values() for s in d.suggestions])
    # Most of the 40 cardholders are shown something on a travel notice call: the comparison is not empty.
    assert served.shape == (len(pairs), len(bundle.manifest.feature_names)) and len(pairs) >= len(sample)
    # The profile keeps features as float32: equal to float32 precision.
    np.testing.assert_allclose(served, matrix.X, rtol=1e-6, equal_nan=True)


def test_talking_point_numbers_come_from_the_cardholders_transactions(setup: tuple[Path, Engine]) -> None:
    data_dir, engine = setup
    con = duckdb.connect()
    mcc = load_mcc_map().to_arrow()
    con.register("mcc", mcc)
    checked = 0
    for cardholder_id in engine.profiles.ids[:400]:
        for s in engine.decide(cardholder_id, "general").suggestions:
            benefit = engine.catalog.benefit_by_id[s.benefit_id]
            if "{spend_90d_usd}" not in benefit.talking_point or not s.talking_point.startswith("Spent "):
                continue
            categories = ", ".join(f"'{c}'" for c in benefit.spend_categories)
            spent = con.execute(
                f"SELECT coalesce(sum(amount), 0) FROM read_parquet('{data_dir}/transactions.parquet') t "
                f"JOIN mcc m ON m.mcc = t.mcc WHERE cardholder_id = ? AND category IN ({categories}) "
                f"AND transaction_date >= DATE '{AS_OF - timedelta(days=90)}' AND transaction_date < DATE '{AS_OF}'",
                [cardholder_id],
            ).fetchall()[0][0]
            assert f"${spent:,.0f}" in s.talking_point
            checked += 1
    assert checked > 0


def test_contact_policy_suppresses_recent_declines(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    p = engine.profiles
    declined = np.flatnonzero((p.history_days_since_declined <= 90) & ~p.history_used)
    assert len(declined) > 0
    j = int(declined[0])
    row = int(np.searchsorted(p.offsets, j, side="right") - 1)
    benefit = engine.benefits.ids[int(p.history_benefit[j])]
    strict = Engine(
        engine.bundle, p, engine.catalog, EngineConfig(contact=ContactPolicy(decline_cooldown_days=365))
    )
    loose = Engine(
        engine.bundle, p, engine.catalog, EngineConfig(contact=ContactPolicy(decline_cooldown_days=0))
    )
    ids_strict = {s.benefit_id for s in strict.decide(p.ids[row], "general", top_k=10).suggestions}
    ids_loose = {s.benefit_id for s in loose.decide(p.ids[row], "general", top_k=10).suggestions}
    assert benefit not in ids_strict
    assert benefit in ids_loose


def test_recent_outcomes_apply_to_the_contact_policy_at_once(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    policy = engine.config.contact
    checked = 0
    for cardholder_id in engine.profiles.ids[:200]:
        before = engine.decide(cardholder_id, "general", top_k=10)
        shown = [s.benefit_id for s in before.suggestions]
        if not 3 <= len(shown) == before.candidates:
            continue
        first, second, third = shown[:3]
        recent = [RecentContact(first, "declined"), RecentContact(second, "accepted")]
        recent += [RecentContact(third, "already_aware")] * policy.max_presentations_90d
        recent += [RecentContact("no_such_benefit", "declined"), RecentContact(shown[-1], "not_discussed")]
        after = {s.benefit_id for s in engine.decide(cardholder_id, "general", 10, recent).suggestions}
        assert after == set(shown) - {first, second, third}
        checked += 1
    assert checked > 10


def test_the_arbitration_s_top_k_is_the_k_a_call_gets_unless_it_asks(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    five = Engine(
        engine.bundle,
        engine.profiles,
        engine.catalog,
        EngineConfig(arbitration=ArbitrationConfig(top_k=5)),
        reasoner=engine.reasoner,
    )
    counts = []
    for cardholder_id in engine.profiles.ids[:100]:
        decision = five.decide(cardholder_id, "general")
        counts.append(len(decision.suggestions))
        assert len(decision.suggestions) == min(5, decision.candidates)
        assert len(five.decide(cardholder_id, "general", top_k=2).suggestions) == min(2, decision.candidates)
        ((chosen, _),) = five.rank_batch([cardholder_id], "general")
        assert list(chosen) == [s.benefit_id for s in decision.suggestions]
    assert max(counts) == 5


def test_exploration_logs_the_real_probability(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    explorer = Engine(
        engine.bundle,
        engine.profiles,
        engine.catalog,
        EngineConfig(epsilon=0.2),
        rng=np.random.default_rng(1),
    )
    explored = 0
    for cardholder_id in engine.profiles.ids[:50]:
        decision = explorer.decide(cardholder_id, "general")
        n, k = decision.candidates, len(decision.suggestions)
        for s in decision.suggestions:
            if n > k:
                assert s.logging_prob in (pytest.approx(0.8 + 0.2 * k / n), pytest.approx(0.2 * k / n))
                explored += 1
            else:
                assert s.logging_prob == 1.0
    assert explored > 0


def test_one_routing_gives_the_model_s_own_scores_and_reasons(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    assert engine.scorer.name == "tree_walk"  # the default: the rows walk the trees once per decision
    two_calls = Engine(
        engine.bundle,
        engine.profiles,
        engine.catalog,
        EngineConfig(scorer="booster"),
        reasoner=engine.reasoner,
    )
    assert two_calls.scorer.name == "booster" and two_calls.reasoner is engine.reasoner
    compared = 0
    for cardholder_id in engine.profiles.ids[:100]:
        fast, slow = engine.decide(cardholder_id, "general"), two_calls.decide(cardholder_id, "general")
        assert [s.benefit_id for s in fast.suggestions] == [s.benefit_id for s in slow.suggestions]
        for a, b in zip(fast.suggestions, slow.suggestions, strict=True):
            assert a.p_adopt == pytest.approx(b.p_adopt, rel=1e-9, abs=1e-12)
            assert a.reasons == b.reasons
            compared += 1
    assert compared > 100


def test_decide_times_its_own_stages_and_answers_the_same(setup: tuple[Path, Engine]) -> None:
    # bench_engine's stage timings come from decide itself: a probe must not change the answer, and it must
    # see the matrix the scorer scored.
    _, engine = setup
    timed_calls = stopped_early = 0
    for cardholder_id in engine.profiles.ids[:200]:
        probe = StageTimes()
        timed = engine.decide(cardholder_id, "general", stages=probe)
        plain = engine.decide(cardholder_id, "general")
        assert timed == plain
        if probe.matrix is None:
            stopped_early += 1
            assert probe.ns["score"] == probe.ns["suggestions"] == 0
            continue
        timed_calls += 1
        assert all(ns > 0 for ns in probe.ns.values()), probe.ns
        assert probe.matrix.shape[0] == timed.candidates
        scored = engine.scorer.score(probe.matrix).p_adopt.tolist()
        assert {s.p_adopt for s in timed.suggestions} <= set(scored)
    assert timed_calls > 150
    together = StageTimes()
    for cardholder_id in engine.profiles.ids[:10]:
        engine.decide(cardholder_id, "general", stages=together)
    assert together.calls == 10 and together.ns["candidates"] > 0


def test_reasons_speak_only_of_the_benefit_s_own_categories(setup: tuple[Path, Engine]) -> None:
    _, engine = setup
    said = {f"spends on {category_words(c)}": c for c in SPEND_CATEGORIES}
    counts = []
    for cardholder_id in engine.profiles.ids[:300]:
        decision = engine.decide(cardholder_id, "general")
        for suggestion in decision.suggestions:
            own = set(engine.catalog.benefit_by_id[suggestion.benefit_id].spend_categories)
            spoken = {said[phrase] for phrase in suggestion.reasons if phrase in said}
            assert spoken <= own, (suggestion.benefit_id, suggestion.reasons)
            counts.append(len(suggestion.reasons) + len(decision.shared_reasons))
    # The agent gets two or three reasons for each card (its own and the call's), nearly always.
    assert len(counts) > 300 and np.mean(np.array(counts) < 2) < 0.05
    trips = 0
    for cardholder_id in engine.profiles.ids[:300]:
        for suggestion in engine.decide(cardholder_id, "travel_notice").suggestions:
            if "about to travel" in suggestion.reasons:
                own = set(engine.catalog.benefit_by_id[suggestion.benefit_id].spend_categories)
                assert own & TRAVEL_CATEGORIES, (suggestion.benefit_id, suggestion.reasons)
                trips += 1
    assert trips > 0


@pytest.mark.parametrize(("call_reason", "top_k"), [("general", 3), ("complaint", 3), ("travel_notice", 10)])
def test_batch_ranking_chooses_what_decide_chooses(
    setup: tuple[Path, Engine], call_reason: str, top_k: int
) -> None:
    _, engine = setup
    holders = engine.profiles.ids[:400]
    batch = engine.rank_batch(holders, call_reason, top_k)
    for cardholder_id, (chosen, priority) in zip(holders, batch, strict=True):
        decision = engine.decide(cardholder_id, call_reason, top_k)
        assert chosen == tuple(s.benefit_id for s in decision.suggestions)
        np.testing.assert_allclose(priority, [s.priority for s in decision.suggestions], rtol=1e-9)
    assert sum(len(chosen) for chosen, _ in batch) > len(holders) // 2
    with pytest.raises(NotFoundError):
        engine.rank_batch(["nobody"])


# Phrases about the cardholder's history with the benefit, or what the benefit is (no category words).
_HISTORY_PHRASES = frozenset(
    {
        "not offered this recently",
        "said yes to this before",
        "about to travel",
        "a one-time enrolment starts it",
        "nothing to sign up for",
    }
)


def _about_the_benefit(phrase: str, categories: tuple[str, ...]) -> bool:
    """Written out the obvious way: a phrase names one of the benefit's categories, or its history."""
    words = [category_words(c) for c in categories]
    shopping = any("shopping" in w for w in words)
    return (
        phrase in _HISTORY_PHRASES
        or any(w in phrase for w in words)
        or (shopping and "shopping" in phrase)
        or (set(categories) <= TRAVEL_CATEGORIES and "travel" in phrase)
    )


def test_no_phrase_is_on_two_cards_of_a_call_and_cards_lead_with_their_benefit(
    setup: tuple[Path, Engine],
) -> None:
    _, engine = setup
    cards = leading = calls_with_shared = 0
    for cardholder_id in engine.profiles.ids[:400]:
        for call_reason in ("general", "travel_notice", "rewards_question"):
            decision = engine.decide(cardholder_id, call_reason)
            on_cards = [phrase for s in decision.suggestions for phrase in s.reasons]
            assert len(on_cards) == len(set(on_cards)), decision
            assert not set(on_cards) & set(decision.shared_reasons), decision
            calls_with_shared += bool(decision.shared_reasons)
            for s in decision.suggestions:
                cards += 1
                categories = engine.catalog.benefit_by_id[s.benefit_id].spend_categories
                leading += bool(s.reasons) and _about_the_benefit(s.reasons[0], tuple(categories))
    assert cards > 1000
    assert leading / cards >= 0.9, leading / cards
    assert calls_with_shared > 0


def test_one_number_for_a_benefits_value_in_the_answer(setup: tuple[Path, Engine]) -> None:
    from nba.decision import format_usd
    from training.engine_job import format_decision

    _, engine = setup
    checked = 0
    for cardholder_id in engine.profiles.ids[:300]:
        decision = engine.decide(cardholder_id, "general")
        printed = format_decision(decision)
        for s in decision.suggestions:
            shown = format_usd(s.value_usd, estimate=True)
            # Rounded once: the answer's value is the number that is shown.
            assert format_usd(s.value_usd, estimate=True) == f"${s.value_usd:,.0f}"
            # The talking point says the value once, at its end, as the same number as the header.
            assert re.findall(r"\$[\d,]+", s.talking_point.rsplit(": ", 1)[-1]) == [shown], s.talking_point
            assert f"{s.benefit_name}  (about {shown} a year for them;" in printed
            checked += 1
    assert checked > 300


def test_nothing_below_the_value_floor_is_suggested_and_fewer_may_be_shown(
    setup: tuple[Path, Engine],
) -> None:
    _, engine = setup
    no_floor = Engine(
        engine.bundle,
        engine.profiles,
        engine.catalog,
        EngineConfig(arbitration=ArbitrationConfig(value_floor_usd=0.0)),
        reasoner=engine.reasoner,
    )
    fewer = none = 0
    for cardholder_id in engine.profiles.ids[:300]:
        floored, unfloored = (
            engine.decide(cardholder_id, "general"),
            no_floor.decide(cardholder_id, "general"),
        )
        assert all(s.value_usd >= 12 for s in floored.suggestions)
        # The floor only removes: what the unfloored engine shows above it stays (a shown $12 may be an
        # estimate of $11.50 to $12.49, on either side of the floor).
        kept = [s.benefit_id for s in unfloored.suggestions if s.value_usd >= 13]
        assert set(kept) <= {s.benefit_id for s in floored.suggestions}
        fewer += len(floored.suggestions) < len(unfloored.suggestions)
        if unfloored.suggestions and not floored.suggestions:
            none += 1
            assert floored.note == "nothing on this card is worth $12 a year or more to this cardholder"
    assert fewer > 0 and none > 0
