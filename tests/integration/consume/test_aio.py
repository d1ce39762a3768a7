"""AsyncEventConsumer: a coroutine handler on the service's loop, same guarantees."""

from __future__ import annotations

import asyncio

import pytest

from streamkit.consume.aio import AsyncEventConsumer
from streamkit.produce.producer import EventProducer
from streamkit.serde.events import Event
from streamkit.settings import StreamkitSettings
from streamkit.testing.plugin import TopicFactory
from tests.factories import ORDER_SCHEMA, order


@pytest.mark.broker_less
def test_async_handler_runs_on_the_loop_and_failures_are_dead_lettered(
    streamkit_settings: StreamkitSettings, producer: EventProducer, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(partitions=2)
    sent = [
        producer.send(topic, order(i), key=str(i), schema=ORDER_SCHEMA).result(30).event_id
        for i in range(30)
    ]
    failing = sent[7]
    settings = streamkit_settings.model_copy(
        update={
            "consumer": streamkit_settings.consumer.model_copy(
                update={"retry_backoff_ms": 5, "max_retries": 1}
            )
        }
    )

    async def main() -> tuple[list[str], AsyncEventConsumer, set[int]]:
        handled: list[str] = []
        loops: set[int] = set()
        running = asyncio.get_running_loop()

        async def handle(event: Event) -> None:
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0)  # a real await inside the handler
            if event.id == failing:
                raise ValueError("cannot price this order")
            handled.append(event.id)

        async def stop_when_settled() -> None:
            # The failing event waits for its retry while the others flow.
            while not (len(handled) == len(sent) - 1 and consumer.stats.dead_lettered == 1):
                await asyncio.sleep(0.02)
            consumer.stop()

        async with AsyncEventConsumer([topic], handle, settings=settings) as consumer:
            watcher = asyncio.create_task(stop_when_settled())
            await asyncio.wait_for(consumer.run(handle_signals=False), timeout=60)
            await watcher
        assert loops == {id(running)}
        return handled, consumer, loops

    handled, consumer, _ = asyncio.run(main())
    assert sorted(handled) == sorted(set(sent) - {failing})
    assert consumer.stats.dead_lettered == 1
    assert consumer.stats.retries == 1
