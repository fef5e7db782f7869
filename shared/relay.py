"""The outbox relay: publishes a service's stored events to the events exchange in commit order.

The event store is the outbox: events commit in the same transaction as the decision that
produced them, and the relay follows `global_position` with a checkpoint. Publishing is
persistent with publisher confirms, awaited per batch; the checkpoint moves only after every
confirm of the batch arrived, so a crash republishes (at-least-once) and never skips.
Only one relay per database publishes at a time (a session advisory lock elects it).
"""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
from opentelemetry import propagate, trace

from shared.contracts import Envelope
from shared.eventstore import NOTIFY_CHANNEL, EventStore
from shared.observability import get_logger

RELAY_LOCK = 7_0002
log = get_logger("wfh.relay")


def envelope_message(envelope: Envelope, headers: dict[str, str]) -> aio_pika.Message:
    body = envelope.model_dump_json(exclude={"global_position"}).encode()
    return aio_pika.Message(
        body=body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.event_id),
        correlation_id=str(envelope.correlation_id),
        type=envelope.event_type,
        app_id=envelope.source,
        headers={
            "event_type": envelope.event_type,
            "schema_version": envelope.schema_version,
            "tenant": envelope.tenant,
            **headers,
        },
    )


class OutboxRelay:
    def __init__(
        self,
        database_url: str,
        channel: aio_pika.abc.AbstractChannel,
        exchange_name: str,
        store: EventStore,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        name: str = "events",
    ) -> None:
        self._database_url = database_url
        self._channel = channel
        self._exchange_name = exchange_name
        self._store = store
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._name = name
        self._wake = asyncio.Event()
        self._tracer = trace.get_tracer("wfh.relay")
        self.published = 0
        # The checkpoint as this relay last read or wrote it, on the connection it holds the
        # relay lock with: no other relay moves it meanwhile, so it is not read again.
        self._checkpoint: tuple[asyncpg.Connection, int] | None = None

    async def run(self) -> None:
        """Publish forever: elected by advisory lock, woken by NOTIFY, polling as a fallback."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._database_url)
                while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                    await asyncio.sleep(self._poll_seconds)
                self._checkpoint = None
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                exchange = await self._channel.get_exchange(self._exchange_name, ensure=False)
                while True:
                    self._wake.clear()
                    if await self.publish_batch(conn, exchange) == 0:
                        try:
                            await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
                        except TimeoutError:
                            pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database gone: resume from the checkpoint
                log.warning("relay interrupted, resuming", error=repr(exc))
                await asyncio.sleep(min(self._poll_seconds, 1.0))
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    async def publish_batch(self, conn: asyncpg.Connection, exchange=None) -> int:
        if exchange is None:
            exchange = await self._channel.get_exchange(self._exchange_name, ensure=False)
        if self._checkpoint is not None and self._checkpoint[0] is conn:
            checkpoint = self._checkpoint[1]
        else:
            checkpoint = await conn.fetchval(
                "SELECT coalesce((SELECT position FROM relay_checkpoint WHERE relay = $1), 0)",
                self._name,
            )
            self._checkpoint = (conn, checkpoint)
        envelopes = await self._store.read_all(conn, checkpoint, self._batch_size)
        if not envelopes:
            return 0
        confirms = []
        for env in envelopes:
            parent = propagate.extract(env.trace_context)
            with self._tracer.start_span(
                f"{env.routing_key} publish", context=parent, kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": self._exchange_name,
                    "messaging.message.id": str(env.event_id),
                },
            ) as span:
                headers: dict[str, str] = {}
                propagate.inject(headers, context=trace.set_span_in_context(span, parent))
                confirms.append(exchange.publish(envelope_message(env, headers), routing_key=env.routing_key))
        # Confirms awaited together: a batch costs one round of waiting, not one per event.
        await asyncio.gather(*confirms)
        await conn.execute(
            "INSERT INTO relay_checkpoint (relay, position) VALUES ($1, $2) "
            "ON CONFLICT (relay) DO UPDATE SET position = EXCLUDED.position",
            self._name,
            envelopes[-1].global_position,
        )
        self._checkpoint = (conn, envelopes[-1].global_position)
        self.published += len(envelopes)
        return len(envelopes)

    async def lag(self, conn: asyncpg.Connection) -> int:
        head = await self._store.head_position(conn)
        checkpoint = await conn.fetchval(
            "SELECT coalesce((SELECT position FROM relay_checkpoint WHERE relay = $1), 0)", self._name
        )
        return head - checkpoint

