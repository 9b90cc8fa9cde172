"""Lists: pages (`page`, `page_size`), `ordering` and `search` (docs/api.md, "Lists").

A list view names its `ordering_fields` (a dict of API names to model paths, or a list when they
are the same), its default `ordering` and its `search_fields`. A parameter a list cannot apply —
an unknown ordering field, a page size out of range — is a 400 naming it, never silently ignored.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import django_filters
from django import forms
from django.conf import settings
from django.db import models
from django_filters import rest_framework as drf_filters
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.pagination import PageNumberPagination

from config.json_input import DATE_TIME, UUID


class _StrictBooleanField(forms.Field):
    """`true` or `false`, as the OpenAPI document says (django-filter ignores anything else)."""

    def to_python(self, value):
        if value is None:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Must be true or false.", code="invalid")


class _CanonicalUUIDField(forms.UUIDField):
    """A UUID in its canonical form (Python also reads hex without dashes, braces, `urn:uuid:`)."""

    def to_python(self, value):
        if value is not None and not UUID.fullmatch(str(value)):
            raise forms.ValidationError("Must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).", code="invalid")
        return super().to_python(value)


class _Rfc3339Field(forms.Field):
    """An RFC 3339 date-time (the document's `format: date-time`), in UTC."""

    def to_python(self, value):
        if value is None:
            return None
        if not DATE_TIME.fullmatch(value):
            raise forms.ValidationError("Must be an RFC 3339 date-time, e.g. 2026-12-01T10:00:00Z.", code="invalid")
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except (ValueError, OverflowError):
            raise forms.ValidationError("Not a date-time that exists.", code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _Rfc3339Field


class BooleanFilter(django_filters.BooleanFilter):
    field_class = _StrictBooleanField


class UUIDFilter(django_filters.UUIDFilter):
    field_class = _CanonicalUUIDField


class FilterSet(drf_filters.FilterSet):
    """django-filter's FilterSet whose booleans and UUIDs refuse what they cannot read (400)."""

    FILTER_DEFAULTS: ClassVar[dict] = {
        **drf_filters.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
        models.UUIDField: {"filter_class": UUIDFilter},
        models.DateTimeField: {"filter_class": DateTimeFilter},
    }


class Filters(drf_filters.DjangoFilterBackend):
    """`filterset_fields` / `filterset_class` of a list, built on the strict `FilterSet`."""

    filterset_base = FilterSet


def apply_filters(view, queryset):
    """Apply the view's (or action's) filter backends to `queryset`."""
    for backend in view.filter_backends:
        queryset = backend().filter_queryset(view.request, queryset, view)
    return queryset


class Pagination(PageNumberPagination):
    """DRF's page-number pagination with a bounded, checked `page_size`."""

    page_size_query_param = "page_size"
    last_page_strings = ()  # `page` is an integer, as documented
    page_size_query_description = "Results per page (default JUNCTION_PAGE_SIZE, at most JUNCTION_MAX_PAGE_SIZE)."

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return settings.JUNCTION_MAX_PAGE_SIZE

    def get_page_number(self, request, paginator) -> int:
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise ValidationError({self.page_query_param: ["Must be an integer from 1."]})
        return int(raw)

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return int(self.page_size or 1)
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"Must be an integer from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = "A page number (from 1; anything else is a 400); a page past the last one is 404."
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


def _ordering_fields(view) -> dict[str, str]:
    fields = getattr(view, "ordering_fields", None) or {}
    return dict(fields) if isinstance(fields, dict) else {name: name for name in fields}


class Ordering(OrderingFilter):
    """`?ordering=-created_at,name`: the view's `ordering_fields`, `-` for descending."""

    ordering_description = "Comma-separated fields to sort by, `-` for descending."

    def get_ordering(self, request, queryset, view) -> list[str]:
        fields = _ordering_fields(view)
        raw = request.query_params.get(self.ordering_param)
        if raw is None:
            terms = list(getattr(view, "ordering", None) or [])
        else:
            terms = raw.split(",")
            unknown = [term for term in terms if term.removeprefix("-") not in fields]
            if unknown or not terms:
                message = (f"Unknown field {unknown[0] if unknown else raw!r}; sort by: {', '.join(fields)} "
                           "(prefix - for descending).")
                raise ValidationError({self.ordering_param: [message]})
        ordering = [("-" if term.startswith("-") else "") + fields.get(term.removeprefix("-"), term.removeprefix("-"))
                    for term in terms]
        return [*ordering, "pk"] if ordering else ordering  # a stable order across pages

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        fields = _ordering_fields(view)
        if not fields:
            return []
        one = "-?(?:" + "|".join(re.escape(name) for name in fields) + ")"
        default = ",".join(getattr(view, "ordering", None) or [])
        return [{
            "name": self.ordering_param,
            "required": False,
            "in": "query",
            "description": f"{self.ordering_description} Fields: {', '.join(fields)}. Default: {default or 'none'}.",
            "schema": {"type": "string", "pattern": f"^{one}(?:,{one})*$"},
        }]


class Search(SearchFilter):
    """`?search=text`: a case-insensitive match on the view's `search_fields` (any word, all words)."""

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        fields = getattr(view, "search_fields", None)
        if not fields:
            return []
        names = ", ".join(field.lstrip("^=@$").split("__")[0] for field in fields)
        return [{
            "name": self.search_param,
            "required": False,
            "in": "query",
            "description": f"Words that must each appear (case-insensitive) in one of: {names}.",
            "schema": {"type": "string"},
        }]
