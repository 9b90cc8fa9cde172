"""The record grows a session only by the results it stores (junction_apply_v1, migration 0009).

The size check ran as a data-modifying CTE beside the task's UPDATE, so it added a result's size
even when the UPDATE stored nothing because the claim no longer held — a second delivery of a
timer after a resume, a record after a cancel or a take-over — and the session's size drifted
above its input plus its outputs (found by the chaos soak: `size_mismatch`). Now the claim is
checked (and its row locked) first, and only a result that will be stored grows the session.
The same function and arguments, so a worker of either release calls it.
"""
import importlib

from django.db import migrations

_0009 = importlib.import_module("interactions.migrations.0009_runstore_functions")

_OLD_LOOP = """    WITH grown AS (
      UPDATE interactions_session SET size_bytes = size_bytes + r.z
       WHERE id = p_sid AND size_bytes <= p_max - r.z RETURNING 1)
    UPDATE interactions_taskrun SET
           status = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.s ELSE 'failed' END,
           output = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.o END,
           error = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.e ELSE p_too_large END,
           logs = CASE WHEN EXISTS (SELECT 1 FROM grown) THEN r.l ELSE '' END,"""
_NEW_LOOP = """    -- Only a result whose claim still holds is stored, and only a stored one grows the session.
    PERFORM 1 FROM interactions_taskrun
      WHERE session_id = p_sid AND name = r.n AND status = 'running' AND attempts = r.a FOR UPDATE;
    CONTINUE WHEN NOT FOUND;
    v_grown := true;
    IF r.z > 0 THEN
      UPDATE interactions_session SET size_bytes = size_bytes + r.z
       WHERE id = p_sid AND size_bytes <= p_max - r.z;
      v_grown := FOUND;
    END IF;
    UPDATE interactions_taskrun SET
           status = CASE WHEN v_grown THEN r.s ELSE 'failed' END,
           output = CASE WHEN v_grown THEN r.o END,
           error = CASE WHEN v_grown THEN r.e ELSE p_too_large END,
           logs = CASE WHEN v_grown THEN r.l ELSE '' END,"""
assert _OLD_LOOP in _0009.APPLY
APPLY = _0009.APPLY.replace(_OLD_LOOP, _NEW_LOOP).replace("  r record;\n", "  r record;\n  v_grown boolean;\n", 1)



class Migration(migrations.Migration):

    dependencies = [
        ("interactions", "0013_session_hot_updates"),
    ]

    operations = [
        migrations.RunPython(_0009._on_postgres(APPLY), _0009._on_postgres(_0009.APPLY), elidable=False),
    ]
