"""Candidate matrix: each pair's features and value recomputed by hand from the catalog and the holder row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nba.contract._catalog import Benefit, Catalog, load_catalog
from nba.features._matrix import (
    HISTORY_COLUMNS,
    PAIR_FEATURES,
    BenefitTable,
    HolderColumns,
    PairTables,
    assemble_candidate_matrix,
    build_candidate_matrix,
    call_reason_code,
    sum_like_numpy,
)
from nba.vocab import BENEFIT_KINDS, CALL_REASONS, CATEGORY_INDEX, SPEND_CATEGORIES


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


def _catalog_with_a_benefit_without_categories() -> Catalog:
    raw = load_catalog().model_dump()
    concierge = {
        "id": "concierge",
        "name": "Concierge",
        "kind": "perk",
        "nominal_value_usd": 80.0,
        "requires_enrollment": True,
        "talking_point": "Your card includes a concierge service.",
    }
    raw["benefits"] = (*raw["benefits"], concierge)
    return Catalog.model_validate(raw)


def _reference_pair(
    holder: dict[str, float],
    est_spend: np.ndarray,
    reference_spend: np.ndarray,
    benefit: Benefit,
    base_earn_rate: float,
    point_value_usd: float,
) -> dict[str, float]:
    """The per-category pair features and the value of one pair, from their definitions, one by one."""
    categories = benefit.spend_categories

    def total(template: str) -> float:
        values = (holder[template.format(c=c)] for c in categories)
        return sum(0.0 if math.isnan(v) else v for v in values)

    days = [holder[f"days_since_{c}"] for c in categories if not math.isnan(holder[f"days_since_{c}"])]
    est = sum(float(est_spend[CATEGORY_INDEX[c]]) for c in categories)
    reference = sum(float(reference_spend[CATEGORY_INDEX[c]]) for c in categories)
    extra_earn_rate = max((benefit.earn_rate or 0.0) - base_earn_rate, 0.0)
    if benefit.kind == "earn_rate":
        value = est * extra_earn_rate * point_value_usd
    elif benefit.kind == "statement_credit":
        value = min(benefit.annual_credit_usd or 0.0, est)
    else:
        relevance = est / reference if reference > 0 else 0.0
        value = (benefit.nominal_value_usd or 0.0) * min(relevance, 1.0)
    return {
        "earn_uplift": extra_earn_rate if benefit.earn_rate else 0.0,
        "benefit_spend_90d_usd": total("spend_{c}_90d_usd"),
        "benefit_spend_365d_usd": total("spend_{c}_365d_usd"),
        "benefit_tx_365d": total("tx_{c}_365d"),
        "benefit_share_365d": total("share_{c}_365d"),
        "benefit_days_since": min(days) if days else math.nan,
        "est_annual_spend_usd": est,
        "est_annual_value_usd": value,
    }


def _random_batch(
    rng: np.random.Generator, benefits: BenefitTable, names: list[str], n_holders: int
) -> dict[str, np.ndarray]:
    """Every (cardholder, benefit) pair of `n_holders` random cardholders, in a random order."""
    holder_X = np.empty((n_holders, len(names)))
    for j, name in enumerate(names):
        if name.startswith("days_since_"):
            holder_X[:, j] = rng.integers(0, 400, n_holders)
        elif name.startswith("share_"):
            holder_X[:, j] = rng.random(n_holders)
        elif name.startswith("tx_"):
            holder_X[:, j] = rng.integers(0, 50, n_holders)
        else:
            holder_X[:, j] = rng.lognormal(5.0, 2.0, n_holders)
    holder_X[rng.random(holder_X.shape) < 0.4] = np.nan  # never bought there / not recorded
    days = [names.index(f"days_since_{c}") for c in SPEND_CATEGORIES]
    holder_X[0, days] = np.nan  # a cardholder who never bought anything
    est_spend = rng.lognormal(6.0, 1.5, (n_holders, len(SPEND_CATEGORIES)))
    est_spend[rng.random(est_spend.shape) < 0.2] = 0.0
    pair_holder = np.repeat(np.arange(n_holders), len(benefits.ids))
    pair_benefit = np.tile(np.arange(len(benefits.ids)), n_holders)
    order = rng.permutation(len(pair_holder))
    n = len(order)
    history = np.zeros((n, len(HISTORY_COLUMNS)))
    presented = rng.random(n) < 0.3
    history[presented] = rng.integers(0, 3, (int(presented.sum()), len(HISTORY_COLUMNS)))
    days_presented = HISTORY_COLUMNS.index("days_since_last_presented")
    history[:, days_presented] = np.where(presented, rng.integers(1, 365, n), np.nan)
    call_reason = np.array([call_reason_code(r) for r in rng.choice([*CALL_REASONS, "unknown"], n)])
    return {
        "holder_X": holder_X,
        "est_spend_by_category": est_spend,
        "pair_holder": pair_holder[order],
        "pair_benefit": pair_benefit[order],
        "pair_base_earn_rate": rng.choice([1.0, 1.5, 2.0], n_holders)[pair_holder[order]],
        "pair_history": history,
        "pair_call_reason": call_reason,
        "pair_rank": rng.integers(1, 4, n).astype(np.float64),
    }


def test_every_pair_column_follows_its_definition() -> None:
    catalog = _catalog_with_a_benefit_without_categories()
    benefits = BenefitTable.from_catalog(catalog)
    names = [*_holder_names(), "credit_limit_usd"]
    rng = np.random.default_rng(20261123)
    batch = _random_batch(rng, benefits, names, n_holders=6)
    reference_spend = rng.lognormal(7.0, 1.0, len(SPEND_CATEGORIES))
    reference_spend[CATEGORY_INDEX["car_rental"]] = 0.0  # car_rental_insurance: no reference, no value
    benefit_codes = np.arange(len(benefits.ids), dtype=np.float64)
    benefit_codes[benefits.index_of("concierge")] = np.nan  # added to the catalog after training
    X, value = build_candidate_matrix(
        holder_columns=HolderColumns.from_names(names),
        reference_spend_by_category=reference_spend,
        benefits=benefits,
        benefit_codes=benefit_codes,
        **batch,
    )

    n_holder = len(names)
    assert X.shape == (len(batch["pair_benefit"]), n_holder + len(PAIR_FEATURES))
    for i, (row, b) in enumerate(zip(batch["pair_holder"], batch["pair_benefit"], strict=True)):
        benefit = catalog.benefits[b]
        holder = dict(zip(names, batch["holder_X"][row].tolist(), strict=True))
        expected = {
            "benefit_id": benefit_codes[b],
            "benefit_kind": BENEFIT_KINDS.index(benefit.kind),
            "call_reason": batch["pair_call_reason"][i],
            "rank": batch["pair_rank"][i],
            "annual_credit_usd": benefit.annual_credit_usd or 0.0,
            "nominal_value_usd": benefit.nominal_value_usd or 0.0,
            "requires_enrollment": float(benefit.requires_enrollment),
            **_reference_pair(
                holder,
                batch["est_spend_by_category"][row],
                reference_spend,
                benefit,
                batch["pair_base_earn_rate"][i],
                catalog.point_value_usd,
            ),
            **dict(zip(HISTORY_COLUMNS, batch["pair_history"][i].tolist(), strict=True)),
        }
        got = dict(zip(PAIR_FEATURES, X[i, n_holder:].tolist(), strict=True))
        for name in PAIR_FEATURES:
            # Sums of three or more categories may add up in another order: equal to the last bits.
            assert got[name] == pytest.approx(expected[name], rel=1e-12, nan_ok=True), (i, benefit.id, name)
        np.testing.assert_array_equal(X[i, :n_holder], batch["holder_X"][row])
        assert value[i] == got["est_annual_value_usd"]

    pair = {name: X[:, n_holder + j] for j, name in enumerate(PAIR_FEATURES)}
    # The seed covers the cases the definitions single out.
    days = pair["benefit_days_since"]
    assert np.isnan(days).any() and not np.isnan(days).all()
    assert np.isnan(pair["benefit_id"]).sum() == 6
    assert np.isnan(pair["call_reason"]).any()
    kinds = set(pair["benefit_kind"].tolist())
    assert kinds == set(range(len(BENEFIT_KINDS)))
    concierge = batch["pair_benefit"] == benefits.index_of("concierge")
    assert (pair["benefit_spend_365d_usd"][concierge] == 0).all() and (value[concierge] == 0).all()
    assert np.isnan(days[concierge]).all()
    insurance = batch["pair_benefit"] == benefits.index_of("car_rental_insurance")
    assert (value[insurance] == 0).all() and (pair["est_annual_spend_usd"][insurance] > 0).any()


def test_one_cardholder_s_rows_equal_its_rows_in_a_batch() -> None:
    """Serving builds one cardholder's rows from prepared tables; training builds them in bulk."""
    catalog = _catalog_with_a_benefit_without_categories()
    benefits = BenefitTable.from_catalog(catalog)
    names = _holder_names()
    rng = np.random.default_rng(7)
    batch = _random_batch(rng, benefits, names, n_holders=4)
    reference_spend = rng.lognormal(7.0, 1.0, len(SPEND_CATEGORIES))
    codes = np.arange(len(benefits.ids), dtype=np.float64)
    columns = HolderColumns.from_names(names)
    X, value = build_candidate_matrix(
        holder_columns=columns,
        reference_spend_by_category=reference_spend,
        benefits=benefits,
        benefit_codes=codes,
        **batch,
    )
    tables = PairTables.from_model(benefits, codes, columns, reference_spend)
    for holder in range(4):
        rows = np.flatnonzero(batch["pair_holder"] == holder)
        one_X, one_value = assemble_candidate_matrix(
            tables,
            holder_X=batch["holder_X"][holder : holder + 1],
            est_spend_by_category=batch["est_spend_by_category"][holder : holder + 1],
            pair_holder=np.zeros(len(rows), dtype=np.int64),
            pair_benefit=batch["pair_benefit"][rows],
            pair_base_earn_rate=batch["pair_base_earn_rate"][rows],
            pair_history=batch["pair_history"][rows],
            pair_call_reason=batch["pair_call_reason"][rows],
            pair_rank=batch["pair_rank"][rows],
        )
        assert one_X.tobytes() == X[rows].tobytes()
        assert one_value.tobytes() == value[rows].tobytes()


def test_no_pairs_give_an_empty_matrix() -> None:
    benefits = BenefitTable.from_catalog(load_catalog())
    names = _holder_names()
    empty = np.zeros(0)
    X, value = build_candidate_matrix(
        np.zeros((1, len(names))),
        HolderColumns.from_names(names),
        np.zeros((1, 16)),
        np.ones(16),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        empty,
        np.zeros((0, len(HISTORY_COLUMNS))),
        empty,
        empty,
        benefits,
        np.arange(len(benefits.ids), dtype=np.float64),
    )
    assert X.shape == (0, len(names) + len(PAIR_FEATURES)) and value.shape == (0,)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 127, 128])
def test_compiled_sums_add_up_as_numpy_does_to_the_last_bit(n: int) -> None:
    """The compiled rows must carry numpy's last bits: the first models were trained on numpy's sums.

    Values spread over many magnitudes make the order of addition show in the result.
    """
    rng = np.random.default_rng(n)
    rows = rng.lognormal(0.0, 8.0, (500, n)) * rng.choice([-1.0, 1.0], (500, n))
    rows *= rng.random((500, n)) < 0.7  # zeros where a category is not covered, as the mask makes them
    expected = rows.sum(axis=1)
    got = np.array([sum_like_numpy(np.ascontiguousarray(row)) for row in rows])
    assert got.tobytes() == expected.tobytes()
    if n >= 8:  # sequential addition would not pass: the test can tell the two orders apart
        sequential = np.array([math.fsum([0.0]) + sum(row.tolist()) for row in rows])
        assert sequential.tobytes() != expected.tobytes()


def test_compiled_sums_refuse_rows_whose_numpy_order_they_do_not_follow() -> None:
    with pytest.raises(ValueError, match="up to 128 values only"):
        sum_like_numpy(np.ones(129))


def test_pairs_that_do_not_fit_the_tables_get_an_error_naming_the_argument() -> None:
    """The compiled assembly reads arrays unchecked: bad shapes and indices must fail before it does."""
    catalog = _catalog_with_a_benefit_without_categories()
    benefits = BenefitTable.from_catalog(catalog)
    names = _holder_names()
    batch = _random_batch(np.random.default_rng(5), benefits, names, n_holders=3)
    tables = PairTables.from_model(
        benefits, np.arange(len(benefits.ids), dtype=np.float64), HolderColumns.from_names(names), np.ones(16)
    )
    n_pairs = len(batch["pair_benefit"])

    def assemble(**changed: np.ndarray) -> None:
        assemble_candidate_matrix(tables, **{**batch, **changed})

    with pytest.raises(ValueError, match=rf"`pair_rank` must have shape \({n_pairs},\)"):
        assemble(pair_rank=batch["pair_rank"][:-1])
    with pytest.raises(ValueError, match="`pair_history` must have shape"):
        assemble(pair_history=batch["pair_history"][:, :4])
    with pytest.raises(ValueError, match=r"`est_spend_by_category` \(3, 16\)"):
        assemble(est_spend_by_category=batch["est_spend_by_category"][:2])
    too_far = batch["pair_holder"].copy()
    too_far[1] = 3
    with pytest.raises(ValueError, match=r"pair 1: `pair_holder` 3 must be a row of `holder_X` \(0–2\)"):
        assemble(pair_holder=too_far)
    unknown = batch["pair_benefit"].copy()
    unknown[0] = -1
    with pytest.raises(ValueError, match=r"pair 0: .*`pair_benefit` -1 a benefit of the tables"):
        assemble(pair_benefit=unknown)
    with pytest.raises(ValueError, match="`holder_X` has 40 columns; the tables read"):
        assemble(holder_X=batch["holder_X"][:, :40])
