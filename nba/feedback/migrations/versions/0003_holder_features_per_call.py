"""The cardholder's part of the feature vectors once per call instead of once per suggestion.

Every suggestion of a call has the same cardholder columns at the start of its feature vector (210 of
231 numbers); only the benefit's and the pair's columns after them differ. The decision log wrote the
shared part once per suggestion, about three times a call. Now `calls.holder_features_f64` holds it
and `suggestions.pair_features_f64` the rest: a suggestion's vector is the two joined, exactly.

Existing rows are split: the last PAIR_WIDTH numbers of each vector stay with the suggestion, and the
part before them moves to the call when all the call's suggestions have it the same. Otherwise (which
no model that logged through 0002 produced, but the data must not depend on that) the call keeps
nothing and each suggestion its whole vector: joined, still the same vector. A call with no
suggestions has an empty part. `alembic downgrade 0002` joins them back.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

CHUNK = 1000
# The benefit's and the pair's columns after the cardholder's (nba.features._matrix.PAIR_FEATURES when this was
# written); a constant here, so that what the migration does never changes with the code.
PAIR_WIDTH = 21
F64 = 8


def _add_not_null(table: str, name: str) -> None:
    # As in 0002: SQLite cannot add a NOT NULL column without a default (nor drop the default without
    # rebuilding the table, which its foreign keys forbid): it keeps an empty one the store never uses.
    if op.get_bind().dialect.name == "sqlite":
        op.add_column(table, sa.Column(name, sa.LargeBinary(), nullable=False, server_default=sa.text("x''")))
    else:
        op.add_column(table, sa.Column(name, sa.LargeBinary(), nullable=True))


def _finish_not_null(table: str, name: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(table, name, existing_type=sa.LargeBinary(), nullable=False)


def split_call(vectors: list[bytes]) -> tuple[bytes, list[bytes]]:
    """One call's suggestions' whole vectors → (the call's shared part, each suggestion's rest)."""
    if not vectors:
        return b"", []
    cut = len(vectors[0]) - PAIR_WIDTH * F64
    head = vectors[0][:cut] if cut > 0 else b""
    if not head or any(len(v) != len(vectors[0]) or not v.startswith(head) for v in vectors):
        return b"", vectors
    return head, [v[cut:] for v in vectors]


def _tables() -> tuple[sa.TableClause, sa.TableClause]:
    calls = sa.table(
        "calls", sa.column("call_id", sa.String()), sa.column("holder_features_f64", sa.LargeBinary())
    )
    suggestions = sa.table(
        "suggestions",
        sa.column("suggestion_id", sa.String()),
        sa.column("call_id", sa.String()),
        sa.column("rank", sa.Integer()),
        sa.column("features_f64", sa.LargeBinary()),
        sa.column("pair_features_f64", sa.LargeBinary()),
    )
    return calls, suggestions


def _call_chunks(conn: sa.Connection, calls: sa.TableClause) -> Iterator[list[str]]:
    """Every call id, CHUNK at a time in key order, so a big store is never in memory at once."""
    last: str | None = None
    while True:
        query = sa.select(calls.c.call_id).order_by(calls.c.call_id).limit(CHUNK)
        if last is not None:
            query = query.where(calls.c.call_id > last)
        ids = list(conn.scalars(query))
        if not ids:
            return
        yield ids
        last = ids[-1]


def _update(conn: sa.Connection, table: sa.TableClause, key: str, column: str, values: list[Any]) -> None:
    if values:
        statement = (
            table.update().where(table.c[key] == sa.bindparam("k")).values({column: sa.bindparam("value")})
        )
        conn.execute(statement, values)


def upgrade() -> None:
    conn = op.get_bind()
    _add_not_null("calls", "holder_features_f64")
    _add_not_null("suggestions", "pair_features_f64")
    calls, suggestions = _tables()
    for ids in _call_chunks(conn, calls):
        rows = conn.execute(
            sa.select(suggestions.c.call_id, suggestions.c.suggestion_id, suggestions.c.features_f64)
            .where(suggestions.c.call_id.in_(ids))
            .order_by(suggestions.c.call_id, suggestions.c.rank, suggestions.c.suggestion_id)
        ).all()
        shown: dict[str, list[Any]] = {
            call_id: list(group) for call_id, group in groupby(rows, lambda r: r.call_id)
        }
        holders: list[dict[str, Any]] = []
        pairs: list[dict[str, Any]] = []
        for call_id in ids:
            members = shown.get(call_id, [])
            head, rests = split_call([bytes(row.features_f64) for row in members])
            holders.append({"k": call_id, "value": head})
            pairs.extend(
                {"k": row.suggestion_id, "value": rest} for row, rest in zip(members, rests, strict=True)
            )
        _update(conn, calls, "call_id", "holder_features_f64", holders)
        _update(conn, suggestions, "suggestion_id", "pair_features_f64", pairs)
    _finish_not_null("calls", "holder_features_f64")
    _finish_not_null("suggestions", "pair_features_f64")
    op.execute("ALTER TABLE suggestions DROP COLUMN features_f64")


def downgrade() -> None:
    conn = op.get_bind()
    _add_not_null("suggestions", "features_f64")
    calls, suggestions = _tables()
    for ids in _call_chunks(conn, calls):
        rows = conn.execute(
            sa.select(
                suggestions.c.suggestion_id, calls.c.holder_features_f64, suggestions.c.pair_features_f64
            )
            .select_from(suggestions.join(calls, suggestions.c.call_id == calls.c.call_id))
            .where(suggestions.c.call_id.in_(ids))
        ).all()
        whole = [{"k": sid, "value": bytes(head) + bytes(rest)} for sid, head, rest in rows]
        _update(conn, suggestions, "suggestion_id", "features_f64", whole)
    _finish_not_null("suggestions", "features_f64")
    op.execute("ALTER TABLE suggestions DROP COLUMN pair_features_f64")
    op.execute("ALTER TABLE calls DROP COLUMN holder_features_f64")
