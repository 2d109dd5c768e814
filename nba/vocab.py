"""Vocabulary: the fixed words of the data contract (spend categories, call reasons, outcomes, kinds)."""

from __future__ import annotations

from typing import Final, Literal, get_args

SpendCategory = Literal[
    "dining",
    "groceries",
    "air_travel",
    "lodging",
    "car_rental",
    "transit",
    "travel_agency",
    "gas",
    "streaming_digital",
    "general_retail",
    "online_retail",
    "entertainment",
    "telecom_utilities",
    "health",
    "home_improvement",
    "other",
]
CallReason = Literal[
    "general",
    "payment",
    "balance_inquiry",
    "lost_card",
    "travel_notice",
    "rewards_question",
    "dispute",
    "fraud",
    "complaint",
    "bereavement",
    "hardship",
]
Outcome = Literal["accepted", "declined", "not_discussed", "already_aware"]
BenefitKind = Literal["earn_rate", "statement_credit", "perk", "protection"]
# What a model is trained to rank by (`nba train --objective`, the manifest's `params.objective`): the chance
# a cardholder starts using a benefit after a conversation, or the adoptions the conversation adds beyond
# what happens without it (uplift). Default stays adoption until uplift wins on the worlds' truth.
Objective = Literal["adoption", "uplift"]

SPEND_CATEGORIES: Final[tuple[str, ...]] = get_args(SpendCategory)
CALL_REASONS: Final[tuple[str, ...]] = get_args(CallReason)
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)
BENEFIT_KINDS: Final[tuple[str, ...]] = get_args(BenefitKind)
OBJECTIVES: Final[tuple[str, ...]] = get_args(Objective)
DEFAULT_OBJECTIVE: Final = "adoption"
# The outcome of a suggestion the agent marked as not brought up: the cardholder did not hear it, so it
# counts as a presentation in no feature, no contact rule, no acceptance rate and no adoption label; for the
# uplift model it is a control (shown on screen, not said).
NOT_DISCUSSED: Final = "not_discussed"
# A suggestion shown to the agent that nobody marked (no outcome recorded): it may well have been discussed.
# Not an outcome an agent records (`OUTCOMES`), but one the data contract's `conversations` table carries
# (`LOGGED_OUTCOMES`: what `nba export-feedback` writes for it). Not known to be heard, it counts like
# `not_discussed` in features and contact rules (as the service does for a suggestion nobody marked); not
# known to be unheard either, it is left out of the adoption model's rows and of the uplift model's treated
# and control groups alike, and the insights show it as its own group.
UNMARKED: Final = "unmarked"
LOGGED_OUTCOMES: Final[tuple[str, ...]] = (*OUTCOMES, UNMARKED)
# The logged outcomes that count as no contact in features, contact rules and acceptance rates.
UNHEARD_OUTCOMES: Final[tuple[str, ...]] = (NOT_DISCUSSED, UNMARKED)

# On these calls nothing is pitched unless the catalog names the call reason in a benefit's
# `suitable_call_reasons` explicitly.
SENSITIVE_CALL_REASONS: Final[frozenset[str]] = frozenset({"fraud", "bereavement", "hardship"})

# The most suggestions one call may ask for (`top_k`, the API's `limit`, `nba recommend --top`): an agent
# reads two or three; past ten a list is no longer a talking point.
MAX_SUGGESTIONS: Final = 10

# The least yearly value to this cardholder a suggestion must have to be shown (arbitration's
# `value_floor_usd`): on the 100k world about a third of shown suggestions were under $10 a year, and a
# $4 benefit raised on a live call costs more goodwill than it brings. The ceiling only catches typos.
DEFAULT_VALUE_FLOOR_USD: Final = 12.0
MAX_VALUE_FLOOR_USD: Final = 10_000.0

# The arbitration's NPS term (`detractor_weight`, λ): the ranking score less λ × the detractor chance a pitch adds
# to its call, and a pitch not worth that is not made (docs/nps.md). Off by default (0: no detractor model is
# scored at all). At the defaults (gamma 0, levers 1) λ is how many adoptions one more detractor is worth giving
# up; the ceiling only catches typos.
DEFAULT_DETRACTOR_WEIGHT: Final = 0.0
MAX_DETRACTOR_WEIGHT: Final = 10.0

CATEGORY_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(SPEND_CATEGORIES)}
# The categories a trip spends in: what a travel notice call is about.
TRAVEL_CATEGORIES: Final[frozenset[str]] = frozenset({"air_travel", "lodging", "car_rental", "travel_agency"})

# Population stability index (PSI) bands, as credit-risk practice names them: below 0.1 stable, 0.1–0.25 a
# moderate shift worth a look, 0.25 and above a major shift (the model's inputs no longer look like its
# training data).
PSI_MODERATE: Final = 0.1
PSI_MAJOR: Final = 0.25
# Numeric features are binned at the reference's deciles; a bin's share is floored at this so an empty
# bin gives a large but finite PSI term.
DRIFT_QUANTILE_BINS: Final = 10
PSI_SHARE_FLOOR: Final = 1e-4
# A model's drift reference describes its latest training rows, this many days of presentations: the
# months most like tomorrow's calls (the oldest rows' yearly features also lack a full year of history).
DRIFT_REFERENCE_DAYS: Final = 90

# A presentation counts as adopted when the benefit's first use is on its day or within this many days
# after: the training label, and the window of `nba insights`' adoption tables.
ADOPTION_WINDOW_DAYS: Final = 30

# NPS insights (`nba insights`). A score of 9-10 is a promoter, 0-6 a detractor (the survey's own bands).
NPS_PROMOTER_MIN: Final = 9
NPS_DETRACTOR_MAX: Final = 6
# A group with fewer NPS answers than this is shown with its interval and marked "too few to say": at 30
# answers a 95% interval is still about ±30 NPS points wide.
INSIGHTS_MIN_GROUP_ANSWERS: Final = 30
# Agents are listed only from this many answered calls up (the default of `nba insights --min-agent-calls`).
INSIGHTS_MIN_AGENT_CALLS: Final = 30
# Bootstrap resamples per interval: 2,000 keeps the 2.5% and 97.5% percentiles steady to about half a point.
INSIGHTS_BOOTSTRAP_RESAMPLES: Final = 2_000
# What happened to a call's suggestions, most telling first: a call counts under the first that applies.
SUGGESTION_STATUSES: Final[tuple[str, ...]] = (
    "accepted",
    "declined",
    "already_aware",
    "not_discussed",
    "unmarked",
    "nothing suggested",
)
