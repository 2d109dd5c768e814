"""A call's shared reasons: why its suggestions were chosen, said once for the call (about the cardholder,
or what every card would say), as a JSON list; a suggestion's own reasons stay on it.

Calls stored before this migration have none (NULL: read as an empty list).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("shared_reasons", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("shared_reasons")
