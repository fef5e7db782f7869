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
import contextlib
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.schemas import Channel
from opentelemetry import context as otel_context
from opentelemetry import trace

from shared.acks import AckCoalescer
from shared.contracts import Envelope, decode
from shared.observability import CONSUME_TRACER, consume_span, get_logger
from shared.eventstore import together
from shared.projection import BatchedWrites, NoConnection, Projection
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


# What the consumer's own bookkeeping writes: a projection writing them cannot share its statement.
_BOOKKEEPING_TABLES = frozenset({"inbox", "inbox_streams", "projection_checkpoints"})

# How long released messages may wait for an earlier delivery to reach the consumer (FastStream
# hands them over within milliseconds; a delivery it drops, e.g. while stopping, never comes).
GAP_SECONDS = 2.0


class OutOfOrderError(Exception):
    pass


class _BatchFailed(Exception):
    """A handler failed in a batch (on `arrival`, or None when the inbox changed underneath)."""

    def __init__(self, arrival: _Arrival | None) -> None:
        super().__init__("batch failed")
        self.arrival = arrival


@dataclass(slots=True)
class _Arrival:
    """A delivered message, the trace context of FastStream's consumer span for it, and the
    future its handler waits on."""

    message: aio_pika.abc.AbstractIncomingMessage
    context: otel_context.Context
    done: asyncio.Future


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
    """One subscription's consumer: a FastStream subscriber on its own channel whose messages are
    applied strictly in delivery order, in batches.

    aio-pika runs each delivered message as its own task, and these reach our code in no
    guaranteed order (seen: tag 108 before 107). The handler (FastStream's during the careful
    start, `_deliver` after it) only hands the message, with the trace context of its consumer
    span, to a reorder buffer and waits until it is applied, so the span covers the work. The
    buffer releases messages in delivery-tag order: the channel is this consumer's alone, so
    its tags run 1, 2, 3... without gaps (a restored channel starts again at 1). A single
    worker task takes what has been released, in that order, as one batch:
    - a batch of one is applied exactly as described at the top of this module: its inbox row
      and projection change in one transaction (mostly a single statement), retried or
      dead-lettered on its own;
    - a larger batch is applied in one transaction: its duplicates and out-of-order events
      are found with one read of the inbox and of the streams' last applied versions (the
      same checks, made in delivery order), the new inbox rows are written with one
      statement in delivery order (so `seq`, which rebuilds replay, follows it), then each
      event's projection change in order, under its own message's trace context, then the
      checkpoint. Out-of-order events are dead-lettered after the commit; the batch is
      acknowledged only after it committed. Should a handler fail, nothing of the batch is
      kept and its messages are applied again one by one, each with the retries and
      dead-lettering above.
    Prefetch bounds the batch. A consumer starts careful, with prefetch 1, and moves to its
    full prefetch only once it has applied a message that was not a redelivery: after a crash,
    the messages it had in hand come back one at a time, so a message that crashes the process
    is the only one whose deliveries count towards the queue's delivery limit.
    """

    def __init__(
        self,
        namespace: str,
        subscription: Subscription,
        projection: Projection,
        pool_provider,
        dead_letters: DeadLetters,
        attempts: int = 5,
        backoff_seconds: float = 0.05,
        prefetch: int = 200,
        acks: AckCoalescer | None = None,
    ) -> None:
        self.namespace = namespace
        self.subscription = subscription
        self.projection = projection
        self.queue = subscription.queue(namespace)
        self._pool = pool_provider
        self._dead_letters = dead_letters
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._prefetch = max(1, prefetch)
        self._acks = acks or AckCoalescer(delay=0)
        self._arrived: asyncio.Queue[_Arrival] = asyncio.Queue()  # released, in delivery order
        self._early: dict[int, _Arrival] = {}  # arrived before a message delivered earlier
        self._channel_id: int | None = None
        self._next_tag = 1
        self._subscriber = None
        self._careful = True
        self._worker: asyncio.Task | None = None
        self._held: asyncpg.Connection | None = None
        self._schema = None  # what `BatchedWrites` needs of the database's tables, read once
        self._tracer = trace.get_tracer(CONSUME_TRACER)  # the provider set up before (`tracer_provider`)
        self.applied = 0
        self.applied_in_one_statement = 0
        self.duplicates = 0
        self.largest_batch = 0
        self.batches = 0  # deliveries taken together (one or many)

    def register(self, broker: RabbitBroker) -> None:
        queue = RabbitQueue(
            self.queue,
            durable=True,
            declare=False,  # declared with its bindings by shared.topology
            arguments=queue_arguments(self.namespace, self.queue),
        )
        self._subscriber = broker.subscriber(
            queue,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            # A channel of its own (FastStream keys channels by this object): its delivery
            # tags are this consumer's alone, and its prefetch can change (`_speed_up`).
            channel=Channel(prefetch_count=1),
            decoder=raw_body,
            title=self.queue,
            description=f"{self.subscription.service} consumes {', '.join(self.subscription.routing_keys)}",
        )

        context = broker.context

        @self._subscriber
        async def on_event(_body: Any) -> None:
            await self._arrive(current_message(context))

    async def _deliver(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """A delivery after the careful start: to `_arrive` inside its consumer span, as
        FastStream's handler hands it, without FastStream's per-message stack around it (about a
        third of what a delivery costs a consumer, `python -m bench.consume`; a consumer takes
        every event, and `directory_changes` four times over). Its careful start, stop and
        channel stay FastStream's: as its own handlers do, a delivery is not taken once it
        stops, and one under way holds its stop (`graceful_timeout`) until it is applied."""
        sub = self._subscriber
        if not sub.running:  # stopping: back to the queue with the channel
            return
        with sub.lock, consume_span(self._tracer, message):
            await self._arrive(message)

    async def _arrive(self, message) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"consumer-{self.queue}")
        arrival = _Arrival(message, otel_context.get_current(), asyncio.get_running_loop().create_future())
        if id(message.channel) != self._channel_id:  # a new or restored channel: tags restart
            self._release_early()
            self._channel_id, self._next_tag = id(message.channel), 1
        if message.delivery_tag < self._next_tag:  # given up for lost, and here after all
            self._arrived.put_nowait(arrival)
        else:
            self._early[message.delivery_tag] = arrival
        while (ready := self._early.pop(self._next_tag, None)) is not None:
            self._arrived.put_nowait(ready)
            self._next_tag += 1
        await asyncio.shield(arrival.done)

    def _release_early(self) -> None:
        """Release what waits for a message that is not coming (its channel was lost, or it was
        never handed over): in tag order, the best order known. A channel that stays open goes on
        counting after the last one released: awaited from 1 again, each later delivery would
        wait for another gap."""
        for tag in sorted(self._early):
            self._arrived.put_nowait(self._early.pop(tag))
            self._next_tag = tag + 1

    async def stop(self) -> None:
        """After the broker stopped (FastStream let the handlers under way finish): the worker
        and the connection it holds."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._release_early()
        while not self._arrived.empty():  # not applied nor acknowledged: back to the queue
            _settle(self._arrived.get_nowait())
        await self._give_back()

    async def _work(self) -> None:
        while True:
            try:
                batch = [await asyncio.wait_for(self._arrived.get(), GAP_SECONDS)]
            except TimeoutError:
                if self._early:
                    log.warning("a delivery never reached the consumer; going on without it",
                                queue=self.queue, missing_tag=self._next_tag, waiting=len(self._early))
                    self._release_early()
                continue
            while len(batch) < self._prefetch and not self._arrived.empty():
                batch.append(self._arrived.get_nowait())
            self.largest_batch = max(self.largest_batch, len(batch))
            self.batches += 1
            try:
                await self._handle_batch(batch)
            except asyncio.CancelledError:
                for arrival in batch:
                    _settle(arrival)
                raise
            except Exception:  # noqa: BLE001 - e.g. the dead-letter exchange or channel failing
                log.exception("consumer batch failed; its messages not acknowledged go back to "
                              "the queue", queue=self.queue)
                for arrival in batch:
                    # One handed to the acknowledgements was applied, and may be acknowledged
                    # already by a `multiple` ack: a reject of it would close the channel.
                    try:
                        if not arrival.message.processed and not self._acks.owns(arrival.message):
                            self._acks.settled(arrival.message)
                            await arrival.message.nack(requeue=True)
                    except Exception:  # noqa: BLE001 - channel gone: redelivered anyway
                        pass
                    finally:
                        _settle(arrival)
                continue
            for arrival in batch:
                _settle(arrival)

    async def _ack(self, message) -> None:
        """Acknowledge a handled message; the first one handled that was not a redelivery ends
        the careful start (`_speed_up`), which acknowledges it."""
        if self._careful and not message.redelivered:
            self._careful = False
            await self._speed_up(message)
            return
        if self._careful:  # at prefetch 1 nothing more comes until this one is acknowledged
            await self._acks.now(message)
            return
        await self._acks.ack(message)

    async def _ack_all(self, arrivals: list[_Arrival], handled: list) -> None:
        """Acknowledge the messages of a batch handled (the undecodable ones among `arrivals`
        are acknowledged already): together with those of the batches around it (`AckCoalescer`),
        or, acknowledging at once, with one frame when the batch holds consecutive tags of one
        channel, as the in-order release gives, since every earlier tag was acknowledged with
        an earlier batch; else one by one."""
        tags = [a.message.delivery_tag for a in arrivals]
        if (self._acks.immediate and not self._careful and len({id(a.message.channel) for a in arrivals}) == 1
                and max(tags) - min(tags) + 1 == len(tags)):
            await handled[-1].ack(multiple=True)
            return
        for message in handled:
            await self._ack(message)

    async def _speed_up(self, held) -> None:
        """From prefetch 1 to the full prefetch. RabbitMQ applies a prefetch to consumers created
        after it, so the subscriber consumes anew on its channel, through `_deliver`. The careful
        consumer is cancelled while the message it holds is not yet acknowledged: its prefetch of
        1 is then full, so no other message is on its way to it (a quorum queue puts a message
        delivered to a cancelled consumer back at the end of the queue: out of order).
        FastStream 0.7 has no public call for this: the queue object and consumer tag its
        `start` sets (and its `stop` uses) are reused the same way."""
        sub = self._subscriber
        self._acks.settled(held)
        if self._prefetch == 1 or sub is None or sub._queue_obj is None:
            await held.ack()
            return
        queue = sub._queue_obj
        try:
            await queue.cancel(sub._consumer_tag)
        except Exception as exc:  # noqa: BLE001 - consume again below in any case
            log.warning("cancelling the careful consumer failed", queue=self.queue, error=repr(exc))
        await held.ack()
        while sub._queue_obj is queue:  # never left without a consumer while running
            try:
                await queue.channel.set_qos(prefetch_count=self._prefetch)
                sub._consumer_tag = await queue.consume(self._deliver, no_ack=False, arguments=sub.consume_args)
                return
            except Exception as exc:  # noqa: BLE001 - the channel is being restored: try again
                log.warning("consuming at full prefetch failed, retrying", queue=self.queue, error=repr(exc))
                await asyncio.sleep(1.0)

    async def _handle_batch(self, arrivals: list[_Arrival]) -> None:
        decoded = []
        for arrival in arrivals:
            message = arrival.message
            try:
                envelope = Envelope.model_validate_json(message.body)
                decoded.append((arrival, envelope, decode(envelope)))
            except Exception as exc:  # noqa: BLE001 - whatever fails here, the message is at fault
                # (not JSON, unknown type or version, invalid payload, an upcaster choking on it)
                await self._dead_letter(message, f"undecodable event: {_short(exc)}")
                await self._ack(message)
                continue
        if len(decoded) == 1:
            await self._handle_one(*decoded[0])
            return
        while decoded:
            try:
                with _within(decoded[0][0]):  # the batch's own statements: the first one's trace
                    refused = [] if await self._apply_in_one_round_trip(decoded) else await self._apply_batch(decoded)
            except TRANSIENT_ERRORS as exc:
                log.warning("database unavailable, retrying", queue=self.queue, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # noqa: BLE001 - a handler, or the batch's own statements
                # Nothing of the batch was kept: each message again on its own, in order, which
                # finds the one at fault (a handler's, or one the database cannot store). Given
                # back to the queue instead, the batch would come back behind later messages.
                failing = exc.arrival if isinstance(exc, _BatchFailed) else None
                if not isinstance(exc, _BatchFailed):
                    log.warning("consumer batch failed; applying its messages one by one",
                                queue=self.queue, error=_short(exc))
                for arrival, envelope, event in decoded:
                    await self._handle_one(arrival, envelope, event, failures=1 if arrival is failing else 0)
                return
            for arrival, reason in refused:
                await self._dead_letter(arrival.message, reason)
            await self._ack_all(arrivals, [arrival.message for arrival, _, _ in decoded])
            return

    async def _apply_batch(self, decoded: list) -> list:
        """The batch in one transaction; returns the out-of-order messages, not applied.

        Three statements and the handlers' writes: the duplicates and the streams' last applied
        versions read together (an unordered subscription needs neither: its inbox insert
        skips what it holds already); the new inbox rows, the streams' versions and a plain
        checkpoint written together; the handlers' writes sent together (`BatchedWrites`:
        each handler's reads still see every write before them)."""
        consumer = self.subscription.name
        ordered = self.subscription.ordered
        plain = self.projection.plain_checkpoint
        async with self._connection() as conn, conn.transaction():
            known: set = set()
            last: dict[str, int] = {}
            if ordered:
                seen = await conn.fetchrow(
                    "WITH locked AS (SELECT stream_id, version FROM inbox_streams WHERE consumer = $1 "
                    "AND stream_id = ANY($3::text[]) ORDER BY stream_id FOR UPDATE) "
                    "SELECT ARRAY(SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])) "
                    "AS known, ARRAY(SELECT stream_id FROM locked) AS streams, "
                    "ARRAY(SELECT version FROM locked) AS versions",
                    consumer, [e.event_id for _, e, _ in decoded], sorted({e.stream_id for _, e, _ in decoded}),
                )
                known, last = set(seen["known"]), dict(zip(seen["streams"], seen["versions"], strict=True))
            accepted, refused, moved = [], [], {}
            for arrival, envelope, event in decoded:  # the per-message checks, in delivery order
                if envelope.event_id in known:
                    continue
                if ordered:
                    previous = last.get(envelope.stream_id)
                    if previous is not None and envelope.stream_version <= previous:
                        refused.append((arrival, f"out of order: {envelope.stream_id} "
                                                 f"v{envelope.stream_version} arrived after v{previous}"))
                        continue
                    last[envelope.stream_id] = moved[envelope.stream_id] = envelope.stream_version
                known.add(envelope.event_id)
                accepted.append((arrival, envelope, event))
            if accepted:
                inserted = await conn.fetch(
                    self._batch_bookkeeping,
                    consumer,
                    [e.event_id for _, e, _ in accepted],
                    [e.stream_id for _, e, _ in accepted],
                    [e.stream_version for _, e, _ in accepted],
                    [e.model_dump_json(exclude={"global_position"}) for _, e, _ in accepted],
                    list(moved), list(moved.values()), self.projection.name,
                )
                if ordered and len(inserted) != len(accepted):  # written meanwhile by someone else
                    raise _BatchFailed(None)
                if not ordered:  # what the inbox held already (or twice in the batch) is a duplicate
                    fresh = {r["event_id"] for r in inserted}
                    accepted = [a for a in accepted if a[1].event_id in fresh]
                if accepted:
                    target = BatchedWrites(conn, *await self._catalog(conn))
                    try:
                        for arrival, envelope, event in accepted:
                            try:
                                with _within(arrival):
                                    await self.projection.apply(target, envelope, event)
                            except (*TRANSIENT_ERRORS, _BatchFailed):
                                raise
                            except Exception as exc:
                                raise _BatchFailed(arrival) from exc
                        try:
                            await target.flush()
                        except TRANSIENT_ERRORS:
                            raise
                        except Exception as exc:  # a deferred write failed: whose is not known
                            raise _BatchFailed(None) from exc
                    finally:
                        await target.abandon()
                    if not plain:
                        await self.projection.advance(conn, max(r["seq"] for r in inserted))
        self.applied += len(accepted)
        self.duplicates += len(decoded) - len(accepted) - len(refused)
        return refused

    async def _catalog(self, conn):
        if self._schema is None:
            self._schema = await BatchedWrites.catalog(conn)
        return self._schema

    @functools.cached_property
    def _batch_bookkeeping(self) -> str:
        """$1 consumer, $2-$5 the accepted events (ids, streams, versions, envelopes), $6-$7 the
        streams' new versions, $8 projection: the inbox rows (in delivery order, what the inbox
        holds already skipped), the streams' versions and a plain checkpoint; the rows written."""
        return (
            "WITH ins AS (INSERT INTO inbox (consumer, event_id, stream_id, stream_version, envelope) "
            "SELECT $1, e, s, v, j FROM unnest($2::uuid[], $3::text[], $4::int[], $5::jsonb[]) "
            "WITH ORDINALITY AS t(e, s, v, j, n) ORDER BY n "
            "ON CONFLICT DO NOTHING RETURNING event_id, seq), "
            "moved AS (INSERT INTO inbox_streams (consumer, stream_id, version) "
            "SELECT $1, s, v FROM unnest($6::text[], $7::int[]) AS t(s, v) "
            "ON CONFLICT (consumer, stream_id) DO UPDATE SET version = EXCLUDED.version), "
            + ("advanced AS (INSERT INTO projection_checkpoints (projection, position) "
               "SELECT $8, max(seq) FROM ins HAVING count(*) > 0 ON CONFLICT (projection) DO UPDATE "
               "SET position = greatest(projection_checkpoints.position, EXCLUDED.position)) "
               if self.projection.plain_checkpoint else "unused AS (SELECT $8::text) ")
            + "SELECT event_id, seq FROM ins"
        )

    async def _handle_one(self, arrival: _Arrival, envelope: Envelope, event, failures: int = 0) -> None:
        message = arrival.message
        while True:
            try:
                with _within(arrival):
                    await self._apply_once(envelope, event)
                await self._ack(message)
                return
            except OutOfOrderError as exc:
                await self._dead_letter(message, str(exc))
                await self._ack(message)
                return
            except TRANSIENT_ERRORS as exc:
                log.warning("database unavailable, retrying", queue=self.queue, error=repr(exc))
                await asyncio.sleep(1.0)
            except Exception as exc:  # the handler itself failed on this event
                failures += 1
                if failures >= self._attempts:
                    await self._dead_letter(
                        message, f"handler failed {failures} times: {type(exc).__name__}: {exc}"
                    )
                    await self._ack(message)
                    return
                await asyncio.sleep(self._backoff * 2 ** (failures - 1))

    @contextlib.asynccontextmanager
    async def _connection(self):
        """The worker's own connection from the pool, kept between messages (one task uses it,
        one message or batch at a time); given back when it fails, and at stop."""
        if self._held is not None and not _usable(self._held):
            self._held = None  # its connection was lost: the pool took it back already
        if self._held is None:
            self._held = await self._pool().acquire()
        try:
            yield self._held
        except BaseException as exc:
            # A handler's failure leaves it usable (the transaction rolled back); a broken or
            # interrupted one goes back to the pool, which replaces it.
            if not _usable(self._held) or isinstance(exc, (*TRANSIENT_ERRORS, asyncio.CancelledError)):
                await self._give_back()
            raise

    async def _give_back(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                await self._pool().release(held, timeout=5)
            except Exception:  # noqa: BLE001 - a broken connection: the pool replaces it
                pass

    async def _apply_once(self, envelope: Envelope, event) -> None:
        """One event in one transaction. The inbox row, the duplicate and order checks, the
        stream's version and the projection's checkpoint are one statement (`_bookkeeping`),
        then the projection's change: nothing is written for a duplicate or an event older
        than its stream's last applied one. Mostly all of it is that one statement
        (`_apply_in_one_statement`)."""
        if await self._apply_in_one_statement(envelope, event):
            self.applied += 1
            self.applied_in_one_statement += 1
            return
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(self._bookkeeping, *self._bookkeeping_args(envelope))
            seq = row["seq"]
            if seq is None:
                previous = row["previous"]
                if not row["duplicate"] and previous is not None and envelope.stream_version <= previous:
                    raise OutOfOrderError(
                        f"out of order: {envelope.stream_id} v{envelope.stream_version} arrived after v{previous}"
                    )
                self.duplicates += 1
                return
            await self.projection.apply(conn, envelope, event)
            if not self.projection.plain_checkpoint:  # the plain one moved with the bookkeeping
                await self.projection.advance(conn, seq)
        self.applied += 1

    async def _apply_in_one_statement(self, envelope: Envelope, event) -> bool:
        """The event applied in a single statement outside any transaction block (atomic all
        the same): the bookkeeping with the projection's writes as further expressions of it,
        one round trip where the transaction takes four. That needs a projection whose
        handler only writes, one row per statement, to tables apart from the bookkeeping's,
        and a plain checkpoint. The statement fails, and so writes nothing, unless the inbox
        row was inserted: a duplicate or an event out of order, like a handler that reads or
        a write the database refuses, leaves the event to the transaction (False), which
        sorts them out exactly as before."""
        async with self._connection() as conn:
            single = await self._single_statement(conn, envelope, event)
            if single is None:
                return False
            try:
                await conn.fetchval(*single)
            except TRANSIENT_ERRORS:
                raise
            except asyncpg.PostgresError:
                return False
        return True

    async def _apply_in_one_round_trip(self, decoded: list) -> bool:
        """A batch as its events' single statements (`_apply_in_one_statement`), sent together
        with one `executemany`: asyncpg pipelines them and ends them with one sync, so they
        run in order in one implicit transaction, one round trip and one commit for the whole
        batch, where `_apply_batch` takes five. Each statement sees those before it, so a
        duplicate or an event out of order, in the inbox or within the batch, fails its own
        statement and with it the batch, which then takes the transaction (False), as does a
        batch whose events need different statements, or a handler that reads."""
        statement, rows = None, []
        async with self._connection() as conn:
            for arrival, envelope, event in decoded:
                with _within(arrival):
                    single = await self._single_statement(conn, envelope, event)
                if single is None or (statement is not None and single[0] != statement):
                    return False
                statement = single[0]
                rows.append(single[1:])
            try:
                await conn.executemany(statement, rows)
            except TRANSIENT_ERRORS:
                raise
            except asyncpg.PostgresError:
                return False
        self.applied += len(rows)
        self.applied_in_one_statement += len(rows)
        return True

    async def _single_statement(self, conn, envelope: Envelope, event) -> tuple | None:
        """The event's bookkeeping and its projection's writes as one statement, followed by
        its arguments; None where they cannot be one (see `_apply_in_one_statement`)."""
        if not self.projection.plain_checkpoint:
            return None
        collected = BatchedWrites(NoConnection(), *await self._catalog(conn))
        try:
            await self.projection.apply(collected, envelope, event)
        except Exception:  # noqa: BLE001 - reads, or fails: the transaction does it again
            return None
        writes = collected.take_joinable(_BOOKKEEPING_TABLES)
        if collected.holds:
            return None
        ctes, args = together(writes, after=6)
        return (f"WITH {self._bookkeeping_ctes}{', ' + ctes if ctes else ''} "
                "SELECT 1 / (SELECT count(*)::int FROM ins)", *self._bookkeeping_args(envelope), *args)

    def _bookkeeping_args(self, envelope: Envelope) -> tuple:
        return (self.subscription.name, envelope.event_id, envelope.stream_id, envelope.stream_version,
                envelope.model_dump_json(exclude={"global_position"}), self.projection.name)

    @functools.cached_property
    def _bookkeeping(self) -> str:
        """$1 consumer, $2 event id, $3 stream, $4 version, $5 envelope, $6 projection."""
        return (
            f"WITH {self._bookkeeping_ctes} "
            "SELECT (SELECT seq FROM ins) AS seq, EXISTS (SELECT 1 FROM dup) AS duplicate, "
            "(SELECT version FROM prev) AS previous"
        )

    @functools.cached_property
    def _bookkeeping_ctes(self) -> str:
        """`_bookkeeping`'s expressions: `ins` returns the inbox row's seq, none when the event
        is a duplicate or out of order."""
        ordered = self.subscription.ordered
        advance = self.projection.plain_checkpoint
        return (
            "dup AS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2), "
            + ("prev AS (SELECT version FROM inbox_streams WHERE consumer = $1 AND stream_id = $3 "
               "FOR UPDATE), " if ordered else "prev AS (SELECT NULL::int AS version WHERE false), ")
            + "ins AS (INSERT INTO inbox (consumer, event_id, stream_id, stream_version, envelope) "
            "SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM dup) "
            "AND NOT EXISTS (SELECT 1 FROM prev WHERE version >= $4) "
            "ON CONFLICT DO NOTHING RETURNING seq), "
            + ("moved AS (INSERT INTO inbox_streams (consumer, stream_id, version) SELECT $1, $3, $4 "
               "FROM ins ON CONFLICT (consumer, stream_id) DO UPDATE SET version = EXCLUDED.version), "
               if ordered else "")
            + ("advanced AS (INSERT INTO projection_checkpoints (projection, position) "
               "SELECT $6, seq FROM ins ON CONFLICT (projection) DO UPDATE SET position = "
               "greatest(projection_checkpoints.position, EXCLUDED.position))" if advance
               else "unused AS (SELECT $6::text)")
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


def current_message(context) -> aio_pika.abc.AbstractIncomingMessage:
    """The delivered message of the handler running, from FastStream's context. Not through a
    `RabbitMessage` parameter: FastStream resolves that one with a synchronous dependency, run
    in a worker thread for every message (a thread hand-off twice per message, measured at 8%
    of a consumer's CPU)."""
    return context.get_local("message").raw_message


def _settle(arrival: _Arrival) -> None:
    """Let the message's handler return (FastStream then ends its span)."""
    if not arrival.done.done():
        arrival.done.set_result(None)


@contextlib.contextmanager
def _within(arrival: _Arrival):
    """Work on a message inside its FastStream consumer span: its statements' spans, the events
    it appends and its log lines join the trace the event came with."""
    token = otel_context.attach(arrival.context)
    try:
        yield
    finally:
        otel_context.detach(token)


def _usable(conn) -> bool:
    """Whether a connection taken from the pool still works: asyncpg hands a pool connection
    whose server connection was lost back to the pool by itself (its proxy then refuses use)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text[:500]


__all__ = ["DeadLetters", "EventConsumer", "TRANSIENT_ERRORS", "current_message", "raw_body"]
