"""Candidate matrix: each pair's features and value recomputed by hand from the catalog and the holder row."""

from __future__ import annotations

import numpy as np
import pytest

from nba.catalog import load_catalog
from nba.matrix import (
    HISTORY_COLUMNS,
    PAIR_FEATURES,
    BenefitTable,
    HolderColumns,
    build_candidate_matrix,
    call_reason_code,
)
from nba.vocab import CATEGORY_INDEX, SPEND_CATEGORIES


def _holder_names() -> list[str]:
    names = ["tenure_months"]
    for c in SPEND_CATEGORIES:
        names += [
            f"spend_{c}_90d_usd",
            f"spend_{c}_365d_usd",
            f"tx_{c}_365d",
            f"share_{c}_365d",
            f"days_since_{c}",
        ]
    return names


def test_pairs_carry_the_benefit_spend_and_value() -> None:
    catalog = load_catalog()
    benefits = BenefitTable.from_catalog(catalog)
    names = _holder_names()
    index = {n: i for i, n in enumerate(names)}
    holder = np.full((1, len(names)), np.nan)
    holder[0, index["tenure_months"]] = 30
    for c in SPEND_CATEGORIES:
        holder[0, index[f"spend_{c}_90d_usd"]] = 0.0
        holder[0, index[f"spend_{c}_365d_usd"]] = 0.0
        holder[0, index[f"tx_{c}_365d"]] = 0.0
        holder[0, index[f"share_{c}_365d"]] = 0.0
    holder[0, index["spend_air_travel_90d_usd"]] = 300.0
    holder[0, index["spend_lodging_365d_usd"]] = 900.0
    holder[0, index["days_since_air_travel"]] = 12.0
    holder[0, index["days_since_lodging"]] = 40.0
    est = np.zeros((1, 16))
    est[0, CATEGORY_INDEX["air_travel"]] = 2000.0
    est[0, CATEGORY_INDEX["lodging"]] = 1500.0
    est[0, CATEGORY_INDEX["dining"]] = 3100.0
    reference = np.full(16, 1000.0)
    wanted = ["travel_3x", "dining_4x", "travel_credit", "lounge_access"]
    pair_benefit = np.array([benefits.index_of(b) for b in wanted], dtype=np.int64)
    base = np.array([1.5, 1.0, 1.0, 1.0])
    history = np.zeros((4, len(HISTORY_COLUMNS)))
    history[1, HISTORY_COLUMNS.index("declined_60d")] = 1
    X, value = build_candidate_matrix(
        holder,
        HolderColumns.from_names(names),
        est,
        reference,
        np.zeros(4, dtype=np.int64),
        pair_benefit,
        base,
        history,
        np.full(4, call_reason_code("travel_notice")),
        np.ones(4),
        benefits,
        np.arange(len(benefits.ids), dtype=np.float64),
    )
    assert X.shape == (4, len(names) + len(PAIR_FEATURES))
    pair = {name: X[:, len(names) + i] for i, name in enumerate(PAIR_FEATURES)}
    travel_spend = 2000 + 1500  # air + lodging (+ car rental and travel agency, 0)
    # travel_3x: (3 - 1.5) extra points per dollar, one cent each.
    assert value[0] == pytest.approx(travel_spend * 1.5 * 0.01)
    assert value[1] == pytest.approx(3100 * 3 * 0.01)
    assert value[2] == pytest.approx(300.0)  # the credit, below the spend it can be used on
    assert value[3] == pytest.approx(400.0)  # 2000 of air spend is above the 1000 reference: full value
    assert pair["benefit_spend_90d_usd"][0] == 300.0
    assert pair["benefit_spend_365d_usd"][0] == 900.0
    assert pair["benefit_days_since"][0] == 12.0
    assert np.isnan(pair["benefit_days_since"][1])  # never dined on the card
    assert pair["earn_uplift"][0] == 1.5 and pair["earn_uplift"][2] == 0.0
    assert pair["declined_60d"].tolist() == [0, 1, 0, 0]
    assert pair["call_reason"][0] == call_reason_code("travel_notice")
    assert pair["est_annual_value_usd"].tolist() == value.tolist()


def test_unknown_call_reason_is_missing() -> None:
    assert np.isnan(call_reason_code("weather"))
    assert np.isnan(call_reason_code(None))
