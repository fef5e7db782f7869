"""Helpers for the backbone's integration tests: polling with deadlines, a tap on the events
exchange, reading dead-letter queues, a migrated private database."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg

from shared.contracts import roster as ro
from shared.eventstore import AppendContext, EventStore
from shared.migrations import migrate

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TENANT = "so-tttt-thanhhoa"


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `check` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


async def private_database(system, name: str) -> str:
    """A database of this test only, with the backbone schema; dropped by `system.close()`."""
    url = system.settings(name).database_url
    await migrate(url, None)
    return url


def context(actor: str = "it-admin") -> AppendContext:
    return AppendContext(tenant=TENANT, actor=actor, correlation_id=uuid.uuid4())


def division(i: int | str, name: str | None = None) -> ro.DivisionCreated:
    return ro.DivisionCreated(division_id=f"d{i}", name=name or f"Phòng số {i}", kind="division")


async def append_committed(
    url_or_conn: str | asyncpg.Connection, stream_id: str, expected: int, events: list,
    store: EventStore | None = None,
):
    store = store or EventStore("roster")
    conn = await asyncpg.connect(url_or_conn) if isinstance(url_or_conn, str) else url_or_conn
    try:
        async with conn.transaction():
            return await store.append(conn, stream_id, expected, events, context())
    finally:
        if isinstance(url_or_conn, str):
            await conn.close()


class Tap:
    """An exclusive queue bound to the namespace's events exchange with `#`: every event
    published there, in arrival order, with the AMQP properties it carried."""

    def __init__(self, namespace: str, binding: str = "#") -> None:
        self.exchange_name = f"{namespace}.events"
        self.binding = binding
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> Tap:
        self._connection = await aio_pika.connect(AMQP_URL)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=self.binding)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.messages.append(message)
            await message.ack()

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._connection is not None:
            await self._connection.close()  # the exclusive queue goes with it

    @property
    def envelopes(self) -> list[dict]:
        return [json.loads(m.body) for m in self.messages]

    def event_ids(self) -> list[str]:
        return [e["event_id"] for e in self.envelopes]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        await eventually(lambda: len(self.messages) >= count, timeout, what=f"{count} messages")
        return self.envelopes


async def drain_queue(queue_name: str, expected: int, timeout: float = 10.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take (and ack) messages from a queue until `expected` were read or the deadline passes;
    then make sure no more arrive for a moment."""
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=True)

        async def take() -> bool:
            while True:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    return len(messages) >= expected
                messages.append(message)

        await eventually(take, timeout, what=f"{expected} messages in {queue_name}")
        await asyncio.sleep(0.2)
        await take()
    finally:
        await connection.close()
    return messages
