"""Drift: bins and PSI equal a naive loop's, the reference round-trips through a model folder, bands are named."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from nba.drift import (
    DRIFT_FILE,
    DriftReference,
    DriftSection,
    auc,
    build_drift_reference,
    count_bins,
    drift_files,
    feature_shifts,
    fit_bins,
    load_drift_reference,
    population_stability,
    psi_band,
    rates_beside,
    relation_shifts,
    render_section,
    sampling_psi,
)
from nba.errors import DataError, ModelError
from nba.model._registry import load_model_dir, write_model_dir
from nba.profiles._profiles import HolderMatrix
from nba.vocab import PSI_SHARE_FLOOR


def naive_psi(reference: list[object], current: list[object], categorical: bool, n_bins: int = 10) -> float:
    """PSI written out: deciles of the reference (or its levels), a bin for missing, shares floored."""

    def is_missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    present = sorted(v for v in reference if not is_missing(v))  # type: ignore[type-var]
    if categorical:
        levels = sorted({str(v) for v in present})

        def bin_of(v: object) -> int:
            if is_missing(v):
                return len(levels) + 1
            return levels.index(str(v)) if str(v) in levels else len(levels)

        n = len(levels) + 2
    else:
        cuts = sorted(
            {float(np.quantile(np.array(present, dtype=float), k / n_bins)) for k in range(1, n_bins)}
        )

        def bin_of(v: object) -> int:
            if is_missing(v):
                return len(cuts) + 1
            for i, cut in enumerate(cuts):
                if float(v) <= cut:
                    return i
            return len(cuts)

        n = len(cuts) + 2
    then, now = [0] * n, [0] * n
    for v in reference:
        then[bin_of(v)] += 1
    for v in current:
        now[bin_of(v)] += 1
    total = 0.0
    for e, a in zip(then, now, strict=True):
        e_share = max(e / len(reference), PSI_SHARE_FLOOR)
        a_share = max(a / len(current), PSI_SHARE_FLOOR)
        total += (a_share - e_share) * math.log(a_share / e_share)
    return total


def _with_missing(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    out = values.astype(float).copy()
    out[rng.random(len(out)) < share] = np.nan
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numeric_psi_equals_the_naive_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = _with_missing(np.round(rng.lognormal(4, 1, 2_000), 1), rng, 0.05)
    reference[:300] = 0.0  # a point mass: deciles repeat and are merged
    current = _with_missing(np.round(rng.lognormal(4.3, 1.2, 1_500), 1), rng, 0.15)
    bins = fit_bins("spend", reference, categorical=False)
    got = population_stability(bins.counts, count_bins(bins, current))
    assert got == pytest.approx(naive_psi(list(reference), list(current), categorical=False), rel=1e-12)
    assert bins.total == len(reference) and bins.missing == int(np.isnan(reference).sum())


def test_categorical_psi_counts_unseen_levels_and_missing_apart() -> None:
    rng = np.random.default_rng(4)
    reference = list(rng.choice(["mass", "affluent", "premier"], 1_000, p=[0.7, 0.2, 0.1])) + [None] * 20
    current = list(rng.choice(["mass", "affluent", "student"], 800, p=[0.5, 0.3, 0.2])) + [None] * 80
    bins = fit_bins("segment", np.array(reference, dtype=object), categorical=True)
    assert bins.levels == ["affluent", "mass", "premier"]
    counts = count_bins(bins, np.array(current, dtype=object))
    assert counts[3] == current.count("student") and counts[4] == 80
    got = population_stability(bins.counts, counts)
    assert got == pytest.approx(naive_psi(reference, current, categorical=True), rel=1e-12)
    # Float codes (what the model's encoders give) are levels too: 2.0 reads as "2".
    codes = fit_bins("code", np.array([0.0, 1.0, 2.0, np.nan]), categorical=True)
    assert codes.levels == ["0", "1", "2"] and codes.counts == [1, 1, 1, 0, 1]


def test_the_same_distribution_is_stable_and_a_moved_one_is_not() -> None:
    rng = np.random.default_rng(7)
    bins = fit_bins("x", rng.normal(0, 1, 5_000), categorical=False)
    assert len(bins.edges) == 9 and all(abs(c - 500) <= 1 for c in bins.counts[:-1])
    same = population_stability(bins.counts, count_bins(bins, rng.normal(0, 1, 5_000)))
    moved = population_stability(bins.counts, count_bins(bins, rng.normal(0.8, 1, 5_000)))
    assert psi_band(same) == "stable" and psi_band(moved) == "major"


@pytest.mark.parametrize(
    ("psi", "band"),
    [(0.0, "stable"), (0.099, "stable"), (0.1, "moderate"), (0.249, "moderate"), (0.25, "major")],
)
def test_psi_bands_are_the_usual_ones(psi: float, band: str) -> None:
    assert psi_band(psi) == band


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ([1, 2], [1, 2, 3], r"`expected` and `actual` must be counts over the same bins"),
        ([0, 0], [1, 2], r"must each count at least one row"),
        ([1, 2], [0, 0], r"must each count at least one row"),
    ],
)
def test_bad_counts_are_refused(expected: list[int], actual: list[int], message: str) -> None:
    with pytest.raises(DataError, match=message):
        population_stability(expected, actual)


def _reference() -> DriftReference:
    rng = np.random.default_rng(3)
    n = 400
    return build_drift_reference(
        features={"spend": rng.lognormal(3, 1, n), "segment_code": rng.integers(0, 3, n).astype(float)},
        categorical={"segment_code"},
        presented_on=[date(2026, 1, 1 + i % 28) for i in range(n)],
        benefit_id=["a"] * 200 + ["b"] * 200,
        outcome=(["accepted"] * 50 + ["declined"] * 100 + ["not_discussed"] * 50) * 2,
        adopted=np.r_[np.ones(40), np.zeros(360)],
        scores=rng.uniform(0, 0.4, n),
        population=(date(2026, 2, 1), {"spend": rng.lognormal(3, 1, 1_000)}),
    )


def test_the_reference_round_trips_through_a_model_folder_and_a_changed_file_is_refused(
    tmp_path: Path,
) -> None:
    reference = _reference()
    files = {"model.txt": b"tree\n", **drift_files(reference)}
    folder = write_model_dir(
        tmp_path,
        files,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        feature_names=["spend", "segment_code"],
        catalog_fingerprint="x",
        data_summary={},
        metrics={},
        params={},
    )
    manifest = load_model_dir(folder)
    assert DRIFT_FILE in manifest.files
    loaded = load_drift_reference(folder, manifest)
    assert loaded == reference
    assert loaded is not None and loaded.benefit("a") is not None
    a = loaded.benefit("a")
    assert a is not None and (a.heard, a.accepted, a.adopted) == (150, 50, 40)
    (folder / DRIFT_FILE).write_text((folder / DRIFT_FILE).read_text().replace('"rows": 400', '"rows": 401'))
    with pytest.raises(ModelError, match=r"drift\.json: checksum mismatch"):
        load_drift_reference(folder, manifest)


def test_feature_shifts_rank_the_moved_feature_first_and_the_report_names_the_bands() -> None:
    reference = _reference()
    rng = np.random.default_rng(9)
    current = {"spend": rng.lognormal(2, 1, 300), "segment_code": rng.integers(0, 3, 300).astype(float)}
    shifts = feature_shifts(reference.features, current)
    assert [s.name for s in shifts] == ["spend", "segment_code"]
    assert shifts[0].band == "major" and shifts[1].band == "stable"
    rates = rates_beside(reference.benefits, {"a": (100, 10), "c": (5, 1)}, "accepted")
    assert [(r.benefit_id, r.reference_rate, r.current_rate) for r in rates] == [
        ("a", 50 / 150, 0.1),
        ("b", 50 / 150, None),
        ("c", None, 0.2),
    ]
    text = render_section(DriftSection("training window vs newest month", 400, 300, shifts, acceptance=rates))
    assert "| spend | " in text and "major" in text and "0.1–0.25 moderate shift" in text


def test_a_holder_matrix_column_reads_back_exactly() -> None:
    X = np.array([[1.0, 0.5, np.nan], [2.0, np.nan, 3.0], [np.nan, 1.25, 4.0]], dtype=np.float32)
    holder = HolderMatrix.from_float32(X)
    for j in range(3):
        np.testing.assert_array_equal(holder.column(j), X[:, j].astype(np.float64))
        np.testing.assert_array_equal(holder.column(j, step=2), X[::2, j].astype(np.float64))
    with pytest.raises(IndexError):
        holder.column(3)


def test_the_sampling_psi_is_what_two_samples_of_one_distribution_show() -> None:
    rng = np.random.default_rng(5)
    n, m = 600, 200
    observed = []
    for _ in range(200):
        bins = fit_bins("x", rng.normal(0, 1, n), categorical=False)
        observed.append(population_stability(bins.counts, count_bins(bins, rng.normal(0, 1, m))))
    # No missing values here: the missing bin adds nothing, as the (bins − 1) degrees of freedom say.
    assert float(np.mean(observed)) == pytest.approx(sampling_psi(n, m), rel=0.2)
    assert sampling_psi(0, 10) == float("inf")


def naive_auc(y: list[float], score: list[float]) -> float:
    """The share of (adopter, non-adopter) pairs the score orders right, ties counting half."""
    pos = [s for s, t in zip(score, y, strict=True) if t > 0]
    neg = [s for s, t in zip(score, y, strict=True) if t <= 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_equals_the_pairwise_count_with_ties() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.3).astype(float)
    score = np.round(rng.random(300) + 0.3 * y, 1)  # rounded: many ties
    assert auc(y, score) == pytest.approx(naive_auc(list(y), list(score)), rel=1e-12)
    assert math.isnan(auc(np.zeros(5), np.arange(5.0)))


def test_a_feature_whose_effect_flipped_is_named_broken_and_the_others_not() -> None:
    rng = np.random.default_rng(11)
    weights = np.array([1.5, 1.0, 0.0])  # the model leans on f0 and f1; f2 is noise to it

    def score(X: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(X @ weights)))

    def rows(f0_effect: float, n: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(0, 1, (n, 3))
        logit = f0_effect * X[:, 0] + 1.0 * X[:, 1] - 1.0
        return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)

    X_then, y_then = rows(+1.5)
    X_now, y_now = rows(-1.5)  # the relation of f0 to the outcome flipped
    shifts = relation_shifts(score, X_then, y_then, X_now, y_now, ["f0", "f1", "f2"], seed=1)
    by_name = {s.name: s for s in shifts}
    assert shifts[0].name == "f0" and by_name["f0"].broken
    assert by_name["f0"].auc_loss_then > 0.1 and by_name["f0"].auc_loss_now < -0.1
    assert not by_name["f1"].broken and by_name["f1"].auc_loss_now > 0.05
    assert abs(by_name["f2"].auc_loss_now) < 1e-12  # the model ignores it: shuffling changes nothing
    assert relation_shifts(score, X_then, y_then, X_now, y_now, ["f0", "f1", "f2"], seed=1) == shifts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repeats": 0}, r"`repeats` must be a positive integer, got 0"),
        (
            {"X_now": np.zeros((4, 2))},
            r"`X_now` must be rows × 3 features with one label per row, got \(4, 2\)",
        ),
        ({"y_then": np.zeros(4)}, r"`y_then` must hold adopters and non-adopters, got one class only"),
    ],
)
def test_relation_shifts_refuses_bad_input(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "X_then": np.zeros((4, 3)),
        "y_then": np.array([0.0, 1.0, 0.0, 1.0]),
        "X_now": np.zeros((4, 3)),
        "y_now": np.array([0.0, 1.0, 0.0, 1.0]),
        **change,
    }
    with pytest.raises(DataError, match=message):
        relation_shifts(lambda X: X[:, 0], feature_names=["a", "b", "c"], **arguments)  # type: ignore[arg-type]
