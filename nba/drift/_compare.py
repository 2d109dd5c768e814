"""Drift comparison: a drift reference and new values → the features that shifted, outcome rates then and now,
the score distribution then and now, observed adoption beside predicted; and a plain-text table of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from nba.drift._reference import BenefitOutcomes, DriftReference
from nba.drift._stability import FeatureBins, PsiBand, count_bins, population_stability, psi_band
from nba.profiles._profiles import Profiles
from nba.vocab import DRIFT_QUANTILE_BINS, PSI_MAJOR, PSI_MODERATE

# Below this expected sampling PSI the report does not warn about small samples.
SAMPLING_NOTE_PSI: Final = 0.03

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FeatureShift:
    """One feature's population stability against the reference, and its share of missing values in each."""

    name: str
    psi: float
    band: PsiBand
    reference_missing: float
    current_missing: float


@dataclass(frozen=True)
class RateBeside:
    """One benefit's rate in the reference rows and in the current ones (None where it had no rows)."""

    benefit_id: str
    reference_rows: int
    reference_rate: float | None
    current_rows: int
    current_rate: float | None


@dataclass(frozen=True)
class ScoreShift:
    """The model's scores then and now: PSI over the reference's score bins, and the means."""

    psi: float
    band: PsiBand
    reference_mean: float
    current_mean: float
    rows: int


@dataclass(frozen=True)
class CalibrationBeside:
    """For one benefit's presentations served by a model: observed 30-day adoption beside the mean p_adopt."""

    benefit_id: str
    rows: int
    observed_adoption: float
    mean_p_adopt: float


@dataclass(frozen=True)
class DriftSection:
    """One comparison: what was compared with what, and the findings (features most shifted first)."""

    title: str
    reference_rows: int
    current_rows: int
    features: tuple[FeatureShift, ...]
    acceptance: tuple[RateBeside, ...] = ()
    adoption: tuple[RateBeside, ...] = ()
    adoption_window: str = ""
    scores: ScoreShift | None = None
    calibration: tuple[CalibrationBeside, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features), default=0.0)

    def shifted(self, at_least: float = PSI_MODERATE) -> list[str]:
        """The features whose PSI is at least `at_least`, most shifted first."""
        return [f.name for f in self.features if f.psi >= at_least]


def shift_of(bins: FeatureBins, values: npt.ArrayLike) -> FeatureShift:
    """One feature's shift: PSI of `values` against the reference bins (raises DataError with no values)."""
    counts = count_bins(bins, values)
    psi = population_stability(bins.counts, counts)
    return FeatureShift(
        name=bins.name,
        psi=psi,
        band=psi_band(psi),
        reference_missing=bins.missing / bins.total,
        current_missing=float(counts[-1]) / float(counts.sum()),
    )


def feature_shifts(
    bins: Sequence[FeatureBins], columns: Mapping[str, npt.ArrayLike]
) -> tuple[FeatureShift, ...]:
    """Every reference feature present in `columns`, most shifted first (ties by name)."""
    shifts = [shift_of(b, columns[b.name]) for b in bins if b.name in columns]
    return tuple(sorted(shifts, key=lambda s: (-s.psi, s.name)))


def profile_shifts(
    reference: DriftReference,
    profiles: Profiles,
    feature_names: Sequence[str],
    max_rows: int | None = None,
) -> tuple[FeatureShift, ...]:
    """The shift of a served profile snapshot's cardholder features against the model's training data.

    `feature_names` are the profiles' holder columns in order (the model's cardholder features). They
    are compared with the reference's population (every cardholder as of one date) when it has one,
    else with the training rows. With `max_rows`, every k-th cardholder is measured so that at most that
    many are (PSI needs thousands of rows, not millions). Raises DataError for empty profiles.
    """
    bins = reference.population.features if reference.population is not None else reference.features
    position = {name: j for j, name in enumerate(feature_names)}
    n = len(profiles)
    step = max(1, -(-n // max_rows)) if max_rows else 1
    shifts = [shift_of(b, profiles.holder.column(position[b.name], step)) for b in bins if b.name in position]
    return tuple(sorted(shifts, key=lambda s: (-s.psi, s.name)))


def score_shift(reference: DriftReference, scores: FloatArray) -> ScoreShift:
    """The model's scores on the current rows against its scores on its training rows."""
    psi = population_stability(reference.scores.counts, count_bins(reference.scores, scores))
    return ScoreShift(psi, psi_band(psi), reference.score_mean, float(np.nanmean(scores)), len(scores))


def rates_beside(
    reference: Sequence[BenefitOutcomes],
    current: Mapping[str, tuple[int, int]],
    rate: str,
) -> tuple[RateBeside, ...]:
    """Per benefit in either: the reference's `rate` ("accepted" or "adopted") beside the current one.

    `current` maps a benefit to (rows heard, rows with the outcome).
    """
    by_id = {b.benefit_id: b for b in reference}
    rows = []
    for benefit_id in sorted(set(by_id) | set(current)):
        then = by_id.get(benefit_id)
        then_rows = then.heard if then is not None else 0
        then_hits = (then.accepted if rate == "accepted" else then.adopted) if then is not None else 0
        now_rows, now_hits = current.get(benefit_id, (0, 0))
        rows.append(
            RateBeside(
                benefit_id,
                then_rows,
                then_hits / then_rows if then_rows else None,
                now_rows,
                now_hits / now_rows if now_rows else None,
            )
        )
    return tuple(rows)


def sampling_psi(reference_rows: int, current_rows: int, n_bins: int = DRIFT_QUANTILE_BINS) -> float:
    """The PSI two samples of these sizes from one distribution show on average, over `n_bins` bins:
    (bins − 1) · (1/n + 1/m), the chi-square approximation."""
    if reference_rows <= 0 or current_rows <= 0:
        return float("inf")
    return (n_bins - 1) * (1 / reference_rows + 1 / current_rows)


# --- the table a person reads -----------------------------------------------------------------------------


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def render_section(section: DriftSection, top: int = 15) -> str:
    """A section as plain text (Markdown tables): the `top` most shifted features, then rates and scores."""
    lines = [f"## {section.title}", ""]
    lines.append(f"Reference rows: {section.reference_rows:,}; current rows: {section.current_rows:,}.")
    lines.extend(f"Note: {note}" for note in section.notes)
    noise = sampling_psi(section.reference_rows, section.current_rows)
    if section.features and noise >= SAMPLING_NOTE_PSI:
        lines.append(
            f"Note: with these row counts, sampling alone gives a PSI of about {noise:.2f} on decile bins "
            "(fewer rows per cardholder feature); read the bands with that in mind."
        )
    if section.features:
        moderate = sum(f.band == "moderate" for f in section.features)
        major = sum(f.band == "major" for f in section.features)
        lines += [
            "",
            f"Population stability (PSI; below {PSI_MODERATE} stable, {PSI_MODERATE}–{PSI_MAJOR} moderate shift, "
            f"{PSI_MAJOR} and above major shift): {major} major, {moderate} moderate, "
            f"{len(section.features) - major - moderate} stable of {len(section.features)} features; "
            f"the {min(top, len(section.features))} most shifted:",
            "",
            "| feature | PSI | band | missing then | missing now |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {f.name} | {f.psi:.3f} | {f.band} | {_share(f.reference_missing)} | {_share(f.current_missing)} |"
            for f in section.features[:top]
        ]
    if section.scores is not None:
        s = section.scores
        lines += [
            "",
            f"Scores (p_adopt) on {s.rows:,} rows: mean {s.reference_mean:.3f} then, {s.current_mean:.3f} now; "
            f"PSI {s.psi:.3f} ({s.band}).",
        ]
    for title, rates in (
        ("Accepted on the call, per benefit (share of presentations discussed)", section.acceptance),
        (f"Adopted within 30 days, per benefit{section.adoption_window}", section.adoption),
    ):
        if rates:
            lines += ["", f"{title}:", "", "| benefit | then | rows | now | rows |", "|---|---|---|---|---|"]
            lines += [
                f"| {r.benefit_id} | {_share(r.reference_rate)} | {r.reference_rows:,} | "
                f"{_share(r.current_rate)} | {r.current_rows:,} |"
                for r in rates
            ]
    if section.calibration:
        lines += [
            "",
            "Presentations served by a model (with p_adopt): observed 30-day adoption beside the mean predicted:",
            "",
            "| benefit | rows | observed | predicted |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c.benefit_id} | {c.rows:,} | {c.observed_adoption:.1%} | {c.mean_p_adopt:.1%} |"
            for c in section.calibration
        ]
    return "\n".join(lines) + "\n"
