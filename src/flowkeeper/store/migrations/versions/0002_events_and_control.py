"""Kept events and their deliveries (exactly one bookmark per instance per event).

Revision ID: 0002_events_and_control
Revises: 0001_initial
Create Date: 2026-12-03

Instance control (cancel, suspend, resume, retry) needs no new column: a manual
suspension is an unconsumed ``manual`` bookmark, which the existing bookmark table holds.

Frozen like 0001: every type is spelled out here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_events_and_control"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow_event",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event", _json(), nullable=False),
        sa.Column("received_on", _ts(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_workflow_event"),
    )
    op.create_index("ix_workflow_event_type_received_on", "workflow_event", ["type", "received_on"])
    op.create_index("ix_workflow_event_received_on", "workflow_event", ["received_on"])

    op.create_table(
        "workflow_event_delivery",
        sa.Column("event_key", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("bookmark_id", sa.String(255), nullable=False),
        sa.Column("delivered_on", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("event_key", "instance_id", name="pk_workflow_event_delivery"),
        sa.ForeignKeyConstraint(
            ["event_key"],
            ["workflow_event.key"],
            name="fk_workflow_event_delivery_event_key_workflow_event",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["workflow_instance.id"],
            name="fk_workflow_event_delivery_instance_id_workflow_instance",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_workflow_event_delivery_instance_id", "workflow_event_delivery", ["instance_id"])


def downgrade() -> None:
    op.drop_table("workflow_event_delivery")
    op.drop_table("workflow_event")
