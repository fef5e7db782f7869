"""The composition of one service process: database, broker, command queue, consumers, relay."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.schemas import Channel
from faststream.middlewares import AckPolicy
from opentelemetry import context as otel_context
from opentelemetry import propagate

from shared import topology
from shared.acks import AckCoalescer
from shared.auth import TokenVerifier
from shared.commands import (
    COMMANDS_HEADER, Accepted, CommandBatcher, CommandDispatcher, CommandRouter, Reply, read_several,
    several_replies, trace_headers,
)
from shared.consumer import DeadLetters, EventConsumer, current_message, raw_body
from shared.eventstore import EventStore, record_checkpoint
from shared.metrics import ServiceMetrics
from shared.migrations import migrate_service
from shared.observability import configure_logging, consume_spans, get_logger, tracer_provider
from shared.projection import Projection
from shared.relay import OutboxRelay
from shared.republish import republish_router
from shared.settings import DATABASE_SESSION, Settings

log = get_logger("wfh.runtime")


@dataclass
class ServiceDefinition:
    """What makes a service this service; `ServiceRuntime` supplies everything else."""

    name: str
    router: CommandRouter
    own_projections: tuple[Projection, ...] = ()
    consumed_projections: dict[str, Projection] = field(default_factory=dict)
    migrations: tuple[Path, ...] = ()
    # Long-running loops of the service (due deliveries, an HTTP server): started after the
    # broker and the relay, cancelled first on stop, restarted after a crash.
    background: tuple[Callable[[ServiceRuntime], Awaitable[None]], ...] = ()


class ServiceRuntime:
    def __init__(self, definition: ServiceDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self.store = EventStore(definition.name)
        self.pool: asyncpg.Pool | None = None
        self.broker: RabbitBroker | None = None
        self.consumers: list[EventConsumer] = []
        self.batcher: CommandBatcher | None = None
        self.relay: OutboxRelay | None = None
        self.acks: AckCoalescer | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._relay_task: asyncio.Task | None = None
        self._background_tasks: list[asyncio.Task] = []
        self._checkpoint_task: asyncio.Task | None = None
        self.metrics: ServiceMetrics | None = None
        self._metrics_task: asyncio.Task | None = None

    @property
    def projections(self) -> tuple[Projection, ...]:
        return self.definition.own_projections + tuple(self.definition.consumed_projections.values())

    def _get_pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "service not started"
        return self.pool

    async def migrate(self) -> list[str]:
        return await migrate_service(self.settings, self.definition.migrations)

    async def start(self) -> None:
        settings = self.settings
        provider = tracer_provider(settings.service)
        await self.migrate()
        self.pool = await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=8, reset=_nothing_to_reset,
            server_settings=DATABASE_SESSION,
        )
        self._connection = await aio_pika.connect_robust(settings.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True)
        if settings.declare_topology:
            await topology.declare(channel, settings.namespace)
        dead_letters = DeadLetters(channel, settings.dead_letter_exchange)
        self.acks = AckCoalescer(settings.ack_delay_seconds)

        self.broker = service_broker(settings.amqp_url, provider)
        dispatcher = CommandDispatcher(
            # Every service also answers RepublishEvents (shared.republish) for the IT team.
            CommandRouter.combine(
                self.definition.router, republish_router(lambda: channel, settings.events_exchange)
            ),
            self._get_pool,
            self.store,
            TokenVerifier(settings.jwt_public_key_pem, settings.jwt_issuer),
            self.definition.own_projections,
            health=self.health,
        )
        # Replies go to direct reply-to addresses, where RabbitMQ keeps nothing: a publisher
        # confirm would prove nothing more than the write, and costs both sides a frame each.
        replies = await self._connection.channel(publisher_confirms=False)
        self._register_commands(dispatcher, replies, dead_letters, channel)
        for sub in topology.subscriptions_of(settings.service):
            projection = self.definition.consumed_projections[sub.name]
            consumer = EventConsumer(
                settings.namespace, sub, projection, self._get_pool, dead_letters,
                attempts=settings.handler_attempts, prefetch=settings.event_batch, acks=self.acks,
            )
            consumer.register(self.broker)
            self.consumers.append(consumer)
        await self.broker.start()

        self.relay = OutboxRelay(
            settings.database_url, channel, settings.events_exchange, self.store,
            batch_size=settings.relay_batch_size, poll_seconds=settings.relay_poll_seconds,
        )
        dispatcher.on_committing, dispatcher.on_committed = self.relay.expect, self.relay.offer
        self._relay_task = asyncio.create_task(self.relay.run(), name=f"{settings.service}-relay")
        self.metrics = ServiceMetrics(self)
        self._metrics_task = asyncio.create_task(
            self._sample_metrics_periodically(), name=f"{settings.service}-metrics"
        )
        self._checkpoint_task = asyncio.create_task(
            self._sign_chain_periodically(), name=f"{settings.service}-chain-checkpoints"
        )
        self._background_tasks = [
            asyncio.create_task(self._keep_running(loop), name=f"{settings.service}-{_name(loop)}")
            for loop in self.definition.background
        ]
        log.info("service started", namespace=settings.namespace)

    async def _keep_running(self, loop: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        """A background loop that crashes is logged and started again, never silently gone."""
        while True:
            try:
                await loop(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background loop crashed, restarting", loop=_name(loop))
                await asyncio.sleep(1.0)

    def _register_commands(self, dispatcher: CommandDispatcher, replies, dead_letters, confirmed) -> None:
        queue_name = self.settings.command_queue
        broker_context = self.broker.context
        queue = RabbitQueue(
            queue_name, durable=True, declare=False,
            arguments=topology.queue_arguments(self.settings.namespace, queue_name),
        )
        self.batcher = batcher = CommandBatcher(dispatcher, self.settings.command_batch)

        async def answer(raw, body: bytes) -> None:
            await replies.default_exchange.publish(
                aio_pika.Message(body=body, content_type="application/json", correlation_id=raw.correlation_id),
                routing_key=raw.reply_to,
                # Not mandatory: RabbitMQ 3.10 returns every mandatory message sent to a
                # direct reply-to address as unroutable although it delivers it, the whole
                # reply coming back as a basic.return (seen as RabbitMQ and service CPU).
                mandatory=False,
            )

        async def keep_refused(raw, command: bytes, reply: Reply) -> None:
            """Nobody waits for this answer: keep the command where an operator sees why."""
            await dead_letters.send(
                queue_name, dead_letter_body(command, reply), dict(raw.headers or {}),
                f"{reply.error.code}: {reply.error.message_en}",
                content_type=raw.content_type, message_id=raw.message_id,
                correlation_id=raw.correlation_id,
            )

        @self.broker.subscriber(
            queue,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            channel=Channel(prefetch_count=self.settings.consumer_prefetch),
            decoder=raw_body,  # the dispatcher answers a body that is not JSON: `malformed`
            title=queue_name,
            description=f"Commands and queries of the {self.settings.service} service",
        )
        async def on_command(body: bytes) -> None:
            raw = current_message(broker_context)
            if raw.headers and COMMANDS_HEADER in raw.headers:
                await on_commands(raw, body)
                return
            started = time.perf_counter()
            accepted = dispatcher.triage(body)
            if isinstance(accepted, Reply):
                reply, command_type = accepted, _command_type(body)
            elif accepted.mutates:
                # Decided with the commands that arrived meanwhile, in one transaction.
                reply, command_type = await batcher.decide(accepted, alone=raw.redelivered), accepted.request.type
            else:
                reply, command_type = await dispatcher.run_query(accepted), accepted.request.type
            if self.metrics is not None:
                self.metrics.record_command(command_type, reply.ok, time.perf_counter() - started)
            if raw.reply_to:
                await answer(raw, reply.model_dump_json().encode())
            elif not reply.ok:
                await keep_refused(raw, raw.body, reply)
            await self.acks.ack(raw)

        async def on_commands(raw, body: bytes) -> None:
            """A message of several commands (`shared.client`): one reply, their replies in order."""
            started = time.perf_counter()
            items = read_several(body)
            if isinstance(items, Reply):  # refused whole
                if raw.reply_to:
                    await answer(raw, items.model_dump_json().encode())
                else:
                    await keep_refused(raw, body, items)
                await self.acks.ack(raw)
                return
            if raw.redelivered:
                # Its process may have died deciding one of them: each goes back to the queue
                # as a message of its own, answered where the message was to be, so one that
                # kills the process reaches the dead letters alone, the others answered.
                for item in items:
                    await confirmed.default_exchange.publish(
                        aio_pika.Message(
                            json.dumps(item.get("command"), ensure_ascii=False).encode(),
                            headers=trace_headers(item), content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            correlation_id=raw.correlation_id, reply_to=raw.reply_to,
                        ),
                        routing_key=queue_name,
                    )
                await self.acks.ack(raw)
                return
            triaged = []
            for item in items:
                token = otel_context.attach(propagate.extract(trace_headers(item)))
                try:
                    triaged.append(dispatcher.accept(item.get("command")))
                finally:
                    otel_context.detach(token)
            answers = await batcher.answer(triaged)
            if self.metrics is not None:
                seconds = time.perf_counter() - started
                for a, reply in zip(triaged, answers, strict=True):
                    kind = a.request.type if isinstance(a, Accepted) else "malformed"
                    self.metrics.record_command(kind, reply.ok, seconds)
            if raw.reply_to:
                await answer(raw, several_replies(answers))
            else:
                for item, reply in zip(items, answers, strict=True):
                    if not reply.ok:  # each refused command kept as if it had come alone
                        await keep_refused(raw, json.dumps(item.get("command")).encode(), reply)
            await self.acks.ack(raw)

    def chain_key(self):
        """This service's checkpoint key (development: created beside the code on first use)."""
        from shared.auth import DevIdentityProvider

        path = Path(self.settings.chain_key_file or f".run/chain-keys/{self.settings.service}.pem")
        return DevIdentityProvider.load_or_create(path).private_key

    async def sign_chain(self) -> int | None:
        async with self._get_pool().acquire() as conn:
            return await record_checkpoint(conn, self.chain_key())

    async def _sign_chain_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.chain_checkpoint_seconds)
            try:
                await self.sign_chain()
            except Exception as exc:  # the next round tries again
                log.warning("chain checkpoint failed", error=repr(exc))

    async def sample_metrics(self):
        """Read lag and queue depths now (the loop below does it every few seconds)."""
        channel = await self._connection.channel()
        try:
            return await self.metrics.sample(channel)
        finally:
            await channel.close()

    async def _sample_metrics_periodically(self) -> None:
        while True:
            try:
                await self.sample_metrics()
            except Exception as exc:  # the broker or database is away: keep the last readings
                log.debug("metrics sampling failed", error=repr(exc))
            await asyncio.sleep(self.settings.metrics_sample_seconds)

    async def health(self) -> dict:
        """What an operator asks first: can we reach our database, is the relay keeping up."""
        report: dict = {"service": self.settings.service, "broker": "up"}
        try:
            async with self._get_pool().acquire(timeout=2) as conn:
                report["database"] = "up"
                report["relay_lag"] = await self.relay.lag(conn) if self.relay else None
        except Exception as exc:
            report["database"] = f"down: {type(exc).__name__}"
        report["relay_published"] = self.relay.published if self.relay else 0
        report["consumers"] = {
            c.queue: {"applied": c.applied, "duplicates": c.duplicates, "batches": c.batches} for c in self.consumers
        }
        if self.batcher is not None:
            dispatcher = self.batcher.dispatcher
            report["commands"] = {"batches": dispatcher.batches, "batched": dispatcher.batched,
                                  "batches_given_up": dispatcher.batches_given_up,
                                  "largest_batch": self.batcher.largest_batch}
        report["healthy"] = report["database"] == "up"
        return report

    async def stop(self) -> None:
        for task in (self._checkpoint_task, self._metrics_task):
            if task is not None:
                task.cancel()
        for task in self._background_tasks:
            task.cancel()
        for task in self._background_tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._relay_task is not None:
            self._relay_task.cancel()
            try:
                await self._relay_task
            except (asyncio.CancelledError, Exception):
                pass
        if self.acks is not None:
            await self.acks.flush()  # and the messages finishing below are acknowledged at once
        if self.broker is not None:
            await self.broker.stop()  # lets the messages under way finish
        if self.batcher is not None:
            await self.batcher.stop()
        for consumer in self.consumers:
            await consumer.stop()
        if self._connection is not None:
            await self._connection.close()
        if self.pool is not None:
            await self.pool.close()
        log.info("service stopped")

    async def rebuild(self, names: list[str] | None = None) -> dict[str, int]:
        """Drop and replay projections (all by default) from the event store or inbox."""
        counts: dict[str, int] = {}
        async with self._get_pool().acquire() as conn:
            for projection in self.projections:
                if names and projection.name not in names:
                    continue
                counts[projection.name] = await projection.rebuild(conn, self.store)
        return counts


# Failures worth re-driving after a fix keep the whole command; a refused command would be
# refused again, and its payload may hold what must not rest in a queue (secret documents).
REDRIVABLE_CODES = frozenset({"internal", "conflict"})


def service_broker(amqp_url: str, provider) -> RabbitBroker:
    """The FastStream broker a service's command queue and consumers subscribe on."""
    return RabbitBroker(
        amqp_url,
        middlewares=[consume_spans(provider)],
        logger=None,  # per-message logging costs ~20% throughput; we log what matters
        # The handlers take the raw body (`raw_body`) and need no injection: FastDepends'
        # per-message resolution cost a tenth of a consumer's CPU per message.
        apply_types=False,
        graceful_timeout=10.0,
    )


def dead_letter_body(body: bytes, reply) -> bytes:
    if reply.error.code in REDRIVABLE_CODES:
        return body
    try:
        command = json.loads(body)
        kept = {k: command[k] for k in ("command_id", "type", "tenant") if k in command}
    except (ValueError, TypeError):
        kept = {}
    return json.dumps({**kept, "payload_removed": f"refused ({reply.error.code}): not kept"}).encode()


def _command_type(body: bytes) -> str:
    try:
        value = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return "malformed"
    return value if isinstance(value, str) and len(value) <= 100 else "malformed"


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """A pool connection goes back as it came: the services keep no session state on them
    (LISTEN and session locks use connections of their own), and asyncpg's reset query, run on
    every release, costs a round trip for nothing. An open transaction is still rolled back."""


def _name(loop: Callable) -> str:
    return getattr(loop, "__name__", type(loop).__name__)


def run_forever(build: Callable[[Settings], ServiceRuntime], service: str) -> None:
    """Entry point of `python -m services.<name>`: run until SIGINT/SIGTERM, then stop cleanly."""
    import uvloop

    configure_logging(service)

    async def main() -> None:
        runtime = build(Settings.from_env(service))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        # What exists once started (modules, pools, the service's set-up) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it (about
        # 50 ms each time, a stall every message waiting behind it would feel).
        gc.freeze()
        await stop.wait()
        await runtime.stop()

    uvloop.run(main())
