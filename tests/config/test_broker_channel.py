"""A worker outlives its Redis connection (config/celery.py): kombu 5.7 acks, rejects and restores
the messages of a channel whose connection it already released, and raises AttributeError,
which Celery's consumer treats as unrecoverable (the soak, bench/chaos.py, saw workers exit so)."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings
from kombu import Connection
from kombu.transport import virtual

import config.celery  # noqa: F401  (installs the patches, as every worker does)


@pytest.fixture
def closed_channel():
    connection = Connection(settings.CELERY_BROKER_URL)
    channel = connection.channel()
    channel.close()  # what the consumer does with its channel when the broker goes away
    assert channel.connection is None
    yield channel
    connection.release()


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_settling_a_message_of_a_closed_channel_is_logged_not_raised(closed_channel, settle, caplog):
    qos = closed_channel.qos
    virtual.QoS.append(qos, object(), "tag-1")  # held by this worker (Redis's own index aside)
    with caplog.at_level(logging.WARNING, logger="config.celery"):
        getattr(qos, settle)("tag-1")
    assert f"broker connection lost before the {settle} of a message" in caplog.text
    qos._flush()
    assert "tag-1" not in qos._delivered  # forgotten here: Redis gives it back after the visibility timeout


def test_restoring_the_messages_of_a_closed_channel_is_logged_not_raised(closed_channel, caplog):
    qos = closed_channel.qos
    virtual.QoS.append(qos, object(), "tag-2")
    with caplog.at_level(logging.WARNING, logger="config.celery"):
        qos.restore_unacked()
    assert "broker connection lost while holding 1 messages" in caplog.text
    assert not qos._delivered
