"""Secrets stay secret: after real sessions tweeted and e-mailed through Celery workers (and
failed with wrong secrets), no credential value is in the database rows, the API responses,
the worker logs, the captured logs or anything that went through Redis."""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.conftest import SMTP_CREDENTIALS, TWITTER_CREDENTIALS, make_integration, make_interaction, smtp_integration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WRONG_CONSUMER_SECRET = "cs-wrong-secret-5"
WRONG_SMTP_PASSWORD = "smtp-wrong-secret-4"
SECRETS: list[str] = [
    TWITTER_CREDENTIALS["consumer_secret"], TWITTER_CREDENTIALS["access_token_secret"],
    SMTP_CREDENTIALS["password"], WRONG_CONSUMER_SECRET, WRONG_SMTP_PASSWORD,
]
_BASE64 = re.compile(rb"[A-Za-z0-9+/=_-]{16,}")


def readable(data: bytes | str) -> list[bytes]:
    """`data` itself and what each base64 run inside it decodes to (Celery message bodies)."""
    raw = data.encode() if isinstance(data, str) else data
    texts = [raw]
    for run in _BASE64.findall(raw):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                texts.append(decode(run + b"=" * (-len(run) % 4)))
            except (binascii.Error, ValueError):
                pass
    return texts


def leaks(data: bytes | str, where: str) -> list[str]:
    """Return `where: secret` for each secret found in `data`, plain or base64-encoded."""
    texts = readable(data)
    return [f"{where}: {secret}" for secret in SECRETS if any(secret.encode() in text for text in texts)]


class RedisRecorder:
    """Record every command sent to the broker and result databases (Redis MONITOR)."""

    def __init__(self) -> None:
        self.urls = {settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND}
        self.dbs = {int(urlsplit(url).path.strip("/") or 0) for url in self.urls}
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._record, daemon=True)
        self._thread.start()

    def _record(self) -> None:
        try:
            for event in self._monitor.listen():
                if event.get("db") in self.dbs:
                    self.commands.append(event["command"])
        except (redis.ConnectionError, ValueError, AttributeError):
            pass  # stopped

    def stop(self) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(timeout=5)

    def stored(self) -> Iterator[tuple[str, bytes]]:
        """Every key and value now in the broker and result databases."""
        for url in self.urls:
            client: Any = redis.Redis.from_url(url)  # bytes in, bytes out (no decode_responses)
            for key in client.scan_iter(count=500):
                kind = client.type(key).decode()
                values: list[bytes] = {
                    "string": lambda: [client.get(key) or b""],
                    "list": lambda: client.lrange(key, 0, -1),
                    "hash": lambda: [k + b"=" + v for k, v in client.hgetall(key).items()],
                    "set": lambda: list(client.smembers(key)),
                    "zset": lambda: client.zrange(key, 0, -1),
                }.get(kind, lambda: [])()
                yield f"{url} {key!r}", key + b" " + b" ".join(values)


def run_and_wait(api, interaction) -> dict:
    response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=45")
    assert response.status_code in (200, 202), response.content
    session = response.json()
    assert session["status"] not in ("queued", "running"), session
    return session


def database_rows() -> Iterator[tuple[str, str]]:
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT CAST(t AS text) FROM "{table}" AS t')  # noqa: S608 - our own table names
            for (row,) in cursor.fetchall():
                yield table, row


@pytest.fixture
def redis_recorder(celery_workers):
    recorder = RedisRecorder()
    yield recorder
    recorder.stop()


def test_no_credential_value_anywhere_after_tweets_and_emails(
    celery_workers, redis_recorder, api, user, fake_twitter, smtp_server, caplog,
):
    caplog.set_level(logging.DEBUG)
    twitter = make_integration(user, "twitter", name="twitter-good")
    twitter_wrong = make_integration(user, "twitter", name="twitter-wrong", consumer_secret=WRONG_CONSUMER_SECRET)
    smtp = smtp_integration(user, smtp_server, name="smtp-good")
    smtp_wrong = smtp_integration(user, smtp_server, name="smtp-wrong", password=WRONG_SMTP_PASSWORD)

    text = f"Order {uuid.uuid4().hex[:8]} shipped"
    fake_twitter.script(text, 503)  # one transient failure, retried by the executor
    sent = make_interaction(user, active=True, tasks={
        "tweet": {"type": "send_tweet", "integration": str(twitter.id), "body": {"text": text}, "retries": 2},
        "mail": {"type": "send_email", "integration": str(smtp.id), "execute_after": {"tweet": ["completed"]},
                 "body": {"to": "ops@example.com", "subject": "Shipped",
                          "text": {"$template": "Tweet {{ tweet.id }} is out"}, "html": "<p>out</p>"}},
    })
    refused = make_interaction(user, active=True, tasks={
        "tweet": {"type": "send_tweet", "integration": str(twitter_wrong.id), "body": {"text": f"x {uuid.uuid4().hex}"}},
        "mail": {"type": "send_email", "integration": str(smtp_wrong.id),
                 "body": {"to": "ops@example.com", "subject": "never"}},
    })
    good = run_and_wait(api, sent)
    bad = run_and_wait(api, refused)
    # The sessions really did their work, through the workers.
    assert good["status"] == "completed", good
    assert good["tasks"]["tweet"]["attempts"] == 2
    assert [m["Subject"] for m in smtp_server.messages] == ["Shipped"]
    assert bad["status"] == "failed", bad
    assert "rejected the integration's credentials" in bad["tasks"]["tweet"]["error"]
    assert "rejected the login" in bad["tasks"]["mail"]["error"]
    # The same types once more in this process, through the test endpoint (logs at DEBUG here).
    trial = api.post("/api/task-types/send_tweet/test/", {"body": {"text": f"t {uuid.uuid4().hex}"},
                                                          "integration": str(twitter.id)}, format="json")
    assert trial.json()["status"] == "completed", trial.json()
    trial_mail = api.post("/api/task-types/send_email/test/", {"body": {"to": "a@example.com", "subject": "t"},
                                                               "integration": str(smtp_wrong.id)}, format="json")
    assert trial_mail.json()["status"] == "failed"

    found: list[str] = []
    for table, row in database_rows():
        found += leaks(row, f"table {table}")
    for path in [f"/api/sessions/{good['id']}/", f"/api/sessions/{bad['id']}/", "/api/sessions/",
                 "/api/integrations/", f"/api/integrations/{twitter.id}/", f"/api/integrations/{smtp_wrong.id}/"]:
        response = api.get(path)
        assert response.status_code == 200, path
        found += leaks(response.content, f"GET {path}")
    events = api.get(f"/api/sessions/{bad['id']}/events/")
    found += leaks(b"".join(events.streaming_content), "session events")
    found += leaks(trial.content + trial_mail.content, "test endpoint")
    logs = [path for path in celery_workers.log_dir.glob(f"*-{os.getpid()}-*.log")]
    assert logs, f"no worker log in {celery_workers.log_dir}"
    for path in logs:
        found += leaks(path.read_bytes(), f"worker log {path.name}")
    assert caplog.records
    for record in caplog.records:
        if record.name.startswith("mail.log"):
            continue  # the test SMTP server's own log, not Junction's
        found += leaks(record.getMessage() + repr(record.args) + (record.exc_text or ""), f"log {record.name}")
    redis_recorder.stop()
    # The recorder saw the task messages and could read their bodies (base64 in kombu's format).
    assert any(good["id"].encode() in decoded for command in redis_recorder.commands
               for decoded in readable(command)[1:])
    for command in redis_recorder.commands:
        found += leaks(command, "redis command")
    stored = list(redis_recorder.stored())
    for where, data in stored:
        found += leaks(data, f"redis key {where}")
    assert found == []


def test_the_leak_scanner_finds_secrets_plain_and_base64():
    secret = TWITTER_CREDENTIALS["consumer_secret"]
    assert leaks(f"…{secret}…", "x") == [f"x: {secret}"]
    wrapped = json.dumps({"body": base64.b64encode(json.dumps({"s": secret}).encode()).decode()})
    assert leaks(wrapped, "x") == [f"x: {secret}"]
    assert leaks("nothing to see", "x") == []
