"""The data contract: the tables nba reads (`tables`), their checks (`validation`), the benefit catalog
(`catalog`) and the MCC map that sorts spend into categories (`mcc`, shipped in `data/`).

Every later room reads data through this one; it imports no other room.
"""

from nba.contract._catalog import DEFAULT_CATALOG_PATH, Benefit, Catalog, Product, catalog_for, load_catalog
from nba.contract._mcc import MccMap, load_mcc_map
from nba.contract._tables import TABLES, DataSource, check_as_of, open_data, query_one, usable_cpus
from nba.contract._validation import (
    DEFAULT_MAX_PROBLEMS,
    MCC_OVERRIDE_FILE,
    TYPE_WORDS,
    DataSummary,
    ValidationReport,
    ValueCheck,
    validate_data,
    value_checks,
)

__all__ = [
    "DEFAULT_CATALOG_PATH",
    "DEFAULT_MAX_PROBLEMS",
    "MCC_OVERRIDE_FILE",
    "TABLES",
    "TYPE_WORDS",
    "Benefit",
    "Catalog",
    "DataSource",
    "DataSummary",
    "MccMap",
    "Product",
    "ValidationReport",
    "ValueCheck",
    "catalog_for",
    "check_as_of",
    "load_catalog",
    "load_mcc_map",
    "open_data",
    "query_one",
    "usable_cpus",
    "validate_data",
    "value_checks",
]
