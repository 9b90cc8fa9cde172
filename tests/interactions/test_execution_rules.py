"""The pure rules of execution (SPEC §3): readiness, body resolution, the session's outcome.

No database and no broker: `interactions/engine/execution.py` is plain Python.
"""
from __future__ import annotations

from typing import Any

from interactions.engine.definition import Definition, TaskSpec
from interactions.engine.execution import Record, readiness, resolve_body, session_outcome
from tasks_catalog.registry import task_types

COMPLETED, FAILED = ["completed"], ["failed"]
EITHER = ["completed", "failed"]


def spec(name: str, type_: str = "transform", body: dict | None = None, **after: list[str]) -> TaskSpec:
    return TaskSpec(
        name=name, type=type_, body=body or {},
        execute_after={pred: tuple(statuses) for pred, statuses in after.items()},
        replies=task_types.get(type_).replies,  # as parse_definition sets it
    )


def definition(*specs: TaskSpec) -> Definition:
    return Definition(tasks={s.name: s for s in specs}, blanks=())


# --- readiness -------------------------------------------------------------------------------


def test_a_root_task_is_ready_at_once():
    assert readiness(spec("root"), {}) is True


def test_an_edge_accepting_completed_is_met_only_by_completed():
    task = spec("b", a=COMPLETED)
    assert readiness(task, {"a": "completed"}) is True
    assert readiness(task, {"a": "failed"}) is False


def test_an_edge_accepting_failed_is_met_only_by_failed():
    task = spec("b", a=FAILED)
    assert readiness(task, {"a": "failed"}) is True
    assert readiness(task, {"a": "completed"}) is False


def test_statuses_within_one_edge_are_ored():
    task = spec("b", a=EITHER)
    assert readiness(task, {"a": "completed"}) is True
    assert readiness(task, {"a": "failed"}) is True


def test_predecessors_are_anded():
    task = spec("c", a=COMPLETED, b=FAILED)
    assert readiness(task, {"a": "completed", "b": "failed"}) is True
    assert readiness(task, {"a": "completed", "b": "completed"}) is False
    assert readiness(task, {"a": "failed", "b": "failed"}) is False


def test_skipped_or_cancelled_predecessors_never_satisfy_an_edge():
    task = spec("b", a=EITHER)
    assert readiness(task, {"a": "skipped"}) is False
    assert readiness(task, {"a": "cancelled"}) is False


def test_a_predecessor_without_a_terminal_record_does_not_satisfy_an_edge():
    task = spec("c", a=COMPLETED, b=COMPLETED)
    assert readiness(task, {"a": "completed"}) is False
    assert readiness(task, {"a": "completed", "b": "running"}) is False


# --- resolve_body ----------------------------------------------------------------------------

TRANSFORM_FIELDS = {"data": None, "expression": None}
RESPONSE_FIELDS: dict[str, Any] = {"status_code": 200, "body": None, "headers": {}}
RECORDS = {
    "fetch": Record("completed", {"items": [{"id": 7, "tags": ["x", "y"]}], "name": "order", "n": 3}),
    "boom": Record("failed", None, "kaput"),
}


def test_literals_are_used_as_they_are():
    task = spec("t", body={"data": {"a": [1, 2]}, "expression": "a[0]"})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, {}) == {"data": {"a": [1, 2]}, "expression": "a[0]"}


def test_blanks_come_from_the_callers_input_for_that_task():
    task = spec("t", body={"data": None, "expression": "x"})
    caller = {"t": {"data": {"x": 5}}, "other": {"data": "not mine"}}
    assert resolve_body(task, TRANSFORM_FIELDS, caller, {}) == {"data": {"x": 5}, "expression": "x"}


def test_fields_neither_set_nor_given_take_the_types_default():
    task = spec("r", type_="response", body={"body": "hi"})
    assert resolve_body(task, RESPONSE_FIELDS, {}, {}) == {"status_code": 200, "body": "hi", "headers": {}}


def test_a_given_optional_blank_overrides_the_default():
    task = spec("r", type_="response", body={"status_code": None, "body": "hi"})
    body = resolve_body(task, RESPONSE_FIELDS, {"r": {"status_code": 201}}, {})
    assert body["status_code"] == 201


def test_ref_follows_a_jmespath_path_into_the_output():
    task = spec("t", body={"data": {"$ref": "fetch.items[0].id"}, "expression": {"$ref": "fetch.name"}})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS) == {"data": 7, "expression": "order"}


def test_ref_to_a_task_alone_is_its_whole_output():
    task = spec("t", body={"data": {"$ref": "fetch"}, "expression": "@"})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS)["data"] == RECORDS["fetch"].output


def test_ref_to_error_and_status_reads_the_record_not_the_output():
    task = spec("t", body={"data": {"$ref": "boom.error"}, "expression": {"$ref": "boom.status"}})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS) == {"data": "kaput", "expression": "failed"}


def test_ref_to_a_missing_path_is_null():
    task = spec("t", body={"data": {"$ref": "fetch.nothing.here"}, "expression": "@"})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS)["data"] is None


def test_template_interpolates_strings_as_they_are_and_other_values_as_json():
    template = "{{ fetch.name }} #{{ fetch.items[0].id }} tags={{ fetch.items[0].tags }} first={{fetch.items[0]}}"
    task = spec("t", body={"data": {"$template": template}, "expression": "@"})
    data = resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS)["data"]
    assert data == 'order #7 tags=["x","y"] first={"id":7,"tags":["x","y"]}'


def test_template_renders_null_as_empty_text():
    task = spec("t", body={"data": {"$template": "[{{ fetch.missing }}] {{ boom.error }}"}, "expression": "@"})
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS)["data"] == "[] kaput"


def test_references_nested_inside_objects_and_lists_are_resolved():
    task = spec("t", body={
        "data": {
            "id": {"$ref": "fetch.items[0].id"},
            "list": [{"$ref": "fetch.n"}, "literal", {"deep": {"$template": "e={{ boom.error }}"}}],
            "plain": {"k": [1, {"v": True}]},
        },
        "expression": "@",
    })
    assert resolve_body(task, TRANSFORM_FIELDS, {}, RECORDS)["data"] == {
        "id": 7,
        "list": [3, "literal", {"deep": "e=kaput"}],
        "plain": {"k": [1, {"v": True}]},
    }


def test_caller_input_is_taken_as_data_not_resolved_as_references():
    task = spec("t", body={"data": None, "expression": "@"})
    given = {"t": {"data": {"$ref": "boom.error"}}}
    assert resolve_body(task, TRANSFORM_FIELDS, given, RECORDS)["data"] == {"$ref": "boom.error"}


# --- session_outcome -------------------------------------------------------------------------


def records(**statuses: Any) -> dict[str, Record]:
    """`name=status` or `name=(status, output)`; failed tasks get the error `<name> broke`."""
    found = {}
    for name, value in statuses.items():
        status, output = value if isinstance(value, tuple) else (value, None)
        found[name] = Record(status, output, f"{name} broke" if status == "failed" else None)
    return found


def test_all_completed_is_completed_with_the_sinks_outputs_as_result():
    graph = definition(spec("a"), spec("b", a=COMPLETED), spec("c", a=COMPLETED))
    outcome = session_outcome(graph, records(a=("completed", 1), b=("completed", 2), c=("completed", 3)))
    assert outcome.status == "completed"
    assert outcome.unhandled == ()
    assert outcome.result == {"b": 2, "c": 3}


def test_an_unhandled_failure_fails_the_session():
    graph = definition(spec("a", "fail"), spec("b", a=COMPLETED))
    outcome = session_outcome(graph, records(a="failed", b="skipped"))
    assert outcome.status == "failed"
    assert outcome.unhandled == ("a",)


def test_a_failure_is_handled_by_a_dependant_on_a_failed_edge_that_ran():
    graph = definition(spec("a", "fail"), spec("ok", a=COMPLETED), spec("handler", a=FAILED))
    outcome = session_outcome(graph, records(a="failed", ok="skipped", handler=("completed", "h")))
    assert outcome.status == "completed"
    assert outcome.unhandled == ()


def test_a_handler_on_an_either_edge_handles_too():
    graph = definition(spec("a", "fail"), spec("finally_", a=EITHER))
    outcome = session_outcome(graph, records(a="failed", finally_=("completed", 1)))
    assert outcome.status == "completed"


def test_a_handler_that_failed_needs_handling_in_turn():
    graph = definition(spec("a", "fail"), spec("h", "fail", a=FAILED))
    outcome = session_outcome(graph, records(a="failed", h="failed"))
    assert outcome.status == "failed"
    assert outcome.unhandled == ("h",)  # a's failure was handled; h's was not


def test_a_failed_handler_that_is_itself_handled_completes_the_session():
    graph = definition(spec("a", "fail"), spec("h", "fail", a=FAILED), spec("h2", h=FAILED))
    outcome = session_outcome(graph, records(a="failed", h="failed", h2=("completed", 2)))
    assert outcome.status == "completed"
    assert outcome.result == {"h2": 2}


def test_a_skipped_handler_does_not_handle():
    # h waits for a's failure and for b's success; b failed too, so h was skipped.
    graph = definition(spec("a", "fail"), spec("b", "fail"), spec("h", a=FAILED, b=COMPLETED))
    outcome = session_outcome(graph, records(a="failed", b="failed", h="skipped"))
    assert outcome.status == "failed"
    assert outcome.unhandled == ("a", "b")


def test_a_cancelled_handler_does_not_handle():
    graph = definition(spec("a", "fail"), spec("h", a=FAILED))
    assert session_outcome(graph, records(a="failed", h="cancelled")).unhandled == ("a",)


def test_a_dependant_on_a_completed_edge_does_not_handle():
    # c accepts a only as completed: a's failure leaves c skipped, and nothing else handles it.
    graph = definition(spec("a", "fail"), spec("c", a=COMPLETED))
    assert session_outcome(graph, records(a="failed", c="skipped")).unhandled == ("a",)


def test_result_is_the_first_completed_response_bodys_by_name():
    graph = definition(
        spec("a"),
        spec("r2", "response", a=COMPLETED),
        spec("r1", "response", a=COMPLETED),
    )
    reply = lambda body: {"status_code": 200, "headers": {}, "body": body}  # noqa: E731
    outcome = session_outcome(
        graph, records(a=("completed", 1), r1=("completed", reply("one")), r2=("completed", reply("two")))
    )
    assert outcome.result == "one"


def test_result_skips_a_response_that_did_not_complete():
    graph = definition(spec("a", "fail"), spec("r1", "response", a=COMPLETED), spec("r2", "response", a=FAILED))
    outcome = session_outcome(graph, records(
        a="failed", r1="skipped", r2=("completed", {"status_code": 502, "headers": {}, "body": {"error": "x"}}),
    ))
    assert outcome.status == "completed"
    assert outcome.result == {"error": "x"}


def test_result_without_response_holds_only_completed_sinks():
    graph = definition(
        spec("root"),
        spec("mid", root=COMPLETED),
        spec("done", mid=COMPLETED),
        spec("broken", "fail", root=COMPLETED),
        spec("never", "transform", root=FAILED),
        spec("after_broken", broken=FAILED),
    )
    outcome = session_outcome(graph, records(
        root=("completed", 0), mid=("completed", 1), done=("completed", 2),
        broken="failed", never="skipped", after_broken=("completed", 3),
    ))
    assert outcome.status == "completed"
    assert outcome.result == {"done": 2, "after_broken": 3}
