"""Event bookmarks carry their correlation, so an event finds its bookmarks by index.

Revision ID: 0003_bookmark_correlation
Revises: 0002_events_and_control
Create Date: 2026-11-26

Frozen like 0001: every type is spelled out here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_bookmark_correlation"
down_revision = "0002_events_and_control"
branch_labels = None
depends_on = None

_NOT_CONSUMED = sa.column("is_consumed") == sa.false()


def upgrade() -> None:
    with op.batch_alter_table("workflow_bookmark") as batch:
        batch.add_column(sa.Column("correlation_from", sa.Text()))
        batch.add_column(sa.Column("correlation_value", sa.Text()))
    op.create_index(
        "ix_workflow_bookmark_correlation",
        "workflow_bookmark",
        ["event_type", "correlation_from", "correlation_value"],
        postgresql_where=_NOT_CONSUMED,
        sqlite_where=_NOT_CONSUMED,
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_bookmark_correlation", table_name="workflow_bookmark")
    with op.batch_alter_table("workflow_bookmark") as batch:
        batch.drop_column("correlation_value")
        batch.drop_column("correlation_from")
