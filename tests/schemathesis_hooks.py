"""Schemathesis hooks for `tests/test_fuzz_api.py` (loaded through SCHEMATHESIS_HOOKS).

The fuzzer authenticates as a builder with the JWT access token the test puts in
JUNCTION_FUZZ_TOKEN, and on the end users' routes as an end user (JUNCTION_FUZZ_END_USER_TOKEN). A JWT rather than an API key: the stateful phase deletes the API keys it
lists, and it cannot revoke a JWT without knowing the password. Issued before the run rather than
by logging in: the fuzzer's own failed logins fill the login throttle.
"""
from __future__ import annotations

import os

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


# The provider app end users connect through (JUNCTION_FUZZ_PROVIDER_APP, tests/schemathesis.toml)
# must outlive the run: the stateful phase lists the builder's provider apps and may delete that
# one, and the connect route then answers 404 to the links it follows from a created app, which
# ST302 reads as a created resource lost (the toml's per-operation switch of that check did not
# cover every link the stateful phase infers). A DELETE of it goes to an id that never exists instead (404).
NEVER_AN_ID = "00000000-0000-0000-0000-000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    keep = os.environ.get("JUNCTION_FUZZ_PROVIDER_APP")
    parameters = case.path_parameters or {}
    if (keep and case.method.upper() == "DELETE" and case.path.startswith("/api/provider-apps/")
            and str(parameters.get("id")) == keep):
        case.path_parameters = {**parameters, "id": NEVER_AN_ID}
