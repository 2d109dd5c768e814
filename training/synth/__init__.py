"""Synthetic worlds: a seed and a benefit catalog → a data directory in the contract's shape, plus its oracle.

The package's face: `generate_world` and what callers and tests read about a world. The modules behind it
are private.
"""

from training.synth._simulation import (
    DEFAULT_AS_OF,
    LAUNCHED_BENEFIT,
    LEGACY_EPSILON,
    LEGACY_POPULARITY,
    LEGACY_POPULARITY_WEIGHT,
    MCC_SHARES,
    ORACLE_AS_OF_COLUMN,
    ORACLE_COLUMNS,
    PRESENT_UP_TO,
    TABLE_NAMES,
    RegimeShift,
    TrueAdoptionModel,
    WorldSummary,
    generate_world,
)

__all__ = [
    "DEFAULT_AS_OF",
    "LAUNCHED_BENEFIT",
    "LEGACY_EPSILON",
    "LEGACY_POPULARITY",
    "LEGACY_POPULARITY_WEIGHT",
    "MCC_SHARES",
    "ORACLE_AS_OF_COLUMN",
    "ORACLE_COLUMNS",
    "PRESENT_UP_TO",
    "TABLE_NAMES",
    "RegimeShift",
    "TrueAdoptionModel",
    "WorldSummary",
    "generate_world",
]
