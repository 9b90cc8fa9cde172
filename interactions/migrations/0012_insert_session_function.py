"""A new session's guards and inserts as one PL/pgSQL function (interactions/runstore.py).

Like the claim and the record (migration 0009): the statements a run call sent as one string —
the freshness guard on what the call took from caches, the active-session limit, the session
row and its task rows — planned once per connection instead of on every call. The rows come as
JSON objects keyed by column (`jsonb_populate_record`), so the function does not change when a
column is added. A refused call raises SQLSTATE 22023 with a marker the caller tells apart
(`stale_read`, `too_many_active_sessions`); nothing is written then. PostgreSQL only.
"""
import importlib

from django.db import migrations

INSERT = r"""
CREATE OR REPLACE FUNCTION junction_insert_session_v1(
    p_session jsonb, p_runs jsonb, p_active_limit int,
    -- what the call took from caches (NULL: nothing): user, token_version, plan, interaction,
    -- version, deadline_seconds, api_key (or null), now
    p_expected jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  IF p_expected IS NOT NULL THEN
    SELECT count(*) INTO n
      FROM accounts_user u JOIN interactions_interaction i ON i.user_id = u.id
     WHERE u.id = (p_expected->>'user')::uuid AND u.is_active
       AND u.token_version = (p_expected->>'token_version')::int AND u.plan = p_expected->>'plan'
       AND i.id = (p_expected->>'interaction')::uuid AND i.is_active
       AND i.current_version_id = (p_expected->>'version')::uuid
       AND i.deadline_seconds IS NOT DISTINCT FROM (p_expected->>'deadline_seconds')::int
       AND (p_expected->>'api_key' IS NULL OR EXISTS (
            SELECT 1 FROM accounts_apikey k
             WHERE k.id = (p_expected->>'api_key')::uuid AND k.user_id = u.id AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > (p_expected->>'now')::timestamptz)));
    IF n = 0 THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'stale_read: what the call read from caches changed';
    END IF;
  END IF;
  SELECT count(*) INTO n FROM (
    SELECT 1 FROM interactions_session
     WHERE user_id = (p_session->>'user_id')::uuid AND status IN ('queued', 'running')
     LIMIT p_active_limit) AS active;
  IF n >= p_active_limit THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'too_many_active_sessions ' || n;
  END IF;
  INSERT INTO interactions_session SELECT * FROM jsonb_populate_record(NULL::interactions_session, p_session);
  INSERT INTO interactions_taskrun SELECT * FROM jsonb_populate_recordset(NULL::interactions_taskrun, p_runs);
END $$;
"""

DROP = "DROP FUNCTION IF EXISTS junction_insert_session_v1(jsonb, jsonb, int, jsonb);"


_on_postgres = importlib.import_module("interactions.migrations.0009_runstore_functions")._on_postgres


class Migration(migrations.Migration):

    dependencies = [
        ("interactions", "0011_taskrun_session_one_index"),
    ]

    operations = [
        migrations.RunPython(_on_postgres(INSERT), _on_postgres(DROP), elidable=False),
    ]
