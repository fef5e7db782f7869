"""Our end-to-end pipeline under load: a command sent over AMQP, handled and appended with its
reply, relayed, and applied by another service's consumer to its projection.

Two workloads: health declarations (roster -> reporting, one consumer: the baseline's shape)
and directory changes (roster -> leave, with notify, documents and reporting consuming the
same events).

- saturated: each department sends one command after another (a department's directory is
  one stream, so its changes are sequential), all departments at once, for a fixed time; the
  rate is commands whose event reached the consumer's projection per second, from the first
  send to the last arrival (so a consumer falling behind lowers it).
- paced: the same commands at a fixed rate (open loop: each is sent at its scheduled time and
  its latency counted from then) to the consumer's inbox `received_at`, the start of the
  transaction that wrote the inbox row and the projection change.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import asyncpg

from bench.arrivals import RAW, appended_at, inbox_arrivals, latencies, summary, wait_for_quiet
from bench.common import DatabaseFreezes, MachineStalls, cpu_ms_per, cpu_seconds, open_loop, repeat_for
from bench.day import chief_of, staff_of
from bench.driver import Driver

EXTRA_ROLE = "secret_document_handler"


class Workload:
    """Endless commands of one kind, per department, and where their events land."""

    service: str  # the service the commands go to
    command: str
    consumer: tuple[str, str]  # (consuming service, subscription) whose inbox is timed

    def __init__(self, specs: list[dict]) -> None:
        self.specs = specs

    @property
    def label(self) -> str:
        return f"{self.service} {self.command} -> {self.consumer[0]} ({self.consumer[1]})"

    def next_for(self, spec: dict) -> tuple[str, dict, str]:
        raise NotImplementedError


class HealthDeclarations(Workload):
    """Staff declare their health (a later declaration replaces the earlier one); roster
    appends `HealthDeclared`, which only reporting consumes: one producer, one consumer, the
    shape of the baseline."""

    service, command, consumer = "roster", "DeclareHealth", ("reporting", "events")

    def __init__(self, specs: list[dict]) -> None:
        super().__init__(specs)
        self._people = {s["tenant"]: itertools.cycle(s["people"]) for s in specs}
        self._statuses = itertools.cycle(["well"] * 9 + ["symptoms"])

    def next_for(self, spec: dict) -> tuple[str, dict, str]:
        return spec["tenant"], {"status": next(self._statuses)}, next(self._people[spec["tenant"]])["id"]


class RoleChanges(Workload):
    """The Chief of Office changes staff roles (toggling between two values): a directory
    change, which leave, notify, documents and reporting all consume."""

    service, command, consumer = "roster", "ChangeRoles", ("leave", "directory")

    def __init__(self, specs: list[dict]) -> None:
        super().__init__(specs)
        self.roles: dict[tuple[str, str], bool] = {}
        self._people = {s["tenant"]: itertools.cycle(staff_of(s)) for s in specs}

    def next_for(self, spec: dict) -> tuple[str, dict, str]:
        person = next(self._people[spec["tenant"]])
        key = (spec["tenant"], person["id"])
        self.roles[key] = not self.roles.get(key, False)
        roles = ["staff", EXTRA_ROLE] if self.roles[key] else ["staff"]
        return spec["tenant"], {"person_id": person["id"], "roles": roles}, chief_of(spec)["id"]


async def saturated(driver: Driver, work: Workload, seconds: float, databases: dict[str, str],
                    pids: dict[str, int] | None = None) -> dict:
    start = len(driver.sent)
    batching_before = await batching(driver, work.service)
    consuming_before = await consuming(driver, work.consumer[0])
    cpu_before = cpu_seconds(pids or {})
    first = time.time()

    def department(spec: dict):
        async def step() -> None:
            tenant, payload, person = work.next_for(spec)
            await driver.send(work.service, work.command, payload, tenant=tenant, person=person)

        return step

    await repeat_for(seconds, f"ours: {work.command}, saturated {seconds:.0f} s",
                     [department(s) for s in work.specs])
    replied = time.time()
    await wait_for_quiet(databases, still=1.0)
    cpu = cpu_ms_per(cpu_before, cpu_seconds(pids or {}), len(driver.sent) - start)
    batching_after = await batching(driver, work.service)
    consuming_after = await consuming(driver, work.consumer[0])
    sent = [s for s in driver.sent[start:] if s.ok]
    arrived = await inbox_arrivals(databases[work.consumer[0]], work.consumer[1])
    times = [arrived[str(s.command_id)] for s in sent if str(s.command_id) in arrived]
    e2e_seconds = max(times) - first if times else float("nan")
    return {
        "pipeline": work.label,
        "commands": len(driver.sent) - start, "refused": len(driver.sent) - start - len(sent),
        "arrived": len(times),
        "commands_per_second": round(len(sent) / (replied - first), 1),
        "end_to_end_per_second": round(len(times) / e2e_seconds, 1),
        "in_flight": driver.size,
        "cpu_ms_per_command": cpu,
        "mean_batch": mean_batch(batching_before, batching_after),
        "consumer_mean_batch": mean_batch(consuming_before, consuming_after),
    }


async def _health(driver: Driver, service: str) -> dict:
    reply, _ = await driver.send(service, "Health", {}, tenant="-", record=False)
    return reply.result


async def batching(driver: Driver, service: str) -> dict:
    """How many transactions a service's commands were decided in so far (its Health report)."""
    return (await _health(driver, service))["commands"]


async def consuming(driver: Driver, service: str) -> dict:
    """How many deliveries a service's consumers took in how many batches so far."""
    consumers = (await _health(driver, service))["consumers"].values()
    return {"batches": sum(c["batches"] for c in consumers), "batched": sum(c["applied"] for c in consumers)}


def mean_batch(before: dict, after: dict) -> float | None:
    batches = after["batches"] - before["batches"]
    return round((after["batched"] - before["batched"]) / batches, 2) if batches else None


async def paced(driver: Driver, work: Workload, rate: float, seconds: float, databases: dict[str, str],
                pids: dict[str, int] | None = None) -> dict:
    """Open loop at `rate` commands per second for `seconds`; the CPU each process spent per
    command at that rate, and the batches' sizes (smaller than when saturated, so each command
    costs more)."""
    start = len(driver.sent)
    count = int(rate * seconds)
    scheduled: dict[str, float] = {}
    departments = itertools.cycle(work.specs)

    async def one(at: float) -> None:
        tenant, payload, person = work.next_for(next(departments))
        # Open loop: sent at its time, whatever is in flight. The driver's bound on commands in
        # flight (`BENCH_CLIENTS`) is the closed loop's concurrency; here it would hold
        # commands back after a hiccup and let them out that many at a time, so a backlog
        # drained at what that many in flight sustain, not at what the services sustain with
        # the larger batches a backlog makes.
        _, sent = await driver.send(work.service, work.command, payload, tenant=tenant, person=person,
                                    bounded=False)
        scheduled[str(sent.command_id)] = at

    batching_before = await batching(driver, work.service)
    consuming_before = await consuming(driver, work.consumer[0])
    cpu_before = cpu_seconds(pids or {})
    with MachineStalls() as stalls, DatabaseFreezes() as freezes:
        await open_loop(rate, count, f"ours: {work.command}, paced at {rate:.0f}/s", one)
    await wait_for_quiet(databases, still=1.0)
    cpu = cpu_ms_per(cpu_before, cpu_seconds(pids or {}), count)
    batching_after = await batching(driver, work.service)
    consuming_after = await consuming(driver, work.consumer[0])
    sent = [s for s in driver.sent[start:] if s.ok]
    arrived = await inbox_arrivals(databases[work.consumer[0]], work.consumer[1])
    appended = await appended_at(databases[work.service])
    both = [c for c in scheduled if c in arrived and c in appended]
    raw = {"reply": [s.seconds + (s.sent_at - scheduled.get(str(s.command_id), s.sent_at)) for s in sent],
           "to_projection": latencies(sent, arrived, scheduled),
           # Where the time goes: to the append (the client, the broker, the service's batch),
           # then from the append (its commit, the relay, the broker, the consumer).
           "to_append": [appended[c] - scheduled[c] for c in both],
           "append_to_projection": [arrived[c] - appended[c] for c in both]}
    return {
        "pipeline": work.label, "rate": round(rate, 1), "commands": count, "refused": count - len(sent),
        "reply": summary(raw["reply"]),
        "to_projection": summary(raw["to_projection"], of=len(sent)),
        "to_append": summary(raw["to_append"]),
        "append_to_projection": summary(raw["append_to_projection"]),
        "cpu_ms_per_command": cpu, **stalls.figures(), **freezes.figures(), RAW: raw,
        # Commands per transaction, and events per consumer batch: smaller than saturated.
        "mean_batch": mean_batch(batching_before, batching_after),
        "consumer_mean_batch": mean_batch(consuming_before, consuming_after),
    }


class DirectAppends:
    """Our event pipeline without the command hop, the baseline's exact shape: the benchmark
    appends `HealthDeclared` events straight into roster's event store (`EventStore.append` in
    a transaction, so the hash chain, positions in commit order and NOTIFY are all there);
    roster's own relay publishes them and reporting's consumer applies them."""

    label = "EventStore.append -> roster relay -> reporting (events)"
    consumer = ("reporting", "events")

    def __init__(self, specs: list[dict], day) -> None:
        self.people = [(s["tenant"], p["id"]) for s in specs for p in s["people"]]
        self.day = day
        self.versions: dict[str, int] = {}
        self._next = itertools.count()
        self._busy: set[str] = set()

    async def append_one(self, pool, correlation: uuid.UUID) -> None:
        from shared.contracts.roster import HealthDeclared, presence_stream
        from shared.eventstore import AppendContext, EventStore

        while True:  # a stream not being appended to right now (one writer per stream)
            tenant, person = self.people[next(self._next) % len(self.people)]
            stream = presence_stream(tenant, person, self.day)
            if stream not in self._busy:
                break
        self._busy.add(stream)
        try:
            version = self.versions.get(stream, 0)
            async with pool.acquire() as conn, conn.transaction():
                await EventStore("roster").append(
                    conn, stream, version, [HealthDeclared(person_id=person, day=self.day, status="well")],
                    AppendContext(tenant=tenant, actor=person, correlation_id=correlation),
                )
            self.versions[stream] = version + 1
        finally:
            self._busy.discard(stream)


async def direct_saturated(work: DirectAppends, roster_url: str, seconds: float, databases: dict[str, str],
                           producers: int = 16, pids: dict[str, int] | None = None) -> dict:
    pool = await asyncpg.create_pool(roster_url, min_size=producers, max_size=producers)
    cpu_before = cpu_seconds(pids or {})
    sent: list[str] = []
    first = time.time()

    async def producer() -> None:
        correlation = uuid.uuid4()
        await work.append_one(pool, correlation)
        sent.append(str(correlation))

    try:
        await repeat_for(seconds, f"ours: direct appends, saturated {seconds:.0f} s", [producer] * producers)
        appended = time.time()
    finally:
        await pool.close()
    await wait_for_quiet(databases, still=1.0)
    cpu = cpu_ms_per(cpu_before, cpu_seconds(pids or {}), len(sent))
    arrived = await inbox_arrivals(databases[work.consumer[0]], work.consumer[1])
    times = [arrived[c] for c in sent if c in arrived]
    return {"pipeline": work.label, "events": len(sent), "arrived": len(times),
            "appends_per_second": round(len(sent) / (appended - first), 1),
            "end_to_end_per_second": round(len(times) / (max(times) - first), 1), "in_flight": producers,
            "cpu_ms_per_event": cpu}


async def direct_paced(work: DirectAppends, roster_url: str, rate: float, seconds: float,
                       databases: dict[str, str]) -> dict:
    # Every connection open and its statements prepared before the clock starts, as the
    # baseline's are: a connection opened mid-run, or its first append, is not the pipeline.
    pool = await asyncpg.create_pool(roster_url, min_size=16, max_size=16)
    await asyncio.gather(*(work.append_one(pool, uuid.uuid4()) for _ in range(16)))
    count = int(rate * seconds)
    scheduled: dict[str, float] = {}

    async def one(at: float) -> None:
        correlation = uuid.uuid4()
        scheduled[str(correlation)] = at
        await work.append_one(pool, correlation)

    try:
        with MachineStalls() as stalls, DatabaseFreezes() as freezes:
            await open_loop(rate, count, f"ours: direct appends, paced at {rate:.0f}/s", one)
    finally:
        await pool.close()
    await wait_for_quiet(databases)
    arrived = await inbox_arrivals(databases[work.consumer[0]], work.consumer[1])
    appended = await appended_at(roster_url)
    both = [c for c in scheduled if c in arrived and c in appended]
    # Where the time goes: waiting to append (the append lock, the pool), then the relay and
    # the consumer.
    raw = {"to_projection": [arrived[c] - at for c, at in scheduled.items() if c in arrived],
           "to_append": [appended[c] - scheduled[c] for c in both],
           "append_to_projection": [arrived[c] - appended[c] for c in both]}
    return {"pipeline": work.label, "rate": round(rate, 1), "events": count,
            "to_projection": summary(raw["to_projection"], of=count),
            "to_append": summary(raw["to_append"]),
            "append_to_projection": summary(raw["append_to_projection"]),
            **stalls.figures(), **freezes.figures(), RAW: raw}
