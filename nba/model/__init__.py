"""The model: the propensity model and its calibration (`_propensity`), the uplift model (`_uplift`), the
detractor model (`_detractor`), the spend estimator (`_spend`), the flattened trees and their compiled walker
(`_trees`), path attribution (`_attribution`), the bundle that holds them for serving (`_bundle`) and the model
folders with their manifest and checksums (`_registry`).

Imports the contract and features rooms.
"""

from nba.model._attribution import PathAttributor, rank_contributions
from nba.model._bundle import (
    BENEFIT_ENCODER,
    HolderEncoding,
    ModelBundle,
    bundle_files,
    load_bundle,
    model_categorical,
    model_feature_names,
)
from nba.model._detractor import (
    DETRACTOR_FILE,
    MIN_DETRACTOR_CALLS,
    MIN_DETRACTOR_CLASS,
    DetractorModel,
    pitchless,
)
from nba.model._propensity import DEFAULT_PARAMS, Calibrator, CategoryEncoder, PropensityModel, fit_calibrator
from nba.model._registry import (
    CHAMPION_KEY,
    CURRENT_FILE,
    DEFAULT_PROMOTION_METRIC,
    ModelInfo,
    ModelManifest,
    baseline_problem,
    gate_promotion,
    is_version,
    list_models,
    load_model_dir,
    read_current,
    rollback,
    set_current,
    write_model_dir,
)
from nba.model._spend import SpendEstimator
from nba.model._uplift import (
    PROPENSITY_CLIP,
    UPLIFT_FILE,
    UpliftModel,
    UpliftSample,
    fold_of_groups,
    held_out_pseudo_outcomes,
    treatment_chance,
)

__all__ = [
    "BENEFIT_ENCODER",
    "CHAMPION_KEY",
    "CURRENT_FILE",
    "DEFAULT_PARAMS",
    "DEFAULT_PROMOTION_METRIC",
    "DETRACTOR_FILE",
    "MIN_DETRACTOR_CALLS",
    "MIN_DETRACTOR_CLASS",
    "PROPENSITY_CLIP",
    "UPLIFT_FILE",
    "Calibrator",
    "CategoryEncoder",
    "DetractorModel",
    "HolderEncoding",
    "ModelBundle",
    "ModelInfo",
    "ModelManifest",
    "PathAttributor",
    "PropensityModel",
    "SpendEstimator",
    "UpliftModel",
    "UpliftSample",
    "baseline_problem",
    "bundle_files",
    "fit_calibrator",
    "fold_of_groups",
    "gate_promotion",
    "held_out_pseudo_outcomes",
    "is_version",
    "list_models",
    "load_bundle",
    "load_model_dir",
    "model_categorical",
    "model_feature_names",
    "pitchless",
    "rank_contributions",
    "read_current",
    "rollback",
    "set_current",
    "treatment_chance",
    "write_model_dir",
]
