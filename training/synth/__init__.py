"""Synthetic world: a seed and a benefit catalog → a data directory in the contract's shape, plus its oracle.

Every cardholder has a hidden persona (category preferences from a mix of archetypes, income, true
yearly spend on any card, this card's wallet share per category, receptiveness). From it follow the
card chosen, 15 months of card transactions with real MCCs, which benefits are used and when, service
calls where a legacy policy presented benefits (with the exact probability it had of showing each),
what happened, and survey answers. A known true adoption model decides who adopts, mostly by how well a
benefit fits the person (see `TrueAdoptionModel`); the oracle file (outside the data directory) holds its
probability and the true yearly value of every unused benefit.

Work is done in chunks of `CHUNK_CARDHOLDERS`, each with its own random stream spawned from the seed,
and streamed to disk: output depends on the seed alone, memory stays bounded.

A world may change part-way through (`RegimeShift`, opt-in; without it nothing below changes a row): from
the shift on, travel spend collapses and slowly recovers, the income terms of the true adoption model flip
sign, a new benefit is launched (in the catalog, used and presented only after the launch), and callers
come more from lower incomes and more often about payments and hardship. The oracle then holds the truth
as of the first day of every month from the shift on and as of the world's as-of (column `as_of`).

The package: `_parameters` (the fixed numbers), `_truth` (the true adoption model and the regime shift),
`_counterfactual` (opt-in: natural adoption, uplift classes, pitches on the wrong call),
`_world` (a world's fixed parts: catalog arrays, calendar, MCC sampler), `_personas` (hidden traits,
benefit values, card choice, the truth's calibration), `_simulation` (one chunk's story and tables) and
`_writing` (`generate_world`: files and the oracle), `_nps_truth` (a policy's true detractor share on the
logged calls). This face is what callers import.
"""

from training.synth._counterfactual import UPLIFT_CLASSES, WRONG_CALL_NPS_DROP, UpliftMix
from training.synth._nps_truth import detractor_chance
from training.synth._parameters import (
    CALL_TRUTH_COLUMNS,
    DEFAULT_AS_OF,
    LEGACY_EPSILON,
    LEGACY_POPULARITY,
    LEGACY_POPULARITY_WEIGHT,
    MCC_SHARES,
    ORACLE_AS_OF_COLUMN,
    ORACLE_CLASS_COLUMN,
    ORACLE_COLUMNS,
    ORACLE_NATURAL_COLUMN,
    PRESENT_UP_TO,
    TABLE_NAMES,
)
from training.synth._truth import LAUNCHED_BENEFIT, RegimeShift, TrueAdoptionModel
from training.synth._writing import WorldSummary, generate_world

__all__ = [
    "CALL_TRUTH_COLUMNS",
    "DEFAULT_AS_OF",
    "LAUNCHED_BENEFIT",
    "LEGACY_EPSILON",
    "LEGACY_POPULARITY",
    "LEGACY_POPULARITY_WEIGHT",
    "MCC_SHARES",
    "ORACLE_AS_OF_COLUMN",
    "ORACLE_CLASS_COLUMN",
    "ORACLE_COLUMNS",
    "ORACLE_NATURAL_COLUMN",
    "PRESENT_UP_TO",
    "TABLE_NAMES",
    "UPLIFT_CLASSES",
    "WRONG_CALL_NPS_DROP",
    "RegimeShift",
    "TrueAdoptionModel",
    "UpliftMix",
    "WorldSummary",
    "detractor_chance",
    "generate_world",
]
