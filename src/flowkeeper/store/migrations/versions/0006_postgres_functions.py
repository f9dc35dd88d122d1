"""PostgreSQL: one-round-trip event delivery and timer firing, and notifications that
wake other replicas.

Revision ID: 0006_postgres_functions
Revises: 0005_schedules
Create Date: 2026-11-26

``flowkeeper_deliver_event`` does under one instance-row lock what ``deliver_event``
does in four statements, and then claims the woken instance for the caller and returns
what its run needs to resume (consumed bookmarks, pending timers). A PL/pgSQL function
rather than one statement of CTEs: each statement inside it takes a fresh snapshot
after the lock (READ COMMITTED), so every check sees what the previous lock holder
committed. ``flowkeeper_fire_timers`` likewise fires due timers (as ``fire_due_timers`` does in
eight statements) and claims the woken instances.
SQLite has no such functions and needs none (its writes are in-process).

Triggers ``NOTIFY flowkeeper`` on commit when something another replica should act on
at once appeared: an instance runnable with no lease (``work``), a timer (``timer:``
and its due time as epoch seconds), an outbox row (``outbox``), a definition
(``definition``: the latest version of a name may have changed). Listeners treat them
as hints; polling stays the safety net.
Frozen like the other migrations: the SQL is spelled out here.
"""

from __future__ import annotations

from alembic import op

revision = "0006_postgres_functions"
down_revision = "0005_schedules"
branch_labels = None
depends_on = None

_CREATE = """
CREATE OR REPLACE FUNCTION flowkeeper_deliver_event(
    p_bookmark_id varchar, p_event_key varchar, p_payload jsonb, p_owner varchar, p_lease interval
) RETURNS TABLE (
    delivered boolean, claimed workflow_instance, consumed workflow_bookmark[], timers workflow_timer[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_instance varchar;
    v_claimed workflow_instance;
BEGIN
    -- The bookmark's instance row first: the order every writer locks in.
    SELECT i.id INTO v_instance FROM workflow_instance i
     WHERE i.id IN (SELECT b.instance_id FROM workflow_bookmark b
                     WHERE b.id = p_bookmark_id AND NOT b.is_consumed)
       FOR NO KEY UPDATE OF i;
    IF v_instance IS NULL THEN  -- consumed or gone
        RETURN QUERY SELECT false, NULL::workflow_instance, NULL::workflow_bookmark[], NULL::workflow_timer[];
        RETURN;
    END IF;
    -- Keep the event row from retention cleanup until we commit (the delivery's foreign key).
    PERFORM 1 FROM workflow_event e WHERE e.key = p_event_key FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::workflow_instance, NULL::workflow_bookmark[], NULL::workflow_timer[];
        RETURN;
    END IF;
    INSERT INTO workflow_event_delivery (event_key, instance_id, bookmark_id, delivered_on)
    SELECT p_event_key, v_instance, p_bookmark_id, now()
     WHERE EXISTS (SELECT 1 FROM workflow_bookmark b WHERE b.id = p_bookmark_id AND NOT b.is_consumed)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN  -- this event already reached this instance
        RETURN QUERY SELECT false, NULL::workflow_instance, NULL::workflow_bookmark[], NULL::workflow_timer[];
        RETURN;
    END IF;
    UPDATE workflow_bookmark SET is_consumed = true, payload = p_payload, consumed_on = now()
     WHERE id = p_bookmark_id;
    UPDATE workflow_event SET matched = matched + 1 WHERE key = p_event_key;
    UPDATE workflow_instance i SET status = 'running', updated_on = now()
     WHERE i.id = v_instance AND i.status = 'suspended'
       AND NOT EXISTS (SELECT 1 FROM workflow_bookmark b
                        WHERE b.instance_id = i.id AND NOT b.is_consumed AND b.kind = 'manual');
    IF p_owner IS NOT NULL THEN
        UPDATE workflow_instance i
           SET lease_owner = p_owner, lease_expires_at = now() + p_lease, fencing_token = i.fencing_token + 1
         WHERE i.id = v_instance AND i.status IN ('pending', 'running')
           AND (i.lease_expires_at IS NULL OR i.lease_expires_at <= now())
        RETURNING i.* INTO v_claimed;
    END IF;
    IF v_claimed.id IS NULL THEN
        RETURN QUERY SELECT true, NULL::workflow_instance, NULL::workflow_bookmark[], NULL::workflow_timer[];
        RETURN;
    END IF;
    RETURN QUERY SELECT true, v_claimed,
        ARRAY(SELECT b FROM workflow_bookmark b WHERE b.instance_id = v_instance AND b.is_consumed
               ORDER BY b.created_on, b.id),
        ARRAY(SELECT t FROM workflow_timer t WHERE t.instance_id = v_instance ORDER BY t.due_at, t.id);
END
$fn$
"""


_FIRE = """
CREATE OR REPLACE FUNCTION flowkeeper_fire_timers(p_limit integer, p_owner varchar, p_lease interval)
RETURNS TABLE (
    fired workflow_timer, claimed workflow_instance, consumed workflow_bookmark[], timers workflow_timer[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_now timestamptz := now();
    v_ids varchar[];
    v_fired workflow_timer[];
    v_instances varchar[];
BEGIN
    -- Due timers, their instances locked first (the order every writer locks in); SKIP
    -- LOCKED leaves an instance being checkpointed right now to the next round.
    SELECT array_agg(d.id ORDER BY d.due_at, d.id) INTO v_ids FROM (
        SELECT t.id, t.due_at FROM workflow_timer t JOIN workflow_instance i ON i.id = t.instance_id
         WHERE t.due_at <= v_now ORDER BY t.due_at, t.id LIMIT p_limit
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
                   'firedAt', to_char(v_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
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

_NOTIFY = (
    """
CREATE OR REPLACE FUNCTION flowkeeper_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'workflow_instance' THEN
        PERFORM pg_notify('flowkeeper', 'work');
    ELSIF TG_TABLE_NAME = 'workflow_definition' THEN
        PERFORM pg_notify('flowkeeper', 'definition');
    ELSIF TG_TABLE_NAME = 'workflow_timer' THEN
        PERFORM pg_notify('flowkeeper', 'timer:' || extract(epoch FROM NEW.due_at)::text);
    ELSE
        PERFORM pg_notify('flowkeeper', 'outbox');
    END IF;
    RETURN NULL;
END
$fn$
""",
    """
CREATE TRIGGER flowkeeper_work_available
    AFTER INSERT OR UPDATE OF status, lease_owner ON workflow_instance
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'running') AND NEW.lease_owner IS NULL)
    EXECUTE FUNCTION flowkeeper_notify()
""",
    """
CREATE TRIGGER flowkeeper_definition_deployed
    AFTER INSERT ON workflow_definition FOR EACH ROW EXECUTE FUNCTION flowkeeper_notify()
""",
    """
CREATE TRIGGER flowkeeper_timer_created
    AFTER INSERT ON workflow_timer FOR EACH ROW EXECUTE FUNCTION flowkeeper_notify()
""",
    """
CREATE TRIGGER flowkeeper_outbox_written
    AFTER INSERT OR UPDATE OF status ON workflow_outbox
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION flowkeeper_notify()
""",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)
        op.execute(_FIRE)
        for statement in _NOTIFY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS flowkeeper_outbox_written ON workflow_outbox")
        op.execute("DROP TRIGGER IF EXISTS flowkeeper_timer_created ON workflow_timer")
        op.execute("DROP TRIGGER IF EXISTS flowkeeper_definition_deployed ON workflow_definition")
        op.execute("DROP TRIGGER IF EXISTS flowkeeper_work_available ON workflow_instance")
        op.execute("DROP FUNCTION IF EXISTS flowkeeper_notify()")
        op.execute("DROP FUNCTION IF EXISTS flowkeeper_fire_timers(integer, varchar, interval)")
        op.execute(
            "DROP FUNCTION IF EXISTS flowkeeper_deliver_event(varchar, varchar, jsonb, varchar, interval)"
        )
