"""Synthetic world, parameters: the fixed numbers a world is drawn from (personas, tickets, MCCs, calls, the legacy policy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt

from nba.contract import TABLES
from nba.vocab import (
    BENEFIT_KINDS,
    CALL_REASONS,
    CATEGORY_INDEX,
    SPEND_CATEGORIES,
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
DECLINE_MEMORY_DAYS: Final = 90
REFUND_SHARE: Final = 0.021
NPS_RESPONSE_SHARE: Final = 0.25
# The contract's tables, in the contract's order: the world writes each of them.
TABLE_NAMES: Final = tuple(TABLES)
ORACLE_COLUMNS: Final = ("cardholder_id", "benefit_id", "p_true", "value_usd")
# A world with a regime shift holds the truth as of several dates: this column says which.
ORACLE_AS_OF_COLUMN: Final = "as_of"
# A counterfactual world's oracle also holds the chance of starting with no conversation, and each benefit's class.
ORACLE_NATURAL_COLUMN: Final = "p_natural"
ORACLE_CLASS_COLUMN: Final = "uplift_class"


@dataclass(frozen=True)
class CallTruthColumns:
    """The call truth's columns (`generate_world(..., call_truth=True)`), one row per (logged call, eligible
    benefit) after `call_id, benefit_id`: the expected adoptions within the label window were it shown at rank
    1, 2, ... (`adoption(rank)`); what it says of the NPS answer, for the detractor share of any policy's
    slates: the chance the agent discusses it at each rank (`discussed(rank)`), the chance, once discussed, it
    is taken up and accepted where it is worth at least NPS_RELEVANT_VALUE_USD, the answer's lift
    (`relevant(rank)`), and the latent points a discussion costs (wrong call, little value; `nps_points`); per
    call (repeated on its rows) the latent score's mean before any pitch (`nps_mean`) and whether the call is
    tense (`nps_tense`)."""

    adoption_prefix: str = "expected_adoption_rank_"
    discussed_prefix: str = "p_discussed_rank_"
    relevant_prefix: str = "p_relevant_accept_rank_"
    nps_points: str = "nps_points_if_discussed"
    nps_mean: str = "nps_latent_mean"
    nps_tense: str = "nps_tense"

    def adoption(self, rank: int) -> str:
        return f"{self.adoption_prefix}{rank}"

    def discussed(self, rank: int) -> str:
        return f"{self.discussed_prefix}{rank}"

    def relevant(self, rank: int) -> str:
        return f"{self.relevant_prefix}{rank}"

    def ranks_in(self, columns: Iterable[str]) -> int:
        """How many ranks a call truth table with these columns holds."""
        return sum(1 for c in columns if c.startswith(self.adoption_prefix))

    def ordered(self, top: int) -> list[str]:
        """Every column after `call_id, benefit_id`, in the table's order, for ranks 1 … `top`."""
        ranks = range(1, top + 1)
        return [
            *(self.adoption(r) for r in ranks),
            *(self.discussed(r) for r in ranks),
            *(self.relevant(r) for r in ranks),
            self.nps_points,
            self.nps_mean,
            self.nps_tense,
        ]


CALL_TRUTH_COLUMNS: Final = CallTruthColumns()

# The survey's latent score (before rounding to 0-10): base + weight × satisfaction + the call reason's effect,
# + lift when a relevant benefit was taken up and accepted, − drop when anything was pitched on a tense call,
# − drop per discussed pitch worth little, + normal noise.
NPS_LATENT_BASE: Final = 7.4
NPS_SATISFACTION_WEIGHT: Final = 1.5
NPS_RELEVANT_ACCEPT_LIFT: Final = 0.9
NPS_RELEVANT_VALUE_USD: Final = 40.0
NPS_TENSE_PITCH_DROP: Final = 1.0
NPS_TENSE_REASONS: Final = ("complaint", "dispute")
NPS_IRRELEVANT_DROP: Final = 0.5
NPS_IRRELEVANT_VALUE_USD: Final = 15.0
NPS_NOISE_SD: Final = 1.3
# An adopter says accepted with this chance (else already aware).
ACCEPTED_IF_ADOPTED: Final = 0.85

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


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _logit(p: F64) -> F64:
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))
