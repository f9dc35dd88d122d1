"""PostgreSQL: ``flowkeeper_fire_timers`` fires timers a little ahead of their due time
for the caller that claims their instances.

Revision ID: 0007_fire_timers_ahead
Revises: 0006_postgres_functions
Create Date: 2026-11-26

A new parameter ``p_ahead``: besides the due timers, timers due within ``p_ahead`` whose
instance has no live lease are fired and their instances claimed for ``p_owner``, which
holds each run in memory until the latest due time it fired (the timer service, see
``flowkeeper.services.timers``). The round trip and the start of the run then happen
before the due time instead of after it. A timer of an instance leased by someone else
fires at its due time, never earlier: that run could see it at once. The ``firedAt`` of
a timer fired ahead is its due time.
Frozen like the other migrations: the SQL is spelled out here.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0007_fire_timers_ahead"
down_revision = "0006_postgres_functions"
branch_labels = None
depends_on = None

_FIRE = """
CREATE FUNCTION flowkeeper_fire_timers(
    p_limit integer, p_owner varchar, p_lease interval, p_ahead interval
)
RETURNS TABLE (
    fired workflow_timer, claimed workflow_instance, consumed workflow_bookmark[], timers workflow_timer[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_now timestamptz := now();
    -- Ahead of time only for a caller that claims (and so runs) what it fires.
    v_ahead interval := CASE WHEN p_owner IS NULL THEN interval '0' ELSE p_ahead END;
    v_ids varchar[];
    v_fired workflow_timer[];
    v_instances varchar[];
BEGIN
    -- Due timers, and timers due within v_ahead of instances nobody holds; their
    -- instances locked first (the order every writer locks in); SKIP LOCKED leaves an
    -- instance being checkpointed right now to the next round.
    SELECT array_agg(d.id ORDER BY d.due_at, d.id) INTO v_ids FROM (
        SELECT t.id, t.due_at FROM workflow_timer t JOIN workflow_instance i ON i.id = t.instance_id
         WHERE t.due_at <= v_now + v_ahead
           AND (t.due_at <= v_now OR i.lease_expires_at IS NULL OR i.lease_expires_at <= v_now)
         ORDER BY t.due_at, t.id LIMIT p_limit
           FOR NO KEY UPDATE OF i SKIP LOCKED) d;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    WITH gone AS (DELETE FROM workflow_timer WHERE id = ANY(v_ids) RETURNING *)
    SELECT array_agg(g ORDER BY g.due_at, g.id) INTO v_fired FROM gone g;
    WITH used AS (
        UPDATE workflow_bookmark b
           SET is_consumed = true, consumed_on = v_now,
               payload = jsonb_build_object(
                   'timer', f.id,
                   'firedAt', to_char(greatest(v_now, f.due_at) AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
          FROM unnest(v_fired) f
         WHERE b.id = f.bookmark_id AND NOT b.is_consumed
        RETURNING b.instance_id)
    SELECT array_agg(DISTINCT u.instance_id) INTO v_instances FROM used u;
    RETURN QUERY SELECT f, NULL::workflow_instance, NULL::workflow_bookmark[], NULL::workflow_timer[]
                   FROM unnest(v_fired) f;
    IF v_instances IS NULL THEN
        RETURN;
    END IF;
    UPDATE workflow_instance i SET status = 'running', updated_on = v_now
     WHERE i.id = ANY(v_instances) AND i.status = 'suspended'
       AND NOT EXISTS (SELECT 1 FROM workflow_bookmark b
                        WHERE b.instance_id = i.id AND NOT b.is_consumed AND b.kind = 'manual');
    IF p_owner IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH taken AS (
        UPDATE workflow_instance i
           SET lease_owner = p_owner, lease_expires_at = v_now + p_lease, fencing_token = i.fencing_token + 1
         WHERE i.id = ANY(v_instances) AND i.status IN ('pending', 'running')
           AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= v_now)
        RETURNING i.*)
    SELECT NULL::workflow_timer, ROW(c.*)::workflow_instance,
           ARRAY(SELECT b FROM workflow_bookmark b WHERE b.instance_id = c.id AND b.is_consumed
                  ORDER BY b.created_on, b.id),
           ARRAY(SELECT t FROM workflow_timer t WHERE t.instance_id = c.id ORDER BY t.due_at, t.id)
      FROM taken c;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS flowkeeper_fire_timers(integer, varchar, interval)")
        op.execute(_FIRE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS flowkeeper_fire_timers(integer, varchar, interval, interval)")
        previous = importlib.import_module("flowkeeper.store.migrations.versions.0006_postgres_functions")
        op.execute(previous._FIRE)
