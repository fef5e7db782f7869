"""The raw baseline: the same pipeline written directly with aio-pika and asyncpg, nothing else.

- append: one transaction inserts the event and its outbox row and NOTIFYs the relay;
- relay: takes up to 500 outbox rows in id order, publishes them persistent to a topic
  exchange, awaits the publisher confirms together, deletes the rows, commits;
- consumer (its own process, as a consuming service would be): a quorum queue read in delivery
  order with prefetch 100; per message one transaction writes the inbox row (idempotence) and
  upserts the projection row; acked after commit. With `consumers` > 1 (the fan-out baseline)
  each consumer has its own queue bound to the exchange and its own database, as each
  consuming service has: every event is delivered and applied that many times.

No commands, authentication, envelopes, hash chain, tracing or dead-lettering: the floor our
pipeline is compared with. Run in the benchmark's process except the consumer
(`python -m bench.baseline consume <database url> <queue>`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg

from bench.arrivals import RAW, summary
from bench.common import (
    AMQP_URL, RUN_ID, DatabaseFreezes, MachineStalls, cpu_ms_per, cpu_seconds, database_url, open_loop, repeat_for,
)
from shared.migrations import drop_database, ensure_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       bigserial PRIMARY KEY,
    stream_id      text NOT NULL,
    stream_version integer NOT NULL,
    event_id       uuid NOT NULL UNIQUE,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_version)
);
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    routing_key text NOT NULL,
    event_id    uuid NOT NULL,
    body        bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    event_id       uuid PRIMARY KEY,
    correlation_id text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS projection (
    stream_id text PRIMARY KEY,
    version   integer NOT NULL,
    value     jsonb NOT NULL
);
"""
ROOT = Path(__file__).parents[1]


class Baseline:
    def __init__(self, consumers: int = 1, name: str = "baseline") -> None:
        self.name = name
        self.url = database_url(name)
        self.exchange_name = f"bench{RUN_ID}.{name}"
        # The first consumer's inbox is where events are timed (in the producers' database);
        # the others each have a database of their own.
        self.consumer_urls = [self.url] + [database_url(f"{name}_{i}") for i in range(1, consumers)]
        self.queue_names = [f"bench{RUN_ID}.{name}.projection{i or ''}" for i in range(consumers)]
        self.pool: asyncpg.Pool | None = None
        self._connection = None
        self._consumers: list[asyncio.subprocess.Process] = []
        self._relay: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._versions: dict[str, int] = {}
        self._streams = itertools.cycle([f"stream-{i}" for i in range(200)])

    async def start(self) -> None:
        for url in self.consumer_urls:
            await ensure_database(url)
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.close()
        self.pool = await asyncpg.create_pool(self.url, min_size=8, max_size=16)
        self._connection = await aio_pika.connect_robust(AMQP_URL)
        channel = await self._connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        for queue_name in self.queue_names:
            queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key="baseline.#")
        self._relay = asyncio.create_task(self._relay_loop(exchange))
        for url, queue_name in zip(self.consumer_urls, self.queue_names, strict=True):
            self._consumers.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.baseline", "consume", url, queue_name, cwd=ROOT,
            ))

    @property
    def consumer_pids(self) -> dict[str, int]:
        return {f"consumer{i or ''}": p.pid for i, p in enumerate(self._consumers)}

    async def stop(self) -> None:
        for consumer in self._consumers:
            if consumer.returncode is None:
                consumer.send_signal(signal.SIGTERM)
                await consumer.wait()
        if self._relay is not None:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
        if self._connection is not None:
            channel = await self._connection.channel()
            for queue_name in self.queue_names:
                await channel.queue_delete(queue_name)
            await channel.exchange_delete(self.exchange_name)
            await self._connection.close()
        for url in self.consumer_urls:
            await drop_database(url)

    async def append(self, correlation: str, sent_at: float) -> None:
        """One event and its outbox row in one transaction."""
        stream = next(self._streams)
        version = self._versions[stream] = self._versions.get(stream, 0) + 1
        event_id = uuid.uuid4()
        payload = {"correlation_id": correlation, "sent_at": sent_at, "person_id": "cb001-0042",
                   "roles": ["staff", "secret_document_handler"]}
        body = json.dumps({"event_id": str(event_id), "stream_id": stream, "stream_version": version,
                           "event_type": "PersonRolesChanged", "payload": payload}).encode()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, payload) "
                "VALUES ($1, $2, $3, $4, $5)", stream, version, event_id, "PersonRolesChanged", json.dumps(payload))
            await conn.execute("INSERT INTO outbox (routing_key, event_id, body) VALUES ($1, $2, $3)",
                               "baseline.PersonRolesChanged", event_id, body)
            await conn.execute("NOTIFY baseline_outbox")

    async def _relay_loop(self, exchange) -> None:
        conn = await asyncpg.connect(self.url)
        await conn.add_listener("baseline_outbox", lambda *_: self._wake.set())
        try:
            while True:
                self._wake.clear()
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT id, routing_key, event_id, body FROM outbox ORDER BY id LIMIT 500 "
                        "FOR UPDATE SKIP LOCKED")
                    if rows:
                        await asyncio.gather(*(
                            exchange.publish(aio_pika.Message(
                                r["body"], delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                message_id=str(r["event_id"]), content_type="application/json",
                            ), routing_key=r["routing_key"])
                            for r in rows))
                        await conn.execute("DELETE FROM outbox WHERE id = ANY($1)", [r["id"] for r in rows])
                if not rows:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    except TimeoutError:
                        pass
        finally:
            await conn.close()

    async def arrivals(self) -> dict[str, float]:
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch("SELECT correlation_id, extract(epoch FROM received_at)::float8 AS t FROM inbox")
        finally:
            await conn.close()
        return {r["correlation_id"]: r["t"] for r in rows}

    async def drained(self, count: int, timeout: float = 120) -> None:
        """Every consumer has applied `count` events."""
        deadline = time.monotonic() + timeout
        waiting = list(self.consumer_urls)
        while time.monotonic() < deadline:
            for url in list(waiting):
                conn = await asyncpg.connect(url)
                try:
                    if await conn.fetchval("SELECT count(*) FROM inbox") >= count:
                        waiting.remove(url)
                finally:
                    await conn.close()
            if not waiting:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("a baseline consumer did not receive everything")

    async def saturated(self, seconds: float, producers: int = 16) -> dict:
        await self._reset()
        pids = self.consumer_pids
        cpu_before = cpu_seconds(pids)
        first = time.time()
        sent: list[str] = []

        async def producer() -> None:
            correlation = str(uuid.uuid4())
            await self.append(correlation, time.time())
            sent.append(correlation)

        await repeat_for(seconds, f"baseline: saturated, {seconds:.0f} s", [producer] * producers)
        appended = time.time()
        await self.drained(len(sent))
        cpu = cpu_ms_per(cpu_before, cpu_seconds(pids), len(sent))
        arrived = await self.arrivals()
        last = max(arrived.values())
        return {"appends_per_second": round(len(sent) / (appended - first), 1), "events": len(sent),
                "end_to_end_per_second": round(len(sent) / (last - first), 1), "in_flight": producers,
                "cpu_ms_per_event": cpu}

    async def paced(self, rate: float, seconds: float) -> dict:
        await self._reset()
        count = int(rate * seconds)
        scheduled: dict[str, float] = {}

        async def one(at: float) -> None:
            correlation = str(uuid.uuid4())
            scheduled[correlation] = at
            await self.append(correlation, at)

        with MachineStalls() as stalls, DatabaseFreezes() as freezes:
            await open_loop(rate, count, f"baseline: paced at {rate:.0f}/s", one)
        await self.drained(count)
        arrived = await self.arrivals()
        raw = {"to_projection": [arrived[c] - at for c, at in scheduled.items() if c in arrived]}
        return {"rate": round(rate, 1), "events": count, "to_projection": summary(raw["to_projection"], of=count),
                **stalls.figures(), **freezes.figures(), RAW: raw}

    async def _reset(self) -> None:
        for url in self.consumer_urls:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("TRUNCATE inbox")
            finally:
                await conn.close()


# --- the consumer process ----------------------------------------------------------------------


async def consume(url: str, queue_name: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    queue = await channel.get_queue(queue_name, ensure=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def run() -> None:
        async with queue.iterator() as messages:
            async for message in messages:
                event = json.loads(message.body)
                async with pool.acquire() as conn, conn.transaction():
                    new = await conn.fetchval(
                        "INSERT INTO inbox (event_id, correlation_id) VALUES ($1, $2) "
                        "ON CONFLICT DO NOTHING RETURNING true",
                        uuid.UUID(event["event_id"]), event["payload"]["correlation_id"])
                    if new:
                        await conn.execute(
                            "INSERT INTO projection (stream_id, version, value) VALUES ($1, $2, $3) "
                            "ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value",
                            event["stream_id"], event["stream_version"], json.dumps(event["payload"]))
                await message.ack()

    task = asyncio.create_task(run())
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await connection.close()
    await pool.close()


if __name__ == "__main__" and sys.argv[1:2] == ["consume"]:
    import uvloop

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvloop.run(consume(sys.argv[2], sys.argv[3]))
