"""Model: a candidate matrix (cardholder × benefit features) → calibrated adoption probabilities (LightGBM)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from nba._compiled import compiled
from nba.errors import ModelError, check_param
from nba.model._registry import REQUIRED_FILE
from nba.progress import NO_PROGRESS, ProgressHook, advance_each_round

FloatArray = npt.NDArray[np.float64]

DEFAULT_PARAMS: Final[dict[str, Any]] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 8,
    "verbosity": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
}
MODEL_FILE: Final = REQUIRED_FILE
CALIBRATOR_FILE: Final = "calibrator.json"
ENCODERS_FILE: Final = "encoders.json"


@dataclass(frozen=True)
class CategoryEncoder:
    """Strings of one categorical feature → integer codes LightGBM reads natively.

    Codes are positions in `levels` (sorted, so the same training data gives the same codes);
    a value not seen in training, or missing, becomes NaN, which LightGBM routes as missing.
    """

    name: str
    levels: tuple[str, ...]

    @classmethod
    def fit(cls, name: str, values: Sequence[object] | npt.NDArray[Any]) -> CategoryEncoder:
        seen = {str(v) for v in values if v is not None and v == v}
        return cls(name, tuple(sorted(seen)))

    def transform(self, values: Sequence[object] | npt.NDArray[Any]) -> FloatArray:
        index = {level: float(i) for i, level in enumerate(self.levels)}
        return np.array(
            [index.get(str(v), np.nan) if v is not None and v == v else np.nan for v in values],
            dtype=np.float64,
        )

    def code_of(self, value: str | None) -> float:
        """The code of one value (NaN when unseen or missing): the request path's single lookup."""
        if value is None:
            return float("nan")
        try:
            return float(self.levels.index(value))
        except ValueError:
            return float("nan")


def encoders_to_json(encoders: Sequence[CategoryEncoder]) -> bytes:
    return json.dumps({e.name: list(e.levels) for e in encoders}, sort_keys=True, indent=1).encode()


def encoders_from_json(data: bytes) -> list[CategoryEncoder]:
    raw = json.loads(data)
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise ModelError(f"{ENCODERS_FILE}: expected an object of name → list of levels")
    return [CategoryEncoder(str(name), tuple(str(level) for level in levels)) for name, levels in raw.items()]


@dataclass(frozen=True)
class Calibrator:
    """Raw model probability → calibrated probability: isotonic (piecewise linear) or Platt (logistic).

    Stored as JSON numbers, never pickled. `identity` means calibration did not help and is off.
    """

    kind: Literal["identity", "isotonic", "platt"]
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    @functools.cached_property
    def _knots(self) -> tuple[FloatArray, FloatArray]:
        # The isotonic knots as arrays once, not on every request.
        return np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)

    def apply(self, p_raw: FloatArray) -> FloatArray:
        if self.kind == "isotonic":
            x, y = self._knots
            interpolated: FloatArray = np.interp(p_raw, x, y)
            return interpolated
        if self.kind == "platt":
            p = np.ascontiguousarray(p_raw, dtype=np.float64)
            return _platt(p.reshape(-1), self.a, self.b).reshape(np.shape(p_raw))
        return p_raw

    def of_log_odds(self, raw: FloatArray) -> FloatArray:
        """`apply` to the probabilities of raw scores (log-odds), as a binary booster's `predict` gives them."""
        flat = np.ascontiguousarray(raw, dtype=np.float64).reshape(-1)
        if self.kind == "platt":
            return _platt_of_log_odds(flat, self.a, self.b).reshape(np.shape(raw))
        return self.apply(_sigmoid(flat).reshape(np.shape(raw)))

    def to_json(self) -> bytes:
        return json.dumps(
            {"kind": self.kind, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b},
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Calibrator:
        raw = json.loads(data)
        if raw.get("kind") not in ("identity", "isotonic", "platt"):
            raise ModelError(f"{CALIBRATOR_FILE}: unknown calibrator kind {raw.get('kind')!r}")
        return cls(raw["kind"], tuple(raw["x"]), tuple(raw["y"]), float(raw["a"]), float(raw["b"]))


@compiled
def _sigmoid(raw: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-raw))


@compiled
def _platt(p_raw: FloatArray, a: float, b: float) -> FloatArray:
    # Compiled: on the request path a handful of probabilities went through ten numpy calls (~10 µs).
    logit = np.log(
        np.minimum(np.maximum(p_raw, 1e-12), 1 - 1e-12) / np.minimum(np.maximum(1 - p_raw, 1e-12), 1)
    )
    return 1.0 / (1.0 + np.exp(-(a * logit + b)))


@compiled
def _platt_of_log_odds(raw: FloatArray, a: float, b: float) -> FloatArray:
    return _platt(_sigmoid(raw), a, b)


def _log_loss(y: FloatArray, p: FloatArray) -> float:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_calibrator(y: FloatArray, p_raw: FloatArray) -> tuple[Calibrator, dict[str, float]]:
    """Chooses the calibration that lowers log loss most on held-out predictions (2-fold cross-fitted).

    Returns the calibrator (identity when neither isotonic nor Platt helps) and the log loss of each option.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    half = np.arange(n) % 2 == 0
    logit = np.log(np.clip(p_raw, 1e-12, 1 - 1e-12) / np.clip(1 - p_raw, 1e-12, 1)).reshape(-1, 1)
    losses = {"identity": _log_loss(y, p_raw)}
    if n < 200 or y.min() == y.max():
        return Calibrator("identity"), losses
    iso_pred = np.empty(n)
    platt_pred = np.empty(n)
    for fit_mask in (half, ~half):
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_raw[fit_mask], y[fit_mask])
        iso_pred[~fit_mask] = iso.predict(p_raw[~fit_mask])
        platt = LogisticRegression(C=1e6).fit(logit[fit_mask], y[fit_mask])
        platt_pred[~fit_mask] = platt.predict_proba(logit[~fit_mask])[:, 1]
    losses["isotonic"] = _log_loss(y, iso_pred)
    losses["platt"] = _log_loss(y, platt_pred)
    best = min(losses, key=lambda kind: (losses[kind], kind != "identity"))
    # Only a real improvement is worth a transformation the scores then carry forever.
    if best == "identity" or losses[best] > losses["identity"] - 1e-4:
        return Calibrator("identity"), losses
    if best == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_raw, y)
        return Calibrator(
            "isotonic", tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_))
        ), losses
    platt = LogisticRegression(C=1e6).fit(logit, y)
    return Calibrator("platt", a=float(platt.coef_[0][0]), b=float(platt.intercept_[0])), losses


class PropensityModel:
    """LightGBM binary model of adoption within 30 days, with optional calibration.

    Follows scikit-learn's estimator contract: `__init__` stores its arguments, `fit` validates and
    learns (`booster_`, `calibrator_`, `feature_names_`, `best_iteration_`,
    `early_stopping_iteration_`), `predict_proba` checks it was fitted.

    With `refit`, the number of trees is found by early stopping on the later slice and the
    calibration is fitted there; then the model is trained again on both slices with that many trees
    scaled by the rows added (the most recent presentations are the ones most like tomorrow's calls),
    and keeps the calibrator of the first pass: no rows are left that it has not seen.

    Example:
        >>> model = PropensityModel(num_boost_round=300).fit(X, y, names, ["product_id"], X_valid, y_valid)
        >>> model.predict_proba(X_valid)[:, 1]
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 2000,
        early_stopping_rounds: int = 100,
        calibrate: bool = True,
        num_threads: int = 0,
        refit: bool = False,
    ) -> None:
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.calibrate = calibrate
        self.num_threads = num_threads
        self.refit = refit

    def fit(
        self,
        X: FloatArray,
        y: FloatArray,
        feature_names: Sequence[str],
        categorical_features: Sequence[str],
        X_valid: FloatArray,
        y_valid: FloatArray,
        progress: ProgressHook = NO_PROGRESS,
    ) -> PropensityModel:
        """Trains on (X, y) with early stopping on the later slice (X_valid, y_valid), then calibrates on it;
        with `refit`, trains the final trees on both slices.

        `progress` gets a bar over the boosting rounds of each pass (the first ends at early stopping).
        """
        self._check_inputs(X, y, feature_names, categorical_features, y_valid)
        params = {**DEFAULT_PARAMS, **(self.params or {}), "num_threads": self.num_threads}
        train = lgb.Dataset(
            X,
            y,
            feature_name=list(feature_names),
            categorical_feature=list(categorical_features),
            free_raw_data=False,
        )
        valid = lgb.Dataset(X_valid, y_valid, reference=train)
        callbacks: list[Callable[..., Any]] = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        with progress.track("rounds until early stopping", self.num_boost_round) as rounds:
            callbacks.append(advance_each_round(rounds))
            booster = lgb.train(params, train, self.num_boost_round, valid_sets=[valid], callbacks=callbacks)
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.early_stopping_iteration_ = self.best_iteration_
        self.feature_names_ = list(feature_names)
        self.categorical_features_ = list(categorical_features)
        p_valid = np.asarray(booster.predict(X_valid, num_iteration=self.best_iteration_), dtype=np.float64)
        # Out-of-time predictions of the first pass: one fold of a later calibration over time.
        self.valid_raw_proba_ = p_valid
        if self.calibrate:
            self.calibrator_, self.calibration_losses_ = fit_calibrator(y_valid.astype(np.float64), p_valid)
        else:
            self.calibrator_, self.calibration_losses_ = Calibrator("identity"), {}
        if self.refit and len(y_valid):
            # The bins of the first pass are reused (reference=train); the list avoids copying X.
            both = lgb.Dataset(
                [X, X_valid],
                np.concatenate([y, y_valid]),
                feature_name=list(feature_names),
                categorical_feature=list(categorical_features),
                reference=train,
            )
            total = max(1, round(self.best_iteration_ * (len(y) + len(y_valid)) / len(y)))
            with progress.track("rounds on both slices (refit)", total) as rounds:
                self.booster_ = lgb.train(params, both, total, callbacks=[advance_each_round(rounds)])
            self.best_iteration_ = total
        return self

    def fit_rounds(
        self,
        X: FloatArray,
        y: FloatArray,
        feature_names: Sequence[str],
        categorical_features: Sequence[str],
        calibrator: Calibrator,
        progress: ProgressHook = NO_PROGRESS,
    ) -> PropensityModel:
        """Trains exactly `num_boost_round` trees on every row of (X, y), none held out, and keeps
        `calibrator` (fitted beforehand on out-of-time predictions: no row is left to fit it on).

        For the model that ships: the number of trees comes from an earlier fit's early stopping.
        """
        self._check_inputs(X, y, feature_names, categorical_features)
        params = {**DEFAULT_PARAMS, **(self.params or {}), "num_threads": self.num_threads}
        train = lgb.Dataset(
            X, y, feature_name=list(feature_names), categorical_feature=list(categorical_features)
        )
        with progress.track("rounds on every labelled row", self.num_boost_round) as rounds:
            self.booster_ = lgb.train(
                params, train, self.num_boost_round, callbacks=[advance_each_round(rounds)]
            )
        self.best_iteration_ = self.num_boost_round
        self.early_stopping_iteration_ = self.num_boost_round
        self.feature_names_ = list(feature_names)
        self.categorical_features_ = list(categorical_features)
        self.calibrator_, self.calibration_losses_ = calibrator, {}
        return self

    def _check_inputs(
        self,
        X: FloatArray,
        y: FloatArray,
        feature_names: Sequence[str],
        categorical_features: Sequence[str],
        y_valid: FloatArray | None = None,
    ) -> None:
        rounds = self.num_boost_round
        check_param("num_boost_round", rounds, 1 <= rounds <= 100_000, "an int in [1, 100000]")
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise ValueError(
                f"`X` must have one column per feature name ({len(feature_names)}), got shape {X.shape}"
            )
        unknown = set(categorical_features) - set(feature_names)
        if unknown:
            raise ValueError(f"`categorical_features` names columns that are not features: {sorted(unknown)}")
        for name, labels in (("y", y), ("y_valid", y_valid)):
            if labels is not None and not np.isin(labels, (0, 1)).all():
                raise ValueError(f"`{name}` must hold only 0 and 1")
        if y.sum() == 0:
            raise ValueError("`y` has no positive labels: nobody adopted a benefit in the training period")

    def _check_fitted(self) -> lgb.Booster:
        booster: lgb.Booster | None = getattr(self, "booster_", None)
        if booster is None:
            raise ModelError("This PropensityModel is not fitted yet. Call 'fit' first.")
        return booster

    def predict_raw(self, X: FloatArray) -> FloatArray:
        """Uncalibrated probabilities from the booster (single-threaded: the request path's call)."""
        booster = self._check_fitted()
        return np.asarray(
            booster.predict(X, num_iteration=self.best_iteration_, num_threads=1), dtype=np.float64
        )

    def predict_proba(self, X: FloatArray) -> FloatArray:
        """Calibrated probabilities as an (n, 2) array: column 1 is the chance of adoption."""
        p_raw = self.predict_raw(X)
        p = self.calibrator_.apply(p_raw)
        return np.column_stack([1 - p, p])

    def to_artifacts(self) -> dict[str, bytes]:
        """The files that store this model: LightGBM's text format and the calibrator as JSON."""
        booster = self._check_fitted()
        return {
            MODEL_FILE: booster.model_to_string(num_iteration=self.best_iteration_).encode(),
            CALIBRATOR_FILE: self.calibrator_.to_json(),
        }

    @classmethod
    def from_artifacts(cls, files: Mapping[str, bytes], feature_names: Sequence[str]) -> PropensityModel:
        """Rebuilds a fitted model from checked artifact bytes; the feature list must match the booster's."""
        booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
        if list(booster.feature_name()) != list(feature_names):
            raise ModelError(
                f"{MODEL_FILE}: its features do not match the manifest "
                f"({len(booster.feature_name())} in the model, {len(feature_names)} in the manifest)"
            )
        model = cls()
        model.booster_ = booster
        model.best_iteration_ = booster.current_iteration()
        model.early_stopping_iteration_ = model.best_iteration_
        model.feature_names_ = list(feature_names)
        model.categorical_features_ = []
        model.calibrator_ = Calibrator.from_json(files[CALIBRATOR_FILE])
        model.calibration_losses_ = {}
        return model
