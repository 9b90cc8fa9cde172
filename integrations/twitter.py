"""The `twitter` provider: tweepy clients and the OAuth 1.0a three-legged flow.

tweepy calls the fixed host https://api.twitter.com. Both the API client and the OAuth handler
are moved to JUNCTION_TWITTER_API_BASE (a test server, a proxy) before anything is signed, so
the OAuth 1.0a signature covers the URL that is really called, and every request gets a
timeout (tweepy sets none). The account owner's browser is sent to the same base's
`/oauth/authorize`.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import tweepy
from django.conf import settings
from requests.adapters import HTTPAdapter

from integrations.providers import (
    OAUTH1,
    Authorization,
    ClientUnavailable,
    ConnectedAccount,
    Provider,
    credential,
)

TWEEPY_HOST = "https://api.twitter.com"


class Twitter(Provider):
    key = "twitter"
    name = "Twitter / X"
    connect = OAUTH1
    fields = (
        credential("consumer_key", app=True),
        credential("consumer_secret", secret=True, app=True),
        credential("access_token"),
        credential("access_token_secret", secret=True),
    )

    def client(self, credentials: dict[str, Any], *, timeout: float) -> tweepy.Client:
        """A tweepy v2 client signed with the account's access token, calling the API base."""
        client = tweepy.Client(
            consumer_key=credentials["consumer_key"],
            consumer_secret=credentials["consumer_secret"],
            access_token=credentials["access_token"],
            access_token_secret=credentials["access_token_secret"],
        )
        client.session = ApiBaseSession(settings.JUNCTION_TWITTER_API_BASE, timeout=timeout)
        return client

    def authorization(self, app_credentials: dict[str, Any], *, callback: str, timeout: float) -> Authorization:
        handler = _handler(app_credentials, callback=callback, timeout=timeout)
        try:
            authorize_url = handler.get_authorization_url()
        except tweepy.TweepyException as exc:
            raise _exchange_error("request token", exc) from None
        return Authorization(authorize_url=authorize_url,
                             request_token=handler.request_token["oauth_token"],
                             request_token_secret=handler.request_token["oauth_token_secret"])

    def access(
        self, app_credentials: dict[str, Any], *, request_token: str, request_token_secret: str,
        verifier: str, timeout: float,
    ) -> ConnectedAccount:
        handler = _handler(app_credentials, callback=None, timeout=timeout)
        handler.request_token = {"oauth_token": request_token, "oauth_token_secret": request_token_secret}
        try:
            access_token, access_token_secret = handler.get_access_token(verifier)
        except tweepy.TweepyException as exc:
            raise _exchange_error("access token", exc) from None
        screen_name = handler.account.get("screen_name", "")
        return ConnectedAccount(
            credentials={"access_token": access_token, "access_token_secret": access_token_secret},
            account=f"@{screen_name}" if screen_name else handler.account.get("user_id", ""),
        )


class ApiBaseSession(requests.Session):
    """A requests session that sends tweepy's calls to `base` instead of api.twitter.com."""

    def __init__(self, base: str, *, timeout: float) -> None:
        super().__init__()
        self.base = base.rstrip("/")
        self.timeout = timeout

    def request(self, method, url, *args, **kwargs):
        if isinstance(url, str) and url.startswith(TWEEPY_HOST + "/"):
            url = self.base + url[len(TWEEPY_HOST):]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class _TimeoutAdapter(HTTPAdapter):
    """Give every request of a session a timeout (requests_oauthlib's token calls pass none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request, timeout=None, **kwargs):
        return super().send(request, timeout=timeout or self.timeout, **kwargs)


class _Handler(tweepy.OAuth1UserHandler):
    """tweepy's OAuth 1.0a user handler, at the API base, with timeouts.

    tweepy builds a new requests_oauthlib session for each step (`self.oauth = …`): the
    property mounts the timeout on each, and keeps the non-secret fields of the access-token
    answer (`user_id`, `screen_name`), which tweepy drops.
    """

    def __init__(self, *args, base: str, timeout: float, **kwargs) -> None:
        self.base, self.timeout = base.rstrip("/"), timeout
        self.account: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    @property
    def oauth(self):
        return self._oauth

    @oauth.setter
    def oauth(self, session) -> None:
        adapter = _TimeoutAdapter(self.timeout)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.hooks["response"].append(self._remember_account)
        self._oauth = session

    def _get_oauth_url(self, endpoint: str) -> str:
        return f"{self.base}/oauth/{endpoint}"

    def _remember_account(self, response, **kwargs) -> None:
        if response.ok and urlsplit(response.url).path.endswith("/oauth/access_token"):
            answer = dict(parse_qsl(response.text))
            self.account = {name: answer[name] for name in ("user_id", "screen_name") if name in answer}


def _handler(app_credentials: dict[str, Any], *, callback: str | None, timeout: float) -> _Handler:
    return _Handler(app_credentials["consumer_key"], app_credentials["consumer_secret"], callback=callback,
                    base=settings.JUNCTION_TWITTER_API_BASE, timeout=timeout)


def _exchange_error(step: str, exc: tweepy.TweepyException) -> ClientUnavailable:
    """Say what went wrong at Twitter, without the library's message (it quotes the answer,
    and for a 200 the answer is the credentials)."""
    cause = exc.__cause__ if exc.__cause__ is not None else (exc.args[0] if exc.args else None)
    if isinstance(cause, tweepy.TweepyException):  # get_authorization_url wraps twice
        cause = cause.__cause__ if cause.__cause__ is not None else (cause.args[0] if cause.args else None)
    response = getattr(cause, "response", None)
    if response is not None:
        status = f"{response.status_code} {response.reason or ''}".strip()
        return ClientUnavailable(f"Twitter refused the {step} request: {status}",
                                 transient=response.status_code >= 500 or response.status_code == 429)
    if isinstance(cause, requests.Timeout):
        return ClientUnavailable(f"Twitter did not answer the {step} request in time", transient=True)
    if isinstance(cause, requests.ConnectionError):
        return ClientUnavailable(f"cannot connect to Twitter at {settings.JUNCTION_TWITTER_API_BASE}", transient=True)
    return ClientUnavailable(f"the {step} exchange with Twitter failed: {type(cause).__name__}")
