"""Detractor model: (pair features of a discussed suggestion, whether its call's NPS answer was a detractor) per
unit → a small LightGBM estimate of P(detractor | call, suggestion), for the arbitration's NPS term.

A unit is one suggestion discussed on a call whose cardholder answered the survey (training/detractor_units.py
builds them and counts what it leaves out). Its label is the call's answer: a detractor scores at most
nba.vocab.NPS_DETRACTOR_MAX. Its features are the adoption model's full row (the cardholder's columns, then the
pair columns: call reason, benefit id and kind among them), so the request path scores the very matrix it
already built, and the same tree walk that scores the adoption model scores this one. An answered call where
nothing was discussed is a unit too, its row `pitchless` (pair columns missing but the call reason): what the
model says of such a row is the call's detractor chance without a pitch, the baseline the arbitration's NPS
term measures each pitch's added detractors from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from nba.errors import ModelError
from nba.features._matrix import PAIR_FEATURES
from nba.progress import NO_PROGRESS, ProgressHook, advance_each_round

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DETRACTOR_FILE: Final = "detractor.txt"
# A call where nothing was discussed is a unit too (the baseline the added detractors are measured from): its row
# keeps the cardholder's columns and the call reason, every other pair column missing (`pitchless`).
PITCHLESS_KEEPS: Final = ("call_reason",)
# Fewer answered calls than this in the training slice (or fewer detractors, or fewer other answers) and no
# detractor model is fitted: a quarter of calls answer, most of them have no pitch that was discussed, and a
# model of a few dozen answers would learn noise the arbitration then acts on.
MIN_DETRACTOR_CALLS: Final = 200
MIN_DETRACTOR_CLASS: Final = 20
# Small and regularised: the label is one noisy answer per call and most of its variance is the cardholder's
# mood, which no feature sees.
DETRACTOR_PARAMS: Final[dict[str, Any]] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "lambda_l2": 10.0,
    "feature_fraction": 0.8,
    "max_cat_to_onehot": 16,
    "cat_smooth": 10.0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}


def pitchless(X: FloatArray, feature_names: Sequence[str]) -> FloatArray:
    """Rows as the detractor model sees a call where nothing was discussed: a copy of `X` whose pair columns
    (nba.features' PAIR_FEATURES, but the call reason) are NaN; the cardholder's columns stay."""
    names = list(feature_names)
    pair = [names.index(name) for name in PAIR_FEATURES if name in names and name not in PITCHLESS_KEEPS]
    rows = np.array(X, dtype=np.float64, copy=True)
    rows[:, pair] = np.nan
    return rows


class DetractorModel:
    """P(the call's NPS answer is a detractor | the call, a suggestion discussed on it).

    Follows the estimator contract: `__init__` stores its arguments; `fit` validates and learns (`booster_`,
    `best_iteration_`, `feature_names_`); `predict` checks it was fitted.

    Example:
        >>> model = DetractorModel().fit(X, detractor, weight, names, ["benefit_id"], later_slice)
        >>> model.predict(X[:5])  # chances between 0 and 1
    """

    def __init__(
        self, num_boost_round: int = 400, early_stopping_rounds: int = 30, seed: int = 0, num_threads: int = 0
    ) -> None:
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.num_threads = num_threads

    def fit(
        self,
        X: FloatArray,
        detractor: FloatArray,
        weight: FloatArray,
        feature_names: Sequence[str],
        categorical: Sequence[str],
        valid: BoolArray,
        progress: ProgressHook = NO_PROGRESS,
    ) -> DetractorModel:
        """Learns from units (X, detractor 0/1, weight); `valid` marks the later slice it stops early on.

        Raises ValueError for rows that do not line up, labels that are not 0/1, negative weights, or a
        training slice with one class only.
        """
        n = len(X)
        if not len(detractor) == len(weight) == len(valid) == n:
            raise ValueError("`X`, `detractor`, `weight` and `valid` must have one row per unit")
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise ValueError(
                f"`X` must have one column per feature name ({len(feature_names)}), got {X.shape}"
            )
        if not np.isin(detractor, (0, 1)).all():
            raise ValueError("`detractor` must hold only 0 and 1")
        if (weight < 0).any():
            raise ValueError("`weight` must be >= 0")
        train = ~valid
        labels = detractor[train]
        if len(labels) == 0 or labels.min() == labels.max():
            raise ValueError(
                f"the detractor model needs detractors and other answers to learn from: got "
                f"{int(labels.sum()):,} detractors among {len(labels):,} training units"
            )
        names, cats = list(feature_names), list(categorical)
        data = lgb.Dataset(
            X[train], labels, weight=weight[train], feature_name=names, categorical_feature=cats
        )
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Any] = []
        if valid.any():
            valid_sets = [lgb.Dataset(X[valid], detractor[valid], weight=weight[valid], reference=data)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        params = {**DETRACTOR_PARAMS, "seed": self.seed, "num_threads": self.num_threads}
        with progress.track("detractor model rounds", self.num_boost_round) as rounds:
            callbacks.append(advance_each_round(rounds))
            booster = lgb.train(
                params, data, self.num_boost_round, valid_sets=valid_sets, callbacks=callbacks
            )
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.feature_names_ = names
        return self

    def _check_fitted(self) -> lgb.Booster:
        booster: lgb.Booster | None = getattr(self, "booster_", None)
        if booster is None:
            raise ModelError("This DetractorModel is not fitted yet. Call 'fit' first.")
        return booster

    def predict(self, X: FloatArray) -> FloatArray:
        """P(detractor) per row (LightGBM's predict, single-threaded: batch scoring and evaluation; the
        request path walks the trees itself, see nba.decision's Engine)."""
        booster = self._check_fitted()
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(
            booster.predict(X, num_iteration=self.best_iteration_, num_threads=1), dtype=np.float64
        )

    def added_detractors(self, X: FloatArray) -> FloatArray:
        """Per row, the detractor chance discussing it adds to its call: P(detractor | call, this suggestion)
        − P(detractor | call, nothing discussed) (the row made `pitchless`)."""
        if len(X) == 0:
            return np.zeros(0)
        added: FloatArray = self.predict(X) - self.predict(pitchless(X, self.feature_names_))
        return added

    def to_artifacts(self) -> dict[str, bytes]:
        """The file that stores this model: LightGBM's text format, only the trees early stopping kept."""
        booster = self._check_fitted()
        return {DETRACTOR_FILE: booster.model_to_string(num_iteration=self.best_iteration_).encode()}

    @classmethod
    def from_artifacts(cls, files: Mapping[str, bytes], feature_names: Sequence[str]) -> DetractorModel:
        """Rebuilds a fitted model from checked artifact bytes.

        Raises ModelError when the text is not a LightGBM model, its features are not the manifest's, or it is
        not a binary model scored as log-odds (the request path's tree walk needs that).
        """
        try:
            booster = lgb.Booster(model_str=files[DETRACTOR_FILE].decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as error:
            raise ModelError(f"{DETRACTOR_FILE}: not a LightGBM model ({error})") from None
        if list(booster.feature_name()) != list(feature_names):
            raise ModelError(
                f"{DETRACTOR_FILE}: its features do not match the manifest "
                f"({len(booster.feature_name())} in the model, {len(feature_names)} in the manifest)"
            )
        objective = str(booster.dump_model(num_iteration=1).get("objective", ""))
        if objective.split() != ["binary", "sigmoid:1"]:
            raise ModelError(
                f"{DETRACTOR_FILE}: must be a binary model scored as log-odds (objective 'binary sigmoid:1'), "
                f"got {objective!r}"
            )
        model = cls()
        model.booster_ = booster
        model.best_iteration_ = booster.current_iteration()
        model.feature_names_ = list(feature_names)
        return model
