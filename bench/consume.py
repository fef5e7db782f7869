"""What consuming one message costs a process, by the stack it goes through
(`python -m bench.consume`, about a minute; not part of `make bench`).

Each variant reads the same messages (a command-sized body with a `traceparent` header) from a
queue of its own, acknowledges each, and reports the process's CPU time per message:

- `aio-pika`: a plain aio-pika consumer, the floor;
- `aio-pika + span`: the same with a consumer span from the message's trace context: how event
  consumers take their deliveries once past their careful start (`EventConsumer._deliver`);
- `FastStream (its telemetry, FastDepends)`: how the services subscribed before: FastStream's
  `RabbitTelemetryMiddleware` and FastDepends resolving the handler's arguments per message;
- `FastStream (our span, no FastDepends)`: how the command queues subscribe, and event consumers
  during their careful start (`shared.runtime.service_broker`: `shared.observability.consume_spans`,
  `apply_types=False`).

Spans are made but not recorded, as in a service that exports nothing (the benchmark's case).
Queues are named `bench-consume-<run>-<variant>` and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time

import aio_pika
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.schemas import Channel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from bench.common import AMQP_URL, RUN_ID
from shared.consumer import current_message, raw_body
from shared.observability import CONSUME_TRACER, consume_span
from shared.runtime import service_broker

MESSAGES = int(os.environ.get("BENCH_CONSUME_MESSAGES", "20000"))
BODY = b'{"type": "DeclareHealth", "payload": {"status": "well"}, "token": "' + b"x" * 200 + b'"}'
HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
PROVIDER = TracerProvider(sampler=ALWAYS_OFF)


async def _fill(channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
    await channel.declare_queue(queue, durable=False)
    for _ in range(MESSAGES):
        await channel.default_exchange.publish(aio_pika.Message(BODY, headers=HEADERS), routing_key=queue)


async def _aio_pika(queue: str, done: asyncio.Event, count: list[int], span: bool) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(100)
    tracer = PROVIDER.get_tracer(CONSUME_TRACER)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if span:
            with consume_span(tracer, message):
                await message.ack()
        else:
            await message.ack()
        _counted(done, count)

    await (await channel.get_queue(queue)).consume(on_message)
    await done.wait()
    await connection.close()


async def _faststream(queue: str, done: asyncio.Event, count: list[int], ours: bool) -> None:
    broker = (service_broker(AMQP_URL, PROVIDER) if ours else
              RabbitBroker(AMQP_URL, logger=None, middlewares=[RabbitTelemetryMiddleware(tracer_provider=PROVIDER)]))
    context = broker.context
    subscriber = broker.subscriber(RabbitQueue(queue, declare=False), ack_policy=AckPolicy.MANUAL,
                                   no_reply=True, channel=Channel(prefetch_count=100), decoder=raw_body)

    @subscriber
    async def on_message(body: bytes) -> None:
        await current_message(context).ack()
        _counted(done, count)

    await broker.start()
    await done.wait()
    await broker.stop()


def _counted(done: asyncio.Event, count: list[int]) -> None:
    count[0] += 1
    if count[0] == MESSAGES:
        done.set()


VARIANTS = {
    "aio-pika": lambda q, d, c: _aio_pika(q, d, c, span=False),
    "aio-pika + span": lambda q, d, c: _aio_pika(q, d, c, span=True),
    "FastStream (its telemetry, FastDepends)": lambda q, d, c: _faststream(q, d, c, ours=False),
    "FastStream (our span, no FastDepends)": lambda q, d, c: _faststream(q, d, c, ours=True),
}


async def main() -> None:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=False)
    print(f"{'consumer':42} {'CPU us/message':>14} {'messages/s':>11}")
    try:
        for n, (name, consume) in enumerate(VARIANTS.items()):
            queue = f"bench-consume-{RUN_ID}-{n}"
            await _fill(channel, queue)
            done, count = asyncio.Event(), [0]
            cpu, wall = time.process_time(), time.perf_counter()
            await consume(queue, done, count)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"{name:42} {1e6 * cpu / MESSAGES:14.0f} {MESSAGES / wall:11.0f}", flush=True)
    finally:
        for n in range(len(VARIANTS)):
            await channel.queue_delete(f"bench-consume-{RUN_ID}-{n}")
        await connection.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
