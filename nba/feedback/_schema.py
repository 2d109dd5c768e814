"""Schema: the feedback tables as SQLAlchemy sees them (the migrations in nba/feedback/migrations create
them; these are the store's view of them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
)
from sqlalchemy.types import TypeEngine

from nba.errors import DataError
from nba.feedback._records import SHOWN_COLUMNS, SHOWN_TYPES


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out; SQLite, which has no time zones, holds it as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise DataError(f"datetimes must be timezone-aware, got naive {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A suggestion field's type (SHOWN_TYPES) → its column's.
_COLUMN_OF_TYPE: Final[dict[str, type[TypeEngine[Any]]]] = {
    "int": Integer,
    "str": String,
    "float": Double,
    "tuple[str, ...]": JSON,
}
_metadata = MetaData()
calls_table: Final = Table(
    "calls",
    _metadata,
    Column("call_id", String(), primary_key=True),
    Column("cardholder_id", String(), nullable=False),
    Column("call_reason", String(), nullable=False),
    Column("agent_id", String()),
    Column("served_at", UtcDateTime(), nullable=False),
    Column("model_version", String(), nullable=False),
    Column("profile_as_of", Date(), nullable=False),
    Column("note", Text()),
    Column("shared_reasons", JSON()),  # migration 0006; NULL on calls stored before it
    Column("closed_at", UtcDateTime()),
    # The leading part of each of the call's suggestions' feature vectors (CallDecision.holder_features).
    Column("holder_features_f64", LargeBinary(), nullable=False),
)
suggestions_table: Final = Table(
    "suggestions",
    _metadata,
    Column("suggestion_id", String(), primary_key=True),
    Column("call_id", String(), ForeignKey("calls.call_id"), nullable=False),
    # The suggestion record's fields, a column each under the contract's name (SHOWN_COLUMNS). (The migrations made talking_point TEXT
    # and the other strings VARCHAR: both unbounded, the same to the store, which never creates tables.)
    *(
        Column(name, _COLUMN_OF_TYPE[type_](), nullable=False)
        for name, type_ in zip(SHOWN_COLUMNS, SHOWN_TYPES.values(), strict=True)
    ),
    # The rest of the feature vector: calls.holder_features_f64 + this is the whole one (feature_bytes).
    Column("pair_features_f64", LargeBinary(), nullable=False),
)
outcomes_table: Final = Table(
    "outcomes",
    _metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("suggestion_id", String(), ForeignKey("suggestions.suggestion_id"), nullable=False),
    Column("outcome", String(), nullable=False),
    Column("decline_reason", Text()),
    Column("agent_id", String()),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("is_current", Boolean(), nullable=False),
)
# A later decision served under a call id already stored: its suggestion ids (repeat_id) → the stored
# decision's suggestions (migration 0004).
suggestion_repeats_table: Final = Table(
    "suggestion_repeats",
    _metadata,
    Column("repeat_id", String(), primary_key=True),
    Column("suggestion_id", String(), ForeignKey("suggestions.suggestion_id"), nullable=False),
)
nps_table: Final = Table(
    "nps",
    _metadata,
    Column("call_id", String(), ForeignKey("calls.call_id"), primary_key=True),
    Column("score", Integer(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)


def json_dumps(value: Any) -> str:
    # The JSON columns (reasons) and the buffer file: orjson is several times faster than the standard
    # library, and writes NaN and ±inf as null (JSON has neither; PostgreSQL rejects them).
    return orjson.dumps(value).decode()


def conversations_join() -> Any:
    """Each suggestion with its call and its current outcome (none when it was never marked)."""
    current = and_(
        outcomes_table.c.suggestion_id == suggestions_table.c.suggestion_id, outcomes_table.c.is_current
    )
    return suggestions_table.join(calls_table).outerjoin(outcomes_table, current)
