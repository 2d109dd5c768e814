"""Suggestion ids of a call served twice: the later decision's ids → the stored decision's suggestions.

When the store does not answer the call-id look-up in time, the service answers the call as a new
decision under the same call id. The first decision stored for a call id is the call; a later one is
kept here as a repeat of it, each of its suggestion ids pointing at the stored suggestion of the same
benefit (else of the same rank), so an outcome the agent posts for either id is recorded against the
stored one.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "suggestion_repeats",
        sa.Column("repeat_id", sa.String(), primary_key=True),
        sa.Column("suggestion_id", sa.String(), sa.ForeignKey("suggestions.suggestion_id"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suggestion_repeats")
