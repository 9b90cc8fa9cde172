"""The one field vocabulary and its one validator (tasks_catalog/fields.py)."""
from __future__ import annotations

import pytest

from config.errors import InvalidInput
from integrations.smtp import Smtp
from integrations.twitter import Twitter
from interactions.statuses import SessionStatus, TaskStatus
from interactions.models import Session, TaskRun
from tasks_catalog.fields import FieldSpec, ensure_valid, validate
from tasks_catalog.registry import task_types

SPECS = (
    FieldSpec("url", "string", required=True),
    FieldSpec("timeout", "number", minimum=0.1),
    FieldSpec("token", "string", required=True, allow_blank=False, allow_nul=False, max_length=8),
)


def test_valid_values_have_no_problems():
    assert validate(SPECS, {"url": "https://a.example", "timeout": 2, "token": "abc"}) == {}


def test_problems_are_keyed_by_the_callers_prefix():
    problems = validate(SPECS, {"url": 3, "extra": 1}, prefix="tasks.fetch.body.", unknown="Unknown field.")
    assert set(problems) == {"tasks.fetch.body.url", "tasks.fetch.body.extra", "tasks.fetch.body.token"}
    assert problems["tasks.fetch.body.extra"] == ["Unknown field."]
    assert problems["tasks.fetch.body.token"] == ["This field is required."]


def test_partial_leaves_missing_fields_alone():
    assert validate(SPECS, {"timeout": 1}, partial=True) == {}


def test_null_is_missing_unless_the_caller_says_it_is_a_value():
    assert validate(SPECS, {"url": None, "token": "t"}) == {"url": ["This field is required."]}
    assert "null" in validate(SPECS, {"url": None, "token": "t"}, null_is_missing=False)["url"][0]


@pytest.mark.parametrize("value, word", [("", "blank"), ("a\x00b", "NUL"), ("x" * 9, "at most 8")])
def test_string_rules(value, word):
    assert word in " ".join(validate(SPECS, {"url": "u", "token": value})["token"])


def test_ensure_valid_raises_the_application_error():
    with pytest.raises(InvalidInput) as raised:
        ensure_valid(SPECS, {"url": 1, "token": "t"}, prefix="body.")
    assert list(raised.value.details) == ["body.url"]
    assert raised.value.code == "validation_error"


def test_provider_credentials_are_field_specs_checked_by_the_same_validator():
    assert all(isinstance(spec, FieldSpec) for spec in (*Twitter.fields, *Smtp.fields))
    problems = Smtp().check_credentials({"host": "", "port": 0, "password": "p\x00", "nonsense": 1})
    assert set(problems) == {"credentials.host", "credentials.port", "credentials.password",
                             "credentials.nonsense", "credentials.from_email"}


def test_the_catalog_shows_no_credential_flags_on_task_fields():
    for task_type in task_types:
        for field in task_type.describe()["fields"]:
            assert not {"secret", "destination", "allow_blank", "allow_nul"} & set(field), (task_type.key, field)


def test_a_secret_is_write_only_in_its_json_schema():
    assert Twitter.fields[1].json_schema()["writeOnly"] is True


def test_statuses_are_the_models_choices():
    assert [value for value, _ in Session._meta.get_field("status").choices] == list(SessionStatus)
    assert [value for value, _ in TaskRun._meta.get_field("status").choices] == list(TaskStatus)
    assert Session.Status is SessionStatus and TaskRun.Status is TaskStatus
