"""Insights: what the conversations do to NPS. Answered calls from a data directory and/or the feedback store
(`_calls`, DuckDB group-bys) and each group's NPS with a bootstrap interval (`_nps`).

The room after feedback: it may import any before it.
"""

from nba.insights._calls import (
    DIMENSIONS,
    INSIGHT_SOURCES,
    Disagreement,
    Insights,
    LeftOut,
    build_insights,
)
from nba.insights._nps import GroupCounts, NpsRow, bootstrap_nps

__all__ = [
    "DIMENSIONS",
    "INSIGHT_SOURCES",
    "Disagreement",
    "GroupCounts",
    "Insights",
    "LeftOut",
    "NpsRow",
    "bootstrap_nps",
    "build_insights",
]
