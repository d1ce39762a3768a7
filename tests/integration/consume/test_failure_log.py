"""A handler failure is logged with its traceback once: at the dead letter, after the last
attempt. Retries log one line each, without a traceback; an undecodable message has none.

Public behaviour only (EventConsumer, the log records), so it holds for any consumer
implementation behind the face.
"""

from __future__ import annotations

import logging
import traceback

import pytest
from confluent_kafka import Producer

from streamkit.client.config import client_config
from streamkit.consume.consumer import EventConsumer
from streamkit.ops.admin import StreamkitAdmin, TopicSpec
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import PAYMENT_SCHEMA, payment


class CardDeclinedError(Exception):
    pass


def charge(event: Event) -> None:
    raise CardDeclinedError(f"card declined for {event.payload['payment_id']}")


def test_a_handler_failure_is_logged_with_its_traceback_once(
    streamkit_settings: StreamkitSettings,
    producer: EventProducer,
    topic_factory: TopicFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory(partitions=1)
    dead_letters = f"{topic}{streamkit_settings.consumer.dead_letter_suffix}"
    StreamkitAdmin(streamkit_settings).ensure_topics([TopicSpec(dead_letters, partitions=1)])
    producer.send(topic, payment(0), schema=PAYMENT_SCHEMA).result(timeout=30)
    raw = Producer(client_config(streamkit_settings, "producer"))
    raw.produce(topic, b"not avro", b"poison")
    assert raw.flush(30) == 0
    settings = streamkit_settings.model_copy(
        update={
            "consumer": streamkit_settings.consumer.model_copy(
                update={"max_retries": 2, "retry_backoff_ms": 10}
            )
        }
    )
    caplog.set_level(logging.INFO, logger="streamkit")
    with EventConsumer([topic], charge, settings=settings) as consumer:
        stats = consumer.run(max_messages=2, idle_timeout_s=30, handle_signals=False)
    assert stats.dead_lettered == 2

    records = [r for r in caplog.records if r.name.startswith("streamkit")]
    with_traceback = [r for r in records if r.exc_info]
    assert len(with_traceback) == 1, [r.getMessage() for r in with_traceback]
    (logged,) = with_traceback
    assert logged.levelno == logging.WARNING
    assert "dead-lettering" in logged.getMessage()
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], CardDeclinedError)
    shown = "".join(traceback.format_exception(*logged.exc_info))
    assert 'raise CardDeclinedError(f"card declined for' in shown  # the handler's own line
    retries = [r for r in records if "retrying" in r.getMessage()]
    assert len(retries) == 2  # one line per retry, each without a traceback
    poison = [r for r in records if "dead-lettering" in r.getMessage() and r is not logged]
    assert len(poison) == 1
    assert not poison[0].exc_info  # undecodable: the reason says it all
