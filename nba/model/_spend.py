"""Spend estimator: cardholder features → what each cardholder spends a year per category, on any card.

An unused earn-rate benefit usually has no card spend in its categories (the cardholder pays there
with another card), so its value has to come from elsewhere: one LightGBM regression per category,
trained on cardholders who do spend there with this card, from their *other* categories and their
profile (product, age, tenure, region, segment and the bank's own extra columns such as income band:
"similar cardholders"). Estimates are computed in batch with the profile snapshot, never on the
request path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from nba.errors import ModelError
from nba.features._sql import CARD_FEATURES
from nba.progress import NO_PROGRESS, ProgressHook, advance_each_round
from nba.vocab import SPEND_CATEGORIES

FloatArray = npt.NDArray[np.float64]

ESTIMATOR_FILE: Final = "estimator.json"
WINDOWS_DAYS: Final = (30, 90, 365)
_PARAMS: Final[dict[str, Any]] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 30,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "max_bin": 63,
}
# More spenders than this per category add little to a yearly-spend regression but cost time.
MAX_TRAIN_ROWS: Final = 20_000


def estimator_file(category: str) -> str:
    return f"estimator_{category}.txt"


def category_columns(category: str) -> set[str]:
    """Feature columns that describe the card's own spend in `category` (left out of its estimator)."""
    columns = {f"trend_{category}", f"days_since_{category}"}
    for window in WINDOWS_DAYS:
        columns |= {
            f"spend_{category}_{window}d_usd",
            f"tx_{category}_{window}d",
            f"share_{category}_{window}d",
        }
    return columns


def _is_estimator_input(name: str, category: str, profile: Sequence[str]) -> bool:
    # Totals and shares include the category's own spend for those who spend there and not for
    # those who do not: training on one group and predicting for the other would leak. So would the
    # benefit history (a cardholder who spends in the category has used its earn-rate benefit).
    if name in category_columns(category) or name.startswith(("share_", "spend_total_", "tx_total_")):
        return False
    return name.startswith(("spend_", "tx_", "days_since_")) or name in profile


def _smearing_factor(log_target: FloatArray, log_fitted: FloatArray) -> float:
    """Duan's smearing: exp(fitted log) is the conditional median; the mean needs E[exp(residual)]."""
    # Where spend is one dollar or more, expm1 ≈ exp; the factor is clipped so one wild residual
    # cannot inflate every estimate of a category.
    return float(np.clip(np.mean(np.exp(log_target - log_fitted)), 1.0, 10.0))


class SpendEstimator:
    """Estimated yearly spend per spend category, for every cardholder.

    `fit` learns one regression per category on log1p(card spend over 365 days) from cardholders
    who spend there regularly and have held the card a full year, from their other categories and
    their profile (CARD_FEATURES and `extra_inputs`; the `categorical` ones as LightGBM categories);
    a smearing factor per category turns the fitted log back into a mean in dollars. `predict`
    returns, per cardholder and category, the larger of what they spent on the card in the last
    365 days and the estimate.

    Example:
        >>> estimator = SpendEstimator(extra_inputs=["income_band"]).fit(X, names, ["product_id", "income_band"])
        >>> yearly = estimator.predict(X, names)   # shape (n_cardholders, 16), dollars a year
    """

    def __init__(
        self,
        min_transactions: int = 3,
        min_tenure_months: float = 12.0,
        min_rows: int = 50,
        num_boost_round: int = 150,
        extra_inputs: Sequence[str] = (),
        num_threads: int = 0,
    ) -> None:
        self.min_transactions = min_transactions
        self.min_tenure_months = min_tenure_months
        self.min_rows = min_rows
        self.num_boost_round = num_boost_round
        self.extra_inputs = extra_inputs
        self.num_threads = num_threads

    def fit(
        self,
        X: FloatArray,
        names: Sequence[str],
        categorical: Sequence[str] = (),
        progress: ProgressHook = NO_PROGRESS,
    ) -> SpendEstimator:
        """Learns the per-category regressions from a cardholder feature matrix with column `names`.

        `categorical` names the columns that hold category codes (as `HolderEncoding` makes them).
        `progress` gets a bar over the categories and, inside it, one over each regression's rounds.
        """
        index = {name: i for i, name in enumerate(names)}
        for needed in ("tenure_months", *(f"spend_{c}_365d_usd" for c in SPEND_CATEGORIES)):
            if needed not in index:
                raise ValueError(f"`names` must include {needed!r}: the estimator learns from it")
        unknown = sorted(set(categorical) - set(names))
        if unknown:
            raise ValueError(f"`categorical` names columns that are not in `names`: {unknown}")
        self._boosters: dict[str, lgb.Booster] = {}
        self._model_texts: dict[str, str] = {}
        self.inputs_: dict[str, list[str]] = {}
        self.fallback_usd_: dict[str, float] = {}
        self.smearing_: dict[str, float] = {}
        self.train_rows_: dict[str, int] = {}
        with progress.track("categories", len(SPEND_CATEGORIES)) as categories:
            for category in SPEND_CATEGORIES:
                self._fit_category(X, index, names, categorical, category, progress)
                categories.advance()
        # The medians need a sample, not every cardholder: predicting 16 regressions over 800k rows
        # took 88% of the estimator's time in bench/bench_train.py.
        sample = np.arange(X.shape[0])
        if len(sample) > MAX_TRAIN_ROWS:
            sample = np.sort(np.random.default_rng(0).choice(sample, MAX_TRAIN_ROWS, replace=False))
        estimates = self._estimate(X[sample], names)
        # The typical spend of cardholders in each category: what "relevant" means for a perk.
        self.reference_usd_ = {
            c: float(np.median(estimates[:, i][estimates[:, i] > 0])) if (estimates[:, i] > 0).any() else 0.0
            for i, c in enumerate(SPEND_CATEGORIES)
        }
        return self

    def _fit_category(
        self,
        X: FloatArray,
        index: Mapping[str, int],
        names: Sequence[str],
        categorical: Sequence[str],
        category: str,
        progress: ProgressHook,
    ) -> None:
        """One category's regression, or only its fallback median when too few cardholders spend there."""
        profile = (*CARD_FEATURES, *self.extra_inputs)
        tenure = X[:, index["tenure_months"]]
        spend = X[:, index[f"spend_{category}_365d_usd"]]
        count = X[:, index[f"tx_{category}_365d"]] if f"tx_{category}_365d" in index else (spend > 0) * 1.0
        rows = (count >= self.min_transactions) & (spend > 0) & (tenure >= self.min_tenure_months)
        inputs = [n for n in names if _is_estimator_input(n, category, profile)]
        self.inputs_[category] = inputs
        self.train_rows_[category] = int(rows.sum())
        self.fallback_usd_[category] = float(np.median(spend[rows])) if rows.any() else 0.0
        self.smearing_[category] = 1.0
        if rows.sum() < self.min_rows:
            return
        chosen = np.flatnonzero(rows)
        if len(chosen) > MAX_TRAIN_ROWS:
            chosen = np.sort(np.random.default_rng(0).choice(chosen, MAX_TRAIN_ROWS, replace=False))
        columns = [index[n] for n in inputs]
        target = np.log1p(spend[chosen])
        train = lgb.Dataset(
            X[chosen][:, columns],
            target,
            feature_name=inputs,
            categorical_feature=[n for n in inputs if n in categorical],
        )
        what = f"{category}: rounds on {len(chosen):,} spenders"
        with progress.track(what, self.num_boost_round) as rounds:
            booster = lgb.train(
                {**_PARAMS, "num_threads": self.num_threads},
                train,
                self.num_boost_round,
                callbacks=[advance_each_round(rounds)],
            )
        self._boosters[category] = booster
        fitted = np.asarray(booster.predict(X[chosen][:, columns]), dtype=np.float64)
        self.smearing_[category] = _smearing_factor(target, fitted)

    @property
    def boosters_(self) -> dict[str, lgb.Booster]:
        """The fitted regressions by category (those with too few spenders have none), every one parsed."""
        self._check_fitted()
        return {category: self._booster(category) for category in self.modelled_categories}

    @property
    def modelled_categories(self) -> tuple[str, ...]:
        """The categories with a regression, in SPEND_CATEGORIES order (the others get their median)."""
        self._check_fitted()
        return tuple(c for c in SPEND_CATEGORIES if c in self._boosters or c in self._model_texts)

    def _booster(self, category: str) -> lgb.Booster:
        # A loaded estimator parses a regression when it is first used: serving never does (the profile
        # snapshot holds the estimates), and parsing all 16 was most of loading a model (0.12 of 0.16 s).
        # Two threads parsing the same one at once each get a whole booster; one of them is kept. The
        # bytes were checked against the manifest's checksums when the model folder was loaded.
        booster = self._boosters.get(category)
        if booster is None:
            booster = lgb.Booster(model_str=self._model_texts[category])
            self._boosters[category] = booster
        return booster

    @property
    def learned_nothing(self) -> bool:
        """True when no cardholder spent in any category on the card (no transactions): every estimate is $0."""
        self._check_fitted()
        return not any(self.train_rows_.values())

    def describe(self) -> str:
        """What the estimator learned from, in one sentence for the report, the summary and the manifest."""
        if self.learned_nothing:
            return (
                "nothing to learn from: no cardholder has card spend in any category (no transactions), "
                "so estimated spend and the value of earn-rate benefits are $0"
            )
        fitted = len(self.modelled_categories)
        medians = len(SPEND_CATEGORIES) - fitted
        return f"a regression for {fitted} of {len(SPEND_CATEGORIES)} categories" + (
            f", the median card spend for {medians} with too few spenders" if medians else ""
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "inputs_"):
            raise ModelError("This SpendEstimator is not fitted yet. Call 'fit' first.")

    def _estimate(self, X: FloatArray, names: Sequence[str]) -> FloatArray:
        index = {name: i for i, name in enumerate(names)}
        out = np.empty((X.shape[0], len(SPEND_CATEGORIES)), dtype=np.float64)
        for i, category in enumerate(SPEND_CATEGORIES):
            if category not in self._boosters and category not in self._model_texts:
                out[:, i] = self.fallback_usd_[category]
                continue
            missing = [n for n in self.inputs_[category] if n not in index]
            if missing:
                raise ModelError(
                    f"spend estimator for {category} needs features that are missing: {missing[:5]}"
                )
            columns = [index[n] for n in self.inputs_[category]]
            fitted = np.asarray(self._booster(category).predict(X[:, columns]), dtype=np.float64)
            out[:, i] = np.expm1(fitted) * self.smearing_[category]
        return np.maximum(out, 0.0)

    def predict(self, X: FloatArray, names: Sequence[str]) -> FloatArray:
        """Yearly spend per category (columns in SPEND_CATEGORIES order): max(card spend 365 days, estimate)."""
        self._check_fitted()
        index = {name: i for i, name in enumerate(names)}
        observed = np.column_stack([X[:, index[f"spend_{c}_365d_usd"]] for c in SPEND_CATEGORIES])
        return np.maximum(np.nan_to_num(observed, nan=0.0), self._estimate(X, names))

    def to_artifacts(self) -> dict[str, bytes]:
        """LightGBM text models, one per category that had enough spenders, and a JSON description."""
        self._check_fitted()
        files = {
            estimator_file(c): (
                self._model_texts[c] if c in self._model_texts else self._boosters[c].model_to_string()
            ).encode()
            for c in self.modelled_categories
        }
        modelled = set(self.modelled_categories)
        meta = {
            "categories": {
                c: {
                    "inputs": self.inputs_[c],
                    "fallback_usd": self.fallback_usd_[c],
                    "smearing": self.smearing_[c],
                    "reference_usd": self.reference_usd_[c],
                    "train_rows": self.train_rows_[c],
                    "model": estimator_file(c) if c in modelled else None,
                }
                for c in SPEND_CATEGORIES
            }
        }
        files[ESTIMATOR_FILE] = json.dumps(meta, sort_keys=True, indent=1).encode()
        return files

    @classmethod
    def from_artifacts(cls, files: Mapping[str, bytes]) -> SpendEstimator:
        """Rebuilds a fitted estimator from checked artifact bytes."""
        try:
            meta = json.loads(files[ESTIMATOR_FILE])["categories"]
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{ESTIMATOR_FILE}: missing or malformed ({exc})") from None
        estimator = cls()
        estimator._boosters = {}
        estimator._model_texts = {}
        estimator.inputs_ = {}
        estimator.fallback_usd_ = {}
        estimator.smearing_ = {}
        estimator.reference_usd_ = {}
        estimator.train_rows_ = {}
        for category in SPEND_CATEGORIES:
            entry = meta.get(category)
            if entry is None:
                raise ModelError(f"{ESTIMATOR_FILE}: no entry for category {category!r}")
            estimator.inputs_[category] = list(entry["inputs"])
            estimator.fallback_usd_[category] = float(entry["fallback_usd"])
            # Model folders written before smearing existed estimate the median: factor 1.
            estimator.smearing_[category] = float(entry.get("smearing", 1.0))
            estimator.reference_usd_[category] = float(entry["reference_usd"])
            estimator.train_rows_[category] = int(entry["train_rows"])
            if entry["model"] is not None:
                text = files[entry["model"]].decode()
                if _feature_names(text) != estimator.inputs_[category]:
                    raise ModelError(f"{entry['model']}: its features do not match {ESTIMATOR_FILE}")
                estimator._model_texts[category] = text
        return estimator


def _feature_names(model_text: str) -> list[str] | None:
    """The `feature_names=` line of a LightGBM text model (what `Booster.feature_name()` returns once
    parsed), read without parsing the trees; None when the text has no such line."""
    for line in model_text.split("\n", 20)[:20]:
        if line.startswith("feature_names="):
            return line.removeprefix("feature_names=").split(" ")
    return None
