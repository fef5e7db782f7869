"""The fault suite's fast part (also in `make test`): the services as processes under steady
AddPerson load while a consumer and the command side are killed with SIGKILL mid-batch (some with
their acknowledgements held back in the test's TCP proxy, so committed work is redelivered)
and services' links to PostgreSQL are cut through the proxy (the RabbitMQ link cut is in
test_faults_slow.py, an expected failure until shared/consumer.py restores its consumers). Then every
acknowledged command must be in every projection exactly once, the outbox drained, no dead
letters, and at least one redelivery seen (proof the faults hit)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import DEMO, Ledger, demo_world, settle, steady_load

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


@pytest.fixture
async def world(tmp_path):
    async with demo_world(tmp_path, "chf") as w:
        yield w


async def test_kills_and_cut_database_links_lose_and_duplicate_nothing(world):
    started = time.monotonic()
    ledger = Ledger()
    stop, watching = asyncio.Event(), asyncio.Event()
    load = asyncio.create_task(steady_load(world, ledger, stop, concurrency=6))
    watcher = asyncio.create_task(world.watch_health(watching))
    faults = []

    async def pause(seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert not load.done() or load.exception() is None, load.exception()

    try:
        await pause(3)
        # kill -9 mid-batch: the command side (roster, which also relays), then consumers.
        for name, held in (("roster", 0), ("leave", 1.5), ("reporting", 1.5), ("roster", 1.0),
                           ("documents", 0), ("notify", 1.5)):
            await world.services[name].kill(acks_in_flight=held)
            faults.append(f"kill -9 {name}" + (f" ({held}s of acks in flight)" if held else ""))
            await pause(2.5)
        # A database cut: the command side and a consumer.
        for name in ("roster", "documents"):
            world.services[name].db_proxy.cut()
            faults.append(f"cut {name}->postgres 3s")
            await pause(3)
            world.services[name].db_proxy.restore()
            await pause(2)
    finally:
        stop.set()
        await asyncio.wait_for(load, 240)
    figures = await settle(world, ledger, prefix="cf")
    watching.set()
    await watcher
    dead = {q: n for q, n in (await world.dead_letter_depths()).items() if n}
    elapsed = time.monotonic() - started
    print(f"\nfault suite (fast): {len(ledger.sent)} commands, {len(ledger.acked)} acked, "
          f"{ledger.retries} resent after a timeout, {ledger.internal_retries} after an internal error, faults: {faults}, "
          f"redeliveries seen: {world.duplicates_observed}, {elapsed:.0f}s, {figures}")
    assert dead == {}, f"dead letters under faults: {dead}"
    assert len(ledger.acked) > 50
    assert world.duplicates_observed > 0, "no redelivery observed: the faults did not hit"
