"""The `send_tweet` task type: post a tweet through tweepy."""
from __future__ import annotations

from typing import Any

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec


class SendTweet(TaskType):
    key = "send_tweet"
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
