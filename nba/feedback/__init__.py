"""Feedback: what was shown on each call and what came of it. The records (`_records`), the tables
(`_schema`, made by the Alembic `migrations/`), the store over SQLite or PostgreSQL (`_store`, with its
URLs in `_urls` and its rows in `_rows`), the export for training (`_export`), and the local buffer and
journal that keep decisions through a database outage (`_buffer`).

The last room: it may import any before it.
"""

from nba.feedback._buffer import DecisionBuffer, DecisionJournal, decision_line
from nba.feedback._export import ExportCounts
from nba.feedback._records import CallDecision, Claim, NpsRecord, OutcomeRecord, ShownSuggestion
from nba.feedback._store import FeedbackStore
from nba.feedback._urls import parse_store_url

__all__ = [
    "CallDecision",
    "Claim",
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
