"""The `send_tweet` task type: post a tweet through tweepy.

The tweepy client comes from the `twitter` provider (`integrations/twitter.py`), which points
it at JUNCTION_TWITTER_API_BASE and gives it the task's timeout.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import requests
import tweepy
from django.conf import settings

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec


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
        client = context.client()
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
