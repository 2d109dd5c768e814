"""Feedback store, first schema: calls, the suggestions shown on them, outcomes (with history) and NPS.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(), primary_key=True),
        sa.Column("cardholder_id", sa.String(), nullable=False),
        sa.Column("call_reason", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("profile_as_of", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    # recent_contacts: one cardholder's calls since a date; export: every call in time order.
    op.create_index("ix_calls_cardholder_served", "calls", ["cardholder_id", "served_at"])
    op.create_index("ix_calls_served", "calls", ["served_at"])

    op.create_table(
        "suggestions",
        sa.Column("suggestion_id", sa.String(), primary_key=True),
        sa.Column("call_id", sa.String(), sa.ForeignKey("calls.call_id"), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("benefit_id", sa.String(), nullable=False),
        sa.Column("benefit_name", sa.String(), nullable=False),
        sa.Column("talking_point", sa.Text(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("value_usd", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("p_adopt", sa.Double(), nullable=False),
        sa.Column("logging_prob", sa.Double(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        # The data contract's conversations table is unique on (call_id, benefit_id).
        sa.UniqueConstraint("call_id", "benefit_id", name="uq_suggestions_call_benefit"),
    )

    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("suggestion_id", sa.String(), sa.ForeignKey("suggestions.suggestion_id"), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_outcomes_suggestion", "outcomes", ["suggestion_id"])
    # At most one current outcome per suggestion; earlier ones stay as history.
    op.create_index(
        "ux_outcomes_current",
        "outcomes",
        ["suggestion_id"],
        unique=True,
        postgresql_where=sa.text("is_current"),
        sqlite_where=sa.text("is_current"),
    )

    op.create_table(
        "nps",
        sa.Column("call_id", sa.String(), sa.ForeignKey("calls.call_id"), primary_key=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nps")
    op.drop_index("ux_outcomes_current", table_name="outcomes")
    op.drop_index("ix_outcomes_suggestion", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_table("suggestions")
    op.drop_index("ix_calls_served", table_name="calls")
    op.drop_index("ix_calls_cardholder_served", table_name="calls")
    op.drop_table("calls")
