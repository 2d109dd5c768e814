"""Drift reference: a model's training rows → what drift is measured against, kept in its folder as `drift.json`.

It holds, for the rows the model learnt from (one per presentation heard): every model feature's bins and
counts, the outcome rates per benefit (accepted on the call, adopted within 30 days), the bins of the
model's own scores; and, when the training job has it, every cardholder's features as of one date (the
population a profile snapshot holds, which differs from the callers a training set holds). Counts, not
rows: nothing about any one cardholder is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from nba.drift._stability import FeatureBins, fit_bins
from nba.errors import DataError, ModelError
from nba.files import one_line
from nba.model._registry import ModelManifest, dump_json_artifact, load_json_artifact, read_model_file
from nba.vocab import UNHEARD_OUTCOMES

DRIFT_FILE: Final = "drift.json"
SCORE_FEATURE: Final = "p_adopt"
FloatArray = npt.NDArray[np.float64]


class BenefitOutcomes(BaseModel):
    """One benefit's presentations in the reference rows and what came of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benefit_id: str = Field(min_length=1)
    heard: int = Field(
        ge=0
    )  # presentations discussed on the call (outcome other than not_discussed or unmarked)
    accepted: int = Field(ge=0)  # of those, the agent recorded `accepted`
    adopted: int = Field(ge=0)  # of those, first use within 30 days

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.heard if self.heard else None

    @property
    def adoption_rate(self) -> float | None:
        return self.adopted / self.heard if self.heard else None


class PopulationReference(BaseModel):
    """Every cardholder's features as of one date: what a profile snapshot is compared with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: date
    rows: int = Field(ge=0)
    features: list[FeatureBins]


class DriftReference(BaseModel):
    """What `drift.json` holds (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = 1
    first_presentation: date
    last_presentation: date
    rows: int = Field(ge=1)
    features: list[FeatureBins]
    benefits: list[BenefitOutcomes]
    scores: FeatureBins
    score_mean: float
    population: PopulationReference | None = None

    def benefit(self, benefit_id: str) -> BenefitOutcomes | None:
        return next((b for b in self.benefits if b.benefit_id == benefit_id), None)


def fit_feature_bins(columns: Mapping[str, FloatArray], categorical: Collection[str]) -> list[FeatureBins]:
    """Bins for every column, in order; categorical ones by level (codes), the others at deciles."""
    return [fit_bins(name, values, categorical=name in categorical) for name, values in columns.items()]


def benefit_outcomes(
    benefit_id: Sequence[str], outcome: Sequence[str | None], adopted: npt.ArrayLike
) -> list[BenefitOutcomes]:
    """Per benefit (sorted by id): presentations heard, accepted and adopted (rows `not_discussed` or `unmarked` left out)."""
    ids = np.asarray(benefit_id, dtype=object)
    said = np.asarray(["" if o is None else o for o in outcome], dtype=object)
    took = np.asarray(adopted, dtype=np.float64) > 0
    heard = ~np.isin(said, UNHEARD_OUTCOMES)
    records = []
    for benefit in sorted(set(ids[heard].tolist())):
        rows = heard & (ids == benefit)
        records.append(
            BenefitOutcomes(
                benefit_id=str(benefit),
                heard=int(rows.sum()),
                accepted=int((rows & (said == "accepted")).sum()),
                adopted=int((rows & took).sum()),
            )
        )
    return records


def build_drift_reference(
    *,
    features: Mapping[str, FloatArray],
    categorical: Collection[str],
    presented_on: Sequence[date],
    benefit_id: Sequence[str],
    outcome: Sequence[str | None],
    adopted: npt.ArrayLike,
    scores: FloatArray,
    population: tuple[date, Mapping[str, FloatArray]] | None = None,
) -> DriftReference:
    """The drift reference of a model's training rows (one per presentation heard).

    `features` maps each model feature to its values on those rows (the encoded matrix's columns, so a
    categorical feature is its code), `scores` is the model's p_adopt on them; `population`, when given,
    is a date and every cardholder's features as of it. Raises DataError when there are no rows.
    """
    if len(presented_on) == 0:
        raise DataError("no training rows to keep a drift reference of")
    days = sorted(presented_on)
    score_values = np.asarray(scores, dtype=np.float64)
    return DriftReference(
        first_presentation=days[0],
        last_presentation=days[-1],
        rows=len(days),
        features=fit_feature_bins(features, categorical),
        benefits=benefit_outcomes(benefit_id, outcome, adopted),
        scores=fit_bins(SCORE_FEATURE, score_values, categorical=False),
        score_mean=float(np.nanmean(score_values)) if len(score_values) else 0.0,
        population=(
            None
            if population is None
            else PopulationReference(
                as_of=population[0],
                rows=len(next(iter(population[1].values()), [])),
                features=fit_feature_bins(population[1], categorical),
            )
        ),
    )


def drift_files(reference: DriftReference) -> dict[str, bytes]:
    """The model folder's file for a drift reference: `{DRIFT_FILE: JSON bytes}`."""
    return {DRIFT_FILE: dump_json_artifact(reference.model_dump(mode="json"))}


def load_drift_reference(model_dir: Path, manifest: ModelManifest) -> DriftReference | None:
    """The drift reference of a checked model folder, or None for a model trained before folders kept one.

    The bytes are checked against the manifest's SHA-256 as read. Raises ModelError for a changed or
    malformed file.
    """
    if DRIFT_FILE not in manifest.files:
        return None
    data = read_model_file(model_dir, manifest, DRIFT_FILE)
    raw = load_json_artifact(data, source=f"{model_dir}: {DRIFT_FILE}")
    try:
        return DriftReference.model_validate(raw)
    except PydanticValidationError as exc:
        raise ModelError(f"{model_dir}: {DRIFT_FILE}: {one_line(exc)}") from None
