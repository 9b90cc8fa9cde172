"""The interactions' routes come first under /api/ (config/urls.py) and that changes nothing but
the time it takes to find the run route: with them last, every route's paths resolve the same."""
from __future__ import annotations

import re
import uuid

from django.urls import Resolver404, URLPattern, URLResolver, include, path
from django.urls.resolvers import RegexPattern

from config import urls

# What a path parameter is filled with: ids, slugs, and words that are also route segments.
VALUES = (str(uuid.uuid4()), "sessions", "run", "auth", "x", "12")


def _regexes(resolver: URLResolver, prefix: str = "") -> list[str]:
    found = []
    for pattern in resolver.url_patterns:
        regex = prefix + pattern.pattern.regex.pattern.lstrip("^")
        found.extend(_regexes(pattern, regex) if isinstance(pattern, URLResolver) else [regex])
    return found


def _paths(resolver: URLResolver) -> set[str]:
    """Paths that each route matches, with and without the slash, and one segment further."""
    paths = set()
    for regex in _regexes(resolver):
        for value in VALUES:
            text = re.sub(r"\(\?P<\w+>[^)]*\)", value, regex)
            text = "/" + text.replace("\\Z", "").replace("$", "").replace("^", "").replace("\\.", ".")
            paths.update({text, text.rstrip("/"), text + "/", text + "sessions/", text + "run/"})
    return paths


def _root(api: list[URLPattern | URLResolver]) -> URLResolver:
    return URLResolver(RegexPattern(r"^/"), [path("api/", include(api))])


def _answer(resolver: URLResolver, url: str) -> tuple | None:
    try:
        match = resolver.resolve(url)
    except Resolver404:
        return None
    return match.url_name, match.route, match.func, match.kwargs


def test_the_interactions_routes_first_change_no_answer():
    configured = _root(urls.api)
    assert configured.resolve(f"/api/interactions/{uuid.uuid4()}/run/").url_name == "interaction-run"
    interactions = next(i for i, p in enumerate(urls.api) if getattr(p, "urlconf_name", None).__name__
                        == "interactions.urls")
    last = _root([*urls.api[:interactions], *urls.api[interactions + 1:], urls.api[interactions]])
    paths = _paths(configured)
    assert len(paths) > 1000
    assert {url: _answer(configured, url) for url in paths} == {url: _answer(last, url) for url in paths}
