"""Insights: what the conversations do to NPS and to adoption. Answered calls from a data directory and/or the
feedback store (`_calls`, DuckDB group-bys), each group's NPS with a bootstrap interval (`_nps`), and the
adoptions after the calls beside comparable benefits not presented, with the value started (`_adoption`).

The room after feedback: it may import any before it.
"""

from nba.insights._adoption import Adoption, AdoptionRow, CausedRow, build_adoption
from nba.insights._calls import (
    DIMENSIONS,
    INSIGHT_SOURCES,
    Disagreement,
    Insights,
    LeftOut,
    build_insights,
)
from nba.insights._nps import GroupCounts, NpsRow, PitchRow, bootstrap_nps

__all__ = [
    "DIMENSIONS",
    "INSIGHT_SOURCES",
    "Adoption",
    "AdoptionRow",
    "CausedRow",
    "Disagreement",
    "GroupCounts",
    "Insights",
    "LeftOut",
    "NpsRow",
    "PitchRow",
    "bootstrap_nps",
    "build_adoption",
    "build_insights",
]
