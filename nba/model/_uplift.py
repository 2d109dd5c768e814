"""Uplift: (pair features, shown and discussed or not, adopted or not, logged chance of being shown) per unit → a
DR-learner's LightGBM estimate of the adoptions a conversation adds: τ(x) = P(adopt | discussed) − P(adopt | not).

The DR-learner (Kennedy 2023) in three steps, every nuisance model cross-fitted over groups (cardholders),
so no unit's pseudo-outcome comes from models that saw it:
1. the chance of treatment e(x) = P(shown) · P(discussed | shown) (P(shown) as the logging policy
   recorded it where it did, else estimated), and the adoption chances with and without treatment μ1(x), μ0(x): LightGBM binary models;
2. each unit's doubly robust pseudo-outcome
   φ = μ1 − μ0 + T (Y − μ1) / e − (1 − T) (Y − μ0) / (1 − e), unbiased for τ(x) when either e or
   (μ0, μ1) is right;
3. τ(x): a LightGBM regression of φ on x, early stopping on a later slice. It is what ships (LightGBM text).

Serving walks the effect model's trees in compiled code (`PathAttributor.raw_scores`, which walks exactly
as LightGBM does; for a regression the raw score is the prediction) instead of calling `Booster.predict`
per request: LightGBM's predict costs tens of microseconds of set-up on every call, however few the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from nba.errors import ModelError
from nba.model._attribution import PathAttributor
from nba.progress import NO_PROGRESS, ProgressHook, advance_each_round

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

UPLIFT_FILE: Final = "uplift.txt"
# Chances of treatment are clipped to this band before they divide: a unit whose logged or estimated chance
# was 0.1% would carry a weight of 1,000 and decide the whole fit on its own (the usual trimming; with
# ε-exploration of 10% over a handful of candidates, a chance below 2% is rare).
PROPENSITY_CLIP: Final = (0.02, 0.98)
# The nuisance models are small and fixed (no early stopping: each is fitted on one fold and scored on
# the other); the final model is regularised hard, since pseudo-outcomes are noisy by construction.
NUISANCE_PARAMS: Final[dict[str, Any]] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "verbose": -1,
}
NUISANCE_ROUNDS: Final = 200
EFFECT_PARAMS: Final[dict[str, Any]] = {
    "objective": "regression",
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 400,
    "lambda_l2": 10.0,
    "feature_fraction": 0.8,
    "verbose": -1,
}


def fold_of_groups(groups: npt.NDArray[Any], folds: int, seed: int) -> IntArray:
    """Each row's fold (0 … folds−1), one fold per group drawn at random: a cardholder's units stay together."""
    _, group_of_row = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    draw = np.random.default_rng(seed).integers(0, folds, int(group_of_row.max()) + 1 if len(groups) else 0)
    result: IntArray = draw[group_of_row].astype(np.int64)
    return result


def cross_fit_binary(
    X: FloatArray,
    y: FloatArray,
    fit_rows: BoolArray,
    fold: IntArray,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    params: Mapping[str, Any],
) -> FloatArray:
    """P(y = 1 | x) for every row, each from a LightGBM model fitted on the `fit_rows` of the other folds
    (a fold whose other folds hold one class only gets that class's share)."""
    out = np.empty(len(X), dtype=np.float64)
    for k in np.unique(fold):
        train = fit_rows & (fold != k)
        target = fold == k
        labels = y[train]
        if len(labels) == 0:
            out[target] = float(y[fit_rows].mean()) if fit_rows.any() else 0.0
            continue
        if labels.min() == labels.max():
            out[target] = float(labels[0])
            continue
        data = lgb.Dataset(
            X[train], labels, feature_name=list(feature_names), categorical_feature=list(categorical)
        )
        booster = lgb.train(dict(params), data, NUISANCE_ROUNDS)
        out[target] = np.asarray(booster.predict(X[target]), dtype=np.float64)
    return out


@dataclass(frozen=True)
class UpliftSample:
    """Uplift units as the learner reads them, one row per unit: the pair features `X` (one column per
    `feature_names`, `categorical` among them), whether the unit was `shown` and `discussed` (treated: both),
    `adopted` (0/1), `shown_prob` (the logged chance of being shown; NaN: not logged, estimated) and `groups`
    (the cardholder: a group's units stay in one fold when cross-fitting)."""

    X: FloatArray
    shown: BoolArray
    discussed: BoolArray
    adopted: FloatArray
    shown_prob: FloatArray
    feature_names: Sequence[str]
    categorical: Sequence[str]
    groups: npt.NDArray[Any]

    @property
    def treated(self) -> BoolArray:
        treated: BoolArray = self.shown & self.discussed
        return treated

    def check(self) -> None:
        """Raises ValueError for rows that do not line up or labels that are not 0/1."""
        n = len(self.X)
        if not (
            len(self.shown)
            == len(self.discussed)
            == len(self.adopted)
            == len(self.shown_prob)
            == len(self.groups)
            == n
        ):
            raise ValueError(
                "`X`, `shown`, `discussed`, `adopted`, `shown_prob` and `groups` must have one row per unit"
            )
        if self.X.ndim != 2 or self.X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"`X` must have one column per feature name ({len(self.feature_names)}), got {self.X.shape}"
            )
        if not np.isin(self.adopted, (0, 1)).all():
            raise ValueError("`adopted` must hold only 0 and 1")

    def rows(self, mask: BoolArray) -> UpliftSample:
        """The units `mask` selects."""
        return UpliftSample(
            self.X[mask],
            self.shown[mask],
            self.discussed[mask],
            self.adopted[mask],
            self.shown_prob[mask],
            self.feature_names,
            self.categorical,
            np.asarray(self.groups)[mask],
        )


def treatment_chance(sample: UpliftSample, fold: IntArray) -> FloatArray:
    """Each unit's chance of treatment e(x) = s(x) · d(x): s, the chance of being shown, is `shown_prob`
    where logged (NaN: estimated from X, cross-fitted over `fold`); d, the chance a shown suggestion is
    discussed, is estimated from the shown units (cross-fitted)."""
    names, categorical = sample.feature_names, sample.categorical
    unknown = np.isnan(sample.shown_prob)
    s = sample.shown_prob.copy()
    if unknown.any():
        every = np.ones(len(sample.X), dtype=bool)
        shown = sample.shown.astype(np.float64)
        estimated = cross_fit_binary(sample.X, shown, every, fold, names, categorical, NUISANCE_PARAMS)
        s[unknown] = estimated[unknown]
    discussed = sample.discussed.astype(np.float64)
    d = cross_fit_binary(sample.X, discussed, sample.shown, fold, names, categorical, NUISANCE_PARAMS)
    e: FloatArray = s * d
    return e


def cross_fitted_pseudo_outcomes(
    sample: UpliftSample, fold: IntArray, progress: ProgressHook = NO_PROGRESS
) -> tuple[FloatArray, FloatArray]:
    """The DR-learner's first two steps: the chance of treatment e and the adoption chances with and without
    treatment μ1, μ0, each unit's from models fitted on the other folds; returns (φ, e), e unclipped."""
    X, adopted, treated = sample.X, sample.adopted, sample.treated
    names, categorical = sample.feature_names, sample.categorical
    with progress.track("uplift: nuisance models, cross-fitted", 3) as done:
        e = treatment_chance(sample, fold)
        done.advance()
        mu1 = cross_fit_binary(X, adopted, treated, fold, names, categorical, NUISANCE_PARAMS)
        done.advance()
        mu0 = cross_fit_binary(X, adopted, ~treated, fold, names, categorical, NUISANCE_PARAMS)
        done.advance()
    return dr_pseudo_outcomes(treated, adopted, e, mu1, mu0), e


def held_out_pseudo_outcomes(sample: UpliftSample, seed: int) -> tuple[FloatArray, FloatArray]:
    """Doubly robust pseudo-outcomes φ and chances of treatment e of units no model has seen (a held-out
    slice), their nuisance models fitted within the units and cross-fitted over two folds of its groups: what
    evaluation needs to judge any ranking of these units by the adoptions it causes. Returns (φ, e), e
    clipped to PROPENSITY_CLIP."""
    sample.check()
    phi, e = cross_fitted_pseudo_outcomes(sample, fold_of_groups(sample.groups, 2, seed))
    return phi, np.clip(e, *PROPENSITY_CLIP)


def dr_pseudo_outcomes(
    treated: BoolArray, adopted: FloatArray, e: FloatArray, mu1: FloatArray, mu0: FloatArray
) -> FloatArray:
    """φ = μ1 − μ0 + T (Y − μ1) / e − (1 − T) (Y − μ0) / (1 − e), with e clipped to PROPENSITY_CLIP.

    >>> dr_pseudo_outcomes(np.array([True]), np.array([1.0]), np.array([0.5]), np.array([0.6]), np.array([0.2]))
    array([1.2])
    """
    e = np.clip(e, *PROPENSITY_CLIP)
    t = treated.astype(np.float64)
    phi: FloatArray = mu1 - mu0 + t * (adopted - mu1) / e - (1.0 - t) * (adopted - mu0) / (1.0 - e)
    return phi


class UpliftModel:
    """The DR-learner: what a conversation adds to the chance a cardholder starts using a benefit.

    Follows the estimator contract: `__init__` stores its arguments; `fit` validates and learns
    (`booster_`, `best_iteration_`, `feature_names_`, and what the fit saw: `shown_prob_estimated_`, the
    share of units whose chance of being shown was estimated rather than logged; `treatment_chance_`, each
    unit's e(x); `pseudo_outcomes_`);
    `predict` checks it was fitted, and walks the trees in compiled code (`scorer_`, a PathAttributor of the
    booster's first `best_iteration_` trees) rather than calling the booster.

    Example:
        >>> units = UpliftSample(X, shown, discussed, adopted, logging_prob, names, ["benefit_id"], cardholder_ids)
        >>> model = UpliftModel().fit(units, later_slice)
        >>> model.predict(X[:5])  # adoptions added per conversation, between about −1 and 1
    """

    def __init__(
        self, num_boost_round: int = 1000, early_stopping_rounds: int = 50, folds: int = 2, seed: int = 0
    ) -> None:
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.folds = folds
        self.seed = seed

    def fit(self, units: UpliftSample, valid: BoolArray, progress: ProgressHook = NO_PROGRESS) -> UpliftModel:
        """Learns τ(x) from `units`: a unit is treated when it was shown and discussed.

        The chance of treatment is e(x) = s(x) · d(x): s, the chance of being shown, is `shown_prob`
        where the logging policy recorded it (NaN: estimated here from X); d, the chance a shown
        suggestion is discussed, is estimated from the shown units. Both estimates and the outcome
        models are cross-fitted over the units' groups (a cardholder's units stay in one fold). `valid`
        marks the later slice the effect model stops early on; the rest trains it.

        Raises ValueError for rows that do not line up or labels that are not 0/1, and when there is no
        treated unit or no control unit to learn from.
        """
        units.check()
        if len(valid) != len(units.X):
            raise ValueError("`valid` must have one row per unit")
        treated = units.treated
        if not treated.any() or treated.all():
            raise ValueError(
                f"uplift needs treated and control units: got {int(treated.sum()):,} treated and "
                f"{int((~treated).sum()):,} controls"
            )
        fold = fold_of_groups(units.groups, max(2, self.folds), self.seed)
        phi, e = cross_fitted_pseudo_outcomes(units, fold, progress)
        train = ~valid
        names, categorical = list(units.feature_names), list(units.categorical)
        data = lgb.Dataset(units.X[train], phi[train], feature_name=names, categorical_feature=categorical)
        callbacks: list[Any] = []
        valid_sets = []
        if valid.any():
            valid_sets = [lgb.Dataset(units.X[valid], phi[valid], reference=data)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        params = {**EFFECT_PARAMS, "seed": self.seed}
        with progress.track("uplift: effect model rounds", self.num_boost_round) as rounds:
            callbacks.append(advance_each_round(rounds))
            booster = lgb.train(
                params, data, self.num_boost_round, valid_sets=valid_sets, callbacks=callbacks
            )
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.feature_names_ = names
        self.scorer_ = PathAttributor.from_booster(booster, self.best_iteration_)
        self.shown_prob_estimated_ = float(np.isnan(units.shown_prob).mean()) if len(units.X) else 0.0
        self.treatment_chance_ = e
        self.pseudo_outcomes_ = phi
        return self

    def _check_fitted(self) -> lgb.Booster:
        booster: lgb.Booster | None = getattr(self, "booster_", None)
        if booster is None:
            raise ModelError("This UpliftModel is not fitted yet. Call 'fit' first.")
        return booster

    def predict(self, X: FloatArray) -> FloatArray:
        """The estimated adoptions a conversation adds, per row: the booster's prediction, from its trees
        walked in compiled code (the request path's call; equal to `Booster.predict` to 1e-12, tested)."""
        self._check_fitted()
        scores: FloatArray = self.scorer_.raw_scores(X)
        return scores

    def to_artifacts(self) -> dict[str, bytes]:
        """The file that stores this model: the effect model in LightGBM's text format."""
        booster = self._check_fitted()
        return {UPLIFT_FILE: booster.model_to_string(num_iteration=self.best_iteration_).encode()}

    @classmethod
    def from_artifacts(cls, files: Mapping[str, bytes], feature_names: Sequence[str]) -> UpliftModel:
        """Rebuilds a fitted model from checked artifact bytes; the feature list must match the booster's."""
        booster = lgb.Booster(model_str=files[UPLIFT_FILE].decode())
        if list(booster.feature_name()) != list(feature_names):
            raise ModelError(
                f"{UPLIFT_FILE}: its features do not match the manifest "
                f"({len(booster.feature_name())} in the model, {len(feature_names)} in the manifest)"
            )
        model = cls()
        model.booster_ = booster
        model.best_iteration_ = booster.current_iteration()
        model.feature_names_ = list(feature_names)
        model.scorer_ = PathAttributor.from_booster(booster, model.best_iteration_)
        return model
