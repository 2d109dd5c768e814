"""nba: the core library of the next-best-conversation engine (data contract, catalog, MCC map, ...)."""

from nba.catalog import Benefit, Catalog, Product, load_catalog
from nba.errors import (
    CatalogError,
    DataError,
    ModelError,
    NbaError,
    NotFoundError,
    Problem,
    SchemaError,
    UnknownIdError,
    ValidationError,
)
from nba.mcc import MccMap, load_mcc_map
from nba.tables import TABLES, DataSource, open_data
from nba.validation import DataSummary, ValidationReport, validate_data
from nba.vocab import BENEFIT_KINDS, CALL_REASONS, OUTCOMES, SPEND_CATEGORIES

__all__ = [
    "BENEFIT_KINDS",
    "CALL_REASONS",
    "OUTCOMES",
    "SPEND_CATEGORIES",
    "TABLES",
    "Benefit",
    "Catalog",
    "CatalogError",
    "DataError",
    "DataSource",
    "DataSummary",
    "MccMap",
    "ModelError",
    "NbaError",
    "NotFoundError",
    "Problem",
    "Product",
    "SchemaError",
    "UnknownIdError",
    "ValidationError",
    "ValidationReport",
    "load_catalog",
    "load_mcc_map",
    "open_data",
    "validate_data",
]
