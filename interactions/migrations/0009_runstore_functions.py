"""The claim and the record of a worker step as PL/pgSQL functions (interactions/runstore.py).

A function's statements are planned once per database connection and their plans kept, where
the same statements sent as one multi-statement string were parsed and planned on every call:
half of a claim's time in PostgreSQL was planning. The statements, their order and their
snapshots (each statement of a volatile function sees what the ones before it committed) are
those of the strings they replace. The names carry a version: a change is a new function in a
new migration, so that workers of the previous release keep calling the one they know during a
rolling deploy. PostgreSQL only: other databases run the ORM path (runstore's `_orm_*`).
"""
from django.db import migrations

CLAIM = r"""
CREATE OR REPLACE FUNCTION junction_claim_v1(
    p_sid uuid, p_name text, p_names text[], p_accepts jsonb, p_now timestamptz, p_lease timestamptz,
    p_max_losses int, p_timer bool, p_worker text)
RETURNS TABLE (status text, input text, user_id uuid, version_id uuid, started_at timestamptz,
               end_user_id uuid, rows text, others bigint)
LANGUAGE plpgsql AS $$
BEGIN
  -- A lost claim is claimed again: it had recorded nothing (docs/execution.md).
  PERFORM set_config('synchronous_commit', 'off', true);
  UPDATE interactions_taskrun AS t
     SET status = 'running', attempts = t.attempts + 1, updated_at = p_now, lease_expires_at = p_lease,
         worker = p_worker,
         -- never before a predecessor ended (`now` was taken before this round trip)
         started_at = GREATEST(p_now, (SELECT max(p.finished_at) FROM interactions_taskrun p
                                        WHERE p.session_id = p_sid AND p_accepts ? p.name))
   WHERE t.session_id = p_sid AND t.name = p_name
     AND (t.status = 'pending' OR (
          t.status = 'running' AND t.lease_expires_at <= p_now AND t.attempts < p_max_losses AND NOT p_timer))
     AND EXISTS (SELECT 1 FROM interactions_session s WHERE s.id = p_sid AND s.status IN ('queued', 'running'))
     AND NOT EXISTS (
          SELECT 1 FROM interactions_taskrun p, jsonb_each(p_accepts) e
           WHERE p.session_id = p_sid AND p.name = e.key AND NOT (e.value ? p.status));
  UPDATE interactions_session s SET status = 'running', started_at = p_now, updated_at = p_now
   WHERE s.id = p_sid AND s.status = 'queued';
  RETURN QUERY
  SELECT s.status::text, s.input::text, s.user_id, s.version_id, s.started_at, s.end_user_id,
         (SELECT json_object_agg(r.name, json_build_array(r.status, r.output, r.error, r.attempts, r.started_at,
                                                          r.finished_at, r.lease_expires_at, r.logs, r.worker))
            FROM interactions_taskrun r
           WHERE r.session_id = p_sid AND (r.name = ANY(p_names) OR o.n = 0))::text,
         o.n
    FROM interactions_session s,
         -- every other task ended: all rows come back, and this task's record can end the session
         (SELECT count(*) AS n FROM interactions_taskrun tr
           WHERE tr.session_id = p_sid AND tr.status IN ('pending', 'running') AND tr.name <> p_name) AS o
   WHERE s.id = p_sid;
END $$;
"""

APPLY = r"""
CREATE OR REPLACE FUNCTION junction_apply_v1(
    p_sid uuid, p_now timestamptz, p_durable bool, p_max bigint, p_too_large text,
    -- [{"n": task, "a": attempt, "s": status, "o": output, "e": error, "l": logs, "w": worker, "z": size}]
    p_results jsonb,
    p_skips text[],
    p_cands text[], p_accepts jsonb, p_lease timestamptz, p_worker text,
    p_names text[],
    -- the folded end (p_fs NULL: none): status, result, error, {task: status expected}
    p_fs text, p_fr jsonb, p_fe text, p_fx jsonb,
    p_read_caller bool)
RETURNS TABLE (session_status text, unfinished bigint, rows text, changed text, ended text, caller text)
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_status text;
  v_n bigint;
  v_rows text;
  v_changed text;
  v_ended text;
  v_caller text;
BEGIN
  PERFORM set_config('synchronous_commit', CASE WHEN p_durable THEN 'on' ELSE 'off' END, true);
  -- Lock the session row and move its progress clock: the records of one session queue here.
  UPDATE interactions_session SET updated_at = p_now WHERE id = p_sid;
  FOR r IN SELECT * FROM jsonb_to_recordset(p_results)
             AS x(n text, a int, s text, o jsonb, e text, l text, w text, z bigint) LOOP
    WITH grown AS (
      UPDATE interactions_session SET size_bytes = size_bytes + r.z
       WHERE id = p_sid AND size_bytes <= p_max - r.z RETURNING 1)
    UPDATE interactions_taskrun SET
           status = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.s ELSE 'failed' END,
           output = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.o END,
           error = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.e ELSE p_too_large END,
           logs = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.l ELSE '' END,
           worker = COALESCE(r.w, worker),
           finished_at = p_now, updated_at = p_now, lease_expires_at = NULL
     WHERE session_id = p_sid AND name = r.n AND status = 'running' AND attempts = r.a;
  END LOOP;
  IF cardinality(p_skips) > 0 THEN
    UPDATE interactions_taskrun SET status = 'skipped', finished_at = p_now, updated_at = p_now
     WHERE session_id = p_sid AND name = ANY(p_skips) AND status = 'pending';
  END IF;
  IF p_fs IS NOT NULL THEN
    -- The folded end: only when every task has ended and each stored as the ending expects.
    UPDATE interactions_session SET status = p_fs, result = p_fr, error = p_fe, finished_at = p_now,
           updated_at = p_now
     WHERE id = p_sid AND status IN ('queued', 'running')
       AND NOT EXISTS (SELECT 1 FROM interactions_taskrun
                        WHERE session_id = p_sid AND status IN ('pending', 'running'))
       AND NOT EXISTS (SELECT 1 FROM interactions_taskrun t, jsonb_each_text(p_fx) e
                        WHERE t.session_id = p_sid AND t.name = e.key AND t.status <> e.value);
  END IF;
  IF cardinality(p_cands) = 0 THEN
    SELECT s.status,
           (SELECT count(*) FROM interactions_taskrun
             WHERE session_id = p_sid AND status IN ('pending', 'running'))
      INTO v_status, v_n
      FROM interactions_session s WHERE s.id = p_sid;
    SELECT json_object_agg(t.name, json_build_array(t.status, t.output, t.error, t.attempts, t.started_at,
                                                    t.finished_at, t.lease_expires_at, t.logs, t.worker))::text
      INTO v_rows
      FROM interactions_taskrun t
     WHERE t.session_id = p_sid AND (t.name = ANY(p_names) OR v_n = 0);
  ELSE
    -- Claim or skip the candidates and read back, in one statement: the rows it reads are those
    -- before its own update, so the candidates' new state comes from RETURNING and the count of
    -- unfinished tasks is corrected by the candidates it skipped. A fused task starts (or is
    -- skipped) no earlier than its last predecessor ended: `now` was taken before this round
    -- trip waited for the session's lock.
    WITH ended AS (
      SELECT t.id,
             bool_and(p.status IN ('completed', 'failed', 'skipped', 'cancelled')) AS ended,
             bool_and((p_accepts -> t.name -> p.name) ? p.status) AS ready,
             GREATEST(p_now, max(p.finished_at)) AS at
        FROM interactions_taskrun t
        JOIN interactions_taskrun p ON p.session_id = t.session_id AND (p_accepts -> t.name) ? p.name
       WHERE t.session_id = p_sid AND t.name = ANY(p_cands) AND t.status = 'pending'
         AND EXISTS (SELECT 1 FROM interactions_session s WHERE s.id = p_sid AND s.status IN ('queued', 'running'))
       GROUP BY t.id),
    changes AS (
      UPDATE interactions_taskrun t SET
             status = CASE WHEN e.ready THEN 'running' ELSE 'skipped' END,
             attempts = t.attempts + CASE WHEN e.ready THEN 1 ELSE 0 END,
             started_at = CASE WHEN e.ready THEN e.at END,
             finished_at = CASE WHEN e.ready THEN NULL ELSE e.at END,
             lease_expires_at = CASE WHEN e.ready THEN p_lease END,
             worker = CASE WHEN e.ready THEN p_worker ELSE t.worker END,
             updated_at = p_now
        FROM ended e WHERE t.id = e.id AND e.ended
      RETURNING t.name, json_build_array(t.status, t.output, t.error, t.attempts, t.started_at, t.finished_at,
                                         t.lease_expires_at, t.logs, t.worker) AS row, t.status),
    left_open AS (
      SELECT (SELECT count(*) FROM interactions_taskrun
               WHERE session_id = p_sid AND status IN ('pending', 'running'))
           - (SELECT count(*) FROM changes WHERE changes.status = 'skipped') AS n)
    SELECT (SELECT s.status FROM interactions_session s WHERE s.id = p_sid), (SELECT n FROM left_open),
           (SELECT json_object_agg(t.name, json_build_array(t.status, t.output, t.error, t.attempts, t.started_at,
                                                            t.finished_at, t.lease_expires_at, t.logs, t.worker))
              FROM interactions_taskrun t
             WHERE t.session_id = p_sid AND (t.name = ANY(p_names)
                   -- none left but the tasks claimed here: all, so that their record can end the session
                   OR (SELECT n FROM left_open) <= (SELECT count(*) FROM changes WHERE changes.status = 'running')))::text,
           (SELECT json_object_agg(changes.name, changes.row) FROM changes)::text
      INTO v_status, v_n, v_rows, v_changed;
  END IF;
  IF p_fs IS NOT NULL THEN
    SELECT json_build_array(s.interaction_id, v.number, s.input, s.created_at, s.started_at, s.end_user_id)::text
      INTO v_ended
      FROM interactions_session s JOIN interactions_interactionversion v ON v.id = s.version_id
     WHERE s.id = p_sid AND s.status = p_fs AND s.finished_at = p_now;
  END IF;
  IF p_read_caller THEN
    SELECT json_build_array(s.input, s.user_id, s.end_user_id)::text INTO v_caller
      FROM interactions_session s WHERE s.id = p_sid;
  END IF;
  RETURN QUERY SELECT v_status, v_n, v_rows, v_changed, v_ended, v_caller;
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS junction_claim_v1(uuid, text, text[], jsonb, timestamptz, timestamptz, int, bool, text);
DROP FUNCTION IF EXISTS junction_apply_v1(uuid, timestamptz, bool, bigint, text, jsonb, text[], text[], jsonb,
                                          timestamptz, text, text[], text, jsonb, text, jsonb, bool);
"""


def _on_postgres(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("interactions", "0008_taskrun_worker"),
    ]

    operations = [
        migrations.RunPython(_on_postgres(CLAIM + APPLY), _on_postgres(DROP), elidable=False),
    ]
