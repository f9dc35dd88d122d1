"""Initial schema: definitions, instances, bookmarks, timers, outbox, execution log.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Frozen: it spells every type out instead of importing ``flowkeeper.store.tables``, so
later changes to the tables need a new revision (the drift test says when).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _where(expr: sa.ColumnElement[bool]) -> dict[str, Any]:
    # An expression, not text: each dialect renders it as it renders queries (SQLite
    # spells false as 0), and SQLite uses a partial index only when the query's WHERE
    # matches the index's predicate term for term.
    return {"postgresql_where": expr, "sqlite_where": expr}


_NOT_CONSUMED = sa.column("is_consumed") == sa.false()


def _instance_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["instance_id"],
        ["workflow_instance.id"],
        name=f"fk_{table}_instance_id_workflow_instance",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "workflow_definition",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("created_on", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", "version", name="pk_workflow_definition"),
    )

    op.create_table(
        "workflow_instance",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", _json()),
        sa.Column("output", _json()),
        sa.Column("error", _json()),
        sa.Column("state", _json()),
        sa.Column("current_activity_id", sa.Text()),
        sa.Column("parent_id", sa.String(255)),
        sa.Column("parent_bookmark_id", sa.String(255)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(128)),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", _ts()),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("log_seq", sa.Integer(), nullable=False),
        sa.Column("created_on", _ts(), nullable=False),
        sa.Column("updated_on", _ts(), nullable=False),
        sa.Column("started_on", _ts()),
        sa.Column("completed_on", _ts()),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_instance"),
    )
    op.create_index(
        "ix_workflow_instance_status_created_on",
        "workflow_instance",
        ["status", "created_on"],
        postgresql_include=["id", "current_activity_id"],
    )
    op.create_index(
        "ix_workflow_instance_claim",
        "workflow_instance",
        ["status", "lease_expires_at"],
        **_where(sa.column("status").in_(["pending", "running"])),
    )
    op.create_index("ix_workflow_instance_created_on_id", "workflow_instance", ["created_on", "id"])
    op.create_index("ix_workflow_instance_parent_id", "workflow_instance", ["parent_id"])
    op.create_index(
        "ux_workflow_instance_idempotency_key", "workflow_instance", ["idempotency_key"], unique=True
    )

    op.create_table(
        "workflow_bookmark",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("activity_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("filter", _json()),
        sa.Column("event_type", sa.String(255)),
        sa.Column("is_consumed", sa.Boolean(), nullable=False),
        sa.Column("payload", _json()),
        sa.Column("created_on", _ts(), nullable=False),
        sa.Column("consumed_on", _ts()),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_bookmark"),
        _instance_fk("workflow_bookmark"),
    )
    op.create_index(
        "ix_workflow_bookmark_processing",
        "workflow_bookmark",
        ["instance_id", "activity_id", "is_consumed"],
        **_where(_NOT_CONSUMED),
    )
    op.create_index("ix_workflow_bookmark_instance_id", "workflow_bookmark", ["instance_id"])
    op.create_index(
        "ix_workflow_bookmark_event_type",
        "workflow_bookmark",
        ["event_type"],
        **_where(_NOT_CONSUMED),
    )

    op.create_table(
        "workflow_timer",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("bookmark_id", sa.String(255), nullable=False),
        sa.Column("activity_id", sa.Text(), nullable=False),
        sa.Column("due_at", _ts(), nullable=False),
        sa.Column("created_on", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_timer"),
        _instance_fk("workflow_timer"),
    )
    op.create_index("ix_workflow_timer_due_at", "workflow_timer", ["due_at"])
    op.create_index("ix_workflow_timer_instance_id", "workflow_timer", ["instance_id"])

    op.create_table(
        "workflow_outbox",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("instance_id", sa.String(255)),
        sa.Column("activity_id", sa.Text()),
        sa.Column("event", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _ts()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_on", _ts(), nullable=False),
        sa.Column("delivered_on", _ts()),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_outbox"),
    )
    op.create_index(
        "ix_workflow_outbox_processing",
        "workflow_outbox",
        ["status", "next_attempt_at"],
        **_where(sa.column("status").in_(["pending", "processing"])),
    )
    op.create_index("ix_workflow_outbox_created_on", "workflow_outbox", ["created_on"])

    op.create_table(
        "workflow_execution_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("task_type", sa.String(64)),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("detail", _json()),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_execution_log"),
        _instance_fk("workflow_execution_log"),
    )
    op.create_index(
        "ux_workflow_execution_log_instance_id_seq",
        "workflow_execution_log",
        ["instance_id", "seq"],
        unique=True,
    )


def downgrade() -> None:
    for table in (
        "workflow_execution_log",
        "workflow_outbox",
        "workflow_timer",
        "workflow_bookmark",
        "workflow_instance",
        "workflow_definition",
    ):
        op.drop_table(table)
