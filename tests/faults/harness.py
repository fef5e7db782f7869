"""The fault suite's world: every service as its own process (`python -m services.<name>`), in a
private namespace with private databases, each service's RabbitMQ and PostgreSQL connections
through a TCP proxy the test owns (so a connection can be cut), commands through the public
CommandClient, and a checker reading every service's database directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg

from shared import topology
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.migrations import drop_database
from tests.conftest import AMQP_URL, PG_URL, TENANT, delete_namespace, every_step

ROOT = Path(__file__).parents[2]
DEMO = json.loads((ROOT / "services/roster/demo/department.json").read_text())
SERVICES = ("roster", "leave", "notify", "documents", "reporting")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpProxy:
    """A TCP forwarder the test can cut: `cut()` drops every open connection and refuses new
    ones (accepted, then closed at once) until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.down = False
        self.holding = False  # client-to-server bytes held back (acks, confirms in flight)
        self.cuts = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._writers |= pair

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    while upstream and self.holding and not self.down:
                        await asyncio.sleep(0.02)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        finally:
            for w in pair:
                w.transport.abort()
            self._writers -= pair

    def cut(self) -> None:
        self.down = True
        self.cuts += 1
        for w in list(self._writers):
            w.transport.abort()  # a hard cut, as a failed link: no orderly close

    def restore(self) -> None:
        self.down = False
        self.holding = False

    def hold(self) -> None:
        """Hold back what the service sends (its acknowledgements), still delivering to it."""
        self.holding = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


@dataclass
class Service:
    name: str
    env: dict[str, str]
    log_path: Path
    amqp_proxy: TcpProxy
    db_proxy: TcpProxy
    process: asyncio.subprocess.Process | None = None
    kills: int = 0

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{self.name}", cwd=ROOT, env=self.env,
            stdout=log, stderr=log,
        )

    async def kill(self, acks_in_flight: float = 0.0) -> None:
        """kill -9, then start it again at once (what the supervisor does, without its backoff).
        With `acks_in_flight`, its acknowledgements are held back that long before the kill:
        what it applied and committed meanwhile is delivered again to its next process."""
        assert self.process is not None
        if acks_in_flight:
            self.amqp_proxy.hold()
            await asyncio.sleep(acks_in_flight)
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        self.amqp_proxy.restore()
        self.kills += 1
        await self.start()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class ProcessWorld:
    """A private namespace, five databases and five service processes behind proxies."""

    def __init__(self, run_dir: Path, prefix: str = "chaos") -> None:
        self.namespace = f"{prefix}{uuid.uuid4().hex[:10]}"
        self.run_dir = run_dir
        self.idp = DevIdentityProvider.generate()
        self.services: dict[str, Service] = {}
        self.client: CommandClient | None = None
        # Redeliveries seen through Health (inbox duplicates), kept across process restarts.
        self._duplicates_seen: dict[tuple[str, str], int] = {}
        self._duplicates_banked = 0

    def db_url(self, service: str) -> str:
        """The real database (the checker reads it directly, never through a proxy)."""
        return f"{PG_URL}/{self.namespace}_{service}"

    async def start(self) -> None:
        key_file = self.run_dir / "idp.pub.pem"
        key_file.write_bytes(self.idp.public_key_pem)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            amqp_proxy, db_proxy = TcpProxy("127.0.0.1", 5672), TcpProxy("127.0.0.1", 5432)
            await amqp_proxy.start()
            await db_proxy.start()
            env = {
                **os.environ,
                "WFH_NAMESPACE": self.namespace,
                "WFH_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp_proxy.port}/",
                f"WFH_{name.upper()}_DATABASE_URL":
                    f"postgresql://postgres@127.0.0.1:{db_proxy.port}/{self.namespace}_{name}",
                "WFH_JWT_PUBLIC_KEY_FILE": str(key_file),
                "WFH_JWT_ISSUER": self.idp.issuer,
                "WFH_RUN_DIR": str(self.run_dir),
                "WFH_NOTIFY_HTTP_PORT": str(free_port()),
                "WFH_CHAIN_KEY_FILE": str(self.run_dir / f"chain-{name}.pem"),
                "WFH_REPORTING_DIR": str(self.run_dir / "reports"),
                "WFH_CONSUMER_PREFETCH": os.environ.get("WFH_CONSUMER_PREFETCH", "50"),
            }
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            env.pop("WFH_DATABASE_URL", None)
            self.services[name] = Service(name, env, self.run_dir / "logs" / f"{name}.log",
                                          amqp_proxy, db_proxy)
        # The topology first, so no event published before a consumer's start is lost.
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await topology.declare(await connection.channel(), self.namespace)
        for service in self.services.values():
            await service.start()
        self.client = CommandClient(AMQP_URL, self.namespace)
        await self.client.__aenter__()
        await self.wait_healthy(timeout=120)

    async def close(self) -> None:
        steps = []
        if self.client is not None:
            steps.append(self.client.__aexit__(None, None, None))
        steps += [s.stop() for s in self.services.values()]
        steps += [p.stop() for s in self.services.values() for p in (s.amqp_proxy, s.db_proxy)]
        steps.append(delete_namespace(self.namespace))
        steps += [drop_database(self.db_url(name)) for name in SERVICES]
        await every_step(steps)

    def logs(self, name: str, tail: int = 40) -> str:
        path = self.services[name].log_path
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    # --- tokens and commands ---------------------------------------------------------------

    def admin_token(self) -> str:
        return self.idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,), ttl_seconds=3600)

    def token(self, person_id: str) -> str:
        return self.idp.mint(person_id, TENANT, ttl_seconds=3600)

    async def send(self, service: str, command_type: str, payload: dict | None = None, *,
                   token: str | None = None, command_id: uuid.UUID | None = None,
                   timeout: float = 10.0):
        assert self.client is not None
        return await self.client.send(service, command_type, payload or {}, tenant=TENANT,
                                      token=token if token is not None else self.admin_token(),
                                      command_id=command_id, timeout=timeout)

    async def send_until_answered(self, service: str, command_type: str, payload: dict, *,
                                  command_id: uuid.UUID, token: str | None = None,
                                  deadline: float = 180.0, attempt_timeout: float = 5.0):
        """Send a command and, while no reply comes (a killed service, a cut connection),
        send it again under the same command id: the service answers a repeated id with the
        reply it stored, so the command is recorded once whatever happened in between."""
        end = time.monotonic() + deadline
        attempts = 0
        while True:
            attempts += 1
            try:
                reply = await self.send(service, command_type, payload, token=token,
                                        command_id=command_id, timeout=attempt_timeout)
                return reply, attempts
            except Exception:  # noqa: BLE001 - timeout or a broker hiccup of the client
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.2)

    async def health(self, service: str, timeout: float = 3.0) -> dict:
        assert self.client is not None
        reply = await self.client.send(service, "Health", {}, tenant=TENANT, token=None,
                                       timeout=timeout)
        assert reply.ok, reply.error
        return reply.result

    async def wait_healthy(self, timeout: float = 60.0, services=SERVICES) -> dict[str, dict]:
        end = time.monotonic() + timeout
        reports: dict[str, dict] = {}
        for name in services:
            while True:
                try:
                    report = await self.health(name)
                    if report.get("healthy"):
                        reports[name] = report
                        self.note_duplicates(name, report)
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                service = self.services[name]
                if service.process is not None and service.process.returncode is not None:
                    await service.start()  # died on its own (e.g. at start while a link was cut)
                if time.monotonic() > end:
                    raise AssertionError(f"{name} not healthy within {timeout}s:\n{self.logs(name)}")
                await asyncio.sleep(0.3)
        return reports

    def note_duplicates(self, service: str, report: dict) -> None:
        """Inbox duplicates per consumer from Health; a process restart resets the counter,
        so what the previous process had counted is banked first."""
        for queue, stats in (report.get("consumers") or {}).items():
            key = (service, queue)
            now = int(stats.get("duplicates") or 0)
            before = self._duplicates_seen.get(key, 0)
            if now < before:
                self._duplicates_banked += before
            self._duplicates_seen[key] = now

    @property
    def duplicates_observed(self) -> int:
        return self._duplicates_banked + sum(self._duplicates_seen.values())

    async def watch_health(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Poll every service's Health while faults happen, to see each process's counters
        before it is killed."""
        while not stop.is_set():
            for name in SERVICES:
                with contextlib.suppress(Exception):
                    self.note_duplicates(name, await self.health(name, timeout=1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    # --- the broker's view -----------------------------------------------------------------

    async def dead_letter_depths(self) -> dict[str, int]:
        depths = {}
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for queue in topology.all_queues(self.namespace):
                dlq = await channel.declare_queue(topology.dead_letter_queue(queue), passive=True)
                depths[dlq.name] = dlq.declaration_result.message_count
        return depths

    async def drain_dead_letters(self, queue: str, timeout: float = 5.0) -> list:
        """Every message of one dead-letter queue (acknowledged: taken out)."""
        found = []
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            q = await channel.declare_queue(topology.dead_letter_queue(queue), passive=True)
            while (message := await q.get(fail=False, timeout=timeout)) is not None:
                found.append(message)
                await message.ack()
        return found

    async def publish_event_raw(self, body: bytes, routing_key: str, **props) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"{self.namespace}.events", ensure=False)
            await exchange.publish(aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props), routing_key=routing_key)


@contextlib.asynccontextmanager
async def demo_world(run_dir: Path, prefix: str):
    """A started ProcessWorld with the demo department imported; removed afterwards."""
    world = ProcessWorld(run_dir, prefix=prefix)
    try:
        await world.start()
        reply = await world.send("roster", "ImportDepartment", DEMO, timeout=60)
        assert reply.ok, reply.error
        yield world
    finally:
        await world.close()


@dataclass
class Ledger:
    """What the load generator sent and what was acknowledged."""

    sent: dict[str, dict] = field(default_factory=dict)      # person id -> AddPerson payload
    acked: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)  # person id -> error code
    retries: int = 0
    internal_retries: int = 0


async def steady_load(world: ProcessWorld, ledger: Ledger, stop: asyncio.Event, *,
                      concurrency: int = 6, prefix: str = "cf", limit: int | None = None) -> None:
    """AddPerson commands, `concurrency` at a time, until `stop` (or `limit` sent). Each goes
    to roster; its PersonAdded is consumed by leave, notify and documents (their directory
    copies) and by reporting (its copy of every event)."""
    divisions = [d["id"] for d in DEMO["divisions"]]
    counter = iter(range(10**9))

    async def worker() -> None:
        while not stop.is_set():
            n = next(counter)
            if limit is not None and n >= limit:
                return
            person = f"{prefix}-{n:05d}"
            payload = {"person_id": person, "full_name": f"Cán bộ thử {n}",
                       "email": f"{person}@example.vn", "division_id": divisions[n % len(divisions)],
                       "roles": ["staff"]}
            ledger.sent[person] = payload
            # An `internal` answer (the database was unreachable) says "try again": the caller
            # resends under the same command id, as a frontend would.
            for _ in range(120):
                reply, attempts = await world.send_until_answered(
                    "roster", "AddPerson", payload, command_id=uuid.uuid5(uuid.NAMESPACE_URL, person))
                ledger.retries += attempts - 1
                if reply.ok or reply.error.code not in ("internal", "conflict"):
                    break
                ledger.internal_retries += 1
                await asyncio.sleep(0.5)
            if reply.ok:
                ledger.acked.add(person)
            else:
                ledger.refused[person] = reply.error.code

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _differences(label: str, expected: set[str], counts: dict[str, int]) -> list[str]:
    """What a copy holds against what was acknowledged: lost, unexpected, duplicated."""
    problems = []
    if missing := expected - set(counts):
        problems.append(f"{label} lost: {sorted(missing)[:5]} ({len(missing)})")
    if extra := set(counts) - expected:
        problems.append(f"{label} unexpected: {sorted(extra)[:5]}")
    if dup := {p: n for p, n in counts.items() if n != 1}:
        problems.append(f"{label} duplicated: {dict(list(dup.items())[:5])}")
    return problems


async def _fetch(url: str, query: str, *args) -> list:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def check_projections(world: ProcessWorld, ledger: Ledger, prefix: str = "cf") -> dict:
    """Every acknowledged AddPerson once in roster's store and directory, once in every
    consumer's copy; nothing that was not sent. Returns the figures, raises on a mismatch."""
    like = f"{prefix}-%"
    expected = set(ledger.acked)
    assert not ledger.refused, f"commands refused under faults: {dict(list(ledger.refused.items())[:5])}"
    assert expected == set(ledger.sent), "every command sent must have been answered"

    problems = []
    events = await _fetch(world.db_url("roster"),
                          "SELECT payload->>'person_id' AS p, count(*) AS n FROM events "
                          "WHERE event_type = 'PersonAdded' AND payload->>'person_id' LIKE $1 GROUP BY 1", like)
    stored = {r["p"]: r["n"] for r in events}
    problems += _differences("roster events", expected, stored)

    copies = {
        "roster dir_people": ("roster", "SELECT person_id AS p, 1 AS n FROM dir_people WHERE person_id LIKE $1"),
        **{f"{s} dir_people": (s, "SELECT person_id AS p, 1 AS n FROM dir_people WHERE person_id LIKE $1")
           for s in ("leave", "notify", "documents")},
        **{f"{s} inbox": (s, "SELECT envelope->'payload'->>'person_id' AS p, count(*) AS n FROM inbox "
                             "WHERE envelope->>'event_type' = 'PersonAdded' "
                             "AND envelope->'payload'->>'person_id' LIKE $1 GROUP BY 1")
           for s in ("leave", "notify", "documents", "reporting")},
        "reporting report_events": ("reporting", "SELECT payload->>'person_id' AS p, count(*) AS n "
                                                 "FROM report_events WHERE event_type = 'PersonAdded' "
                                                 "AND payload->>'person_id' LIKE $1 GROUP BY 1"),
    }
    for label, (service, query) in copies.items():
        rows = {r["p"]: r["n"] for r in await _fetch(world.db_url(service), query, like)}
        problems += _differences(label, expected, rows)
    assert not problems, "\n".join(problems)
    return {"acked": len(expected), "stored": len(stored)}


async def settle(world: ProcessWorld, ledger: Ledger, prefix: str = "cf", timeout: float = 90.0) -> dict:
    """Wait until the outbox is drained everywhere and every copy caught up, then check."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            reports = await world.wait_healthy(timeout=max(5.0, end - time.monotonic()))
            lag = {n: r.get("relay_lag") for n, r in reports.items()}
            if any(v != 0 for v in lag.values()):
                raise AssertionError(f"relay lag: {lag}")
            figures = await check_projections(world, ledger, prefix)
            figures["relay_lag"] = lag
            return figures
        except AssertionError as exc:
            last = exc
            await asyncio.sleep(1.0)
    raise AssertionError(f"not settled within {timeout}s: {last}")
