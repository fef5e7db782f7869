"""The outbox relay's guarantees, against the real RabbitMQ and PostgreSQL: it publishes in
commit order and never past an uncommitted append (the late-commit race), it resumes after a
crash without losing anything (at-least-once, in order per stream), one relay publishes at a
time, and its messages are persistent, identified by the event id and routed by type."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path

import aio_pika
import aiormq
import asyncpg
import pytest

from services.roster.app import definition as roster_definition
from shared.contracts import Envelope
from shared.eventstore import EventStore
from shared.relay import OutboxRelay
from tests.integration.backbone_helpers import (
    AMQP_URL,
    Tap,
    append_committed,
    context,
    division,
    eventually,
    private_database,
)

pytestmark = pytest.mark.integration

STORE = EventStore("roster")
DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())


@pytest.fixture
async def world(system):
    """A private database with the backbone schema, the namespace's events exchange, and a
    channel with publisher confirms like the runtime's."""
    url = await private_database(system, "relay")
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_exchange(f"{system.namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
    conn = await asyncpg.connect(url)
    try:
        yield url, channel, conn
    finally:
        await conn.close()
        await connection.close()


def relay_for(system, url: str, channel, **kw) -> OutboxRelay:
    kw.setdefault("poll_seconds", 0.05)
    return OutboxRelay(url, channel, f"{system.namespace}.events", STORE, **kw)


async def checkpoint(conn) -> int:
    return await conn.fetchval(
        "SELECT coalesce((SELECT position FROM relay_checkpoint WHERE relay = 'events'), 0)"
    )


async def waiting_for_append_lock(conn) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
    )


async def backlog(url: str, streams: int, per_stream: int) -> list[str]:
    """Interleaved streams: each transaction appends the next event of every stream."""
    ids = []
    conn = await asyncpg.connect(url)
    try:
        for v in range(per_stream):
            async with conn.transaction():
                for s in range(streams):
                    [env] = await STORE.append(conn, f"s{s}", v, [division(f"{s}-{v}")], context())
                    ids.append(str(env.event_id))
    finally:
        await conn.close()
    return ids


def per_stream(envelopes: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for e in envelopes:
        out[e["stream_id"]].append(e["stream_version"])
    return out


def assert_at_least_once_in_order(envelopes: list[dict], expected_ids: list[str], restarts: int):
    """Every event arrived; per stream the first arrivals are in version order, and a stream
    goes back (a republished tail) at most once per relay restart."""
    received = [e["event_id"] for e in envelopes]
    assert set(received) == set(expected_ids), "an event was lost"
    first_seen = list(dict.fromkeys(received))
    assert first_seen == expected_ids, "first arrivals are not in commit order"
    for stream, versions in per_stream(envelopes).items():
        firsts = list(dict.fromkeys(versions))
        assert firsts == sorted(firsts) == list(range(1, len(firsts) + 1)), (stream, versions)
        descents = sum(1 for x, y in zip(versions, versions[1:]) if y <= x)
        assert descents <= restarts, (stream, versions)


# --- (a) the late-commit race ------------------------------------------------------------


async def test_relay_never_publishes_past_an_uncommitted_append(system, world):
    """Transaction A appends and stays open; B appends in another connection and commits as
    soon as it can. If B could take a position after A's and commit first, a relay that saw
    B would move its checkpoint past A and never publish A. The store makes B wait for A
    (positions are assigned in commit order), so the relay publishes the committed prefix
    only, then A, then B."""
    url, channel, conn = world
    relay = relay_for(system, url, channel)
    relay_conn = await asyncpg.connect(url)
    a = await asyncpg.connect(url)
    async with Tap(system.namespace) as tap:
        try:
            [committed] = await append_committed(url, "base", 0, [division(0)])
            assert await relay.publish_batch(relay_conn) == 1
            await tap.wait_for(1)

            tx_a = a.transaction()
            await tx_a.start()
            [env_a] = await STORE.append(a, "stream-a", 0, [division("a")], context("writer-a"))
            task_b = asyncio.create_task(append_committed(url, "stream-b", 0, [division("b")]))
            await eventually(lambda: waiting_for_append_lock(conn), what="B queued behind A")

            # A is open, B is waiting: the relay has nothing more to publish.
            assert await relay.publish_batch(relay_conn) == 0
            assert await relay.publish_batch(relay_conn) == 0
            assert await checkpoint(conn) == committed.global_position == 1
            assert await relay.lag(conn) == 0
            await asyncio.sleep(0.3)  # give a wrongly published message time to arrive
            assert tap.event_ids() == [str(committed.event_id)]
            assert not task_b.done()

            await tx_a.commit()
            [env_b] = await asyncio.wait_for(task_b, 10)
            # Why it matters: A and B's positions are in commit order, so a checkpoint at
            # B's position can only be reached after A's was.
            assert env_a.global_position == 2 and env_b.global_position == 3

            assert await relay.publish_batch(relay_conn) == 2
            envelopes = await tap.wait_for(3)
        finally:
            await a.close()
            await relay_conn.close()
    assert [e["event_id"] for e in envelopes] == [
        str(committed.event_id), str(env_a.event_id), str(env_b.event_id)
    ]
    assert [e["stream_id"] for e in envelopes] == ["base", "stream-a", "stream-b"]
    assert await checkpoint(conn) == 3


async def test_a_rolled_back_append_is_never_published(system, world):
    url, channel, conn = world
    relay = relay_for(system, url, channel)
    relay_conn = await asyncpg.connect(url)
    try:
        async with Tap(system.namespace) as tap:
            with pytest.raises(LookupError):
                async with conn.transaction():
                    await STORE.append(conn, "ghost", 0, [division("ghost")], context())
                    assert await relay.publish_batch(relay_conn) == 0
                    raise LookupError
            [real] = await append_committed(url, "real", 0, [division("real")])
            assert await relay.publish_batch(relay_conn) == 1
            await tap.wait_for(1)
            await asyncio.sleep(0.2)
            assert tap.event_ids() == [str(real.event_id)]
    finally:
        await relay_conn.close()


# --- (b) crash and resume ----------------------------------------------------------------


class PacedStore(EventStore):
    """A store read slowly, so a test can kill its relay part-way through a backlog."""

    async def read_all(self, conn, after_position: int = 0, limit: int = 1000):
        await asyncio.sleep(0.03)
        return await super().read_all(conn, after_position, limit)


async def test_relay_killed_part_way_resumes_from_its_checkpoint(system, world):
    url, channel, conn = world
    expected = await backlog(url, streams=3, per_stream=30)  # 90 events
    async with Tap(system.namespace) as tap:
        first = OutboxRelay(url, channel, f"{system.namespace}.events", PacedStore("roster"), batch_size=7, poll_seconds=0.05)
        task = asyncio.create_task(first.run())
        await tap.wait_for(20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stopped_at = await checkpoint(conn)
        assert 0 < stopped_at < len(expected), "the relay was not stopped part-way"
        assert await relay_for(system, url, channel).lag(conn) == len(expected) - stopped_at
        await tap.wait_for(stopped_at)  # everything below the checkpoint was confirmed

        # A new relay on a fresh broker connection, as after a process restart.
        connection = await aio_pika.connect(AMQP_URL)
        try:
            second = relay_for(system, url, await connection.channel(publisher_confirms=True), batch_size=7)
            task = asyncio.create_task(second.run())
            await eventually(
                lambda: tap.event_ids() and set(tap.event_ids()) >= set(expected),
                what="every event published",
            )
            await eventually(lambda: _is_zero(second.lag(conn)), what="relay caught up")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await connection.close()
        await asyncio.sleep(0.1)
        envelopes = tap.envelopes
    assert await checkpoint(conn) == await STORE.head_position(conn) == len(expected)
    assert second.published == len(expected) - stopped_at  # resumed exactly at the checkpoint
    assert_at_least_once_in_order(envelopes, expected, restarts=1)


async def _is_zero(awaitable) -> bool:
    return (await awaitable) == 0


class FailingChannel:
    """The broker goes away in the middle of a batch: the first `ok` publishes get through,
    every later one fails."""

    def __init__(self, channel, ok: int) -> None:
        self._channel, self._ok, self.attempts = channel, ok, 0

    async def basic_publish(self, body, **kw):
        self.attempts += 1
        if self.attempts > self._ok:
            raise ConnectionResetError("broker connection lost")
        return await self._channel.basic_publish(body, **kw)


async def test_broker_failure_mid_batch_republishes_the_batch_and_skips_nothing(system, world):
    url, channel, conn = world
    expected = await backlog(url, streams=2, per_stream=10)  # 20 events
    relay = relay_for(system, url, channel, batch_size=8)
    relay_conn = await asyncpg.connect(url)
    try:
        async with Tap(system.namespace) as tap:
            assert await relay.publish_batch(relay_conn) == 8
            underlay = await channel.get_underlay_channel()
            with pytest.raises(ConnectionResetError):
                await relay.publish_batch(relay_conn, FailingChannel(underlay, ok=3))
            # Confirms of the batch never all arrived: the checkpoint did not move.
            assert await checkpoint(conn) == 8
            await tap.wait_for(11)

            while await relay.publish_batch(relay_conn):
                pass
            envelopes = await tap.wait_for(8 + 3 + 12)
            await asyncio.sleep(0.2)
            envelopes = tap.envelopes
    finally:
        await relay_conn.close()
    assert len(envelopes) == 23  # the 3 that got through before the failure, twice
    assert [e["event_id"] for e in envelopes[11:]] == expected[8:]
    assert await checkpoint(conn) == 20
    assert_at_least_once_in_order(envelopes, expected, restarts=1)


class SlowConfirms:
    """A channel whose first `held` publishes reach RabbitMQ at once but report their confirm
    only when `release` is set, as a broker slow to confirm does."""

    def __init__(self, channel, held: int) -> None:
        self._channel, self._held = channel, held
        self.release = asyncio.Event()

    async def get_underlay_channel(self):
        underlay, outer = await self._channel.get_underlay_channel(), self

        class Channel:
            async def basic_publish(self, body, **kw):
                outer._held -= 1
                slow = outer._held >= 0
                confirm = await underlay.basic_publish(body, **kw)
                if slow:
                    await outer.release.wait()
                return confirm

        return Channel()


async def test_a_slow_confirm_holds_the_checkpoint_back_but_not_the_events_behind(system, world):
    """Batches follow one another without waiting for the confirms of those before (the events
    behind are published at once), and the checkpoint moves only past batches whose every
    confirm arrived, in order."""
    url, channel, conn = world
    slow = SlowConfirms(channel, held=1)
    relay = OutboxRelay(url, slow, f"{system.namespace}.events", STORE, poll_seconds=0.05)
    async with Tap(system.namespace) as tap:
        task = asyncio.create_task(relay.run())
        try:
            [first] = await append_committed(url, "first", 0, [division("first")])
            await tap.wait_for(1)
            later = await backlog_more(url, streams=2, start=0, count=3)  # 6 events, 6 commits
            await tap.wait_for(7)
            await asyncio.sleep(0.2)
            # Published, and confirmed, but behind a batch still unconfirmed: not checkpointed.
            assert await checkpoint(conn) == 0
            assert relay.published == 0
            slow.release.set()
            await eventually(lambda: _checkpoint_is(conn, 7), what="the checkpoint past every batch")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert tap.event_ids() == [str(first.event_id), *later]  # once each, in commit order
    assert relay.published == 7


async def test_relay_recovers_by_itself_when_the_broker_drops_its_connection(system, world):
    """The runtime's relay uses a robust connection: when RabbitMQ closes it, the relay
    resumes from its checkpoint once the connection is back, with no help."""
    url, _, conn = world
    name = f"relay-under-test-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(
        AMQP_URL, client_properties={"connection_name": name}, reconnect_interval=1
    )
    relay = OutboxRelay(
        url, await connection.channel(publisher_confirms=True), f"{system.namespace}.events",
        PacedStore("roster"), batch_size=5, poll_seconds=0.05,
    )
    expected = await backlog(url, streams=2, per_stream=20)  # 40 events
    async with Tap(system.namespace) as tap:
        task = asyncio.create_task(relay.run())
        try:
            await tap.wait_for(10)
            await asyncio.to_thread(_close_broker_connection, name)
            more = await backlog_more(url, streams=2, start=20, count=5)  # written during the outage
            await eventually(
                lambda: set(tap.event_ids()) >= set(expected + more), timeout=15,
                what="every event published after the broker dropped the relay",
            )
            # The checkpoint moves once the last batch's confirms are in, just after the tap
            # has seen it published.
            await eventually(lambda: _checkpoint_is(conn, 50), timeout=5,
                             what="the checkpoint at the last event")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await connection.close()
        envelopes = tap.envelopes
    assert await checkpoint(conn) == 50
    assert_at_least_once_in_order(envelopes, expected + more, restarts=1)


async def test_a_publish_after_the_broker_dropped_the_channel_fails_instead_of_waiting(system, world):
    """A batch published on the channel of a session the broker has since closed fails, and
    none of it lands on the channel the robust connection reopened: landing there, behind
    the batches published after it, it would reach consumers out of order."""
    url, _, conn = world
    name = f"relay-under-test-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(
        AMQP_URL, client_properties={"connection_name": name}, reconnect_interval=0.2
    )
    channel = await connection.channel(publisher_confirms=True)
    relay = OutboxRelay(url, channel, f"{system.namespace}.events", STORE, batch_size=5)
    relay_conn = await asyncpg.connect(url)
    await backlog(url, streams=1, per_stream=3)
    try:
        async with Tap(system.namespace) as tap:
            session_channel = await channel.get_underlay_channel()
            await asyncio.to_thread(_close_broker_connection, name)
            await eventually(lambda: session_channel.is_closed, what="the session's channel closed")
            await eventually(lambda: _reopened(channel, session_channel), timeout=5,
                             what="the robust connection's channel reopened")
            with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
                await relay.publish_batch(relay_conn, session_channel)
            assert await checkpoint(conn) == 0
            await asyncio.sleep(0.3)  # give a wrongly published message time to arrive
            assert tap.event_ids() == []
            assert await relay.publish_batch(relay_conn) == 3  # the next session's channel
            await tap.wait_for(3)
    finally:
        await relay_conn.close()
        await connection.close()


async def _reopened(channel, closed) -> bool:
    underlay = await channel.get_underlay_channel()
    return underlay is not closed and not underlay.is_closed


async def _checkpoint_is(conn, position: int) -> bool:
    return await checkpoint(conn) == position


async def backlog_more(url: str, streams: int, start: int, count: int) -> list[str]:
    ids = []
    for v in range(start, start + count):
        for s in range(streams):
            [env] = await append_committed(url, f"s{s}", v, [division(f"{s}-{v}")])
            ids.append(str(env.event_id))
    return ids


def _close_broker_connection(connection_name: str) -> None:
    """Have RabbitMQ itself close the connection whose client named it `connection_name`."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        check=True, capture_output=True, text=True, timeout=15,
    ).stdout
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if f'"{connection_name}"' in line]
    assert pids, f"connection {connection_name} not found"
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "test: broker drops the relay"],
            check=True, capture_output=True, timeout=15,
        )


# --- (c) events offered by the process that committed them ---------------------------------


class CountingStore(EventStore):
    """A store that counts the relay's reads of it."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.reads = 0

    async def read_all(self, conn, after_position: int = 0, limit: int = 1000):
        self.reads += 1
        return await super().read_all(conn, after_position, limit)


class LateNotifications(OutboxRelay):
    """A relay whose notifications arrive `late` seconds after the commit (as they may on a busy
    machine), so a test decides what reaches it first; it counts its checkpoint writes."""

    def __init__(self, *args, late: float = 0.0, **kw) -> None:
        super().__init__(*args, **kw)
        self._late = late
        self.checkpoint_writes = 0

    def _on_notify(self, *args) -> None:
        asyncio.get_running_loop().call_later(self._late, super()._on_notify, *args)

    async def _write_checkpoint(self, conn, position: int) -> None:
        self.checkpoint_writes += 1
        await super()._write_checkpoint(conn, position)

    @property
    def following(self) -> bool:
        return self._following


def _relay_reading_once(system, world, late: float) -> tuple[LateNotifications, CountingStore]:
    """A relay that reads its store at the start and then only when a notification asks (no
    polling within a test), with its notifications `late` seconds late."""
    url, channel, _ = world
    store = CountingStore("roster")
    return LateNotifications(url, channel, f"{system.namespace}.events", store, poll_seconds=30, late=late), store


@contextlib.asynccontextmanager
async def _running(relay: LateNotifications):
    """The relay running, elected, for the block; stopped as a service stops it after."""
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.following, what="the relay elected")
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _offer_three_commits(url: str, relay: LateNotifications, announced: bool = False) -> list[str]:
    """Three commits of two events each, offered to `relay` once committed; `announced`, each
    commit is announced first (`expect`) and offered 0.2 s after it, its notification in by
    then. The events' ids in commit order."""
    expected = []
    for v in range(3):
        if announced:
            relay.expect(2 * v + 2)
        envelopes = await append_committed(url, "offered", 2 * v, [division(v), division(f"{v}b")])
        if announced:
            await asyncio.sleep(0.2)
        relay.offer(envelopes)
        expected += [str(e.event_id) for e in envelopes]
    return expected


async def test_events_offered_after_their_commit_are_published_without_reading_them(system, world):
    """What a process commits and offers at once follows what the relay published: it goes
    out from memory, in commit order, and the notifications arriving later find nothing to
    read."""
    url, channel, conn = world
    relay, store = _relay_reading_once(system, world, late=0.5)
    async with Tap(system.namespace) as tap:
        async with _running(relay):
            await eventually(lambda: store.reads == 1, what="the relay's first read")
            expected = await _offer_three_commits(url, relay)
            await tap.wait_for(6)
            await asyncio.sleep(0.8)  # the late notifications arrive
        assert tap.event_ids() == expected  # once each, in commit order
    assert relay.read_from_memory == 6
    assert store.reads == 1  # the start's only: no notification asked for more
    assert await checkpoint(conn) == 6


async def test_a_notification_overtaking_an_announced_offer_reads_nothing(system, world):
    """A process announces its commit (`expect`) and offers the events once committed; their
    notification arriving in between waits for the offer instead of reading them back. A
    commit announced and then withdrawn leaves the notification to its read."""
    url, channel, conn = world
    relay, store = _relay_reading_once(system, world, late=0.0)
    async with Tap(system.namespace) as tap:
        async with _running(relay):
            await eventually(lambda: store.reads == 1, what="the relay's first read")
            expected = await _offer_three_commits(url, relay, announced=True)
            await tap.wait_for(6)
            assert store.reads == 1 and relay.read_from_memory == 6
            relay.expect(7)
            [withdrawn] = await append_committed(url, "withdrawn", 0, [division("w")])
            await asyncio.sleep(0.2)
            assert store.reads == 1  # still waiting for the offer
            relay.expect(0)  # "did not commit after all": what was notified is read
            await tap.wait_for(7)
        assert tap.event_ids() == expected + [str(withdrawn.event_id)]
    assert store.reads == 2 and relay.read_from_memory == 6


async def test_events_offered_after_a_gap_are_read_from_the_store(system, world):
    """An append that was not offered (another process's, a consumer's) comes before the events
    offered: those cannot go out from memory, and the relay reads all of them, in order, once."""
    url, channel, conn = world
    relay, store = _relay_reading_once(system, world, late=0.3)
    async with Tap(system.namespace) as tap:
        async with _running(relay):
            await eventually(lambda: store.reads == 1, what="the relay's first read")
            [elsewhere] = await append_committed(url, "elsewhere", 0, [division("x")])  # not offered
            offered = await append_committed(url, "offered", 0, [division("y")])
            relay.offer(offered)
            relay.offer(offered)  # twice: still published once
            await tap.wait_for(2)
            await asyncio.sleep(0.5)
        assert tap.event_ids() == [str(elsewhere.event_id), str(offered[0].event_id)]
    assert relay.read_from_memory == 0
    assert store.reads >= 2


async def test_the_checkpoint_is_written_at_its_pace_and_when_the_relay_stops(system, world):
    """Each batch confirmed moves the checkpoint in memory; it is written at most every
    `checkpoint_seconds` (a crash republishes the events since, which consumers drop), and
    once more when the relay stops."""
    url, channel, conn = world
    relay = LateNotifications(url, channel, f"{system.namespace}.events", STORE, poll_seconds=30,
                              checkpoint_seconds=0.5)
    async with Tap(system.namespace) as tap:
        async with _running(relay):
            for v in range(10):  # ten commits, each its own batch
                relay.offer(await append_committed(url, "paced", v, [division(v)]))
            await tap.wait_for(10)
            await eventually(lambda: _checkpoint_is(conn, 10), timeout=3, what="the checkpoint written")
            assert relay.checkpoint_writes <= 2
            [last] = await append_committed(url, "paced", 10, [division(10)])
            await tap.wait_for(11)
            await eventually(lambda: relay.published == 11, what="the last event confirmed")
    assert await checkpoint(conn) == last.global_position == 11


async def test_only_one_relay_publishes_at_a_time(system, world):
    """Two relays on the same database (two replicas of a service): the advisory lock elects
    one, so each event is published exactly once."""
    url, channel, conn = world
    connection = await aio_pika.connect(AMQP_URL)
    relays = [
        relay_for(system, url, channel, batch_size=4),
        relay_for(system, url, await connection.channel(publisher_confirms=True), batch_size=4),
    ]
    async with Tap(system.namespace) as tap:
        tasks = [asyncio.create_task(r.run()) for r in relays]
        try:
            expected = await backlog(url, streams=2, per_stream=5)
            expected += await backlog_more(url, streams=2, start=5, count=10)
            await tap.wait_for(len(expected))
            await asyncio.sleep(0.3)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await connection.close()
        ids = tap.event_ids()
    assert ids == expected  # once each, in commit order
    assert sorted(r.published for r in relays) == [0, len(expected)]


# --- (d) what a published message carries ------------------------------------------------


async def test_published_messages_are_persistent_identified_and_routed_by_type(system):
    async with Tap(system.namespace) as tap:
        runtime = await system.start(roster_definition())
        reply = await system.send("roster", "ImportDepartment", DEMO)
        assert reply.ok, reply.error
        conn = await asyncpg.connect(runtime.settings.database_url)
        try:
            stored = await runtime.store.read_all(conn)
            assert len(stored) == 1 + len(DEMO["divisions"]) + len(DEMO["people"])
            await tap.wait_for(len(stored))
            await eventually(lambda: _is_zero(runtime.relay.lag(conn)), what="relay caught up")
        finally:
            await conn.close()
        await asyncio.sleep(0.2)
        messages = list(tap.messages)
    assert len(messages) == len(stored)  # nothing published twice in a clean run
    for message, env in zip(messages, stored, strict=True):  # in global position order
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT == 2
        assert message.message_id == str(env.event_id)
        assert message.routing_key == f"roster.{env.event_type}" == env.routing_key
        assert message.exchange == f"{system.namespace}.events"
        assert message.content_type == "application/json"
        assert message.type == env.event_type and message.app_id == "roster"
        assert message.correlation_id == str(env.correlation_id)
        assert message.headers["tenant"] == env.tenant
        assert message.headers["schema_version"] == env.schema_version
        wire = Envelope.model_validate_json(message.body)
        assert wire == env.model_copy(update={"global_position": None})
