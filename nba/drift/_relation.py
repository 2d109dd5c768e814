"""Relation drift: a fitted model + labelled rows from then and from now → the features whose relation to the
outcome broke (the model ranks better on the newest rows with the feature scrambled than with it).

Permutation importance, measured twice: for each feature, the AUC lost when its column is shuffled among
the rows (`repeats` times, mean), on the rows of then and on the rows of now. A feature the model leans on
that now costs AUC (loss below zero on the newest rows) is one whose relation to the outcome has changed;
a backtest confirms it by refitting without it (the config line `exclude: [name]`).

Example:
    >>> shifts = relation_shifts(model_scores, X_then, y_then, X_now, y_now, names)
    >>> [s.name for s in shifts if s.broken]
    ['spend_air_travel_90d_usd']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nba.errors import DataError, check_param

FloatArray = npt.NDArray[np.float64]
Scorer = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True)
class RelationShift:
    """One feature's permutation importance (AUC lost when shuffled) then and now."""

    name: str
    auc_loss_then: float
    auc_loss_now: float

    @property
    def broken(self) -> bool:
        """The model ranks the newest rows better without this feature, though it helped before."""
        return self.auc_loss_now < 0.0 < self.auc_loss_then


def auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count half), by ranks; NaN when `y` has one class only."""
    labels = np.asarray(y, dtype=np.float64) > 0
    values = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    # Average ranks over ties (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auc_losses(
    score: Scorer, X: FloatArray, y: FloatArray, rng: np.random.Generator, repeats: int
) -> FloatArray:
    base = auc(y, score(X))
    losses = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        total = 0.0
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[:, j] = X[rng.permutation(len(X)), j]
            total += base - auc(y, score(shuffled))
        losses[j] = total / repeats
    return losses


def relation_shifts(
    score: Scorer,
    X_then: FloatArray,
    y_then: npt.ArrayLike,
    X_now: FloatArray,
    y_now: npt.ArrayLike,
    feature_names: Sequence[str],
    *,
    repeats: int = 3,
    seed: int = 0,
) -> tuple[RelationShift, ...]:
    """Each feature's AUC loss when shuffled, on the rows of then and of now, most harmful now first.

    `score` maps model rows to scores (a fitted model's p_adopt); `X_*` are its input rows with labels
    `y_*` (adopted 0/1). The same seed gives the same result. Raises DataError when the columns do not
    match the names or either side has a single class.
    """
    check_param("repeats", repeats, repeats >= 1, "a positive integer", DataError)
    then_y, now_y = np.asarray(y_then, dtype=np.float64), np.asarray(y_now, dtype=np.float64)
    for side, X, y in (("then", X_then, then_y), ("now", X_now, now_y)):
        if X.ndim != 2 or X.shape[1] != len(feature_names) or len(X) != len(y):
            raise DataError(
                f"`X_{side}` must be rows × {len(feature_names)} features with one label per row, "
                f"got {X.shape} and {len(y)} labels"
            )
        if len(set((y > 0).tolist())) < 2:
            raise DataError(f"`y_{side}` must hold adopters and non-adopters, got one class only")
    rng = np.random.default_rng(seed)
    then = _auc_losses(score, X_then, then_y, rng, repeats)
    now = _auc_losses(score, X_now, now_y, rng, repeats)
    shifts = [
        RelationShift(str(name), float(a), float(b))
        for name, a, b in zip(feature_names, then, now, strict=True)
    ]
    return tuple(sorted(shifts, key=lambda s: (s.auc_loss_now - s.auc_loss_then, s.name)))
