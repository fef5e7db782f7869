"""The outbox relay: publishes a service's stored events to the events exchange in commit order.

The event store is the outbox: events commit in the same transaction as the decision that
produced them, and the relay follows `global_position` with a checkpoint. Publishing is
persistent with publisher confirms; batches follow one another without waiting for the confirms
of those before, and the checkpoint moves only past batches whose every confirm arrived, so a
crash republishes (at-least-once) and never skips.
Only one relay per database publishes at a time (a session advisory lock elects it).

Each append notifies the relay at commit with the position it reached. A service's commands
also hand the events they committed to the relay in their process (`offer`), which publishes
them without reading them back when they follow what it has published: a statement and a
wait for a notification fewer on the way from a command to its consumers. (They announce
their commit first, `expect`: a notification overtaking the offer then reads nothing.)
Anything else (an append by another process or a consumer, events offered out of turn) it
reads from the store.
The checkpoint is written at most every `CHECKPOINT_SECONDS` (and when the relay stops): a
crash republishes what followed it, which consumers drop.

A relay session publishes on one AMQP channel, the one open when it began, never on the channel
a robust connection reopens after a drop: aio-pika's publish on a robust channel waits for the
reopened one, so publishes pending across the drop would land there after events that follow
them (a stream's events first seen out of order). A closed channel fails every publish after
it, and the next session starts again from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
import asyncpg
from opentelemetry import propagate, trace
from pamqp.commands import Basic

from shared.contracts import Envelope
from shared.eventstore import NOTIFY_CHANNEL, EventStore
from shared.observability import get_logger
from shared.settings import DATABASE_SESSION

RELAY_LOCK = 7_0002
CHECKPOINT_SECONDS = 0.2
MAX_OFFERED = 1000  # batches of events offered and not yet taken; more are read from the store
log = get_logger("wfh.relay")


def envelope_properties(envelope: Envelope, headers: dict[str, str]) -> Basic.Properties:
    """An event's AMQP properties (built directly: aio-pika's message object costs a third as
    much again as the publish itself)."""
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=2,  # persistent
        message_id=str(envelope.event_id),
        correlation_id=str(envelope.correlation_id),
        message_type=envelope.event_type,
        app_id=envelope.source,
        headers={
            "event_type": envelope.event_type,
            "schema_version": envelope.schema_version,
            "tenant": envelope.tenant,
            **headers,
        },
    )


def envelope_message(envelope: Envelope, headers: dict[str, str]) -> aio_pika.Message:
    """The event as an aio-pika message (for what publishes through aio-pika's exchanges)."""
    properties = envelope_properties(envelope, headers)
    return aio_pika.Message(
        body=envelope.model_dump_json(exclude={"global_position"}).encode(),
        content_type=properties.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=properties.message_id, correlation_id=properties.correlation_id,
        type=properties.message_type, app_id=properties.app_id, headers=properties.headers,
    )


def publish_envelope(
    channel: aiormq.abc.AbstractChannel, exchange_name: str, envelope: Envelope,
    routing_key: str, headers: dict[str, str],
) -> Awaitable:
    """Publish on this very channel (see the module's note); its confirm is awaited apart.
    Not mandatory: an event no queue is bound to is kept by its store, and a mandatory message
    routed nowhere would come back whole as a basic.return."""
    return channel.basic_publish(
        envelope.model_dump_json(exclude={"global_position"}).encode(), exchange=exchange_name,
        routing_key=routing_key, properties=envelope_properties(envelope, headers), mandatory=False,
    )


@dataclass
class _Sent:
    """A batch published whose confirms may still be on their way."""

    up_to: int  # the global position of its last event
    count: int
    confirms: asyncio.Future  # the publishes' outcomes, exceptions included


def _raise_failed(outcomes: list) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


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
        max_unconfirmed: int = 2000,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
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
        self.read_from_memory = 0  # events published as offered, without reading them back
        # The checkpoint as this relay last read or wrote it, on the connection it holds the
        # relay lock with: no other relay moves it meanwhile, so it is not read again.
        self._checkpoint: tuple[asyncpg.Connection, int] | None = None
        self._max_unconfirmed = max_unconfirmed
        self._checkpoint_seconds = checkpoint_seconds
        self._following = False  # elected, publishing
        self._offered: deque[Sequence[Envelope]] = deque()
        # The highest position appends have notified (inf: a notification that did not say).
        self._notified: float = 0
        # A transaction of this process committing events up to here: their offer follows.
        self._expected = 0

    def expect(self, up_to: int) -> None:
        """A transaction of this process is about to commit events up to position `up_to`
        (0: it did not commit after all). Their notification may arrive before their offer:
        until the offer, it asks for no read (a read that would find what is offered next)."""
        if self._following:
            self._expected = up_to
            if not up_to:
                self._wake.set()

    def offer(self, envelopes: Sequence[Envelope]) -> None:
        """Events this process has just committed, in position order (a batch of commands'
        appends). Ignored unless this relay is the one publishing: their notification reaches
        whichever is."""
        self._expected = 0
        if self._following and envelopes and len(self._offered) < MAX_OFFERED:
            self._offered.append(envelopes)
            self._wake.set()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            position: float = int(payload)
        except ValueError:  # a notification that does not say how far: read to find out
            position = math.inf
        self._notified = max(self._notified, position)
        self._wake.set()

    async def run(self) -> None:
        """Publish forever: elected by advisory lock, woken by NOTIFY, polling as a fallback."""
        while True:
            conn: asyncpg.Connection | None = None
            unconfirmed: deque[_Sent] = deque()
            try:
                # A checkpoint lost with a crash of the database only has events published
                # again (consumers drop copies): its writes need not wait for the disk.
                conn = await asyncpg.connect(self._database_url, server_settings={
                    **DATABASE_SESSION, "synchronous_commit": "off"})
                while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                    await asyncio.sleep(self._poll_seconds)
                self._checkpoint, self._notified, self._expected = None, 0, 0
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                channel = await self._channel.get_underlay_channel()
                self._following = True
                await self._follow(conn, channel, unconfirmed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database gone: resume from the checkpoint
                log.warning("relay interrupted, resuming", error=repr(exc))
                await asyncio.sleep(min(self._poll_seconds, 1.0))
            finally:
                self._following = False
                self._offered.clear()
                for sent in unconfirmed:
                    sent.confirms.cancel()
                if conn is not None and not conn.is_closed():
                    conn.terminate()

    async def _follow(
        self, conn: asyncpg.Connection, channel: aiormq.abc.AbstractChannel, unconfirmed: deque[_Sent],
    ) -> None:
        """Publish each batch as soon as it is offered or read, without waiting for the
        confirms of the batches before it (a confirm comes back once RabbitMQ has written the
        message: a round the events behind would otherwise wait for). The checkpoint follows
        the batches confirmed, in order, written at most every `checkpoint_seconds`."""
        checkpoint = await self._read_checkpoint(conn)  # confirmed up to here
        published, in_flight = checkpoint, 0
        more = True  # there may be events to read: at the start, after a NOTIFY, a full batch, a poll
        read_at = time.monotonic()
        write_by: float | None = None  # when the checkpoint confirmed must be written at the latest
        try:
            while True:
                self._wake.clear()  # what woke it is in `_offered` and `_notified`
                while unconfirmed and unconfirmed[0].confirms.done():
                    sent = unconfirmed.popleft()
                    _raise_failed(sent.confirms.result())  # the caller resumes from the checkpoint
                    checkpoint, in_flight = sent.up_to, in_flight - sent.count
                    self.published += sent.count
                if self._offered:
                    published, in_flight = self._publish_offered(channel, unconfirmed, published, in_flight)
                if self._notified > max(published, self._expected):
                    more = True
                full = in_flight >= self._max_unconfirmed
                if more and not full:
                    envelopes = await self._store.read_all(conn, published, self._batch_size)
                    read_at = time.monotonic()
                    more = len(envelopes) == self._batch_size
                    if envelopes:
                        unconfirmed.append(sent := self._publish(channel, envelopes))
                        published, in_flight = sent.up_to, in_flight + sent.count
                        full = in_flight >= self._max_unconfirmed
                    elif self._notified > published:
                        self._notified = published  # notified of nothing committed: a rollback's position
                now = time.monotonic()
                if checkpoint > self._checkpoint[1]:
                    write_by = write_by or now + self._checkpoint_seconds
                    if now >= write_by:
                        await self._write_checkpoint(conn, checkpoint)
                        write_by = None
                        continue
                if more and not full:
                    continue
                poll_at = read_at + self._poll_seconds
                woken = asyncio.ensure_future(self._wake.wait())
                waits = [woken, unconfirmed[0].confirms] if unconfirmed else [woken]
                try:
                    await asyncio.wait(waits, timeout=max(0.0, min(poll_at, write_by or poll_at) - now),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if time.monotonic() >= poll_at:
                    more = True  # the fallback for a NOTIFY missed
        except asyncio.CancelledError:
            # Stopping: what was confirmed is not published again by the next relay.
            if checkpoint > self._checkpoint[1] and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._write_checkpoint(conn, checkpoint), 1.0)
            raise

    def _publish_offered(self, channel: aiormq.abc.AbstractChannel, unconfirmed: deque[_Sent],
                         published: int, in_flight: int) -> tuple[int, int]:
        """Publish the events offered that follow `published` without reading them (positions
        follow commit order, so all before them are committed and published); drop those read
        already. Events offered after a gap (an append of another process or a consumer) are
        left to reading, which their notification asks for."""
        while self._offered and in_flight < self._max_unconfirmed:
            envelopes = self._offered.popleft()
            first, last = envelopes[0].global_position, envelopes[-1].global_position
            if last <= published:
                continue
            if first > published + 1:
                self._offered.clear()
                self._notified = max(self._notified, last)
                break
            sent = self._publish(channel, envelopes[published + 1 - first:])
            unconfirmed.append(sent)
            self.read_from_memory += sent.count
            published, in_flight = sent.up_to, in_flight + sent.count
        return published, in_flight

    async def publish_batch(self, conn: asyncpg.Connection, channel: aiormq.abc.AbstractChannel | None = None) -> int:
        """One step on its own: publish the next batch, await its confirms, move the checkpoint."""
        if channel is None:
            channel = await self._channel.get_underlay_channel()
        checkpoint = await self._read_checkpoint(conn)
        envelopes = await self._store.read_all(conn, checkpoint, self._batch_size)
        if not envelopes:
            return 0
        sent = self._publish(channel, envelopes)
        _raise_failed(await sent.confirms)
        await self._write_checkpoint(conn, sent.up_to)
        self.published += sent.count
        return sent.count

    def _publish(self, channel: aiormq.abc.AbstractChannel, envelopes: list[Envelope]) -> _Sent:
        """Publish `envelopes` in order (one channel keeps it) and gather their confirms."""
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
                confirms.append(publish_envelope(channel, self._exchange_name, env, env.routing_key, headers))
        return _Sent(envelopes[-1].global_position, len(envelopes),
                     asyncio.gather(*confirms, return_exceptions=True))

    async def _read_checkpoint(self, conn: asyncpg.Connection) -> int:
        if self._checkpoint is None or self._checkpoint[0] is not conn:
            position = await conn.fetchval(
                "SELECT coalesce((SELECT position FROM relay_checkpoint WHERE relay = $1), 0)",
                self._name,
            )
            self._checkpoint = (conn, position)
        return self._checkpoint[1]

    async def _write_checkpoint(self, conn: asyncpg.Connection, position: int) -> None:
        await conn.execute(
            "INSERT INTO relay_checkpoint (relay, position) VALUES ($1, $2) "
            "ON CONFLICT (relay) DO UPDATE SET position = EXCLUDED.position",
            self._name,
            position,
        )
        self._checkpoint = (conn, position)

    async def lag(self, conn: asyncpg.Connection) -> int:
        head = await self._store.head_position(conn)
        checkpoint = await conn.fetchval(
            "SELECT coalesce((SELECT position FROM relay_checkpoint WHERE relay = $1), 0)", self._name
        )
        return head - checkpoint

