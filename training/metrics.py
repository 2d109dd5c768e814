"""Evaluation: labels, predicted adoption probabilities, rankings and logged calls → typed metric records.

Four families, all pure functions of numpy arrays:

- probability quality: `classification_metrics`, `calibration_table`, `lift_by_decile`;
- ranking quality over groups (a group is one call or one cardholder, with any number of candidate
  items): `ndcg_at_k`, `map_at_k`, `expected_adoptions_at_k`, `oracle_ratio`;
- off-policy evaluation of a new deterministic top-k policy from the logs of an older stochastic
  one: `estimate_off_policy` (IPS, SNIPS) and `estimate_doubly_robust` (DR, self-normalised DR);
- uplift ranking quality on treated and control units: `qini_curve` (Qini coefficient and AUUC).

Ties in scores are broken by item order: among items of a group with equal scores, the one that comes
first in the input arrays ranks higher (a stable sort), so every result is deterministic. Row numbers in
error messages are 0-based positions in the arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from nba.errors import check_param

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ESS_WARNING_BELOW: Final = 100.0
TINY_LOGGING_PROB: Final = 0.01
# Memory bound of one block of bootstrap resamples (call indices drawn at once).
_BOOTSTRAP_BLOCK_DRAWS: Final = 4_000_000


# ---------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class ClassificationMetrics:
    """How good predicted adoption probabilities are, over `n` rows.

    `auc` is NaN when `y_true` holds a single class (ROC AUC is undefined then); `auc_note` says
    why, and is empty otherwise. `log_loss` and `brier` are defined either way.
    """

    n: int
    base_rate: float
    mean_prediction: float
    auc: float
    log_loss: float
    brier: float
    auc_note: str = ""


@dataclass(frozen=True)
class CalibrationTable:
    """Predicted against observed adoption, in bins holding equal numbers of rows (quantiles of `p_pred`).

    One entry per non-empty bin, in increasing order of prediction. Bins can be fewer than requested
    when many predictions are equal (quantile edges coincide). `ece` is the expected calibration
    error: Σ_bins (count / n) · |observed_rate − mean_predicted|.
    """

    mean_predicted: tuple[float, ...]
    observed_rate: tuple[float, ...]
    count: tuple[int, ...]
    ece: float
    n: int


@dataclass(frozen=True)
class LiftTable:
    """Adoption by decile of score: decile 1 holds the 10% of rows with the highest scores.

    Deciles split the rows ranked by score into ten slices of equal size (±1 row; ties broken by row
    order), so every decile is filled once there are at least ten rows. `lift` is the decile's rate
    over `base_rate` (NaN when nobody adopted); `cumulative_capture` is the share of all adoptions
    found in deciles 1..d.
    """

    decile: tuple[int, ...]
    count: tuple[int, ...]
    mean_score: tuple[float, ...]
    rate: tuple[float, ...]
    lift: tuple[float, ...]
    cumulative_capture: tuple[float, ...]
    base_rate: float


@dataclass(frozen=True)
class OracleRatio:
    """Expected adoptions per group of the top k by the model's scores against the best any ranking can do.

    `oracle` ranks by the true adoption probabilities themselves; `ratio` = `model` / `oracle`
    (1.0 is perfect; NaN when `oracle` is 0).
    """

    ratio: float
    model: float
    oracle: float
    k: int
    n_groups: int


@dataclass(frozen=True)
class OffPolicyEstimate:
    """What a new top-k policy would have achieved on logged calls, estimated from an old policy's logs.

    - `ips`: adoptions per call under the new policy (inverse propensity scoring).
    - `snips_rate`: adoptions per benefit the new policy shows (self-normalised IPS); always in [0, 1].
    - `snips_per_call`: `snips_rate` × `new_slate_size`, adoptions per call.
    - `*_ci`: (low, high) percentile bootstrap interval over calls at `confidence`.
    - `logged_per_call`, `logged_rate`: what the logging policy observed, adoptions per call and
      per benefit shown.
    - `ess`: effective sample size of the importance weights, (Σw)² / Σw² (0 when no weight).
    - `min_weighted_logging_prob`: the smallest `logging_prob` among rows the new policy shows.
    - `warning`: why the estimate should not be trusted, or None.
    """

    ips: float
    ips_ci: tuple[float, float]
    snips_rate: float
    snips_rate_ci: tuple[float, float]
    snips_per_call: float
    snips_per_call_ci: tuple[float, float]
    new_slate_size: float
    logged_per_call: float
    logged_rate: float
    n_calls: int
    n_rows: int
    ess: float
    min_weighted_logging_prob: float
    confidence: float
    n_bootstrap: int
    warning: str | None


@dataclass(frozen=True)
class DoublyRobustEstimate:
    """Adoptions per call a new top-k policy would have had on logged calls, doubly robust.

    - `direct`: the outcome model's own answer, Σ q̂ over the new policy's slates per call (DM);
    - `dr`: `direct` plus the importance-weighted residuals of the logged rows the new policy shows,
      Σ w · (reward − q̂) per call; unbiased when the logging probabilities are right, whatever q̂;
    - `sndr`: `direct` plus the residuals' self-normalised mean, Σ w · (reward − q̂) / Σ w × the new slate
      size (a little bias, much less variance when weights are large);
    - `*_ci`: (low, high) percentile bootstrap interval over calls at `confidence`.
    """

    direct: float
    direct_ci: tuple[float, float]
    dr: float
    dr_ci: tuple[float, float]
    sndr: float
    sndr_ci: tuple[float, float]
    new_slate_size: float
    n_calls: int
    n_rows: int
    confidence: float
    n_bootstrap: int


# ---------------------------------------------------------------------------------------------------
# Probability quality


def classification_metrics(y_true: npt.ArrayLike, p_pred: npt.ArrayLike) -> ClassificationMetrics:
    """ROC AUC, log loss, Brier score, base rate and mean prediction of adoption probabilities.

    Takes `y_true` (0/1 adoption labels) and `p_pred` (probabilities in [0, 1]) of equal length.
    Raises ValueError naming the parameter when either is empty, of other lengths or out of range.

    >>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> m.auc, m.base_rate
    (0.75, 0.5)
    """
    y = _binary("y_true", y_true)
    p = _probabilities("p_pred", p_pred)
    _same_length(("y_true", y), ("p_pred", p))
    positives = int(y.sum())
    if 0 < positives < y.size:
        auc = float(roc_auc_score(y, p))
        note = ""
    else:
        auc = float("nan")
        only = "1 (everyone adopted)" if positives else "0 (nobody adopted)"
        note = f"AUC undefined: `y_true` holds only the class {only}"
    return ClassificationMetrics(
        n=int(y.size),
        base_rate=float(y.mean()),
        mean_prediction=float(p.mean()),
        auc=auc,
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p, pos_label=1)),
        auc_note=note,
    )


def ranking_auc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """ROC AUC of any score (not only probabilities: a baseline's spend or value); NaN with one class.

    >>> ranking_auc([0, 0, 1, 1], [10.0, 400.0, 350.0, 800.0])
    0.75
    """
    y = _binary("y_true", y_true)
    s = _finite_or_nan("score", score)
    _same_length(("y_true", y), ("score", s))
    if not 0 < y.sum() < y.size:
        return float("nan")
    # A missing score ranks below every known one.
    floor = float(np.nanmin(s)) - 1.0 if np.isfinite(s).any() else 0.0
    return float(roc_auc_score(y, np.nan_to_num(s, nan=floor)))


def calibration_table(y_true: npt.ArrayLike, p_pred: npt.ArrayLike, n_bins: int = 10) -> CalibrationTable:
    """Mean prediction, observed adoption rate and row count in `n_bins` quantile bins, and the ECE.

    Bins are the ones of scikit-learn's `calibration_curve(strategy="quantile")`: edges at quantiles
    of `p_pred`, a row on an inner edge goes to the lower bin, empty bins are left out.
    """
    y = _binary("y_true", y_true)
    p = _probabilities("p_pred", p_pred)
    _same_length(("y_true", y), ("p_pred", p))
    n_bins = _positive_int("n_bins", n_bins)
    edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    bin_of_row = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bin_of_row, minlength=n_bins)
    sum_pred = _sum_by(bin_of_row, p, n_bins)
    sum_true = _sum_by(bin_of_row, y, n_bins)
    filled = count > 0
    count, sum_pred, sum_true = count[filled], sum_pred[filled], sum_true[filled]
    mean_predicted = sum_pred / count
    observed = sum_true / count
    ece = float(np.sum(count * np.abs(observed - mean_predicted)) / y.size)
    return CalibrationTable(
        mean_predicted=_floats(mean_predicted),
        observed_rate=_floats(observed),
        count=tuple(int(c) for c in count),
        ece=ece,
        n=int(y.size),
    )


def lift_by_decile(y_true: npt.ArrayLike, p_pred: npt.ArrayLike) -> LiftTable:
    """Adoption rate and lift over the base rate in each decile of score (decile 1 = highest scores)."""
    y = _binary("y_true", y_true)
    p = _finite("p_pred", p_pred)
    _same_length(("y_true", y), ("p_pred", p))
    n = y.size
    order = np.argsort(-p, kind="stable")
    decile_of_rank = np.arange(n, dtype=np.int64) * 10 // n
    count = np.bincount(decile_of_rank, minlength=10)
    adopted = _sum_by(decile_of_rank, y[order], 10)
    score_sum = _sum_by(decile_of_rank, p[order], 10)
    filled = count > 0
    count, adopted, score_sum = count[filled], adopted[filled], score_sum[filled]
    base_rate = float(y.mean())
    rate = adopted / count
    total = adopted.sum()
    lift = rate / base_rate if base_rate > 0 else np.full(rate.shape, np.nan)
    capture = np.cumsum(adopted) / total if total > 0 else np.full(rate.shape, np.nan)
    return LiftTable(
        decile=tuple(int(d) + 1 for d in np.flatnonzero(filled)),
        count=tuple(int(c) for c in count),
        mean_score=_floats(score_sum / count),
        rate=_floats(rate),
        lift=_floats(lift),
        cumulative_capture=_floats(capture),
        base_rate=base_rate,
    )


# ---------------------------------------------------------------------------------------------------
# Ranking quality over groups


def ndcg_at_k(group_ids: npt.ArrayLike, scores: npt.ArrayLike, relevance: npt.ArrayLike, k: int = 3) -> float:
    """Mean NDCG@k over the groups that have some relevance, items ranked by `scores` within each group.

    DCG@k = Σ_{rank r < k} relevance / log2(r + 2) (r from 0, linear gain, so `relevance` may be 0/1
    labels, grades or probabilities ≥ 0); NDCG@k = DCG@k / the DCG@k of the items sorted by relevance.
    Groups whose relevance is all 0 have no ideal ranking and are left out of the mean; NaN when no
    group is left. Ties in `scores` are broken by item order (stable sort).
    """
    groups = _groups(group_ids)
    s = _finite("scores", scores)
    rel = _finite("relevance", relevance)
    _same_length(("group_ids", groups.codes), ("scores", s), ("relevance", rel))
    _non_negative("relevance", rel)
    k = _positive_int("k", k)
    dcg = groups.top_k_discounted_sum(s, rel, k)
    ideal = groups.top_k_discounted_sum(rel, rel, k)
    kept = ideal > 0
    if not kept.any():
        return float("nan")
    return float(np.mean(dcg[kept] / ideal[kept]))


def map_at_k(group_ids: npt.ArrayLike, scores: npt.ArrayLike, relevance: npt.ArrayLike, k: int = 3) -> float:
    """Mean average precision at k over the groups that have at least one relevant item.

    For a group with R relevant items (`relevance` 0/1), AP@k = Σ_{rank r < k, item relevant}
    precision@(r + 1) / min(k, R). Groups with no relevant item are left out of the mean (their AP is
    undefined); NaN when no group is left. Ties in `scores` are broken by item order (stable sort).
    """
    groups = _groups(group_ids)
    s = _finite("scores", scores)
    rel = _binary("relevance", relevance)
    _same_length(("group_ids", groups.codes), ("scores", s), ("relevance", rel))
    k = _positive_int("k", k)
    order, rank = groups.rank_by(s)
    rel_sorted = rel[order]
    codes_sorted = groups.codes[order]
    hits_so_far = np.cumsum(rel_sorted)
    hits_before_group = (hits_so_far - rel_sorted)[groups.starts]
    hits_upto = hits_so_far - hits_before_group[codes_sorted]
    precision_terms = np.where((rank < k) & (rel_sorted == 1), hits_upto / (rank + 1.0), 0.0)
    ap_sum = _sum_by(codes_sorted, precision_terms, groups.n_groups)
    n_relevant = _sum_by(groups.codes, rel, groups.n_groups)
    kept = n_relevant > 0
    if not kept.any():
        return float("nan")
    return float(np.mean(ap_sum[kept] / np.minimum(k, n_relevant[kept])))


def expected_adoptions_at_k(
    group_ids: npt.ArrayLike, scores: npt.ArrayLike, p_true: npt.ArrayLike, k: int = 3
) -> float:
    """Expected adoptions per group when the top k items by `scores` are shown: mean of Σ_top-k p_true.

    Every group counts (a group with fewer than k items contributes all of them). Ties in `scores`
    are broken by item order (stable sort).
    """
    groups = _groups(group_ids)
    s = _finite("scores", scores)
    p = _probabilities("p_true", p_true)
    _same_length(("group_ids", groups.codes), ("scores", s), ("p_true", p))
    k = _positive_int("k", k)
    return float(np.mean(groups.top_k_sum(s, p, k)))


def oracle_ratio(
    group_ids: npt.ArrayLike, scores: npt.ArrayLike, p_true: npt.ArrayLike, k: int = 3
) -> OracleRatio:
    """Expected adoptions at k of the ranking by `scores` over those of the ranking by `p_true` itself.

    Both are means over all groups of Σ_top-k p_true (see `expected_adoptions_at_k`); the oracle's is
    the most any ranking can reach, so the ratio lies in [0, 1] and equals 1 when `scores` orders
    every group's top k as `p_true` does.
    """
    groups = _groups(group_ids)
    s = _finite("scores", scores)
    p = _probabilities("p_true", p_true)
    _same_length(("group_ids", groups.codes), ("scores", s), ("p_true", p))
    k = _positive_int("k", k)
    model = float(np.mean(groups.top_k_sum(s, p, k)))
    oracle = float(np.mean(groups.top_k_sum(p, p, k)))
    return OracleRatio(
        ratio=model / oracle if oracle > 0 else float("nan"),
        model=model,
        oracle=oracle,
        k=k,
        n_groups=groups.n_groups,
    )


@dataclass(frozen=True)
class _Groups:
    """Rows mapped to dense group codes 0..n_groups-1, and where each group starts once rows are sorted by code."""

    codes: IntArray
    n_groups: int
    starts: IntArray

    def rank_by(self, scores: FloatArray) -> tuple[IntArray, IntArray]:
        """Row order sorted by group then descending score (stable), and each sorted row's 0-based rank."""
        order = np.lexsort((-scores, self.codes)).astype(np.int64)
        rank = np.arange(order.size, dtype=np.int64) - self.starts[self.codes[order]]
        return order, rank

    def top_k_sum(self, scores: FloatArray, values: FloatArray, k: int) -> FloatArray:
        """Per group, Σ `values` of its top k rows by `scores`."""
        order, rank = self.rank_by(scores)
        kept = np.where(rank < k, values[order], 0.0)
        return _sum_by(self.codes[order], kept, self.n_groups)

    def top_k_discounted_sum(self, scores: FloatArray, values: FloatArray, k: int) -> FloatArray:
        """Per group, Σ `values` / log2(rank + 2) of its top k rows by `scores` (the DCG@k)."""
        order, rank = self.rank_by(scores)
        discounted = np.where(rank < k, values[order] / np.log2(rank + 2.0), 0.0)
        return _sum_by(self.codes[order], discounted, self.n_groups)


def _sum_by(codes: IntArray, weights: FloatArray, n_codes: int) -> FloatArray:
    """Σ `weights` per code 0..n_codes-1 (a typed `np.bincount`)."""
    return np.bincount(codes, weights=weights, minlength=n_codes).astype(np.float64)


def _groups(group_ids: npt.ArrayLike, name: str = "group_ids") -> _Groups:
    ids = np.asarray(group_ids)
    if ids.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {ids.shape}")
    if ids.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    try:
        _, codes = np.unique(ids, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"`{name}` must be all of one sortable type (ints or strings): {exc}") from None
    codes = codes.astype(np.int64).reshape(-1)
    sizes = np.bincount(codes).astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    return _Groups(codes=codes, n_groups=int(sizes.size), starts=starts)


# ---------------------------------------------------------------------------------------------------
# Off-policy evaluation


def estimate_off_policy(
    call_ids: npt.ArrayLike,
    logging_prob: npt.ArrayLike,
    reward: npt.ArrayLike,
    shown_by_new: npt.ArrayLike,
    *,
    new_slate_size: float,
    n_calls: int | None = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> OffPolicyEstimate:
    """Adoptions the new policy would have had on the logged calls, by (self-normalised) IPS.

    One row per benefit the logging policy showed on a call: `call_ids`, `logging_prob` (the marginal
    probability the logging policy had of showing this benefit on this call, in (0, 1]), `reward`
    (1 if adopted within 30 days, else 0) and `shown_by_new` (whether the benefit is in the new
    policy's top k for that call's eligible set). With weights w = shown_by_new / logging_prob:

    - `ips` = Σ w · reward / n_calls, adoptions per call;
    - `snips_rate` = Σ w · reward / Σ w, adoptions per benefit shown by the new policy (NaN when no
      logged row is one the new policy shows);
    - `snips_per_call` = `snips_rate` × `new_slate_size`, where `new_slate_size` is the mean number
      of benefits the new policy shows per call (k, or less where calls have fewer than k eligible
      benefits), which the logs cannot tell.

    `n_calls` is the number of calls the logs cover, for calls on which the logging policy showed
    nothing (so have no row here): they add zero adoptions but count in the per-call means. It
    defaults to the number of distinct `call_ids`.

    IPS is unbiased when every benefit the new policy shows had a positive chance of being logged,
    and a benefit's adoption does not depend on which other benefits were shown beside it (nor on
    its position). Intervals come from a percentile bootstrap over calls (`n_bootstrap` resamples
    drawn with `seed`), so rows of one call stay together.

    Raises ValueError naming the parameter, the rule and the first offending row, e.g.
    "`logging_prob` must be in (0, 1], got 0.0 at row 17".
    """
    calls = _groups(call_ids, "call_ids")
    prob = _finite_or_nan("logging_prob", logging_prob)
    r = _binary("reward", reward)
    shown = _flags("shown_by_new", shown_by_new)
    _same_length(("call_ids", calls.codes), ("logging_prob", prob), ("reward", r), ("shown_by_new", shown))
    bad = ~((prob > 0) & (prob <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`logging_prob` must be in (0, 1], got {prob[row]} at row {row}")
    if not (np.isfinite(new_slate_size) and new_slate_size > 0):
        raise ValueError(f"`new_slate_size` must be a positive number, got {new_slate_size}")
    total_calls = calls.n_groups if n_calls is None else _positive_int("n_calls", n_calls)
    if total_calls < calls.n_groups:
        raise ValueError(
            f"`n_calls` must be at least the number of distinct `call_ids` ({calls.n_groups}), got {total_calls}"
        )
    n_bootstrap = _positive_int("n_bootstrap", n_bootstrap)
    check_param("confidence", confidence, 0 < confidence < 1, "in (0, 1)")

    w = np.where(shown, 1.0 / prob, 0.0)
    # Per call sums; calls without logged rows are the trailing zeros.
    wr_per_call = np.zeros(total_calls)
    w_per_call = np.zeros(total_calls)
    wr_per_call[: calls.n_groups] = _sum_by(calls.codes, w * r, calls.n_groups)
    w_per_call[: calls.n_groups] = _sum_by(calls.codes, w, calls.n_groups)

    sum_w = float(w.sum())
    sum_wr = float(np.dot(w, r))
    ips = sum_wr / total_calls
    snips_rate = sum_wr / sum_w if sum_w > 0 else float("nan")
    boot_wr, boot_w = _bootstrap_sums(total_calls, (wr_per_call, w_per_call), n_bootstrap, seed)
    ips_ci = _percentile_interval(boot_wr / total_calls, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        snips_rate_ci = _percentile_interval(boot_wr / boot_w, confidence)
    ess = sum_w**2 / float(np.dot(w, w)) if sum_w > 0 else 0.0
    min_weighted = float(prob[shown].min()) if shown.any() else float("nan")
    return OffPolicyEstimate(
        ips=ips,
        ips_ci=ips_ci,
        snips_rate=snips_rate,
        snips_rate_ci=snips_rate_ci,
        snips_per_call=snips_rate * new_slate_size,
        snips_per_call_ci=(snips_rate_ci[0] * new_slate_size, snips_rate_ci[1] * new_slate_size),
        new_slate_size=float(new_slate_size),
        logged_per_call=float(r.sum()) / total_calls,
        logged_rate=float(r.mean()),
        n_calls=total_calls,
        n_rows=int(r.size),
        ess=ess,
        min_weighted_logging_prob=min_weighted,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        warning=_off_policy_warning(ess, min_weighted),
    )


def estimate_doubly_robust(
    call_ids: npt.ArrayLike,
    logging_prob: npt.ArrayLike,
    reward: npt.ArrayLike,
    shown_by_new: npt.ArrayLike,
    predicted: npt.ArrayLike,
    slate_call_ids: npt.ArrayLike,
    slate_predicted: npt.ArrayLike,
    *,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> DoublyRobustEstimate:
    """Adoptions per call of a new top-k policy on logged calls, by the doubly robust estimator.

    Logged rows, one per benefit the logging policy showed on a call, as for `estimate_off_policy`:
    `call_ids`, `logging_prob`, `reward`, `shown_by_new`, and `predicted`, the outcome model's chance q̂
    that this benefit is adopted when shown on this call. The new policy's slates: one row per benefit it
    shows, `slate_call_ids` and `slate_predicted` (q̂ of that benefit on that call). With
    w = shown_by_new / logging_prob and n the calls of either part:

        DR   = (Σ_slates q̂ + Σ_logged w · (reward − q̂)) / n
        SNDR = Σ_slates q̂ / n + Σ_logged w · (reward − q̂) / Σ_logged w × (slate rows / n)

    DR is unbiased if the logging probabilities are right (whatever q̂), and has less variance than IPS
    the better q̂ predicts the reward; like IPS it assumes a benefit's adoption does not depend on what
    else was shown or where. Intervals: percentile bootstrap over calls (`n_bootstrap` resamples drawn
    with `seed`). Raises ValueError naming the parameter and the first offending row.
    """
    logged_ids = np.asarray(call_ids)
    slate_ids = np.asarray(slate_call_ids)
    prob = _finite_or_nan("logging_prob", logging_prob)
    r = _binary("reward", reward)
    shown = _flags("shown_by_new", shown_by_new)
    q = _probabilities("predicted", predicted)
    q_slate = _probabilities("slate_predicted", slate_predicted)
    _same_length(
        ("call_ids", logged_ids),
        ("logging_prob", prob),
        ("reward", r),
        ("shown_by_new", shown),
        ("predicted", q),
    )
    _same_length(("slate_call_ids", slate_ids), ("slate_predicted", q_slate))
    bad = ~((prob > 0) & (prob <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`logging_prob` must be in (0, 1], got {prob[row]} at row {row}")
    n_bootstrap = _positive_int("n_bootstrap", n_bootstrap)
    check_param("confidence", confidence, 0 < confidence < 1, "in (0, 1)")
    calls = _groups(np.concatenate([logged_ids, slate_ids]), "call_ids")
    logged_codes, slate_codes = calls.codes[: logged_ids.size], calls.codes[logged_ids.size :]
    n_calls = calls.n_groups

    w = np.where(shown, 1.0 / prob, 0.0)
    direct_per_call = _sum_by(slate_codes, q_slate, n_calls)
    residual_per_call = _sum_by(logged_codes, w * (r - q), n_calls)
    w_per_call = _sum_by(logged_codes, w, n_calls)
    slate_size = slate_ids.size / n_calls
    sum_w = float(w_per_call.sum())
    direct = float(direct_per_call.sum()) / n_calls
    dr = direct + float(residual_per_call.sum()) / n_calls
    sndr = direct + (float(residual_per_call.sum()) / sum_w * slate_size if sum_w > 0 else 0.0)
    boot_direct, boot_residual, boot_w = _bootstrap_sums(
        n_calls, (direct_per_call, residual_per_call, w_per_call), n_bootstrap, seed
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_sndr = boot_direct / n_calls + np.where(boot_w > 0, boot_residual / boot_w * slate_size, 0.0)
    return DoublyRobustEstimate(
        direct=direct,
        direct_ci=_percentile_interval(boot_direct / n_calls, confidence),
        dr=dr,
        dr_ci=_percentile_interval((boot_direct + boot_residual) / n_calls, confidence),
        sndr=sndr,
        sndr_ci=_percentile_interval(boot_sndr, confidence),
        new_slate_size=slate_size,
        n_calls=n_calls,
        n_rows=int(r.size),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
    )


def _bootstrap_sums(
    n_calls: int, per_call: Sequence[FloatArray], n_bootstrap: int, seed: int
) -> tuple[FloatArray, ...]:
    """For each resample of calls (with replacement), the sums of each per-call array over the resample."""
    rng = np.random.default_rng(seed)
    out = [np.empty(n_bootstrap) for _ in per_call]
    block = max(1, _BOOTSTRAP_BLOCK_DRAWS // n_calls)
    for first in range(0, n_bootstrap, block):
        size = min(block, n_bootstrap - first)
        drawn = rng.integers(0, n_calls, size=(size, n_calls))
        for values, sums in zip(per_call, out, strict=True):
            sums[first : first + size] = values[drawn].sum(axis=1)
    return tuple(out)


def _percentile_interval(values: FloatArray, confidence: float) -> tuple[float, float]:
    kept = values[np.isfinite(values)]
    if kept.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(kept, [tail, 100.0 - tail])
    return (float(low), float(high))


def _off_policy_warning(ess: float, min_weighted_prob: float) -> str | None:
    reasons = []
    if ess < ESS_WARNING_BELOW:
        reasons.append(
            f"effective sample size is {ess:.1f} (< {ESS_WARNING_BELOW:.0f}): "
            "few logged calls look like the new policy"
        )
    # Only rows the new policy shows carry weight, so only their probabilities can blow the estimate up.
    if min_weighted_prob < TINY_LOGGING_PROB:
        reasons.append(
            f"some benefits the new policy shows were logged with probability {min_weighted_prob:.2g} "
            f"(< {TINY_LOGGING_PROB}): their weights dominate the estimate"
        )
    return "; ".join(reasons) or None


# ---------------------------------------------------------------------------------------------------
# Input checks: messages name the parameter, the rule and the first offending row.


@dataclass(frozen=True)
class QiniCurve:
    """How well a ranking by estimated uplift puts the units a conversation moves first.

    `qini[i]`: with the top `fractions[i]` of units by score, the adoptions among their treated units
    minus those among their controls scaled to the treated's (weighted) number, per treated unit of all
    (Radcliffe's Qini curve, normalised). `coefficient`: the mean height of the curve above the straight
    line from 0 to its end (a random ranking's expectation; > 0: better than random). `auuc`: the mean
    height of the curve itself. Units are weighted (inverse chances of treatment undo a logging policy
    that favoured some units); counts are the units, unweighted.
    """

    fractions: tuple[float, ...]
    qini: tuple[float, ...]
    coefficient: float
    auuc: float
    n_treated: int
    n_control: int


def qini_curve(
    uplift: npt.ArrayLike,
    treated: npt.ArrayLike,
    adopted: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    points: int = 101,
) -> QiniCurve:
    """The Qini curve of ranking units by `uplift` (highest first; ties keep input order), from `treated`
    flags, `adopted` labels (0/1) and optional non-negative `weights`; `points` evenly spaced fractions
    of the curve are kept for plotting (the coefficient and AUUC use every unit).

    Raises ValueError for mismatched or empty inputs, and when there is no treated or no control unit.
    """
    score = _finite("uplift", uplift)
    t = _flags("treated", treated)
    y = _binary("adopted", adopted)
    w = np.ones(score.size) if weights is None else _finite("weights", weights)
    _same_length(("uplift", score), ("treated", t), ("adopted", y), ("weights", w))
    _non_negative("weights", w)
    points = _positive_int("points", points)
    if t.all() or not t.any():
        raise ValueError(
            f"the Qini curve needs treated and control units: got {int(t.sum())} treated, {int((~t).sum())} controls"
        )
    order = np.argsort(-score, kind="stable")
    w_t = np.where(t, w, 0.0)[order]
    w_c = np.where(t, 0.0, w)[order]
    y_sorted = y[order]
    n_t, n_c = np.cumsum(w_t), np.cumsum(w_c)
    y_t, y_c = np.cumsum(w_t * y_sorted), np.cumsum(w_c * y_sorted)
    scaled_c = np.divide(y_c * n_t, n_c, out=np.zeros_like(y_c), where=n_c > 0)
    total_treated = n_t[-1]
    q = (y_t - scaled_c) / total_treated if total_treated > 0 else np.zeros_like(y_t)
    fractions = np.arange(1, score.size + 1) / score.size
    coefficient = float(np.mean(q - q[-1] * fractions))
    keep = np.unique(np.round(np.linspace(0, score.size - 1, min(points, score.size))).astype(np.int64))
    return QiniCurve(
        _floats(fractions[keep]),
        _floats(q[keep]),
        coefficient,
        float(np.mean(q)),
        int(t.sum()),
        int((~t).sum()),
    )


def _array(name: str, values: npt.ArrayLike) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"`{name}` must hold numbers, got dtype {array.dtype}")
    return array


def _finite_or_nan(name: str, values: npt.ArrayLike) -> FloatArray:
    return _array(name, values).astype(np.float64)


def _finite(name: str, values: npt.ArrayLike) -> FloatArray:
    array = _finite_or_nan(name, values)
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`{name}` must be finite, got {array[row]} at row {row}")
    return array


def _binary(name: str, values: npt.ArrayLike) -> FloatArray:
    array = _finite_or_nan(name, values)
    bad = (array != 0) & (array != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`{name}` must hold only 0 and 1, got {array[row]} at row {row}")
    return array


def _flags(name: str, values: npt.ArrayLike) -> BoolArray:
    array = _array(name, values)
    if array.dtype == np.bool_:
        return array
    return _binary(name, array).astype(np.bool_)


def _probabilities(name: str, values: npt.ArrayLike) -> FloatArray:
    array = _finite_or_nan(name, values)
    bad = ~((array >= 0) & (array <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`{name}` must be in [0, 1], got {array[row]} at row {row}")
    return array


def _non_negative(name: str, array: FloatArray) -> None:
    bad = array < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`{name}` must be ≥ 0, got {array[row]} at row {row}")


def _same_length(first: tuple[str, npt.NDArray[Any]], *others: tuple[str, npt.NDArray[Any]]) -> None:
    name, array = first
    for other_name, other in others:
        if other.size != array.size:
            raise ValueError(
                f"`{other_name}` must have the same length as `{name}` ({array.size}), got {other.size}"
            )


def _positive_int(name: str, value: int) -> int:
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    check_param(name, value, is_int and value >= 1, "a positive integer")
    return int(value)


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class QiniInterval:
    """Percentile bootstrap intervals (over groups: calls) of a ranking's Qini coefficient and AUUC, and of
    its coefficient minus another ranking's on the same resamples (`difference_ci`; NaN without one)."""

    coefficient_ci: tuple[float, float]
    auuc_ci: tuple[float, float]
    difference_ci: tuple[float, float]
    confidence: float
    n_bootstrap: int


def qini_interval(
    uplift: npt.ArrayLike,
    treated: npt.ArrayLike,
    adopted: npt.ArrayLike,
    weights: npt.ArrayLike,
    groups: npt.ArrayLike,
    other: npt.ArrayLike | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> QiniInterval:
    """Bootstrap intervals of `qini_curve(uplift, treated, adopted, weights)`'s coefficient and AUUC:
    whole groups (a call's units together) are resampled with replacement, a group drawn m times counting
    m times in the weights. With `other` (another ranking of the same units), the interval of the
    difference of the two coefficients on the same resamples (paired). Resamples that hold no treated or
    no control unit are skipped. Raises ValueError as `qini_curve` does."""
    score = _finite("uplift", uplift)
    t, y, w = _flags("treated", treated), _binary("adopted", adopted), _finite("weights", weights)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    _same_length(("uplift", score), ("treated", t), ("adopted", y), ("weights", w), ("groups", group))
    second = None if other is None else _finite("other", other)
    rng = np.random.default_rng(seed)
    n_groups = int(group.max()) + 1
    coefficients, auucs, differences = [], [], []
    for _ in range(_positive_int("n_bootstrap", n_bootstrap)):
        times = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[group]
        resampled = w * times
        kept = times > 0
        if not (t[kept].any() and not t[kept].all()):
            continue
        curve = qini_curve(score[kept], t[kept], y[kept], resampled[kept])
        coefficients.append(curve.coefficient)
        auucs.append(curve.auuc)
        if second is not None:
            differences.append(
                curve.coefficient - qini_curve(second[kept], t[kept], y[kept], resampled[kept]).coefficient
            )
    nan = (float("nan"), float("nan"))
    return QiniInterval(
        _percentile_interval(np.asarray(coefficients), confidence),
        _percentile_interval(np.asarray(auucs), confidence),
        _percentile_interval(np.asarray(differences), confidence) if differences else nan,
        confidence,
        n_bootstrap,
    )


@dataclass(frozen=True)
class CausedEstimate:
    """The doubly robust estimate of the adoptions a policy's suggestions cause per call (`value`), with a
    percentile bootstrap interval over calls (`ci`), on `calls` calls."""

    value: float
    ci: tuple[float, float]
    calls: int


def estimate_caused_adoptions(
    call_ids: npt.ArrayLike,
    pseudo_outcomes: npt.ArrayLike,
    chosen: npt.ArrayLike,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> CausedEstimate:
    """Caused adoptions per call of a policy: Σ over the units it would show (`chosen`) of their doubly
    robust pseudo-outcomes φ, over the calls (every call of `call_ids` counts, also those where it shows
    nothing). φ = μ1 − μ0 + T (Y − μ1) / e − (1 − T) (Y − μ0) / (1 − e) is unbiased for the unit's uplift
    when either the chance of treatment e or the outcome models μ are right, so the sum is unbiased for
    what the policy's suggestions add. Interval: percentile bootstrap over calls.

    >>> estimate_caused_adoptions(["a", "a", "b"], [0.2, 0.5, 0.1], [True, False, True]).value
    0.15000000000000002
    """
    phi = _finite("pseudo_outcomes", pseudo_outcomes)
    picked = _flags("chosen", chosen)
    _, call = np.unique(np.asarray(call_ids), return_inverse=True)
    _same_length(("pseudo_outcomes", phi), ("chosen", picked), ("call_ids", call))
    n_calls = int(call.max()) + 1
    per_call = np.bincount(call, weights=np.where(picked, phi, 0.0), minlength=n_calls)
    rng = np.random.default_rng(seed)
    boot = np.array(
        [
            per_call[rng.integers(0, n_calls, n_calls)].mean()
            for _ in range(_positive_int("n_bootstrap", n_bootstrap))
        ]
    )
    return CausedEstimate(float(per_call.mean()), _percentile_interval(boot, confidence), n_calls)
