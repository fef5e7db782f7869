"""Acknowledgements sent together, against the real RabbitMQ: a quorum queue (as the services'
queues are) takes one `multiple` ack for deliveries handled together, and deliveries whose
ack had not gone out when the connection was lost come back."""

from __future__ import annotations

import uuid

import aio_pika
import pytest

from shared.acks import AckCoalescer
from tests.integration.backbone_helpers import AMQP_URL, eventually

pytestmark = pytest.mark.integration


async def _consume_all(queue_name: str, acks: AckCoalescer, expected: int):
    """A consumer acknowledging through `acks`, once it has received `expected` deliveries."""
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=50)
    queue = await channel.get_queue(queue_name)
    received: list = []

    async def on_message(message) -> None:
        received.append(message)
        await acks.ack(message)

    await queue.consume(on_message)
    await eventually(lambda: len(received) == expected, what=f"{expected} deliveries")
    return connection, received


async def _waiting_in(queue_name: str) -> int:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count


async def test_deliveries_are_acknowledged_together_and_come_back_if_the_ack_never_went(run_id):
    queue_name = f"test{run_id}.acks.{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        for i in range(5):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue_name)
    try:
        # The process is gone before the acknowledgements went out: every delivery comes back.
        slow = AckCoalescer(delay=30.0)
        connection, received = await _consume_all(queue_name, slow, 5)
        await connection.close()
        assert slow.frames == 0
        await eventually(lambda: _waiting_in(queue_name), what="the deliveries back in the queue")
        assert await _waiting_in(queue_name) == 5

        # Handled together: one frame acknowledges the five, and the queue keeps none of them.
        acks = AckCoalescer(delay=0.05)
        connection, received = await _consume_all(queue_name, acks, 5)
        assert all(m.redelivered for m in received)
        await eventually(lambda: acks.frames == 1, what="the acknowledgement sent")
        await connection.close()
        assert await _waiting_in(queue_name) == 0
        assert acks.frames == 1
    finally:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            await channel.queue_delete(queue_name)
