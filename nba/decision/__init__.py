"""Decision: one call → the talking points. Suitability for the call (`_candidates`), the contact policy
(`_contact`), the scorer chosen by name (`_scoring`), one call end to end (`_engine`), arbitration with
its diversity rule (`_arbitration`), the reasons (`_reasons`) and the words with the cardholder's
numbers (`_talking_points`).

Imports every room before it (contract, features, model, profiles); never feedback.
"""

from nba.decision._arbitration import (
    ArbitrationConfig,
    compute_priority,
    select_by_group,
    with_detractor_cost,
    worth_saying,
)
from nba.decision._candidates import suitability_matrix
from nba.decision._contact import ContactPolicy, RecentContact
from nba.decision._engine import (
    PUBLIC_FIELD_NAMES,
    Decision,
    Engine,
    EngineConfig,
    StageTimes,
    Suggestion,
    SuggestionBase,
)
from nba.decision._reasons import Reasoner
from nba.decision._scoring import default_reasoner
from nba.decision._talking_points import format_usd, round_estimate_usd

__all__ = [
    "PUBLIC_FIELD_NAMES",
    "ArbitrationConfig",
    "ContactPolicy",
    "Decision",
    "Engine",
    "EngineConfig",
    "Reasoner",
    "RecentContact",
    "StageTimes",
    "Suggestion",
    "SuggestionBase",
    "compute_priority",
    "default_reasoner",
    "format_usd",
    "round_estimate_usd",
    "select_by_group",
    "suitability_matrix",
    "with_detractor_cost",
    "worth_saying",
]
