"""Features: the point-in-time feature SQL over the contract's tables (`_sql`, one text run by DuckDB or
Spark SQL, whose few differing spellings are `_dialect`'s) and the candidate matrix that lays a
cardholder's features beside each benefit's (`_matrix`).

Imports the contract room only.
"""

from nba.features._dialect import DUCKDB, SPARK, Dialect, DuckDBSql, SqlEngine
from nba.features._matrix import (
    HISTORY_COLUMNS,
    PAIR_FEATURES,
    BenefitTable,
    HolderColumns,
    build_candidate_matrix,
    call_reason_code,
)
from nba.features._sql import (
    ExtraColumns,
    FeatureConfig,
    benefit_history_sql,
    build_benefit_history,
    build_cardholder_features,
    cardholder_features_sql,
    categorical_features,
    feature_names,
    load_feature_config,
    mcc_category_table,
    register_snapshots,
    select_extra_columns,
    snapshot_all_sql,
)

__all__ = [
    "DUCKDB",
    "HISTORY_COLUMNS",
    "PAIR_FEATURES",
    "SPARK",
    "BenefitTable",
    "Dialect",
    "DuckDBSql",
    "ExtraColumns",
    "FeatureConfig",
    "HolderColumns",
    "SqlEngine",
    "benefit_history_sql",
    "build_benefit_history",
    "build_candidate_matrix",
    "build_cardholder_features",
    "call_reason_code",
    "cardholder_features_sql",
    "categorical_features",
    "feature_names",
    "load_feature_config",
    "mcc_category_table",
    "register_snapshots",
    "select_extra_columns",
    "snapshot_all_sql",
]
