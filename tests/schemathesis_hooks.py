"""Schemathesis hooks for `tests/test_fuzz_api.py` (loaded through SCHEMATHESIS_HOOKS).

The fuzzer authenticates as a builder with the JWT access token the test puts in
JUNCTION_FUZZ_TOKEN, and on the end users' routes as an end user (JUNCTION_FUZZ_END_USER_TOKEN). A JWT rather than an API key: the stateful phase deletes the API keys it
lists, and it cannot revoke a JWT without knowing the password. Issued before the run rather than
by logging in: the fuzzer's own failed logins fill the login throttle.
"""
from __future__ import annotations

import os
import re

import schemathesis


END_USERS_ROUTES = r"^/api/apps/\{slug\}/"


@schemathesis.auth(refresh_interval=3600).skip_for(path_regex=END_USERS_ROUTES)
class BuilderJwt:
    def get(self, case, context):
        return os.environ["JUNCTION_FUZZ_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.auth(refresh_interval=3600).apply_to(path_regex=END_USERS_ROUTES)
class EndUserJwt:
    """The end users' own routes (`/api/apps/{slug}/…`, the slug set in tests/schemathesis.toml):
    an end user's access token of that app (a builder's token is 401 there)."""

    def get(self, case, context):
        return os.environ["JUNCTION_FUZZ_END_USER_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# The fuzzed server runs no worker, so a run executes only pure tasks and makes no connection. The
# task-type test endpoint runs a task in the server itself: keep the destinations it could be given
# (an `http_request` URL, an SMTP host) on this machine, whatever the fuzzer invents.
LOOPBACK_URL = "http://127.0.0.1:9/"


def _keep_local(value):
    if isinstance(value, dict):
        return {
            key: (LOOPBACK_URL if key == "url" and isinstance(item, str) and 0 < len(item) <= 2048
                  else "127.0.0.1" if key == "host" and isinstance(item, str) and 0 < len(item) <= 4096 and "\x00" not in item
                  else _keep_local(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_keep_local(item) for item in value]
    return value


@schemathesis.hook
def map_body(context, body):
    return _keep_local(body)


# The objects tests/schemathesis.toml pins (JUNCTION_FUZZ_KEEP: both apps, the provider app end
# users connect through, the end user's connected account) must outlive the run. The stateful phase
# lists what it can reach and may delete them (or rename the app whose slug the end users' routes
# use); the links it follows later into the pinned ids then answer 404, which
# `ensure_resource_availability` (ST302) reads as a created resource lost. A DELETE of a pinned
# object, or a PATCH/PUT of a pinned app, goes to an id that never exists instead (404); what
# those routes do to an object of the fuzzer's own is still exercised, on the objects it creates.
NEVER_AN_ID = "00000000-0000-0000-0000-000000000000"
APP_ROUTE = re.compile(r"^/api/apps/\{id\}/?$")


def _kept():
    return {item for item in os.environ.get("JUNCTION_FUZZ_KEEP", "").split(",") if item}


@schemathesis.hook
def before_call(context, case, kwargs):
    method = case.method.upper()
    if method not in ("DELETE", "PATCH", "PUT"):
        return
    if method != "DELETE" and not APP_ROUTE.match(case.path):
        return
    kept = _kept()
    parameters = case.path_parameters or {}
    hits = {name for name, value in parameters.items() if str(value) in kept}
    if hits:
        case.path_parameters = {**parameters, **{name: NEVER_AN_ID for name in hits}}
