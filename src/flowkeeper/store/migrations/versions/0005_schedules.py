"""Workflow schedules: one row per scheduled workflow, fired exactly once per tick.

Revision ID: 0005_schedules
Revises: 0004_outbox_sinks
Create Date: 2026-12-10

``workflow_schedule`` holds the DSL ``schedule`` of the latest deployed version of
each ``namespace/name`` that has one: its kind (``every``, ``cron``, ``after``,
``on``), the schedule object as written, the next due time, the last instance it
started, the incomplete event sets of ``on: all`` and a revision counter that makes
every change conditional on the state it was computed from.

Definitions deployed before this revision get their schedule row when the scheduler
starts (it reconciles the latest version of every definition).

Frozen like 0001: every type is spelled out here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_schedules"
down_revision = "0004_outbox_sinks"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow_schedule",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("next_due", _ts()),
        sa.Column("last_instance_id", sa.String(255)),
        sa.Column("pending", _json()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_on", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", name="pk_workflow_schedule"),
    )
    op.create_index("ix_workflow_schedule_next_due", "workflow_schedule", ["next_due"])


def downgrade() -> None:
    op.drop_index("ix_workflow_schedule_next_due", table_name="workflow_schedule")
    op.drop_table("workflow_schedule")
