"""Outbox rows carry their per-sink progress and their claimer.

Revision ID: 0004_outbox_sinks
Revises: 0003_bookmark_correlation
Create Date: 2026-12-10

- ``delivered_to``: JSON list of the sink names a row has reached already, so a retry
  only goes to the sinks that failed (NULL: none yet);
- ``claimed_by``: the outbox processor holding (or, once settled, last holding) the row;
  a ``processing`` row's claim ends at its ``next_attempt_at``;
- ``ix_workflow_outbox_dead``: dead letters, oldest first (few rows; listed and counted
  by operators and the health check without scanning the delivered bulk).

Frozen like 0001: every type is spelled out here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_outbox_sinks"
down_revision = "0003_bookmark_correlation"
branch_labels = None
depends_on = None

_DEAD = sa.column("status") == "dead"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("workflow_outbox") as batch:
        batch.add_column(sa.Column("delivered_to", _json()))
        batch.add_column(sa.Column("claimed_by", sa.Text()))
    op.create_index(
        "ix_workflow_outbox_dead",
        "workflow_outbox",
        ["created_on", "id"],
        postgresql_where=_DEAD,
        sqlite_where=_DEAD,
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_outbox_dead", table_name="workflow_outbox")
    with op.batch_alter_table("workflow_outbox") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("delivered_to")
