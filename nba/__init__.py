"""nba: the core library of the next-best-conversation engine (data contract, catalog, MCC map, ...)."""

from nba.contract._catalog import Benefit, Catalog, Product, load_catalog
from nba.contract._mcc import MccMap, load_mcc_map
from nba.contract._tables import TABLES, DataSource, open_data
from nba.contract._validation import DataSummary, ValidationReport, validate_data
from nba.decision._arbitration import ArbitrationConfig
from nba.decision._engine import ContactPolicy, Decision, Engine, EngineConfig, Suggestion
from nba.errors import (
    CatalogError,
    ConflictError,
    DataError,
    ModelError,
    NbaError,
    NotFoundError,
    Problem,
    SchemaError,
    UnavailableError,
    UnknownIdError,
    ValidationError,
)
from nba.features._sql import ExtraColumns, FeatureConfig, build_benefit_history, build_cardholder_features
from nba.model._bundle import ModelBundle, load_bundle
from nba.model._registry import (
    ModelManifest,
    list_models,
    load_model_dir,
    read_current,
    rollback,
    set_current,
)
from nba.profiles._profiles import Profiles, build_profiles
from nba.vocab import BENEFIT_KINDS, CALL_REASONS, OUTCOMES, SPEND_CATEGORIES

__all__ = [
    "BENEFIT_KINDS",
    "CALL_REASONS",
    "OUTCOMES",
    "SPEND_CATEGORIES",
    "TABLES",
    "ArbitrationConfig",
    "Benefit",
    "Catalog",
    "CatalogError",
    "ConflictError",
    "ContactPolicy",
    "DataError",
    "DataSource",
    "DataSummary",
    "Decision",
    "Engine",
    "EngineConfig",
    "ExtraColumns",
    "FeatureConfig",
    "MccMap",
    "ModelBundle",
    "ModelError",
    "ModelManifest",
    "NbaError",
    "NotFoundError",
    "Problem",
    "Product",
    "Profiles",
    "SchemaError",
    "Suggestion",
    "UnavailableError",
    "UnknownIdError",
    "ValidationError",
    "ValidationReport",
    "build_benefit_history",
    "build_cardholder_features",
    "build_profiles",
    "list_models",
    "load_bundle",
    "load_catalog",
    "load_mcc_map",
    "load_model_dir",
    "open_data",
    "read_current",
    "rollback",
    "set_current",
    "validate_data",
]
