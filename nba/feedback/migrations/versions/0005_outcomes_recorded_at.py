"""An index on outcomes.recorded_at: every worker and replica reads the outcomes recorded in the last
second or two, several times a second (the contact policy shared across them, api/replicas.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_outcomes_recorded", "outcomes", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_recorded", table_name="outcomes")
