"""Idempotent event consumers with dead-lettering.

Each subscription's message is decoded, then applied to its projection in one transaction
with its inbox row: a redelivered or republished event finds its id already there and
changes nothing. Per stream, an event older than the last one applied is out of order and
is dead-lettered rather than applied late.

Failures are sorted by cause:
- the message itself is bad (not JSON, unknown type or version, invalid payload): straight to
  the dead-letter queue with the reason;
- the handler fails: retried in place with backoff, then dead-lettered with the error;
- the database is unreachable: retried until it comes back, never dead-lettered, because
  the message is fine and every other message would fail the same way.
The message is acknowledged only after its effect committed or it sits in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aio_pika
import asyncpg
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from faststream.middlewares import AckPolicy

from shared.contracts import Envelope, decode
from shared.observability import get_logger
from shared.projection import Projection
from shared.topology import Subscription, queue_arguments

log = get_logger("wfh.consumer")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
)


class OutOfOrderError(Exception):
    pass


async def raw_body(message) -> bytes:
    """FastStream decoder handing the handler the body as received, undecoded.

    FastStream's default decoder parses an `application/json` body before the handler runs.
    A body that does not parse then never reaches the handler: with manual acknowledgement it
    is neither acked nor dead-lettered and, at prefetch 1, holds up the whole queue. Our
    handlers parse the body themselves and dead-letter (or answer) what does not parse.
    """
    return message.body


class DeadLetters:
    """Publishes a failed message, untouched, to the dead-letter exchange with the reason."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, exchange_name: str) -> None:
        self._channel = channel
        self._exchange_name = exchange_name

    async def send(self, queue: str, body: bytes, headers: dict, reason: str, **props) -> None:
        exchange = await self._channel.get_exchange(self._exchange_name, ensure=False)
        headers = {k: v for k, v in (headers or {}).items() if not k.startswith("x-death")}
        headers.update(
            {
                "x-wfh-reason": reason[:2000],
                "x-wfh-queue": queue,
                "x-wfh-failed-at": datetime.now(UTC).isoformat(),
            }
        )
        await exchange.publish(
            aio_pika.Message(
                body=body,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type=props.get("content_type") or "application/octet-stream",
                message_id=props.get("message_id"),
                correlation_id=props.get("correlation_id"),
                type=props.get("type"),
            ),
            routing_key=queue,
        )
        log.warning("dead-lettered", queue=queue, reason=reason[:300])


class EventConsumer:
    def __init__(
        self,
        namespace: str,
        subscription: Subscription,
        projection: Projection,
        pool_provider,
        dead_letters: DeadLetters,
        attempts: int = 5,
        backoff_seconds: float = 0.05,
    ) -> None:
        self.namespace = namespace
        self.subscription = subscription
        self.projection = projection
        self.queue = subscription.queue(namespace)
        self._pool = pool_provider
        self._dead_letters = dead_letters
        self._attempts = attempts
        self._backoff = backoff_seconds
        self.applied = 0
        self.duplicates = 0

    def register(self, broker: RabbitBroker) -> None:
        """Subscribe with prefetch 1: aio-pika runs every delivered message as its own task, so
        a larger prefetch would apply a stream's events concurrently and out of order."""
        from faststream.rabbit.schemas import Channel

        queue = RabbitQueue(
            self.queue,
            durable=True,
            declare=False,  # declared with its bindings by shared.topology
            arguments=queue_arguments(self.namespace, self.queue),
        )

        @broker.subscriber(
            queue,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            channel=Channel(prefetch_count=1),
            decoder=raw_body,
            title=self.queue,
            description=f"{self.subscription.service} consumes {', '.join(self.subscription.routing_keys)}",
        )
        async def on_event(msg: RabbitMessage) -> None:
            await self.handle(msg)

    async def handle(self, msg: RabbitMessage) -> None:
        raw = msg.raw_message
        try:
            envelope = Envelope.model_validate_json(msg.body)
            event = decode(envelope)
        except Exception as exc:  # noqa: BLE001 - whatever fails here, the message is at fault
            # (not JSON, unknown type or version, invalid payload, an upcaster choking on it)
            await self._dead_letter(raw, f"undecodable event: {_short(exc)}")
            await msg.ack()
            return
        failures = 0
        while True:
            try:
                await self._apply_once(envelope, event)
                await msg.ack()
                return
            except OutOfOrderError as exc:
                await self._dead_letter(raw, str(exc))
                await msg.ack()
                return
            except TRANSIENT_ERRORS as exc:
                log.warning("database unavailable, retrying", queue=self.queue, error=repr(exc))
                await asyncio.sleep(1.0)
            except Exception as exc:  # the handler itself failed on this event
                failures += 1
                if failures >= self._attempts:
                    await self._dead_letter(
                        raw, f"handler failed {failures} times: {type(exc).__name__}: {exc}"
                    )
                    await msg.ack()
                    return
                await asyncio.sleep(self._backoff * 2 ** (failures - 1))

    async def _apply_once(self, envelope: Envelope, event) -> None:
        consumer = self.subscription.name
        pool = self._pool()
        async with pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                "INSERT INTO inbox (consumer, event_id, stream_id, stream_version, envelope) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING seq",
                consumer,
                envelope.event_id,
                envelope.stream_id,
                envelope.stream_version,
                envelope.model_dump_json(exclude={"global_position"}),
            )
            if seq is None:
                self.duplicates += 1
                return
            if self.subscription.ordered:
                await self._check_order(conn, consumer, envelope)
            await self.projection.apply(conn, envelope, event)
            await self.projection.advance(conn, seq)
        self.applied += 1

    async def _check_order(self, conn, consumer: str, envelope: Envelope) -> None:
        """Per stream, an event older than the last one applied is out of order."""
        last = await conn.fetchval(
            "SELECT version FROM inbox_streams WHERE consumer = $1 AND stream_id = $2 FOR UPDATE",
            consumer,
            envelope.stream_id,
        )
        if last is not None and envelope.stream_version <= last:
            raise OutOfOrderError(
                f"out of order: {envelope.stream_id} v{envelope.stream_version} arrived after v{last}"
            )
        await conn.execute(
            "INSERT INTO inbox_streams (consumer, stream_id, version) VALUES ($1, $2, $3) "
            "ON CONFLICT (consumer, stream_id) DO UPDATE SET version = EXCLUDED.version",
            consumer,
            envelope.stream_id,
            envelope.stream_version,
        )

    async def _dead_letter(self, raw, reason: str) -> None:
        await self._dead_letters.send(
            self.queue,
            raw.body,
            dict(raw.headers or {}),
            reason,
            content_type=raw.content_type,
            message_id=raw.message_id,
            correlation_id=raw.correlation_id,
            type=raw.type,
        )


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text[:500]


__all__ = ["DeadLetters", "EventConsumer", "TRANSIENT_ERRORS", "raw_body"]
