"""Drift: a model's training data and newer data or a served profile snapshot → what shifted, and by how much.

`reference` keeps what drift needs about a model's training rows in its folder (`drift.json`: bins and
counts per feature, outcome rates per benefit, score bins); `stability` bins a feature and computes the
population stability index (PSI); `compare` measures new values against a reference and renders the
findings; `relation` finds the features whose relation to the outcome broke (permutation importance then
and now, for a backtest to confirm). The training job writes the reference, `nba drift` and the service
read it.
"""

from nba.drift._compare import (
    CalibrationBeside,
    DriftSection,
    FeatureShift,
    RateBeside,
    ScoreShift,
    feature_shifts,
    profile_shifts,
    rates_beside,
    render_section,
    sampling_psi,
    score_shift,
    shift_of,
)
from nba.drift._reference import (
    DRIFT_FILE,
    SCORE_FEATURE,
    BenefitOutcomes,
    DriftReference,
    PopulationReference,
    benefit_outcomes,
    build_drift_reference,
    drift_files,
    load_drift_reference,
)
from nba.drift._relation import RelationShift, auc, relation_shifts
from nba.drift._stability import FeatureBins, count_bins, fit_bins, population_stability, psi_band

__all__ = [
    "DRIFT_FILE",
    "SCORE_FEATURE",
    "BenefitOutcomes",
    "CalibrationBeside",
    "DriftReference",
    "DriftSection",
    "FeatureBins",
    "FeatureShift",
    "PopulationReference",
    "RateBeside",
    "RelationShift",
    "ScoreShift",
    "auc",
    "benefit_outcomes",
    "build_drift_reference",
    "count_bins",
    "drift_files",
    "feature_shifts",
    "fit_bins",
    "load_drift_reference",
    "population_stability",
    "profile_shifts",
    "psi_band",
    "rates_beside",
    "relation_shifts",
    "render_section",
    "sampling_psi",
    "score_shift",
    "shift_of",
]
