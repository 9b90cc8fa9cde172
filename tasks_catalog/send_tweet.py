"""The `send_tweet` task type: post a tweet through tweepy.

tweepy's Client calls the fixed host https://api.twitter.com; `ApiBaseSession` moves its
requests to JUNCTION_TWITTER_API_BASE before they are signed, so the OAuth 1.0a signature
covers the URL that is really called (a test server or a proxy can verify it), and gives every
request a timeout (tweepy sets none).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import requests
import tweepy
from django.conf import settings

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec

TWEEPY_HOST = "https://api.twitter.com"


class SendTweet(TaskType):
    key = "send_tweet"
    slow = True
    name = "Send tweet"
    description = "Post a tweet with a Twitter/X integration (tweepy, OAuth 1.0a)."
    provider = "twitter"
    fields = (
        FieldSpec("text", "string", required=True, min_length=1, max_length=280,
                  description="The tweet, 1-280 characters.", example="Hello from Junction"),
    )
    output_description = "The created tweet."
    output_schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
    }

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        credentials = context.credentials
        client = tweepy.Client(
            consumer_key=credentials["consumer_key"],
            consumer_secret=credentials["consumer_secret"],
            access_token=credentials["access_token"],
            access_token_secret=credentials["access_token_secret"],
        )
        client.session = ApiBaseSession(settings.JUNCTION_TWITTER_API_BASE, timeout=context.timeout or 30)
        try:
            response = client.create_tweet(text=body["text"])
        except tweepy.TooManyRequests as exc:
            raise TaskFailed(f"Twitter rate limit reached{_reset(exc.reset_time)}: {_detail(exc)}", transient=True) from None
        except tweepy.TwitterServerError as exc:
            raise TaskFailed(f"Twitter server error: {_detail(exc)}", transient=True) from None
        except tweepy.Unauthorized as exc:
            raise TaskFailed(f"Twitter rejected the integration's credentials: {_detail(exc)}") from None
        except tweepy.Forbidden as exc:
            raise TaskFailed(f"Twitter refused the tweet: {_detail(exc)}") from None
        except tweepy.HTTPException as exc:
            raise TaskFailed(f"Twitter API error: {_detail(exc)}") from None
        except requests.Timeout:
            raise TaskFailed("Twitter API timed out", transient=True) from None
        except requests.ConnectionError:
            raise TaskFailed(f"cannot connect to the Twitter API at {settings.JUNCTION_TWITTER_API_BASE}", transient=True) from None
        data = response.data or {}
        if "id" not in data:
            raise TaskFailed("Twitter API answered without the created tweet")
        return {"id": str(data["id"]), "text": data.get("text", body["text"])}


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


def _detail(exc: tweepy.HTTPException) -> str:
    """The API's own explanation (v1 `errors`, v2 problem `detail`, else its `title`) after the status."""
    status = f"{exc.response.status_code} {exc.response.reason or ''}".strip()
    messages = [str(message) for message in exc.api_messages]
    if not messages:
        try:
            payload = exc.response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("title"), str):
            messages.append(payload["title"])
    return f"{status}: {'; '.join(messages)}" if messages else status


def _reset(reset_time: int | None) -> str:
    if not reset_time:
        return ""
    return f" (resets at {datetime.fromtimestamp(reset_time, tz=timezone.utc).isoformat()})"
