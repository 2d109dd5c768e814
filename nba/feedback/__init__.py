"""Feedback: what was shown on each call and what came of it. The store (SQLAlchemy over SQLite or
PostgreSQL, its schema made by the Alembic `migrations/`), the export for training, and the local buffer
and journal that keep decisions through a database outage (`_store`).

The last room: it may import any before it.
"""

from nba.feedback._store import (
    CallDecision,
    DecisionBuffer,
    DecisionJournal,
    ExportCounts,
    FeedbackStore,
    NpsRecord,
    OutcomeRecord,
    ShownSuggestion,
    decision_line,
    parse_store_url,
)

__all__ = [
    "CallDecision",
    "DecisionBuffer",
    "DecisionJournal",
    "ExportCounts",
    "FeedbackStore",
    "NpsRecord",
    "OutcomeRecord",
    "ShownSuggestion",
    "decision_line",
    "parse_store_url",
]
