"""Stability: a feature's reference sample and a new sample → bins, counts per bin, population stability index.

Numeric features are cut at the reference's deciles, categorical ones by level; a missing value (NaN,
None) has a bin of its own, and so, for a categorical feature, does a level the reference never had.
PSI = Σ (a_i − e_i) · ln(a_i / e_i) over the bins, with e the reference's shares and a the new sample's
(each floored at `PSI_SHARE_FLOOR`, so an empty bin counts heavily but finitely).

Example:
    >>> bins = fit_bins("spend_90d_usd", reference_values, categorical=False)
    >>> population_stability(bins.counts, count_bins(bins, new_values))
    0.031
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nba.errors import DataError
from nba.vocab import DRIFT_QUANTILE_BINS, PSI_MAJOR, PSI_MODERATE, PSI_SHARE_FLOOR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PsiBand = Literal["stable", "moderate", "major"]
_MISSING_LEVEL: Final = "(missing)"


class FeatureBins(BaseModel):
    """How one feature's reference sample is binned, and how many reference rows fell in each bin.

    Numeric: `edges` are cut points e_0 < … < e_{k−1} (the reference's deciles, repeats merged); bin 0
    holds (−∞, e_0], bin i (e_{i−1}, e_i], bin k (e_{k−1}, ∞). Categorical: `levels` are the reference's
    levels, sorted, one bin each, then one bin for any other level. Either way the last bin of `counts`
    holds the missing values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"]
    edges: list[float] = Field(default_factory=list)
    levels: list[str] = Field(default_factory=list)
    counts: list[int]

    @model_validator(mode="after")
    def _check_shape(self) -> FeatureBins:
        if self.kind == "numeric":
            if self.levels:
                raise ValueError(f"{self.name}: a numeric feature has edges, not levels")
            if not all(math.isfinite(e) for e in self.edges) or any(
                a >= b for a, b in zip(self.edges, self.edges[1:], strict=False)
            ):
                raise ValueError(f"{self.name}: edges must be finite and strictly increasing")
            expected = len(self.edges) + 2
        else:
            if self.edges:
                raise ValueError(f"{self.name}: a categorical feature has levels, not edges")
            expected = len(self.levels) + 2
        if len(self.counts) != expected or any(c < 0 for c in self.counts):
            raise ValueError(f"{self.name}: expected {expected} non-negative counts, got {self.counts}")
        return self

    @property
    def missing(self) -> int:
        return self.counts[-1]

    @property
    def total(self) -> int:
        return sum(self.counts)


def _level_keys(values: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.str_]]:
    """Which values are missing, and the others as level names (a whole-number float code reads as `3`)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        missing = np.isnan(array)
        present = array[~missing]
        whole = np.all(np.mod(present, 1.0) == 0.0) if len(present) else True
        keys = present.astype(np.int64).astype(str) if whole else present.astype(str)
        return missing, keys
    if array.dtype.kind in "iub":
        return np.zeros(len(array), dtype=bool), array.astype(str)
    objects = array.astype(object)
    missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in objects], dtype=bool)
    return missing, objects[~missing].astype(str)


def fit_bins(
    name: str, values: npt.ArrayLike, *, categorical: bool, n_bins: int = DRIFT_QUANTILE_BINS
) -> FeatureBins:
    """The bins of a reference sample, with its counts (see FeatureBins).

    `values` is a 1-D array (NaN or None for missing). Numeric values are cut at their `n_bins`-quantiles;
    a feature with no non-missing value has no edges (one bin besides the missing one).
    """
    if categorical:
        _, keys = _level_keys(values)
        levels = sorted(set(keys.tolist()))
        bins = FeatureBins(name=name, kind="categorical", levels=levels, counts=[0] * (len(levels) + 2))
    else:
        numbers = np.asarray(values, dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        cuts = np.quantile(finite, np.arange(1, n_bins) / n_bins) if len(finite) else np.zeros(0)
        edges = np.unique(cuts).tolist()
        bins = FeatureBins(name=name, kind="numeric", edges=edges, counts=[0] * (len(edges) + 2))
    return bins.model_copy(update={"counts": count_bins(bins, values).tolist()})


def count_bins(bins: FeatureBins, values: npt.ArrayLike) -> IntArray:
    """How many of `values` fall in each of `bins`' bins (the missing bin last)."""
    n_bins = len(bins.counts)
    if bins.kind == "numeric":
        numbers = np.asarray(values, dtype=np.float64)
        missing = np.isnan(numbers)
        index = np.searchsorted(np.asarray(bins.edges, dtype=np.float64), numbers[~missing], side="left")
        counts: IntArray = np.bincount(index, minlength=n_bins).astype(np.int64)
        counts[-1] = int(missing.sum())
        return counts
    missing, keys = _level_keys(values)
    position = {level: i for i, level in enumerate(bins.levels)}
    other = len(bins.levels)
    unique, inverse = np.unique(keys, return_inverse=True)
    slot = np.array([position.get(str(u), other) for u in unique], dtype=np.int64)
    counts = (
        np.bincount(slot[inverse], minlength=n_bins).astype(np.int64)
        if len(keys)
        else np.zeros(n_bins, np.int64)
    )
    counts[-1] = int(missing.sum())
    return counts


def population_stability(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI between two count vectors over the same bins (reference first).

    Raises DataError when the vectors differ in length or either is empty (no rows to compare).
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise DataError(
            f"`expected` and `actual` must be counts over the same bins, got {e.shape} and {a.shape}"
        )
    if e.sum() <= 0 or a.sum() <= 0:
        raise DataError("`expected` and `actual` must each count at least one row")
    e_share = np.maximum(e / e.sum(), PSI_SHARE_FLOOR)
    a_share = np.maximum(a / a.sum(), PSI_SHARE_FLOOR)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def psi_band(psi: float) -> PsiBand:
    """`stable` below PSI_MODERATE (0.1), `moderate` below PSI_MAJOR (0.25), else `major`."""
    if psi < PSI_MODERATE:
        return "stable"
    return "moderate" if psi < PSI_MAJOR else "major"
