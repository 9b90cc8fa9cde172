"""Routes that answer with and without their trailing slash (docs/api.md, "Trailing slashes").

Django's APPEND_SLASH answers `POST /api/interactions` with a redirect that a client follows as a
GET, dropping the body. Every API route is therefore routed twice: the canonical form with the
slash (named, so `reverse()` and the OpenAPI document use it) and the same view without it
(unnamed, left out of the document by `openapi_canonical_paths`).
"""
from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from django.urls.resolvers import RegexPattern, RoutePattern
from rest_framework.routers import SimpleRouter


def _slashless(pattern: URLPattern) -> URLPattern | None:
    if isinstance(pattern.pattern, RoutePattern):  # path(): the same route without its slash
        text = str(pattern.pattern)
        return path(text[:-1], pattern.callback, pattern.default_args) if text.endswith("/") else None
    regex = pattern.pattern.regex.pattern
    if not regex.endswith("/$"):
        return None
    return URLPattern(RegexPattern(regex[:-2] + "$", is_endpoint=True), pattern.callback, pattern.default_args)


def with_slashless(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """Return `patterns` followed by each route's slash-less twin."""
    twins = [
        twin for pattern in patterns
        if isinstance(pattern, URLPattern) and isinstance(pattern.pattern, (RegexPattern, RoutePattern))
        and (twin := _slashless(pattern)) is not None
    ]
    return [*patterns, *twins]


def route(route: str, view, *, name: str) -> list[URLPattern]:
    """`path(route, view, name=name)` plus the same view without the trailing slash."""
    assert route.endswith("/"), route
    return [path(route, view, name=name), path(route[:-1], view)]


class Router(SimpleRouter):
    """DRF's SimpleRouter whose routes also answer without the trailing slash."""

    def get_urls(self) -> list[URLPattern | URLResolver]:
        return with_slashless(super().get_urls())


def openapi_canonical_paths(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: document each route once, in its canonical form."""
    return [endpoint for endpoint in endpoints if endpoint[0].endswith("/")]
