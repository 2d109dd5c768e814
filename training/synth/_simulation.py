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
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from nba.contract import DEFAULT_CATALOG_PATH, MCC_OVERRIDE_FILE, Catalog, MccMap, load_catalog, load_mcc_map
from nba.errors import DataError, check_param
from nba.vocab import (
    BENEFIT_KINDS,
    CALL_REASONS,
    CATEGORY_INDEX,
    OUTCOMES,
    SENSITIVE_CALL_REASONS,
    SPEND_CATEGORIES,
    TRAVEL_CATEGORIES,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

DEFAULT_AS_OF: Final = date(2026, 10, 1)
CHUNK_CARDHOLDERS: Final = 50_000
HISTORY_MONTHS: Final = 15
OPEN_SPAN_DAYS: Final = 8 * 365
NEW_CARDHOLDER_SHARE: Final = 0.06  # opened in the 90 days before as_of
LEGACY_EPSILON: Final = 0.3
AGENT_COUNT: Final = 400
LABEL_WINDOW_DAYS: Final = 30
DECLINE_MEMORY_DAYS: Final = 90
REFUND_SHARE: Final = 0.021
NPS_RESPONSE_SHARE: Final = 0.25
TABLE_NAMES: Final = ("cardholders", "transactions", "benefit_usage", "conversations", "calls", "nps")
ORACLE_COLUMNS: Final = ("cardholder_id", "benefit_id", "p_true", "value_usd")
# A world with a regime shift holds the truth as of several dates: this column says which.
ORACLE_AS_OF_COLUMN: Final = "as_of"

_N_CATS: Final = len(SPEND_CATEGORIES)
_NEVER: Final = 2**30  # a day number after any as_of: "not (yet) happened"
_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000


def _cat(name: str) -> int:
    return CATEGORY_INDEX[name]


# --- the persona model ---------------------------------------------------------------------------------------

# Share of yearly spend per category for each archetype (rows are normalised). Columns follow SPEND_CATEGORIES:
# dining groceries air lodging car transit agency gas streaming gen_retail online entertainment telecom health
# home_improvement other.
ARCHETYPES: Final = (
    "traveller",
    "foodie",
    "family",
    "commuter",
    "online_shopper",
    "homeowner",
    "streamer",
    "generalist",
)
_ARCHETYPE_WEIGHTS: Final = np.array(
    [
        [14, 10, 16, 14, 5, 4, 5, 5, 1, 7, 5, 4, 3, 2, 2, 3],
        [32, 14, 3, 2, 0.5, 5, 0.5, 4, 1.5, 8, 7, 10, 4, 3, 2, 4],
        [8, 30, 2, 2, 1, 1, 1, 12, 1.5, 14, 7, 4, 6, 6, 5, 4],
        [14, 14, 2, 1, 1, 16, 0.5, 14, 1.5, 8, 7, 5, 5, 3, 2, 5],
        [8, 12, 2, 1, 0.5, 3, 0.5, 5, 3, 10, 34, 4, 5, 3, 3, 5],
        [7, 18, 2, 1, 0.5, 0.5, 1, 9, 1, 10, 7, 3, 9, 5, 22, 4],
        [14, 10, 2, 1, 0.5, 8, 0.5, 3, 6, 8, 20, 12, 7, 2, 1, 5],
        [12, 18, 4, 3, 1, 3, 1, 8, 1.5, 14, 11, 5, 5, 5, 5, 6],
    ]
)
_ARCHETYPE_SHARES: Final = _ARCHETYPE_WEIGHTS / _ARCHETYPE_WEIGHTS.sum(axis=1, keepdims=True)
# Dirichlet weight of each archetype, and how it moves with age (per 15 years older) and income (per sd).
_ARCHETYPE_ALPHA: Final = np.array([0.30, 0.35, 0.35, 0.30, 0.35, 0.30, 0.30, 0.45])
_ARCHETYPE_AGE_SLOPE: Final = np.array([0.25, -0.15, 0.30, -0.20, -0.35, 0.55, -0.80, 0.0])
_ARCHETYPE_INCOME_SLOPE: Final = np.array([0.80, 0.20, 0.0, -0.10, -0.10, 0.30, -0.20, 0.0])
_PREFERENCE_CONCENTRATION: Final = 80.0
_WALLET_CATEGORY_SD: Final = 0.7  # how much this card's wallet share varies between categories (logit scale)
# Some people never spend in a category at all (no car, never fly); more likely when it is not their thing.
_STRUCTURAL_ZERO: Final = {
    "air_travel": 0.5,
    "lodging": 0.4,
    "car_rental": 0.6,
    "travel_agency": 0.6,
    "transit": 0.45,
    "gas": 0.25,
    "home_improvement": 0.3,
}
_RECURRING: Final = ("streaming_digital", "telecom_utilities")
INCOME_BANDS: Final = ("low", "lower_middle", "middle", "upper_middle", "high")
_INCOME_CUTS: Final = np.array([-0.9, -0.25, 0.45, 1.15])
REGIONS: Final = ("north", "south", "east", "west", "central")
_REGION_SHARES: Final = np.array([0.21, 0.22, 0.20, 0.23, 0.14])
SEGMENTS: Final = ("mass", "affluent", "premier", "student")
_MEDIAN_YEARLY_SPEND_USD: Final = 14_000.0

# Mean ticket (USD) and log-sd of a card purchase per category.
_TICKET_USD: Final = {
    "dining": (38.0, 0.75),
    "groceries": (72.0, 0.70),
    "air_travel": (430.0, 0.60),
    "lodging": (290.0, 0.65),
    "car_rental": (230.0, 0.55),
    "transit": (19.0, 0.85),
    "travel_agency": (640.0, 0.75),
    "gas": (47.0, 0.40),
    "streaming_digital": (13.0, 0.40),
    "general_retail": (62.0, 0.95),
    "online_retail": (48.0, 0.90),
    "entertainment": (52.0, 0.80),
    "telecom_utilities": (75.0, 0.45),
    "health": (70.0, 0.95),
    "home_improvement": (115.0, 1.00),
    "other": (68.0, 1.00),
}
_TICKET_MEAN: Final = np.array([_TICKET_USD[c][0] for c in SPEND_CATEGORIES])
_TICKET_SIGMA: Final = np.array([_TICKET_USD[c][1] for c in SPEND_CATEGORIES])
_STREAMING_PRICES_USD: Final = np.array([2.99, 4.99, 6.99, 9.99, 11.99, 13.99, 15.49, 17.99, 22.99])
_STREAMING_PRICE_SHARES: Final = np.array([0.05, 0.08, 0.12, 0.20, 0.15, 0.12, 0.14, 0.08, 0.06])
_TICKET_SCALE_MEDIAN: Final = 1.5

# Real merchant category codes per category with their share of transactions (the head of each
# distribution, from ISO 18245 and the network lists). Codes the MCC map puts elsewhere are dropped.
MCC_SHARES: Final[Mapping[str, Mapping[int, float]]] = {
    "dining": {5812: 50, 5814: 36, 5813: 9, 5811: 5},
    "groceries": {5411: 84, 5499: 7, 5462: 4, 5422: 2.5, 5451: 1.5, 5441: 1},
    "air_travel": {4511: 30, 3000: 11, 3001: 11, 3058: 12, 3066: 9, 3256: 4, 3132: 2, 3005: 3, 3007: 2,
                   3008: 2, 3009: 3, 3010: 1.5, 3012: 1, 3075: 1, 4582: 1.5},
    "lodging": {7011: 50, 3504: 6, 3509: 7, 3640: 5, 3690: 4, 3665: 4, 3692: 2, 3513: 2, 3512: 2, 3562: 2,
                3649: 1.5, 3615: 1, 3710: 1, 3543: 0.5, 3530: 1, 3535: 1, 3510: 2, 7012: 2, 7033: 3},
    "car_rental": {7512: 45, 3357: 12, 3389: 10, 3405: 12, 3393: 6, 3366: 5, 3395: 3, 7513: 5, 7519: 2},
    "transit": {4121: 38, 4111: 22, 7523: 14, 4784: 10, 4112: 7, 4131: 4, 4011: 2, 4789: 3},
    "travel_agency": {4722: 72, 4411: 13, 4723: 7, 5962: 8},
    "gas": {5541: 52, 5542: 40, 5552: 5, 5983: 3},
    "streaming_digital": {4899: 50, 5815: 22, 5818: 18, 5817: 7, 5816: 3},
    "general_retail": {5310: 18, 5311: 14, 5300: 10, 5999: 10, 5651: 6, 5691: 4, 5661: 4, 5732: 6, 5941: 4,
                       5942: 2, 5945: 3, 5977: 3, 5921: 4, 5995: 4, 5992: 2, 5944: 2, 5533: 3, 5331: 3,
                       5621: 2, 5947: 2, 5399: 2, 5611: 1, 5641: 1},
    "online_retail": {5262: 45, 5969: 22, 5964: 12, 5968: 10, 5965: 8, 5967: 3},
    "entertainment": {7832: 25, 7922: 15, 7941: 8, 7996: 8, 7991: 7, 7997: 12, 7999: 10, 7933: 3, 7992: 4,
                      4733: 3, 7994: 2, 7929: 2, 7911: 1},
    "telecom_utilities": {4814: 48, 4900: 36, 4816: 12, 4812: 4},
    "health": {5912: 45, 8011: 15, 8021: 10, 8099: 8, 8062: 5, 8043: 5, 8042: 4, 8041: 3, 5122: 2, 8071: 2,
               8050: 1},
    "home_improvement": {5200: 28, 5211: 14, 5251: 12, 5712: 12, 5722: 7, 5719: 6, 5261: 5, 5231: 3, 1711: 3,
                         1520: 2, 780: 3, 5713: 2, 1731: 1, 1799: 1, 5714: 1},
    "other": {7230: 18, 7299: 12, 8299: 7, 8220: 5, 7399: 6, 7542: 6, 7538: 10, 742: 7, 8398: 6, 9399: 5,
              9311: 2, 6300: 6, 7210: 5, 8351: 4, 4215: 3},
}  # fmt: skip

# --- benefits, calls and the truth model --------------------------------------------------------------------

_EARN: Final = BENEFIT_KINDS.index("earn_rate")
_CREDIT: Final = BENEFIT_KINDS.index("statement_credit")
_PERK: Final = BENEFIT_KINDS.index("perk")
_PROTECTION: Final = BENEFIT_KINDS.index("protection")
_DIGITAL_CATEGORIES: Final = frozenset({"streaming_digital", "online_retail", "transit", "telecom_utilities"})
# Groups of categories people tend to spend in together; a benefit's "affinity" is the share of spend in
# categories related to its own (travellers who fly also book hotels; homeowners buy groceries and fuel).
_RELATED_GROUPS: Final = (
    (("air_travel", "lodging", "car_rental", "travel_agency"), 1.0),
    (("transit", "dining", "entertainment"), 1.0),
    (("groceries", "gas", "home_improvement", "health"), 1.0),
    (("streaming_digital", "online_retail", "telecom_utilities"), 1.0),
    (("general_retail", "online_retail", "home_improvement"), 1.0),
    (("dining", "lodging", "entertainment"), 0.5),
    (("transit", "air_travel"), 0.5),
)
# Product choice: utility = net yearly dollars / _UTILITY_USD + _FIT_PER_PERCENT × percent back on own spend.
_UTILITY_USD: Final = 100.0
_FIT_PER_PERCENT: Final = 3.0
_CREDIT_USAGE: Final = 0.85  # share of a statement credit people actually collect when they spend enough
_RELEVANCE_SPEND_USD: Final = 2_000.0  # yearly spend at which a perk or protection is ~63 % relevant
# The reference population product constants and benefits' typical worth are measured on (same in every world).
_REFERENCE_SEED: Final = 20_260_101
_REFERENCE_PEOPLE: Final = 20_000
_VALUE_OFFSET_USD: Final = (
    10.0  # the truth compares log(value + this) and log(share of spend + _SHARE_OFFSET)
)
_SHARE_OFFSET: Final = 0.01
_CALL_REASON_SHARES: Final = {
    "general": 0.15,
    "payment": 0.19,
    "balance_inquiry": 0.16,
    "lost_card": 0.08,
    "travel_notice": 0.06,
    "rewards_question": 0.08,
    "dispute": 0.08,
    "fraud": 0.05,
    "complaint": 0.07,
    "bereavement": 0.01,
    "hardship": 0.03,
}
# The legacy policy that logged the conversations: how many benefits it shows per call reason, and its
# heuristic score, log(1 + card spend 90d in the benefit's categories) + weight × popularity of the kind.
PRESENT_UP_TO: Final[Mapping[str, int]] = {
    reason: 3 if reason in ("general", "rewards_question", "travel_notice") else 2 for reason in CALL_REASONS
}
LEGACY_POPULARITY: Final[Mapping[str, float]] = {
    "earn_rate": 1.0,
    "statement_credit": 0.9,
    "perk": 0.6,
    "protection": 0.3,
}
LEGACY_POPULARITY_WEIGHT: Final = 2.0
_CALLS_PER_YEAR: Final = 0.52
# Natural adoption: log-odds of starting to use a benefit soon after activation, by kind, and the yearly
# rate at which the others start later on their own.
_STARTS_USING_LOGIT: Final[Mapping[str, float]] = {
    "earn_rate": 0.5,
    "statement_credit": -0.5,
    "perk": -0.9,
    "protection": -1.5,
}
_DRIFT_PER_YEAR: Final = 0.07
_NPS_REASON_EFFECT: Final[Mapping[str, float]] = {
    "complaint": -2.2,
    "dispute": -1.4,
    "fraud": -0.4,
    "hardship": -0.6,
    "lost_card": -0.3,
}


@dataclass(frozen=True)
class TrueAdoptionModel:
    """The known truth: log-odds that a benefit discussed on a call is adopted within 30 days.

    logit = intercept + kind + headline·(typical value − log 70)                      the benefit: modest
            + clip(value·s(value ratio) + focus·s(share ratio), relevance_range)      the person–benefit fit
            + affinity·related-spend term + age terms (digital benefits younger, protections older)
            + income terms (perks appeal to the affluent, earn rates to the less well-off)
            + tenure·exp(−tenure_days / 240) + engagement·z + enrolment·(1 − engaged_enrollment·z)
            + declines + call reason + rank + agent effect

    The value ratio is log($10 + value_usd) against the benefit's typical value, the share ratio
    log(0.01 + share of the cardholder's yearly spend in its categories) against the typical share; both
    typicals are means over the people who hold the benefit (see `_calibrate_truth`). s(x) = (e^{cx} − 1)/c
    with c = `convexity` rewards a strong fit more than it punishes a poor one, and the clip bounds both:
    a benefit that is no use to someone is simply no use, one that fits well is likely but not certain.
    So who the cardholder is decides which of their benefits they take up (a frequent flyer lounge
    access, a family that shops for groceries a supermarket earn rate), while benefits differ among
    themselves only modestly. Value, share and affinity come from the cardholder's true spend on any card,
    which the data shows only in part (this card's share of it, and not at all in an unused earn-rate
    benefit's categories); age, tenure and income show through the CRM columns.
    """

    intercept: float = -1.70
    kind: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {
            "earn_rate": 0.15,
            "statement_credit": 0.05,
            "perk": -0.05,
            "protection": -0.20,
        }
    )
    headline: float = 0.35
    value: float = 1.3
    focus: float = 1.2
    convexity: float = 0.6
    relevance_range: tuple[float, float] = (-1.8, 3.0)
    affinity: float = 0.90
    tenure: float = 0.70
    tenure_scale_days: float = 240.0
    digital_youth: float = 0.50
    protection_age: float = 0.45
    affluent_perk: float = 0.35
    thrifty_earn: float = 0.25
    engagement: float = 0.30
    enrollment: float = -0.45
    engaged_enrollment: float = 0.60
    declined_recently: float = -1.60
    declined_before: float = -0.35
    travel_notice_travel: float = 0.90
    rank_step: float = -0.30
    agent_sd: float = 0.30
    reason: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {
            "general": 0.0,
            "payment": -0.15,
            "balance_inquiry": -0.10,
            "lost_card": -0.35,
            "travel_notice": -0.10,  # and + travel_notice_travel for travel benefits
            "rewards_question": 0.60,
            "dispute": -0.80,
            "fraud": -1.00,
            "complaint": -0.90,
            "bereavement": -1.50,
            "hardship": -0.80,
        }
    )

    def logit(
        self,
        benefit: _BenefitView,
        value_usd: F64,
        spend_share: F64,
        affinity: F64,
        tenure_days: F64,
        age: F64,
        z_income: F64,
        engagement: F64,
        declined_recently: Bool,
        declined_before: Bool,
        reason: npt.NDArray[np.integer],
        rank: npt.NDArray[np.integer],
        agent_effect: F64,
        income_effect: F64 | None = None,
    ) -> F64:
        """Log-odds for arrays of equal shape; `benefit` gives each element's benefit attributes.

        `reason` indexes CALL_REASONS, `rank` starts at 1, ages are in years, values in USD a year,
        `z_income` and `engagement` are standard scores. `income_effect` multiplies the income terms
        (a regime shift flips them); None leaves them as they are.
        """
        value_ratio = _log_value(value_usd) - benefit.typical_log_value
        share_ratio = _log_share(spend_share) - benefit.typical_log_share
        relevance = np.clip(
            self.value * _stretch(value_ratio, self.convexity)
            + self.focus * _stretch(share_ratio, self.convexity),
            *self.relevance_range,
        )
        digital_youth = np.where(benefit.digital, np.clip((40.0 - age) / 15.0, -1.5, 1.5), 0.0)
        protection_age = np.where(benefit.kind == _PROTECTION, np.clip((age - 45.0) / 15.0, -1.5, 1.5), 0.0)
        income = np.clip(z_income, -2.0, 2.0)
        if income_effect is not None:
            income = income * income_effect
        travel_notice = (reason == CALL_REASONS.index("travel_notice")) & benefit.travel
        logit: F64 = (
            self.intercept
            + np.array([self.kind[k] for k in BENEFIT_KINDS])[benefit.kind]
            + self.headline * (benefit.typical_log_value - _log_value(np.asarray(60.0)))
            + relevance
            + self.affinity * affinity
            + self.tenure * np.exp(-tenure_days / self.tenure_scale_days)
            + self.digital_youth * digital_youth
            + self.protection_age * protection_age
            + self.affluent_perk * income * (benefit.kind == _PERK)
            - self.thrifty_earn * income * (benefit.kind == _EARN)
            + self.engagement * engagement
            + self.enrollment
            * benefit.enroll
            * (1.0 - self.engaged_enrollment * np.clip(engagement, -1.5, 1.5))
            + self.declined_recently * declined_recently
            + self.declined_before * (declined_before & ~declined_recently)
            + np.array([self.reason[r] for r in CALL_REASONS])[reason]
            + self.travel_notice_travel * travel_notice
            + self.rank_step * (rank - 1)
            + agent_effect
        )
        return logit


def _log_value(value_usd: F64) -> F64:
    """Log of a yearly value, softened: a few dollars a year mean next to nothing to anyone."""
    logged: F64 = np.log(value_usd + _VALUE_OFFSET_USD)
    return logged


def _log_share(share: F64) -> F64:
    """Log of a share of yearly spend, softened: below about 1 % a category is simply not someone's thing."""
    logged: F64 = np.log(share + _SHARE_OFFSET)
    return logged


def _stretch(log_ratio: F64, convexity: float) -> F64:
    """(ratio^c − 1) / c of a log ratio: the log ratio itself at c = 0, the ratio minus one at c = 1."""
    if convexity == 0.0:
        return log_ratio
    stretched: F64 = np.expm1(convexity * log_ratio) / convexity
    return stretched


TRUTH: Final = TrueAdoptionModel()

# The benefit a regime-shift world launches on its shift date, and the products that gain it.
LAUNCHED_BENEFIT: Final[Mapping[str, object]] = {
    "id": "wellness_credit",
    "name": "Wellness credit",
    "kind": "statement_credit",
    "spend_categories": ["health"],
    "annual_credit_usd": 100,
    "requires_enrollment": True,
    "unsuitable_call_reasons": ["dispute", "complaint"],
    "talking_point": (
        "Spends ~{est_annual_spend_usd} a year on health; new on the card: up to {annual_credit_usd} a "
        "year back on pharmacy, doctor and dental bills once enrolled: ~{est_annual_value_usd} a year for them."
    ),
}
LAUNCHED_ON_PRODUCTS: Final = ("everyday", "gold", "home")


@dataclass(frozen=True)
class RegimeShift:
    """How a world changes from `starts` on: what a card issuer lives through in a downturn.

    - travel: card spend in the travel categories falls to (1 − `travel_drop`) of its level on the
      shift day and recovers with time constant `travel_recovery_days`; a travel benefit is worth that
      much less meanwhile (the truth sees its value scaled by the same factor), and travel notices
      become as much rarer;
    - a CRM attribute's effect flips: the truth's income terms (perks appeal to the affluent, earn rates
      to the less well-off) are multiplied by `income_effect` (−1: the other way round);
    - a new benefit (`LAUNCHED_BENEFIT`) joins the products in `LAUNCHED_ON_PRODUCTS` (of those the
      catalog has): nobody uses it, nor is it presented, before the shift, and people chose their card
      without it;
    - the callers: the call rate after the shift is multiplied by exp(`caller_income_slope` × income
      score), normalised to keep the volume, and call reasons move by `reason_log_odds`.
    """

    starts: date
    travel_drop: float = 0.75
    travel_recovery_days: float = 150.0
    income_effect: float = -1.0
    caller_income_slope: float = -0.6
    reason_log_odds: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"hardship": 1.0, "payment": 0.4, "balance_inquiry": 0.2}
    )

    def travel_factor(self, day: npt.NDArray[np.integer]) -> F64:
        """Travel spend (and a travel benefit's worth) on these day numbers, against before the shift."""
        since = (np.asarray(day, dtype=np.int64) - _day_number(self.starts)).astype(np.float64)
        factor: F64 = np.where(
            since < 0,
            1.0,
            1.0 - self.travel_drop * np.exp(-np.maximum(since, 0.0) / self.travel_recovery_days),
        )
        return factor


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote: rows per table, oracle rows, and how long it took."""

    out_dir: Path
    oracle_path: Path
    fmt: Literal["csv", "parquet"]
    seed: int
    as_of: date
    rows_by_table: Mapping[str, int]
    oracle_rows: int
    seconds: float
    regime_shift: date | None = None


# --- fixed parts of a world: catalog arrays, calendar, MCC sampler -----------------------------------------


@dataclass(frozen=True)
class _BenefitView:
    """Benefit attributes indexed by benefit position (or gathered to any shape by `take`)."""

    kind: npt.NDArray[np.int8]
    enroll: Bool
    travel: Bool
    digital: Bool
    typical_log_value: F64  # mean _log_value(yearly value in USD) over the reference population's holders
    typical_log_share: F64  # mean _log_share(share of yearly spend in the benefit's categories), likewise

    def take(self, index: npt.NDArray[np.integer]) -> _BenefitView:
        return _BenefitView(
            self.kind[index],
            self.enroll[index],
            self.travel[index],
            self.digital[index],
            self.typical_log_value[index],
            self.typical_log_share[index],
        )


@dataclass(frozen=True)
class _CatalogArrays:
    benefit_ids: tuple[str, ...]
    product_ids: tuple[str, ...]
    member: F64  # (benefits, categories) 1.0 where the benefit names the category
    view: _BenefitView
    earn_rate: F64
    credit_usd: F64
    nominal_usd: F64
    presentable: Bool  # (benefits, call reasons)
    affinity_weights: F64  # (benefits, categories)
    affinity_base: F64
    popularity: F64
    product_slots: I64  # (products, max benefits per product), −1 padded
    product_base_rate: F64
    product_fee_usd: F64
    point_value_usd: float


def _catalog_arrays(catalog: Catalog) -> _CatalogArrays:
    benefits = catalog.benefits
    member = np.zeros((len(benefits), _N_CATS))
    for i, benefit in enumerate(benefits):
        for category in benefit.spend_categories:
            member[i, _cat(category)] = 1.0
    presentable = np.zeros((len(benefits), len(CALL_REASONS)), dtype=bool)
    for i, benefit in enumerate(benefits):
        for j, reason in enumerate(CALL_REASONS):
            allowed = reason in benefit.suitable_call_reasons or reason not in SENSITIVE_CALL_REASONS
            presentable[i, j] = allowed and reason not in benefit.unsuitable_call_reasons
    related = np.zeros((_N_CATS, _N_CATS))
    for group, weight in _RELATED_GROUPS:
        index = [_cat(c) for c in group]
        related[np.ix_(index, index)] += weight
    np.fill_diagonal(related, 0.0)
    weights = (member @ related) * (1.0 - member)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    mean_shares = _ARCHETYPE_SHARES.mean(axis=0)
    kind = np.array([BENEFIT_KINDS.index(b.kind) for b in benefits], dtype=np.int8)
    width = max(len(p.benefits) for p in catalog.products)
    slots = np.full((len(catalog.products), width), -1, dtype=np.int64)
    position = {b.id: i for i, b in enumerate(benefits)}
    for p, product in enumerate(catalog.products):
        slots[p, : len(product.benefits)] = [position[b] for b in product.benefits]
    return _CatalogArrays(
        benefit_ids=tuple(b.id for b in benefits),
        product_ids=tuple(p.id for p in catalog.products),
        member=member,
        view=_BenefitView(
            kind=kind,
            enroll=np.array([b.requires_enrollment for b in benefits]),
            travel=np.array([bool(set(b.spend_categories) & TRAVEL_CATEGORIES) for b in benefits]),
            digital=np.array([bool(set(b.spend_categories) & _DIGITAL_CATEGORIES) for b in benefits]),
            typical_log_value=np.zeros(len(benefits)),  # both set by _calibrate_truth
            typical_log_share=np.zeros(len(benefits)),
        ),
        earn_rate=np.array([b.earn_rate or 0.0 for b in benefits]),
        credit_usd=np.array([b.annual_credit_usd or 0.0 for b in benefits]),
        nominal_usd=np.array([b.nominal_value_usd or 0.0 for b in benefits]),
        presentable=presentable,
        affinity_weights=weights,
        affinity_base=weights @ mean_shares,
        popularity=np.array([LEGACY_POPULARITY[k] for k in BENEFIT_KINDS])[kind],
        product_slots=slots,
        product_base_rate=np.array([p.base_earn_rate for p in catalog.products]),
        product_fee_usd=np.array([p.annual_fee_usd for p in catalog.products]),
        point_value_usd=catalog.point_value_usd,
    )


@dataclass(frozen=True)
class _Calendar:
    """Day numbers (days since 1970-01-01) of the history window and per-category seasonal day weights."""

    start_day: int
    as_of_day: int
    day_cdf: F64  # per category, cumulative weight of days [start, as_of), offset by 2 × category
    month_start_days: I64

    @property
    def span_days(self) -> int:
        return self.as_of_day - self.start_day

    def draw_days(self, rng: np.random.Generator, category: npt.NDArray[np.integer], first_day: I64) -> I64:
        """Random days in [first_day, as_of) with the category's seasonality (first_day ≥ start_day)."""
        stride = self.span_days + 1
        base = category.astype(np.int64) * stride
        low = self.day_cdf[base + (first_day - self.start_day)]
        high = self.day_cdf[base + self.span_days]
        target = low + rng.random(len(category)) * (high - low)
        index = np.searchsorted(self.day_cdf, target, side="right") - 1
        day: I64 = np.minimum(index - base, self.span_days - 1) + self.start_day
        return day


def _months_before(day: date, months: int) -> date:
    month = day.year * 12 + day.month - 1 - months
    return date(month // 12, month % 12 + 1, 1)


def _calendar(as_of: date) -> _Calendar:
    start = _months_before(as_of, HISTORY_MONTHS)
    start_day, as_of_day = (start - _EPOCH).days, (as_of - _EPOCH).days
    days = np.arange(start_day, as_of_day)
    day_of_year = np.array(
        [(d - date(d.year, 1, 1)).days for d in (start + timedelta(int(i)) for i in days - start_day)]
    )
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weights = np.ones((_N_CATS, len(days)))
    travel = (
        1
        + 0.35 * np.cos(2 * np.pi * (day_of_year - 195) / 365.25)
        + 0.3 * np.exp(-(((day_of_year - 356) / 10) ** 2))
    )
    holiday_shopping = 1 + 0.8 * np.exp(-(((day_of_year - 340) / 16) ** 2))
    for category in TRAVEL_CATEGORIES:
        weights[_cat(category)] = travel
    for category in ("general_retail", "online_retail"):
        weights[_cat(category)] = holiday_shopping
    for category in ("dining", "entertainment"):
        weights[_cat(category)] = np.where(np.isin(weekday, (4, 5)), 1.35, 1.0)
    weights[_cat("groceries")] = np.where(np.isin(weekday, (5, 6)), 1.25, 1.0)
    cumulative = np.concatenate([np.zeros((_N_CATS, 1)), np.cumsum(weights, axis=1)], axis=1)
    cumulative /= cumulative[:, -1:]
    cumulative += 2.0 * np.arange(_N_CATS)[:, None]
    month_starts, cursor = [], start
    while cursor < as_of:
        month_starts.append((cursor - _EPOCH).days)
        cursor = _months_before(cursor, -1)
    return _Calendar(start_day, as_of_day, cumulative.ravel(), np.array(month_starts, dtype=np.int64))


@dataclass(frozen=True)
class _MccSampler:
    """Draws a real MCC for each transaction of a category, with the category's skew."""

    codes: npt.NDArray[np.int32]
    cdf: F64  # category c's cumulative shares, offset by c, so one searchsorted serves all categories

    def draw(self, rng: np.random.Generator, category: npt.NDArray[np.integer]) -> npt.NDArray[np.int32]:
        index = np.searchsorted(self.cdf, category + rng.random(len(category)), side="right")
        return self.codes[np.minimum(index, len(self.codes) - 1)]


def _mcc_sampler(mcc_map: MccMap) -> _MccSampler:
    codes: list[int] = []
    cdf: list[float] = []
    for c, category in enumerate(SPEND_CATEGORIES):
        shares = {
            code: share
            for code, share in MCC_SHARES[category].items()
            if mcc_map.category_of(code) == category
        }
        if not shares:
            raise DataError(f"the MCC map puts none of the codes used for {category!r} in that category")
        cumulative = np.cumsum(np.array(list(shares.values()), dtype=np.float64))
        cumulative /= cumulative[-1]
        cumulative[-1] = 1.0
        codes.extend(shares)
        cdf.extend(c + cumulative)
    return _MccSampler(np.array(codes, dtype=np.int32), np.array(cdf))


@dataclass(frozen=True)
class _World:
    """Everything that is the same for every chunk of one world."""

    catalog: _CatalogArrays
    calendar: _Calendar
    mcc: _MccSampler
    agent_effect: F64
    agent_not_discussed: F64
    product_constant: F64
    id_width: int
    shift: RegimeShift | None = None
    launch_day: I64 | None = None  # per benefit: the first day it exists (regime-shift worlds only)
    choice_slots: I64 | None = None  # product slots people chose their card by (without launched benefits)

    def choice_catalog(self) -> _CatalogArrays:
        """The catalog as people saw it when they chose their card: launched benefits were not on it."""
        if self.choice_slots is None:
            return self.catalog
        return dataclasses.replace(self.catalog, product_slots=self.choice_slots)


# --- personas ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Persona:
    """Hidden traits of n cardholders; nothing here is ever written to the data directory."""

    age: F64  # at as_of
    z_income: F64
    true_spend_usd: F64  # (n, categories) yearly, on any card
    wallet: F64  # (n, categories) share of the category spend that goes on this card
    engagement: F64
    satisfaction: F64
    ticket_scale: F64  # multiplies the category's mean ticket: bigger spenders buy bigger baskets
    sub_owner: I64  # recurring charges (streaming, phone and utility bills) on this card
    sub_category: I64
    sub_amount_usd: F64
    sub_day_of_month: I64
    sub_mcc: npt.NDArray[np.int32]


def _logit(p: F64) -> F64:
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_personas(rng: np.random.Generator, n: int, mcc: _MccSampler) -> _Persona:
    age = np.clip(rng.normal(44.0, 15.0, n), 18.0, 88.0)
    age_z = (age - 44.0) / 15.0
    z_income = 0.35 * (1.0 - ((age - 50.0) / 25.0) ** 2) + rng.normal(0.0, 0.95, n) - 0.2
    alpha = _ARCHETYPE_ALPHA * np.exp(
        np.outer(age_z, _ARCHETYPE_AGE_SLOPE) + np.outer(z_income, _ARCHETYPE_INCOME_SLOPE)
    )
    mix = rng.gamma(alpha)
    mix /= mix.sum(axis=1, keepdims=True)
    mean_pref = mix @ _ARCHETYPE_SHARES
    pref = rng.gamma(_PREFERENCE_CONCENTRATION * mean_pref) + 1e-12
    pref /= pref.sum(axis=1, keepdims=True)
    archetype_mean = _ARCHETYPE_SHARES.mean(axis=0)
    for name, rate in _STRUCTURAL_ZERO.items():
        c = _cat(name)
        chance = rate * np.clip(1.0 - pref[:, c] / (2.0 * archetype_mean[c]), 0.0, 1.0)
        pref[rng.random(n) < chance, c] = 0.0
    recurring = [_cat(c) for c in _RECURRING]
    shares = pref.copy()
    shares[:, recurring] = 0.0
    shares /= shares.sum(axis=1, keepdims=True)
    yearly_usd = _MEDIAN_YEARLY_SPEND_USD * np.exp(0.55 * z_income + rng.normal(0.0, 0.35, n))
    true_spend = shares * yearly_usd[:, None]

    # Card wallet share: one overall share per person, varying by category.
    overall = rng.beta(1.6, 2.2, n)
    wallet = _sigmoid(
        _logit(np.clip(overall, 0.02, 0.98))[:, None] + rng.normal(0.0, _WALLET_CATEGORY_SD, (n, _N_CATS))
    )

    # Recurring charges: streaming subscriptions and phone/utility bills, each on this card or another one.
    stream_c, telecom_c = recurring
    n_streams = np.minimum(rng.poisson(0.4 + 30.0 * pref[:, stream_c]), 6)
    n_bills = 1 + rng.binomial(2, np.clip(8.0 * pref[:, telecom_c], 0.0, 0.9))
    owner = np.concatenate([np.repeat(np.arange(n), n_streams), np.repeat(np.arange(n), n_bills)])
    category = np.concatenate([np.full(n_streams.sum(), stream_c), np.full(n_bills.sum(), telecom_c)])
    prices = rng.choice(_STREAMING_PRICES_USD, size=int(n_streams.sum()), p=_STREAMING_PRICE_SHARES)
    bills = np.round(np.exp(rng.normal(np.log(62.0), 0.45, int(n_bills.sum()))), 2)
    amount = np.concatenate([prices, bills])
    order = np.argsort(owner, kind="stable")
    owner, category, amount = owner[order], category[order], amount[order]
    for c in recurring:
        true_spend[:, c] = 12.0 * np.bincount(owner, weights=amount * (category == c), minlength=n)
    on_card = rng.random(len(owner)) < wallet[owner, category]
    day_of_month = rng.integers(1, 29, len(owner))
    sub_mcc = mcc.draw(rng, category)
    engagement = rng.normal(0.0, 1.0, n)
    satisfaction = 0.3 * engagement + rng.normal(0.0, 0.95, n)
    ticket_scale = np.clip(
        _TICKET_SCALE_MEDIAN * np.exp(0.12 * z_income + rng.normal(0.0, 0.25, n)), 0.6, 3.0
    )
    return _Persona(
        age=age,
        z_income=z_income,
        true_spend_usd=true_spend,
        wallet=wallet,
        engagement=engagement,
        satisfaction=satisfaction,
        ticket_scale=ticket_scale,
        sub_owner=owner[on_card],
        sub_category=category[on_card],
        sub_amount_usd=amount[on_card],
        sub_day_of_month=day_of_month[on_card],
        sub_mcc=sub_mcc[on_card],
    )


def _benefit_values(cat: _CatalogArrays, true_spend: F64, base_rate: F64) -> F64:
    """True yearly dollar value of every benefit (n, benefits) to people with this spend and base earn rate."""
    spend = true_spend @ cat.member.T
    earn = spend * np.maximum(cat.earn_rate - base_rate[:, None], 0.0) * cat.point_value_usd
    credit = np.minimum(cat.credit_usd, spend) * _CREDIT_USAGE
    relevance = np.where(cat.member.sum(axis=1) > 0, 1.0 - np.exp(-spend / _RELEVANCE_SPEND_USD), 0.5)
    kind = cat.view.kind
    return np.where(kind == _EARN, earn, np.where(kind == _CREDIT, credit, cat.nominal_usd * relevance))


def _spend_shares(cat: _CatalogArrays, true_spend: F64) -> F64:
    """Share of each person's yearly spend (any card) in each benefit's categories: (n, benefits)."""
    shares: F64 = (true_spend @ cat.member.T) / np.maximum(true_spend.sum(axis=1, keepdims=True), 1.0)
    return shares


def _product_utility(cat: _CatalogArrays, persona: _Persona) -> F64:
    """How attractive each product looks to each person (n, products), before noise and constants.

    People weigh the dollars a card returns net of its fee, and how many points per dollar it earns on
    their own spending mix: travellers lean to travel cards, people who eat out to dining cards.
    """
    n = len(persona.age)
    total_usd = np.maximum(persona.true_spend_usd.sum(axis=1), 1.0)
    perceived = np.asarray((1.0, 0.6, 0.5, 0.3))[cat.view.kind]
    fee_weight = np.exp(-0.35 * persona.z_income)
    utility = np.empty((n, len(cat.product_ids)))
    for p in range(len(cat.product_ids)):
        base = np.full(n, cat.product_base_rate[p])
        values = _benefit_values(cat, persona.true_spend_usd, base) * perceived
        slots = cat.product_slots[p][cat.product_slots[p] >= 0]
        points_usd = base * total_usd * cat.point_value_usd + values[
            :, slots[cat.view.kind[slots] == _EARN]
        ].sum(axis=1)
        net_usd = 0.6 * base * total_usd * cat.point_value_usd + values[:, slots].sum(axis=1)
        percent_back = 100.0 * points_usd / total_usd
        utility[:, p] = (
            net_usd - cat.product_fee_usd[p] * fee_weight
        ) / _UTILITY_USD + _FIT_PER_PERCENT * percent_back
    return utility


def _choice_chances(utility: F64) -> F64:
    """Chance of each choice (n, choices) when Gumbel noise is added to the utilities: their softmax."""
    logits = utility - utility.max(axis=1, keepdims=True)
    chance: F64 = np.exp(logits)
    chance /= chance.sum(axis=1, keepdims=True)
    return chance


def _calibrate_truth(
    cat: _CatalogArrays, mcc: _MccSampler, choice_slots: I64 | None = None
) -> tuple[_CatalogArrays, F64]:
    """The fixed parts of a world, measured on a reference population drawn from its own constant seed.

    Returns the catalog arrays with each benefit's typical value and spend share set, and the product
    constants. The constants make product shares follow 1 / (1 + fee / 200): no-fee cards are the most
    common. A benefit's typical value is the mean log($10 + true yearly value), its typical share the mean
    log(0.01 + share of yearly spend in its categories), over the people who hold a card with it (each
    weighted by the chance they pick each such card): the truth model judges how well a benefit fits a
    cardholder against how well it fits the others who have it. Nothing here depends on the world's seed.
    """
    persona = _draw_personas(np.random.default_rng(_REFERENCE_SEED), _REFERENCE_PEOPLE, mcc)
    chosen_by = cat if choice_slots is None else dataclasses.replace(cat, product_slots=choice_slots)
    utility = _product_utility(chosen_by, persona)
    target = 1.0 / (1.0 + cat.product_fee_usd / 200.0)
    target /= target.sum()
    constant = np.zeros(len(cat.product_ids))
    for _ in range(50):
        constant += np.log(target / _choice_chances(utility + constant).mean(axis=0))
    chance = _choice_chances(utility + constant)

    n, spend = len(persona.age), persona.true_spend_usd
    # Each person counts for a benefit with the chance they hold a card that has it, valued on that card.
    weight = np.zeros((n, len(cat.benefit_ids)))
    weighted_log_value = np.zeros_like(weight)
    for p, slots in enumerate(cat.product_slots):
        slots = slots[slots >= 0]
        log_value = _log_value(_benefit_values(cat, spend, np.full(n, cat.product_base_rate[p])))
        weight[:, slots] += chance[:, p, None]
        weighted_log_value[:, slots] += chance[:, p, None] * log_value[:, slots]
    # A benefit on no product is measured on everyone, at base rate 1.
    unplaced = weight.sum(axis=0) == 0
    weight[:, unplaced] = 1.0
    weighted_log_value[:, unplaced] = _log_value(_benefit_values(cat, spend, np.ones(n)))[:, unplaced]
    total = weight.sum(axis=0)
    log_share = _log_share(_spend_shares(cat, spend))
    view = dataclasses.replace(
        cat.view,
        typical_log_value=weighted_log_value.sum(axis=0) / total,
        typical_log_share=(weight * log_share).sum(axis=0) / total,
    )
    return dataclasses.replace(cat, view=view), constant


# --- one chunk ------------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """Mutable state of one chunk while its story is simulated."""

    n: int
    ids: pa.Array
    persona: _Persona
    product: I64
    open_day: I64
    active_day: I64
    slot_benefit: I64  # (n, slots), −1 padded
    slot_value_usd: F64
    slot_share: F64  # share of the cardholder's yearly spend in the slot's categories
    slot_affinity: F64
    adopted_day: I64  # (n, slots) the day the cardholder starts using the benefit on their own account
    last_declined_day: I64
    ever_declined: Bool
    gate_day: I64  # (n, categories) first day card spend in the category can happen
    inject_category: I64  # (n, slots) category of the first purchase that marks an earn-rate benefit used
    inject_amount_usd: F64
    inject_mcc: npt.NDArray[np.int32]

    slot_kind: npt.NDArray[np.int8]  # (n, slots) index into the benefit kinds, −1 for padding
    slot_member: Bool  # (n, slots, categories) the slot's benefit names the category

    def first_used_day(self, rows: I64) -> I64:
        """benefit_usage.first_used_date (day numbers) of these cardholders' slots, as known so far.

        An earn-rate benefit counts as used from the first card purchase in any of its categories.
        """
        member = self.slot_member[rows]
        earliest = np.where(member, self.gate_day[rows][:, None, :], _NEVER).min(axis=2)
        used: I64 = np.where(self.slot_kind[rows] == _EARN, earliest, self.adopted_day[rows])
        return used

    def refresh_gates(self) -> None:
        """Card spend in an earn-rate benefit's categories starts when the first such benefit is adopted."""
        earn = (self.slot_benefit >= 0) & (self.slot_kind == _EARN)
        opening = np.where(self.slot_member & earn[:, :, None], self.adopted_day[:, :, None], _NEVER).min(
            axis=1
        )
        gated = (self.slot_member & earn[:, :, None]).any(axis=1)
        self.gate_day = np.where(gated, opening, -_NEVER)


def _draw_cardholders(
    world: _World, rng: np.random.Generator, first_number: int, n: int
) -> tuple[_Chunk, pa.Table]:
    """Draws n cardholders (persona, card, account, benefit state); returns the chunk and its table."""
    cat, cal = world.catalog, world.calendar
    persona = _draw_personas(rng, n, world.mcc)
    gumbel = -np.log(-np.log(rng.random((n, len(cat.product_ids)))))
    utility = _product_utility(world.choice_catalog(), persona) + world.product_constant + gumbel
    product = np.argmax(utility, axis=1).astype(np.int64)

    new = rng.random(n) < NEW_CARDHOLDER_SHARE
    settled_days = 90 + ((OPEN_SPAN_DAYS - 90) * rng.beta(1.1, 1.6, n)).astype(np.int64)
    tenure_days = np.where(new, rng.integers(1, 91, n), settled_days)
    open_day = cal.as_of_day - tenure_days
    active_day = open_day + np.floor(rng.exponential(10.0, n)).astype(np.int64)  # first use of the card
    persona = dataclasses.replace(persona, age=np.maximum(persona.age, 18.0 + tenure_days / 365.25))
    ids = pa.array([f"C{i:0{world.id_width}d}" for i in range(first_number, first_number + n)], pa.string())
    table = _cardholder_table(world, rng, ids, persona, product, open_day)

    slot_benefit = cat.product_slots[product]
    valid = slot_benefit >= 0
    safe = np.where(valid, slot_benefit, 0)
    rows = np.arange(n)[:, None]
    values = _benefit_values(cat, persona.true_spend_usd, cat.product_base_rate[product])[rows, safe]
    shares = persona.true_spend_usd / np.maximum(persona.true_spend_usd.sum(axis=1, keepdims=True), 1.0)
    related = (shares @ cat.affinity_weights.T)[rows, safe]
    own_share = _spend_shares(cat, persona.true_spend_usd)[rows, safe]
    affinity = np.clip(np.log((related + 0.01) / (cat.affinity_base[safe] + 0.01)), -2.0, 2.0)
    member = (cat.member[safe] > 0) & valid[:, :, None]
    kind = np.where(valid, cat.view.kind[safe], -1).astype(np.int8)
    adopted = _natural_adoption_days(world, rng, persona, active_day, values, affinity, member, kind, safe)
    adopted = np.where(valid, adopted, _NEVER)

    # The first card purchase of an earn-rate benefit goes to its category with the most card spend.
    card_usd = persona.true_spend_usd * persona.wallet
    inject_category = np.argmax(np.where(member, card_usd[:, None, :] + 1e-9, -1.0), axis=2)
    flat = inject_category.ravel()
    sigma = _TICKET_SIGMA[flat]
    mean_usd = (persona.ticket_scale[:, None] * _TICKET_MEAN[inject_category]).ravel()
    inject_amount = np.maximum(mean_usd * np.exp(rng.normal(-(sigma**2) / 2, sigma)), 1.0)

    chunk = _Chunk(
        n=n,
        ids=ids,
        persona=persona,
        product=product,
        open_day=open_day,
        active_day=active_day,
        slot_benefit=slot_benefit,
        slot_value_usd=np.where(valid, values, 0.0),
        slot_share=np.where(valid, own_share, 0.0),
        slot_affinity=np.where(valid, affinity, 0.0),
        adopted_day=adopted,
        last_declined_day=np.full(slot_benefit.shape, -_NEVER, dtype=np.int64),
        ever_declined=np.zeros(slot_benefit.shape, dtype=bool),
        gate_day=np.zeros((n, _N_CATS), dtype=np.int64),
        inject_category=inject_category,
        inject_amount_usd=np.round(inject_amount, 2).reshape(inject_category.shape),
        inject_mcc=world.mcc.draw(rng, flat).reshape(inject_category.shape),
        slot_kind=kind,
        slot_member=member,
    )
    chunk.refresh_gates()
    return chunk, table


def _cardholder_table(
    world: _World, rng: np.random.Generator, ids: pa.Array, persona: _Persona, product: I64, open_day: I64
) -> pa.Table:
    """The cardholders table: what a CRM knows (income band and credit limit, not spend or wallet share)."""
    n = len(product)
    as_of_year = (_EPOCH + timedelta(days=world.calendar.as_of_day)).year
    birth_year = np.floor(as_of_year - persona.age).astype(np.int64)
    band = np.searchsorted(_INCOME_CUTS, persona.z_income)
    yearly_usd = persona.true_spend_usd.sum(axis=1)
    segment = np.where(band >= 3, SEGMENTS.index("affluent"), SEGMENTS.index("mass"))
    segment = np.where((band == 4) & (yearly_usd > 40_000), SEGMENTS.index("premier"), segment)
    student = (persona.age < 25) & (band <= 1) & (rng.random(n) < 0.8)
    segment = np.where(student, SEGMENTS.index("student"), segment)
    region = np.searchsorted(np.cumsum(_REGION_SHARES), rng.random(n) * _REGION_SHARES.sum(), side="right")
    fee_lift = 1.0 + world.catalog.product_fee_usd[product] / 1_000.0
    credit_limit = np.exp(np.log(6_500.0) + 0.6 * persona.z_income + rng.normal(0.0, 0.3, n)) * fee_lift
    credit_limit = np.clip(np.round(credit_limit / 100.0) * 100.0, 500.0, 100_000.0)
    return pa.table(
        {
            "cardholder_id": ids,
            "product_id": pa.array(np.asarray(world.catalog.product_ids, dtype=object)[product], pa.string()),
            "open_date": _dates(open_day),
            "birth_year": pa.array(birth_year, pa.int64()),
            "region": pa.array(np.asarray(REGIONS, dtype=object)[region], pa.string()),
            "segment": pa.array(np.asarray(SEGMENTS, dtype=object)[segment], pa.string()),
            "credit_limit_usd": pa.array(credit_limit, pa.float64()),
            "income_band": pa.array(np.asarray(INCOME_BANDS, dtype=object)[band], pa.string()),
        }
    )


def _natural_adoption_days(
    world: _World,
    rng: np.random.Generator,
    persona: _Persona,
    active_day: I64,
    values: F64,
    affinity: F64,
    member: Bool,
    kind: npt.NDArray[np.int8],
    benefit: I64,
) -> I64:
    """The day each (cardholder, slot) starts using the benefit unprompted; _NEVER if not before as_of.

    Many start within weeks of activation (more so for valuable benefits, engaged people and, for earn
    rates, a high wallet share in the categories); the rest drift in at a slow yearly rate.
    """
    value_term = np.log1p(values) - np.log1p(60.0)
    wallet_in = (persona.wallet[:, None, :] * member).sum(axis=2) / np.maximum(member.sum(axis=2), 1)
    start_logit = (
        np.array([_STARTS_USING_LOGIT[k] for k in BENEFIT_KINDS])[np.maximum(kind, 0)]
        + 0.8 * value_term
        + 0.5 * persona.engagement[:, None]
        + 0.4 * affinity
        - 0.4 * world.catalog.view.enroll[benefit]
        + np.where(kind == _EARN, 2.0 * (wallet_in - 0.55), 0.0)
    )
    starts = rng.random(values.shape) < _sigmoid(start_logit)
    # A benefit launched later is there to be found from its launch on, not from the card's activation.
    available = (
        active_day[:, None]
        if world.launch_day is None
        else np.maximum(active_day[:, None], world.launch_day[benefit])
    )
    start_day = available + np.floor(rng.exponential(40.0, values.shape)).astype(np.int64)
    yearly_rate = _DRIFT_PER_YEAR * np.exp(0.5 * value_term + 0.3 * persona.engagement[:, None])
    drift_day = available + np.floor(rng.exponential(365.0 / yearly_rate)).astype(np.int64)
    adopted = np.where(starts, start_day, drift_day)
    day: I64 = np.where(adopted < world.calendar.as_of_day, adopted, _NEVER)
    return day


@dataclass(frozen=True)
class _Stream:
    """Potential card purchases (before gating), sorted by (cardholder, category, day)."""

    holder: I64
    category: npt.NDArray[np.int8]
    day: I64
    amount_usd: F64
    mcc: npt.NDArray[np.int32]
    key: I64  # (holder·categories + category)·(span + 1) + day offset, ascending
    cumulative_usd: F64  # running sum of amount_usd, with a leading 0


def _draw_stream(world: _World, rng: np.random.Generator, chunk: _Chunk) -> _Stream:
    cal = world.calendar
    persona = chunk.persona
    first_day = np.maximum(chunk.active_day, cal.start_day)
    active_years = np.maximum(cal.as_of_day - first_day, 0) / 365.25

    scale = persona.ticket_scale
    card_usd = persona.true_spend_usd * persona.wallet
    card_usd[:, [_cat(c) for c in _RECURRING]] = 0.0
    expected = card_usd * active_years[:, None] / (scale[:, None] * _TICKET_MEAN)
    counts = rng.poisson(expected).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    holder = cell // _N_CATS
    category = (cell % _N_CATS).astype(np.int8)
    day = cal.draw_days(rng, category, first_day[holder])
    sigma = _TICKET_SIGMA[category]
    mean = scale[holder] * _TICKET_MEAN[category]
    amount = np.round(np.maximum(mean * np.exp(rng.normal(-(sigma**2) / 2, sigma)), 0.5), 2)
    mcc = world.mcc.draw(rng, category)

    # Recurring charges: once a month on their day, from the first active month.
    months = cal.month_start_days
    sub_days = months[None, :] + persona.sub_day_of_month[:, None] - 1
    sub_live = (sub_days >= first_day[persona.sub_owner][:, None]) & (sub_days < cal.as_of_day)
    sub_index, month_index = np.nonzero(sub_live)
    wobble = np.where(
        persona.sub_category[sub_index] == _cat("telecom_utilities"),
        np.exp(rng.normal(0, 0.07, len(sub_index))),
        1.0,
    )
    holder = np.concatenate([holder, persona.sub_owner[sub_index]])
    category = np.concatenate([category, persona.sub_category[sub_index].astype(np.int8)])
    day = np.concatenate([day, sub_days[sub_index, month_index]])
    amount = np.concatenate([amount, np.round(persona.sub_amount_usd[sub_index] * wobble, 2)])
    mcc = np.concatenate([mcc, persona.sub_mcc[sub_index]])

    key = (holder * _N_CATS + category) * (cal.span_days + 1) + (day - cal.start_day)
    order = np.argsort(key, kind="stable")
    amount = amount[order]
    return _Stream(
        holder=holder[order],
        category=category[order],
        day=day[order],
        amount_usd=amount,
        mcc=mcc[order],
        key=key[order],
        cumulative_usd=np.concatenate([[0.0], np.cumsum(amount)]),
    )


_TRAVEL_MASK: Final = np.array([c in TRAVEL_CATEGORIES for c in SPEND_CATEGORIES])


def _thin_travel(shift: RegimeShift, rng: np.random.Generator, stream: _Stream) -> _Stream:
    """The stream with travel purchases after the shift kept at the shift's travel factor of their day."""
    travel = _TRAVEL_MASK[stream.category]
    keep = ~travel | (rng.random(len(stream.day)) < shift.travel_factor(stream.day))
    amount = stream.amount_usd[keep]
    return _Stream(
        holder=stream.holder[keep],
        category=stream.category[keep],
        day=stream.day[keep],
        amount_usd=amount,
        mcc=stream.mcc[keep],
        key=stream.key[keep],
        cumulative_usd=np.concatenate([[0.0], np.cumsum(amount)]),
    )


def _shift_callers(
    world: _World,
    shift: RegimeShift,
    rng: np.random.Generator,
    chunk: _Chunk,
    holder: I64,
    day: I64,
    calls_per_year: F64,
    first_day: I64,
) -> tuple[I64, I64]:
    """Calls after the shift at each cardholder's rate × exp(slope × income score) / its mean.

    Calls of cardholders whose rate falls are thinned; those whose rate rises get extra calls after the
    shift, on uniformly drawn days.
    """
    shift_day, as_of_day = _day_number(shift.starts), world.calendar.as_of_day
    weight = np.exp(shift.caller_income_slope * chunk.persona.z_income)
    weight /= weight.mean()
    keep = (day < shift_day) | (rng.random(len(day)) < np.minimum(weight[holder], 1.0))
    window_from = np.maximum(first_day, shift_day)
    years_after = np.maximum(as_of_day - window_from, 0) / 365.25
    extra = rng.poisson(calls_per_year * years_after * np.maximum(weight - 1.0, 0.0))
    extra_holder = np.repeat(np.arange(chunk.n), extra)
    span = as_of_day - window_from[extra_holder]
    extra_day = window_from[extra_holder] + np.floor(rng.random(len(extra_holder)) * span).astype(np.int64)
    return np.concatenate([holder[keep], extra_holder]), np.concatenate([day[keep], extra_day])


def _card_spend_90d(
    world: _World, stream: _Stream, chunk: _Chunk, holder: I64, day: I64, first_used: I64
) -> F64:
    """Card purchases (refunds not netted) per category in the 90 days before `day`: (calls, categories)."""
    cal = world.calendar
    span = cal.span_days + 1
    low = np.maximum(day[:, None] - 90, chunk.gate_day[holder])
    low = np.clip(low, cal.start_day, day[:, None]) - cal.start_day
    base = (holder[:, None] * _N_CATS + np.arange(_N_CATS)) * span
    lo = np.searchsorted(stream.key, base + low)
    hi = np.searchsorted(stream.key, base + (day - cal.start_day)[:, None])
    spend = stream.cumulative_usd[hi] - stream.cumulative_usd[lo]
    # First purchases that marked an earn-rate benefit used are card spend too.
    injected = (first_used >= np.maximum(day[:, None] - 90, cal.start_day)) & (first_used < day[:, None])
    injected &= chunk.slot_kind[holder] == _EARN
    rows = np.repeat(np.arange(len(holder)), injected.sum(axis=1))
    np.add.at(
        spend, (rows, chunk.inject_category[holder][injected]), chunk.inject_amount_usd[holder][injected]
    )
    return spend


@dataclass(frozen=True)
class _Calls:
    holder: I64
    started_us: I64
    reason: I64
    agent: I64
    call_number: I64  # global ordinal, for call ids


@dataclass
class _Presentations:
    call: list[I64]
    slot: list[I64]
    rank: list[I64]
    logging_prob: list[F64]
    p_true: list[F64]
    outcome: list[I64]
    adopted: list[Bool]


_ACCEPTED, _DECLINED, _NOT_DISCUSSED, _ALREADY_AWARE = (
    OUTCOMES.index(name) for name in ("accepted", "declined", "not_discussed", "already_aware")
)


def _draw_calls(
    world: _World,
    rng: np.random.Generator,
    chunk: _Chunk,
    first_call_number: int,
    shift_rng: np.random.Generator | None = None,
) -> _Calls:
    cal = world.calendar
    first_day = np.maximum(chunk.open_day, cal.start_day)
    years = (cal.as_of_day - first_day) / 365.25
    propensity = rng.gamma(2.0, 0.5, chunk.n) * np.exp(-0.15 * chunk.persona.z_income)
    counts = rng.poisson(_CALLS_PER_YEAR * propensity * years)
    holder = np.repeat(np.arange(chunk.n), counts)
    day = first_day[holder] + np.floor(rng.random(len(holder)) * (cal.as_of_day - first_day[holder])).astype(
        np.int64
    )
    if world.shift is not None and shift_rng is not None:
        holder, day = _shift_callers(
            world, world.shift, shift_rng, chunk, holder, day, _CALLS_PER_YEAR * propensity, first_day
        )
    seconds = np.clip(rng.normal(14.0 * 3600, 3.2 * 3600, len(holder)), 7 * 3600, 22 * 3600).astype(np.int64)
    started = day * _US_PER_DAY + seconds * 1_000_000
    order = np.lexsort((started, holder))
    holder, started = holder[order], started[order]

    # Reasons: the usual mix, travel notices from people who travel, hardship more among low incomes.
    log_share = np.log(np.array([_CALL_REASON_SHARES[r] for r in CALL_REASONS]))
    # In SPEND_CATEGORIES order: a frozenset's order changes with each process's string hashing, and so
    # would the last bits of the sum below.
    travel = np.array([_cat(c) for c in SPEND_CATEGORIES if c in TRAVEL_CATEGORIES])
    spend = chunk.persona.true_spend_usd
    travel_share = spend[:, travel].sum(axis=1) / np.maximum(spend.sum(axis=1), 1.0)
    lift = np.zeros((chunk.n, len(CALL_REASONS)))
    lift[:, CALL_REASONS.index("travel_notice")] = 8.0 * (travel_share - 0.12)
    lift[:, CALL_REASONS.index("hardship")] = -0.6 * chunk.persona.z_income
    lift[:, CALL_REASONS.index("rewards_question")] = 0.3 * chunk.persona.engagement
    gumbel = -np.log(-np.log(rng.random((len(holder), len(CALL_REASONS)))))
    reason_score = log_share + lift[holder] + gumbel
    if world.shift is not None:
        # After the shift: other reasons to call, and travel notices as rare as travel itself.
        call_day = started // _US_PER_DAY
        after = call_day >= _day_number(world.shift.starts)
        moved = np.array([world.shift.reason_log_odds.get(r, 0.0) for r in CALL_REASONS])
        reason_score[after] += moved
        reason_score[after, CALL_REASONS.index("travel_notice")] += np.log(
            world.shift.travel_factor(call_day[after])
        )
    reason = np.argmax(reason_score, axis=1).astype(np.int64)
    agent = rng.integers(0, AGENT_COUNT, len(holder))
    number = first_call_number + np.arange(len(holder), dtype=np.int64)
    return _Calls(holder, started, reason, agent, number)


def _shifted_truth(world: _World, benefit: I64, value_usd: F64, day: I64) -> tuple[F64, F64 | None]:
    """A benefit's true yearly worth and the income terms' factor on these days (unchanged without a shift)."""
    shift = world.shift
    if shift is None:
        return value_usd, None
    travel = world.catalog.view.travel[benefit]
    worth: F64 = np.where(travel, value_usd * shift.travel_factor(day), value_usd)
    effect: F64 = np.where(day >= _day_number(shift.starts), shift.income_effect, 1.0)
    return worth, effect


def _simulate_calls(
    world: _World, rng: np.random.Generator, chunk: _Chunk, stream: _Stream, calls: _Calls
) -> _Presentations:
    """Runs the legacy policy call by call in time order; outcomes change what later calls see."""
    cat = world.catalog
    out = _Presentations([], [], [], [], [], [], [])
    if len(calls.holder) == 0:
        return out
    first_of_holder = np.searchsorted(calls.holder, calls.holder)
    turn = np.arange(len(calls.holder)) - first_of_holder
    up_to = np.array([PRESENT_UP_TO[r] for r in CALL_REASONS])
    width = chunk.slot_benefit.shape[1]
    top = int(up_to.max())
    for number in range(int(turn.max()) + 1):
        index = np.flatnonzero(turn == number)
        holder = calls.holder[index]
        day = calls.started_us[index] // _US_PER_DAY
        reason = calls.reason[index]
        benefit = chunk.slot_benefit[holder]
        safe = np.where(benefit >= 0, benefit, 0)
        first_used = chunk.first_used_day(holder)
        unused = first_used >= day[:, None]
        eligible = (benefit >= 0) & unused & cat.presentable[safe, reason[:, None]]
        if world.launch_day is not None:
            eligible &= world.launch_day[safe] <= day[:, None]
        n_eligible = eligible.sum(axis=1)
        k = np.minimum(n_eligible, up_to[reason])

        spend = _card_spend_90d(world, stream, chunk, holder, day, first_used)
        slot_spend = np.einsum("mc,msc->ms", spend, chunk.slot_member[holder])
        score = np.where(
            eligible, np.log1p(slot_spend) + LEGACY_POPULARITY_WEIGHT * cat.popularity[safe], -np.inf
        )
        top_order = np.argsort(-score, axis=1, kind="stable")
        position = np.empty_like(top_order)
        np.put_along_axis(position, top_order, np.arange(width)[None, :], axis=1)
        in_top = eligible & (position < k[:, None])
        random_order = np.argsort(
            np.where(eligible, rng.random(eligible.shape), np.inf), axis=1, kind="stable"
        )
        explore = rng.random(len(index)) < LEGACY_EPSILON
        order = np.where(explore[:, None], random_order, top_order)[:, :top]
        shown = np.arange(order.shape[1])[None, :] < k[:, None]
        call_row, column = np.nonzero(shown)
        slot = order[call_row, column]
        rank = column + 1
        who = holder[call_row]
        share = k[call_row] / np.maximum(n_eligible[call_row], 1)
        logging_prob = (1.0 - LEGACY_EPSILON) * in_top[call_row, slot] + LEGACY_EPSILON * share

        when = day[call_row]
        b = chunk.slot_benefit[who, slot]
        declined_at = chunk.last_declined_day[who, slot]
        value_usd, income_effect = _shifted_truth(world, b, chunk.slot_value_usd[who, slot], when)
        p_true = _sigmoid(
            TRUTH.logit(
                cat.view.take(b),
                value_usd,
                chunk.slot_share[who, slot],
                chunk.slot_affinity[who, slot],
                (when - chunk.open_day[who]).astype(np.float64),
                chunk.persona.age[who] - (world.calendar.as_of_day - when) / 365.25,
                chunk.persona.z_income[who],
                chunk.persona.engagement[who],
                declined_at >= when - DECLINE_MEMORY_DAYS,
                chunk.ever_declined[who, slot],
                reason[call_row],
                rank,
                world.agent_effect[calls.agent[index][call_row]],
                income_effect,
            )
        )
        not_discussed = rng.random(len(slot)) < _sigmoid(
            _logit(np.asarray(0.10))
            + 0.55 * (rank - 1)
            + world.agent_not_discussed[calls.agent[index][call_row]]
        )
        adopted = ~not_discussed & (rng.random(len(slot)) < p_true)
        says = rng.random(len(slot))
        # Adopters mostly say yes; some knew already. Non-adopters mostly decline, some say yes anyway.
        outcome = np.where(
            adopted,
            np.where(says < 0.85, _ACCEPTED, _ALREADY_AWARE),
            np.where(says < 0.72, _DECLINED, np.where(says < 0.86, _ACCEPTED, _ALREADY_AWARE)),
        )
        outcome = np.where(not_discussed, _NOT_DISCUSSED, outcome)

        start = when + np.minimum(np.floor(rng.exponential(5.0, len(slot))), LABEL_WINDOW_DAYS).astype(
            np.int64
        )
        np.minimum.at(chunk.adopted_day, (who[adopted], slot[adopted]), start[adopted])
        declined = outcome == _DECLINED
        np.maximum.at(chunk.last_declined_day, (who[declined], slot[declined]), when[declined])
        chunk.ever_declined[who[declined], slot[declined]] = True
        if adopted.any():
            chunk.refresh_gates()

        out.call.append(index[call_row])
        out.slot.append(slot)
        out.rank.append(rank)
        out.logging_prob.append(logging_prob)
        out.p_true.append(p_true)
        out.outcome.append(outcome)
        out.adopted.append(adopted)
    return out


def _dates(day: I64) -> pa.Array:
    return pa.array(day.astype(np.int32), pa.date32())


def _timestamps(us: I64) -> pa.Array:
    return pa.array(us, pa.timestamp("us"))


def _finish_transactions(world: _World, rng: np.random.Generator, chunk: _Chunk, stream: _Stream) -> pa.Table:
    cal = world.calendar
    kept = stream.day >= chunk.gate_day[stream.holder, stream.category]
    holder, day, amount, mcc = (
        stream.holder[kept],
        stream.day[kept],
        stream.amount_usd[kept],
        stream.mcc[kept],
    )

    first_used = chunk.first_used_day(np.arange(chunk.n))
    earn = (chunk.slot_benefit >= 0) & (chunk.slot_kind == _EARN)
    injected = earn & (first_used >= cal.start_day) & (first_used < cal.as_of_day)
    inj_holder, inj_slot = np.nonzero(injected)
    holder = np.concatenate([holder, inj_holder])
    day = np.concatenate([day, first_used[inj_holder, inj_slot]])
    amount = np.concatenate([amount, chunk.inject_amount_usd[inj_holder, inj_slot]])
    mcc = np.concatenate([mcc, chunk.inject_mcc[inj_holder, inj_slot]])

    # Refunds: a share of purchases comes back, in full or in part, days later, at the same merchant type.
    refunded = np.flatnonzero(rng.random(len(holder)) < REFUND_SHARE)
    refund_day = day[refunded] + 1 + np.floor(rng.exponential(9.0, len(refunded))).astype(np.int64)
    part = np.where(rng.random(len(refunded)) < 0.75, 1.0, rng.uniform(0.1, 0.9, len(refunded)))
    refund_amount = -np.maximum(np.round(amount[refunded] * part, 2), 0.01)
    in_window = refund_day < cal.as_of_day
    refunded, refund_day, refund_amount = refunded[in_window], refund_day[in_window], refund_amount[in_window]
    holder = np.concatenate([holder, holder[refunded]])
    mcc = np.concatenate([mcc, mcc[refunded]])
    day = np.concatenate([day, refund_day])
    amount = np.concatenate([amount, refund_amount])

    order = np.argsort(holder * (cal.span_days + 1) + (day - cal.start_day), kind="stable")
    return pa.table(
        {
            "cardholder_id": chunk.ids.take(pa.array(holder[order])),
            "transaction_date": _dates(day[order]),
            "amount": pa.array(amount[order], pa.float64()),
            "mcc": pa.array(mcc[order], pa.int32()),
        }
    )


def _call_ids(numbers: I64) -> pa.Array:
    return pa.array([f"K{i:09d}" for i in numbers.tolist()], pa.string())


def _agent_ids(agent: I64) -> pa.Array:
    names = pa.array([f"A{i + 1:04d}" for i in range(AGENT_COUNT)], pa.string())
    return names.take(pa.array(agent))


def _finish_calls(
    world: _World, rng: np.random.Generator, chunk: _Chunk, calls: _Calls, shown: _Presentations
) -> tuple[pa.Table, pa.Table, pa.Table]:
    cat = world.catalog
    call = np.concatenate(shown.call) if shown.call else np.zeros(0, dtype=np.int64)
    slot = np.concatenate(shown.slot) if shown.slot else np.zeros(0, dtype=np.int64)
    rank = np.concatenate(shown.rank) if shown.rank else np.zeros(0, dtype=np.int64)
    prob = np.concatenate(shown.logging_prob) if shown.logging_prob else np.zeros(0)
    outcome = np.concatenate(shown.outcome) if shown.outcome else np.zeros(0, dtype=np.int64)
    adopted = np.concatenate(shown.adopted) if shown.adopted else np.zeros(0, dtype=bool)
    order = np.lexsort((rank, call))
    call, slot, rank, outcome = call[order], slot[order], rank[order], outcome[order]
    prob, adopted = prob[order], adopted[order]

    call_ids = _call_ids(calls.call_number)
    reasons = pa.array(np.asarray(CALL_REASONS, dtype=object)[calls.reason], pa.string())
    agents = _agent_ids(calls.agent)
    calls_table = pa.table(
        {
            "call_id": call_ids,
            "cardholder_id": chunk.ids.take(pa.array(calls.holder)),
            "started_at": _timestamps(calls.started_us),
            "call_reason": reasons,
            "agent_id": agents,
        }
    )
    holder = calls.holder[call]
    presented_us = calls.started_us[call] + (60 + 45 * rank + rng.integers(0, 240, len(call))) * 1_000_000
    picks = pa.array(call)
    conversations = pa.table(
        {
            "call_id": call_ids.take(picks),
            "cardholder_id": chunk.ids.take(pa.array(holder)),
            "benefit_id": pa.array(
                np.asarray(cat.benefit_ids, dtype=object)[chunk.slot_benefit[holder, slot]], pa.string()
            ),
            "presented_at": _timestamps(presented_us),
            "outcome": pa.array(np.asarray(OUTCOMES, dtype=object)[outcome], pa.string()),
            "agent_id": agents.take(picks),
            "rank": pa.array(rank, pa.int64()),
            "call_reason": reasons.take(picks),
            "logging_prob": pa.array(prob, pa.float64()),
        }
    )

    value_usd = chunk.slot_value_usd[holder, slot]
    nps = _survey_answers(world, rng, chunk, calls, call_ids, call, outcome, adopted, value_usd)
    return calls_table, conversations, nps


def _survey_answers(
    world: _World,
    rng: np.random.Generator,
    chunk: _Chunk,
    calls: _Calls,
    call_ids: pa.Array,
    call: I64,
    outcome: I64,
    adopted: Bool,
    value_usd: F64,
) -> pa.Table:
    """NPS answers for about a quarter of calls: latent satisfaction, the call's reason, and what was pitched.

    A relevant benefit taken up lifts the score; pitching on a complaint or dispute, or pitching benefits
    worth little to the cardholder, lowers it.
    """
    n_calls = len(calls.holder)
    discussed = outcome != _NOT_DISCUSSED
    took_relevant = (outcome == _ACCEPTED) & adopted & (value_usd >= 40.0)
    relevant_accept = np.bincount(call, weights=took_relevant.astype(np.float64), minlength=n_calls) > 0
    irrelevant = np.bincount(
        call, weights=(discussed & (value_usd < 15.0)).astype(np.float64), minlength=n_calls
    )
    any_pitch = np.bincount(call, weights=discussed.astype(np.float64), minlength=n_calls) > 0
    tense = np.isin(calls.reason, [CALL_REASONS.index(r) for r in ("complaint", "dispute")])
    reason_effect = np.array([_NPS_REASON_EFFECT.get(r, 0.0) for r in CALL_REASONS])
    latent = (
        7.4
        + 1.5 * chunk.persona.satisfaction[calls.holder]
        + reason_effect[calls.reason]
        + 0.9 * relevant_accept
        - 1.0 * (tense & any_pitch)
        - 0.5 * irrelevant
        + rng.normal(0.0, 1.3, n_calls)
    )
    score = np.clip(np.round(latent), 0, 10).astype(np.int64)
    responded_us = calls.started_us + (600 + rng.exponential(10 * 3600, n_calls)).astype(np.int64) * 1_000_000
    before_as_of = responded_us < world.calendar.as_of_day * _US_PER_DAY
    answers = (rng.random(n_calls) < NPS_RESPONSE_SHARE) & before_as_of
    return pa.table(
        {
            "call_id": call_ids.filter(pa.array(answers)),
            "score": pa.array(score[answers], pa.int64()),
            "responded_at": _timestamps(responded_us[answers]),
        }
    )


def _finish_usage(
    world: _World, chunk: _Chunk, calls: _Calls, shown: _Presentations
) -> tuple[pa.Table, pa.Table]:
    """benefit_usage rows (used before as_of) and oracle rows (every benefit on the card not used by as_of;
    in a regime-shift world also as of each month's first day from the shift on, with an `as_of` column)."""
    cal, cat = world.calendar, world.catalog
    first_used = chunk.first_used_day(np.arange(chunk.n))
    valid = chunk.slot_benefit >= 0
    used = valid & (first_used < cal.as_of_day)
    holder, slot = np.nonzero(used)
    benefit_names = np.asarray(cat.benefit_ids, dtype=object)
    usage = pa.table(
        {
            "cardholder_id": chunk.ids.take(pa.array(holder)),
            "benefit_id": pa.array(benefit_names[chunk.slot_benefit[holder, slot]], pa.string()),
            "first_used_date": _dates(first_used[holder, slot]),
        }
    )
    if world.shift is None:
        oracle = _oracle_at(
            world, chunk, valid & ~used, cal.as_of_day, chunk.last_declined_day, chunk.ever_declined
        )
        return usage, oracle

    call = np.concatenate(shown.call) if shown.call else np.zeros(0, dtype=np.int64)
    declined = (np.concatenate(shown.outcome) == _DECLINED) if shown.outcome else np.zeros(0, dtype=bool)
    declined_holder = calls.holder[call[declined]]
    declined_slot = np.concatenate(shown.slot)[declined] if shown.slot else np.zeros(0, dtype=np.int64)
    declined_day = calls.started_us[call[declined]] // _US_PER_DAY
    shift_day = _day_number(world.shift.starts)
    months = cal.month_start_days[cal.month_start_days >= shift_day]
    tables = []
    for day in [*months.tolist(), cal.as_of_day]:
        # What the story had reached by `day`: benefits used before it, declines before it.
        before = declined_day < day
        last_declined = np.full(chunk.slot_benefit.shape, -_NEVER, dtype=np.int64)
        np.maximum.at(last_declined, (declined_holder[before], declined_slot[before]), declined_day[before])
        ever_declined = last_declined > -_NEVER
        pending = valid & (first_used >= day) & (chunk.open_day < day)[:, None]
        table = _oracle_at(world, chunk, pending, day, last_declined, ever_declined)
        tables.append(table.append_column(ORACLE_AS_OF_COLUMN, _dates(np.full(table.num_rows, day))))
    return usage, pa.concat_tables(tables)


def _oracle_at(
    world: _World, chunk: _Chunk, pending: Bool, day: int, last_declined: I64, ever_declined: Bool
) -> pa.Table:
    """The truth for the `pending` (cardholder, slot) pairs on a general call, at rank 1, on `day`."""
    cat = world.catalog
    holder, slot = np.nonzero(pending)
    benefit = chunk.slot_benefit[holder, slot]
    declined_at = last_declined[holder, slot]
    value_usd = chunk.slot_value_usd[holder, slot]
    age = chunk.persona.age[holder]
    income_effect = None
    if world.shift is not None:
        value_usd, income_effect = _shifted_truth(world, benefit, value_usd, np.full(len(holder), day))
        age = age - (world.calendar.as_of_day - day) / 365.25
    p_true = _sigmoid(
        TRUTH.logit(
            cat.view.take(benefit),
            value_usd,
            chunk.slot_share[holder, slot],
            chunk.slot_affinity[holder, slot],
            (day - chunk.open_day[holder]).astype(np.float64),
            age,
            chunk.persona.z_income[holder],
            chunk.persona.engagement[holder],
            declined_at >= day - DECLINE_MEMORY_DAYS,
            ever_declined[holder, slot],
            np.full(len(holder), CALL_REASONS.index("general")),
            np.ones(len(holder), dtype=np.int64),
            np.zeros(len(holder)),
            income_effect,
        )
    )
    return pa.table(
        {
            "cardholder_id": chunk.ids.take(pa.array(holder)),
            "benefit_id": pa.array(np.asarray(cat.benefit_ids, dtype=object)[benefit], pa.string()),
            "p_true": pa.array(p_true, pa.float64()),
            "value_usd": pa.array(np.round(value_usd, 2), pa.float64()),
        }
    )


def _generate_chunk(
    world: _World, seed: np.random.SeedSequence, first_number: int, n: int, first_call_number: int
) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    # What a regime shift draws comes from a stream of its own: the chunk's own draws stay as they are.
    shift_rng = np.random.default_rng(seed.spawn(1)[0]) if world.shift is not None else None
    chunk, cardholders = _draw_cardholders(world, rng, first_number, n)
    stream = _draw_stream(world, rng, chunk)
    if world.shift is not None and shift_rng is not None:
        stream = _thin_travel(world.shift, shift_rng, stream)
    calls = _draw_calls(world, rng, chunk, first_call_number, shift_rng)
    shown = _simulate_calls(world, rng, chunk, stream, calls)
    calls_table, conversations, nps = _finish_calls(world, rng, chunk, calls, shown)
    transactions = _finish_transactions(world, rng, chunk, stream)
    usage, oracle = _finish_usage(world, chunk, calls, shown)
    return {
        "cardholders": cardholders,
        "transactions": transactions,
        "benefit_usage": usage,
        "conversations": conversations,
        "calls": calls_table,
        "nps": nps,
        "oracle": oracle,
    }


# --- writing ---------------------------------------------------------------------------------------------------


class _TableSink:
    """Appends chunks of one table to a file (Parquet or CSV), written under a temporary name until closed."""

    def __init__(self, path: Path, fmt: Literal["csv", "parquet"]) -> None:
        self.path = path
        self.fmt = fmt
        self.partial = path.with_name(f".{path.name}.partial")
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.fmt == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.partial, table.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        table = _csv_ready(table)
        if self._csv is None:
            self._csv = pacsv.CSVWriter(
                self.partial, table.schema, write_options=pacsv.WriteOptions(quoting_style="none")
            )
        self._csv.write_table(table)

    def close(self) -> None:
        writer = self._parquet or self._csv
        if writer is not None:
            writer.close()
            os.replace(self.partial, self.path)

    def discard(self) -> None:
        writer = self._parquet or self._csv
        if writer is not None:
            writer.close()
        self.partial.unlink(missing_ok=True)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 text (`2026-03-05T14:02:11`, UTC); dates are written as YYYY-MM-DD already."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            values = table.column(i).to_numpy().astype("datetime64[s]")
            text = np.datetime_as_string(values, unit="s")
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _check_arguments(n_cardholders: int, seed: int, fmt: str, out_dir: Path, oracle_path: Path) -> None:
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    in_range = is_int(n_cardholders) and 1 <= n_cardholders <= 99_999_999
    check_param("n_cardholders", n_cardholders, in_range, "an int in [1, 99999999]", DataError)
    check_param("seed", seed, is_int(seed) and seed >= 0, "a non-negative int", DataError)
    check_param("fmt", fmt, fmt in ("csv", "parquet"), "'csv' or 'parquet'", DataError)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"`out_dir` must be a directory, got the file {out_dir}")
    if out_dir.resolve() in oracle_path.resolve().parents:
        raise DataError(f"`oracle_path` must be outside `out_dir` (it holds hidden truth), got {oracle_path}")
    other = "csv" if fmt == "parquet" else "parquet"
    for name in TABLE_NAMES:
        if (out_dir / f"{name}.{other}").exists():
            raise DataError(
                f"{out_dir / f'{name}.{other}'} exists; remove it or write {other} (a table in two files is ambiguous)"
            )


def generate_world(
    n_cardholders: int,
    seed: int,
    out_dir: Path,
    fmt: Literal["csv", "parquet"] = "parquet",
    as_of: date = DEFAULT_AS_OF,
    oracle_path: Path | None = None,
    catalog_path: Path | None = None,
    regime_shift: RegimeShift | date | None = None,
) -> WorldSummary:
    """Writes a synthetic data directory (the six contract tables and catalog.yaml) and its oracle file.

    Takes the number of cardholders, a seed (same seed, same rows), the output directory (created if
    needed; the six tables in it are replaced), the file format, the as-of date (every date written is
    before it), where to write the oracle (default `<out_dir>.oracle.parquet` beside the directory; never
    inside it) and the catalog (default: the shipped one; copied to out_dir). An `mcc_map.csv` already in
    out_dir is honoured. `regime_shift` (a RegimeShift, or a date for the default one) makes the world
    change from that date on (see RegimeShift); the catalog written then has the launched benefit, and the
    oracle an `as_of` column. Returns a WorldSummary. Raises DataError for bad arguments, CatalogError or
    ValidationError for a bad catalog or MCC map.

    Example:
        >>> summary = generate_world(2_000, seed=7, out_dir=Path("/tmp/world"), fmt="csv")
        >>> summary.rows_by_table["cardholders"]
        2000
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    oracle_path = (
        Path(oracle_path) if oracle_path is not None else out_dir.parent / f"{out_dir.name}.oracle.parquet"
    )
    _check_arguments(n_cardholders, seed, fmt, out_dir, oracle_path)
    shift = RegimeShift(regime_shift) if isinstance(regime_shift, date) else regime_shift
    calendar = _calendar(as_of)
    if shift is not None and not calendar.start_day < _day_number(shift.starts) < calendar.as_of_day:
        history_start = _EPOCH + timedelta(days=calendar.start_day)
        raise DataError(
            f"`regime_shift` must be a date inside the history, after {history_start} and "
            f"before the as-of {as_of}, got {shift.starts}"
        )
    catalog_file = Path(catalog_path) if catalog_path is not None else DEFAULT_CATALOG_PATH
    catalog = load_catalog(catalog_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    oracle_path.parent.mkdir(parents=True, exist_ok=True)
    target = out_dir / "catalog.yaml"
    if shift is not None:
        # The data directory's catalog has the launched benefit; the world reads it from there.
        replace_text = _catalog_with_launch(catalog_file.read_text(encoding="utf-8"))
        target.write_text(replace_text, encoding="utf-8")
        catalog_file = target
        catalog = load_catalog(target)

    root = np.random.SeedSequence(seed)
    # The first stream once calibrated the products (now `_calibrate_truth` does, on a fixed population);
    # spawning it still keeps the others as they were.
    _, agent_seed, chunks_seed = root.spawn(3)
    # Transactions are drawn with the MCC map the data directory will be read with (its override too).
    override = out_dir / MCC_OVERRIDE_FILE
    mcc = _mcc_sampler(load_mcc_map(override if override.exists() else None))
    arrays = _catalog_arrays(catalog)
    launch_day, choice_slots = None, None
    if shift is not None:
        launched = np.array([b == LAUNCHED_BENEFIT["id"] for b in arrays.benefit_ids])
        launch_day = np.where(launched, _day_number(shift.starts), -_NEVER).astype(np.int64)
        choice_slots = np.where(
            np.isin(arrays.product_slots, np.flatnonzero(launched)), -1, arrays.product_slots
        )
    cat, product_constant = _calibrate_truth(arrays, mcc, choice_slots)
    agent_rng = np.random.default_rng(agent_seed)
    world = _World(
        shift=shift,
        launch_day=launch_day,
        choice_slots=choice_slots,
        catalog=cat,
        calendar=calendar,
        mcc=mcc,
        agent_effect=agent_rng.normal(0.0, TRUTH.agent_sd, AGENT_COUNT),
        agent_not_discussed=agent_rng.normal(0.0, 0.4, AGENT_COUNT),
        product_constant=product_constant,
        id_width=max(7, len(str(n_cardholders))),
    )
    sinks = {name: _TableSink(out_dir / f"{name}.{fmt}", fmt) for name in TABLE_NAMES}
    sinks["oracle"] = _TableSink(oracle_path, "parquet")
    n_chunks = -(-n_cardholders // CHUNK_CARDHOLDERS)
    try:
        next_call = 1
        for index, chunk_seed in enumerate(chunks_seed.spawn(n_chunks)):
            first = index * CHUNK_CARDHOLDERS
            size = min(CHUNK_CARDHOLDERS, n_cardholders - first)
            tables = _generate_chunk(world, chunk_seed, first + 1, size, next_call)
            next_call += tables["calls"].num_rows
            for name, table in tables.items():
                sinks[name].write(table)
        for sink in sinks.values():
            sink.close()
    except BaseException:
        for sink in sinks.values():
            sink.discard()
        raise
    if not (target.exists() and target.samefile(catalog_file)):
        shutil.copyfile(catalog_file, target)
    return WorldSummary(
        out_dir=out_dir,
        oracle_path=oracle_path,
        fmt=fmt,
        seed=seed,
        as_of=as_of,
        rows_by_table={name: sinks[name].rows for name in TABLE_NAMES},
        oracle_rows=sinks["oracle"].rows,
        seconds=time.perf_counter() - started,
        regime_shift=shift.starts if shift is not None else None,
    )


def _catalog_with_launch(text: str) -> str:
    """Catalog YAML with `LAUNCHED_BENEFIT` added (unless it is there) to the products in
    `LAUNCHED_ON_PRODUCTS`, or to every product when the catalog has none of them."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("benefits"), list):
        return text  # load_catalog has said what is wrong with it already
    if any(isinstance(b, dict) and b.get("id") == LAUNCHED_BENEFIT["id"] for b in raw["benefits"]):
        return text
    raw["benefits"].append(dict(LAUNCHED_BENEFIT))
    products = [p for p in raw.get("products", []) if isinstance(p, dict)]
    named = [p for p in products if p.get("id") in LAUNCHED_ON_PRODUCTS] or products
    for product in named:
        product["benefits"] = [*product.get("benefits", []), LAUNCHED_BENEFIT["id"]]
    dumped: str = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110)
    return "# The shipped catalog with the benefit launched on the regime shift's date.\n" + dumped
