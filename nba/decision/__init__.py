"""Decision: one call → the talking points. Suitability for the call (`_candidates`), scoring and the
contact policy (`_engine`), arbitration with its diversity rule (`_arbitration`), the reasons
(`_reasons`) and the words (`_talking_points`).

Imports every room before it (contract, features, model, profiles); never feedback.
"""

from nba.decision._arbitration import ArbitrationConfig, compute_priority, select_by_group
from nba.decision._candidates import suitability_matrix
from nba.decision._engine import ContactPolicy, Decision, Engine, EngineConfig, RecentContact, Suggestion

__all__ = [
    "ArbitrationConfig",
    "ContactPolicy",
    "Decision",
    "Engine",
    "EngineConfig",
    "RecentContact",
    "Suggestion",
    "compute_priority",
    "select_by_group",
    "suitability_matrix",
]
