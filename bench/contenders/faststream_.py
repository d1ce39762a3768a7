"""FastStream (confluent backend): a KafkaBroker publisher and a subscriber.

FastStream has no Avro support of its own, so it gets the floor's hand-written
encoder and decoder (the fastest available); what is measured is the framework's own
cost. Publishing uses ``no_confirm=True`` and then awaits every returned delivery
future (awaiting each publish in turn would make it one round trip per record). The
subscriber uses ``AckPolicy.ACK``: the offset is committed after the handler, the
at-least-once contract streamkit keeps (FastStream's default, ``ACK_FIRST``, relies on
auto-commit before handling).

In the I/O-bound phase the handler awaits ``asyncio.sleep`` and the subscriber runs
with FastStream's one concurrency option, ``max_workers``: FastStream refuses it with
any acknowledgement policy but ``ACK_FIRST``, so that contender commits (auto-commit)
before handling: at most once, a weaker contract than streamkit's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from bench.common import (
    Clock,
    Env,
    Stopwatch,
    Timing,
    avro_decoder,
    avro_encoder,
    envelope,
    headers,
    payloads,
    register,
)


def _broker(env: Env) -> Any:
    from faststream.confluent import KafkaBroker

    # Same producer semantics as every contender: idempotent, acks=all, linger 5 ms.
    return KafkaBroker(
        env.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        log_level=logging.DEBUG,  # per-message logs off, as in production
        config={"batch.size": 1_000_000},
    )


def produce(env: Env, topic: str, count: int, warmup: int) -> Timing:
    return asyncio.run(_produce(env, topic, count, warmup))


async def _produce(env: Env, topic: str, count: int, warmup: int) -> Timing:
    encode = avro_encoder(*register(env, topic))
    records = payloads(warmup + count)
    broker = _broker(env)
    publisher = broker.publisher(topic)
    async with broker:
        await broker.start()

        async def publish(index: int) -> Any:
            record = envelope(records[index])
            return await publisher.publish(
                encode(record),
                key=str(index).encode(),
                headers={name: value.decode() for name, value in headers(record)},
                no_confirm=True,
            )

        await asyncio.gather(*[await publish(i) for i in range(warmup)])
        watch = Stopwatch()
        watch.start()
        pending = [await publish(i) for i in range(warmup, warmup + count)]
        await asyncio.gather(*pending)  # raises on the first failed delivery
        return watch.stop(count)


def consume(
    env: Env,
    topic: str,
    count: int,
    warmup: int,
    handler_wait_s: float = 0.0,
    max_workers: int = 1,
) -> Timing:
    return asyncio.run(_consume(env, topic, count, warmup, handler_wait_s, max_workers))


async def _consume(
    env: Env, topic: str, count: int, warmup: int, handler_wait_s: float, max_workers: int
) -> Timing:
    from faststream import AckPolicy

    decode_value = avro_decoder(env)
    broker = _broker(env)
    clock = Clock(warmup, count)
    done = asyncio.Event()

    async def decoder(message: Any) -> Any:
        return decode_value(message.body)

    concurrent = {"max_workers": max_workers} if max_workers > 1 else {}

    @broker.subscriber(
        topic,
        group_id=f"faststream-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST if max_workers > 1 else AckPolicy.ACK,
        decoder=decoder,
        **concurrent,
    )
    async def handle(_order: Any) -> None:
        if handler_wait_s:
            await asyncio.sleep(handler_wait_s)
        if clock.tick():
            done.set()

    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), 600)
    return clock.timing("faststream")
