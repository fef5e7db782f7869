"""The fault suite's long part, only in `make chaos` (marker chaos_slow): a 30 s database
outage, a poison message, a consumer's broker link cut, and real RabbitMQ/PostgreSQL restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TENANT
from tests.faults.harness import DEMO, Ledger, demo_world, settle, steady_load

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_slow, pytest.mark.timeout(600)]


@pytest.fixture
async def world(tmp_path):
    async with demo_world(tmp_path, "chs") as w:
        yield w


async def _under_load(world, faults, prefix):
    ledger, stop = Ledger(), asyncio.Event()
    load = asyncio.create_task(steady_load(world, ledger, stop, concurrency=4, prefix=prefix))
    try:
        await faults()
    finally:
        stop.set()
        await asyncio.wait_for(load, 300)
    return ledger, await settle(world, ledger, prefix=prefix, timeout=180)


async def test_a_30s_database_outage_dead_letters_nothing(world):
    async def faults():
        await asyncio.sleep(2)
        for name in ("leave", "reporting"):  # consumers lose their database for 30 s
            world.services[name].db_proxy.cut()
        await asyncio.sleep(30)
        for name in ("leave", "reporting"):
            world.services[name].db_proxy.restore()
        await asyncio.sleep(3)

    ledger, figures = await _under_load(world, faults, "db30")
    assert {q: n for q, n in (await world.dead_letter_depths()).items() if n} == {}
    print(f"\n30 s outage: {len(ledger.acked)} commands, {figures}")


async def test_a_poison_message_is_dead_lettered_after_bounded_retries_while_others_flow(world):
    """A PersonAdded no database can store (a NUL character): the handler fails, is retried
    in place WFH_HANDLER_ATTEMPTS (5) times, then the message goes to the dead-letter queue;
    the load keeps flowing meanwhile."""
    poison = {
        "event_id": str(uuid.uuid4()), "event_type": "PersonAdded", "schema_version": 1,
        "source": "roster", "stream_id": "person-poison", "stream_version": 1, "tenant": TENANT,
        "occurred_at": "2037-01-05T01:00:00+00:00", "actor": "it-admin",
        "correlation_id": str(uuid.uuid4()), "trace_context": {},
        "payload": {"person_id": "poison", "full_name": "Nul\u0000", "email": "p@example.vn",
                    "division_id": DEMO["divisions"][0]["id"], "roles": ["staff"], "locale": "vi"},
    }

    async def faults():
        await asyncio.sleep(2)
        await world.publish_event_raw(json.dumps(poison).encode(), "roster.PersonAdded")
        started = time.monotonic()
        queue = f"{world.namespace}.leave.directory"
        while (await world.dead_letter_depths())[f"{queue}.dlq"] == 0:
            assert time.monotonic() - started < 60, "the poison message never reached the DLQ"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)

    ledger, figures = await _under_load(world, faults, "poison")
    depths = await world.dead_letter_depths()
    bound = [q for q in depths if q.endswith(("directory.dlq", "reporting.events.dlq"))]
    for q in bound:
        [dead] = await world.drain_dead_letters(q[: -len(".dlq")])
        reason = dead.headers["x-wfh-reason"]
        assert "handler failed 5 times" in reason or "undecodable" in reason, reason
    assert len(ledger.acked) > 20


async def test_a_consumer_survives_a_cut_broker_link(world):
    async def faults():
        await asyncio.sleep(2)
        for name in ("notify", "leave"):
            world.services[name].amqp_proxy.cut()
            await asyncio.sleep(3)
            world.services[name].amqp_proxy.restore()
            await asyncio.sleep(2)

    await _under_load(world, faults, "amqpcut")


def _machine_is_quiet() -> bool:
    """No pytest but ours: restarting the shared servers would break other people's runs."""
    import os

    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    mine = {os.getpid(), os.getppid()}
    return not [l for l in out.splitlines() if "pytest" in l and int(l.split()[0]) not in mine
                and "grep" not in l]


def _restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    time.sleep(3)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)


def _restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


async def test_real_broker_and_database_restarts(world):
    if not _machine_is_quiet():
        pytest.skip("other pytest runs share this RabbitMQ/PostgreSQL: not restarting them")

    async def faults():
        await asyncio.sleep(3)
        await asyncio.to_thread(_restart_postgresql)
        await asyncio.sleep(5)
        await asyncio.to_thread(_restart_rabbitmq)
        await asyncio.sleep(10)
        # the services and the test's client reconnect through aio-pika's robust connections

    ledger, figures = await _under_load(world, faults, "restart")
    print(f"\nbroker and database restarts: {len(ledger.acked)} commands acknowledged, "
          f"{ledger.retries} resent after a timeout, {ledger.internal_retries} after an internal "
          f"error, redeliveries seen: {world.duplicates_observed}, {figures}")
    assert {q: n for q, n in (await world.dead_letter_depths()).items() if n} == {}
    assert world.duplicates_observed > 0, "no redelivery observed: the restarts did not hit"
