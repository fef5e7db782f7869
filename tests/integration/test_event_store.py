"""The event store's guarantees, against the real PostgreSQL: optimistic concurrency that
writes nothing on conflict, immutability enforced by the database, and global positions that
are gapless and handed out in commit order."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from shared.contracts import Envelope, decode
from shared.contracts import roster as ro
from shared.eventstore import ConcurrencyError, EventStore
from tests.integration.backbone_helpers import (
    TENANT,
    append_committed,
    context,
    division,
    eventually,
    private_database,
)

pytestmark = pytest.mark.integration

STORE = EventStore("roster")


@pytest.fixture
async def db(system):
    url = await private_database(system, "store")
    conn = await asyncpg.connect(url)
    try:
        yield url, conn
    finally:
        await conn.close()


async def count(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM events")


async def waiting_for_append_lock(conn) -> int:
    """How many sessions of this database are queued on the event store's advisory lock."""
    return await conn.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
    )


# --- append and read ---------------------------------------------------------------------


async def test_append_then_read_stream_and_read_all(db):
    _, conn = db
    a1 = [division(1), division(2)]
    async with conn.transaction():
        written = await STORE.append(conn, "stream-a", 0, a1, context("nv-an"))
    assert [e.stream_version for e in written] == [1, 2]
    assert [e.global_position for e in written] == [1, 2]
    async with conn.transaction():
        await STORE.append(conn, "stream-b", 0, [ro.PersonRemoved(person_id="x")], context())
    async with conn.transaction():
        await STORE.append(conn, "stream-a", 2, [division(3)], context())

    stream_a = await STORE.read_stream(conn, "stream-a")
    assert [e.stream_version for e in stream_a] == [1, 2, 3]
    assert [e.global_position for e in stream_a] == [1, 2, 4]
    assert [decode(e) for e in stream_a] == [division(1), division(2), division(3)]
    assert stream_a[:2] == written  # what append returned is exactly what was stored
    assert stream_a[0].actor == "nv-an" and stream_a[0].tenant == TENANT
    assert stream_a[0].source == "roster" and stream_a[0].routing_key == "roster.DivisionCreated"
    assert await STORE.stream_version(conn, "stream-a") == 3
    assert await STORE.stream_version(conn, "nothing-here") == 0
    assert await STORE.read_stream(conn, "nothing-here") == []

    everything = await STORE.read_all(conn)
    assert [(e.stream_id, e.global_position) for e in everything] == [
        ("stream-a", 1), ("stream-a", 2), ("stream-b", 3), ("stream-a", 4),
    ]
    assert [e.global_position for e in await STORE.read_all(conn, after_position=2)] == [3, 4]
    assert [e.global_position for e in await STORE.read_all(conn, 1, limit=2)] == [2, 3]
    assert await STORE.read_all(conn, after_position=4) == []
    assert await STORE.head_position(conn) == 4


async def test_events_read_back_are_the_envelopes_validation_gives(db):
    """The store's envelopes are not validated again (`Envelope.from_store`): built from the
    columns as asyncpg returns them, they are equal to validated ones and publish the same."""
    _, conn = db
    events = [division(1), ro.PersonRemoved(person_id="nv-an")]
    async with conn.transaction():
        written = await STORE.append(conn, "stream-a", 0, events, context("nv-an"))
    for read in (await STORE.read_all(conn), await STORE.read_stream(conn, "stream-a")):
        validated = [Envelope.model_validate(e.model_dump()) for e in read]
        assert read == validated == written
        assert [e.model_dump_json() for e in read] == [e.model_dump_json() for e in validated]
        assert [decode(e) for e in read] == events


async def test_vietnamese_text_is_stored_and_read_back_exactly(db):
    _, conn = db
    e = ro.DivisionCreated(division_id="bcvt", name="Phòng Bưu chính, Viễn thông", kind="division")
    async with conn.transaction():
        await STORE.append(conn, "s", 0, [e], context())
    assert decode((await STORE.read_stream(conn, "s"))[0]).name == "Phòng Bưu chính, Viễn thông"
    assert await conn.fetchval("SELECT payload->>'name' FROM events") == "Phòng Bưu chính, Viễn thông"


async def test_append_outside_a_transaction_is_refused(db):
    _, conn = db
    with pytest.raises(RuntimeError, match="transaction"):
        await STORE.append(conn, "s", 0, [division(1)], context())
    assert await count(conn) == 0


async def test_appending_nothing_writes_nothing(db):
    _, conn = db
    async with conn.transaction():
        assert await STORE.append(conn, "s", 0, [], context()) == []
    assert await count(conn) == 0


# --- optimistic concurrency --------------------------------------------------------------


@pytest.mark.parametrize("expected", [0, 1, 3, 7])
async def test_wrong_expected_version_raises_and_writes_nothing(db, expected):
    url, conn = db
    await append_committed(url, "s", 0, [division(1), division(2)])
    await append_committed(url, "other", 0, [division(9)])
    before = await conn.fetch("SELECT * FROM events ORDER BY global_position")

    with pytest.raises(ConcurrencyError) as info:
        async with conn.transaction():
            await STORE.append(conn, "s", expected, [division(3), division(4), division(5)], context())
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("s", expected, 2)
    assert "nothing was written" in str(info.value)

    assert await count(conn) == 3
    assert await conn.fetch("SELECT * FROM events ORDER BY global_position") == before
    # The stream is still appendable at its real version, and the position is the next one.
    async with conn.transaction():
        written = await STORE.append(conn, "s", 2, [division(3)], context())
    assert written[0].stream_version == 3 and written[0].global_position == 4


async def test_conflict_inside_a_larger_transaction_leaves_no_trace(db):
    """A command that appended to one stream and then conflicts on another rolls back both."""
    url, conn = db
    await append_committed(url, "s", 0, [division(1)])
    with pytest.raises(ConcurrencyError):
        async with conn.transaction():
            await STORE.append(conn, "fresh", 0, [division(2)], context())
            await STORE.append(conn, "s", 0, [division(3)], context())
    assert await count(conn) == 1
    assert await STORE.stream_version(conn, "fresh") == 0


async def test_two_appends_at_the_same_expected_version_exactly_one_wins(db):
    """Deterministic interleaving: A appends and holds its transaction open, B appends the
    same stream at the same version and must wait; A commits; B finds the stream moved on."""
    url, conn = db
    await append_committed(url, "s", 0, [division(1)])
    a = await asyncpg.connect(url)
    b = await asyncpg.connect(url)
    try:
        tx_a = a.transaction()
        await tx_a.start()
        await STORE.append(a, "s", 1, [division("a")], context("writer-a"))

        async def append_b():
            async with b.transaction():
                return await STORE.append(b, "s", 1, [division("b")], context("writer-b"))

        task_b = asyncio.create_task(append_b())
        await eventually(lambda: waiting_for_append_lock(conn), what="B waiting on the append lock")
        assert not task_b.done()
        await tx_a.commit()
        with pytest.raises(ConcurrencyError) as info:
            await asyncio.wait_for(task_b, 10)
        assert info.value.actual == 2
    finally:
        await a.close()
        await b.close()
    stream = await STORE.read_stream(conn, "s")
    assert [(e.stream_version, e.actor) for e in stream] == [(1, "it-admin"), (2, "writer-a")]
    assert await count(conn) == 2


async def test_many_racing_appends_at_the_same_version_exactly_one_wins(db):
    url, conn = db
    writers = 8
    await append_committed(url, "s", 0, [division(0)])
    connections = [await asyncpg.connect(url) for _ in range(writers)]
    start = asyncio.Event()

    async def attempt(i: int, c: asyncpg.Connection):
        await start.wait()
        async with c.transaction():
            await STORE.append(c, "s", 1, [division(f"w{i}"), division(f"w{i}-bis")], context(f"w{i}"))
            await asyncio.sleep(random.uniform(0, 0.02))  # hold the transaction a little
        return i

    try:
        tasks = [asyncio.create_task(attempt(i, c)) for i, c in enumerate(connections)]
        start.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    finally:
        for c in connections:
            await c.close()
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1 and len(losers) == writers - 1, results
    stream = await STORE.read_stream(conn, "s")
    assert [e.stream_version for e in stream] == [1, 2, 3]
    assert {e.actor for e in stream[1:]} == {f"w{winners[0]}"}
    assert await count(conn) == 3


async def test_the_database_refuses_a_duplicate_stream_version_even_without_the_check(db):
    """Belt and braces: the unique (stream_id, stream_version) constraint stands behind the check."""
    url, conn = db
    await append_committed(url, "s", 0, [division(1)])
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, "
            "schema_version, tenant, occurred_at, actor, correlation_id, payload) "
            "SELECT 99, stream_id, stream_version, gen_random_uuid(), event_type, schema_version, "
            "tenant, occurred_at, actor, correlation_id, payload FROM events"
        )
    assert await count(conn) == 1


# --- immutability ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}'::jsonb",
        "UPDATE events SET actor = 'someone-else' WHERE global_position = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE global_position = 2",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
        # An upsert that hits an existing row is an UPDATE too.
        "INSERT INTO events SELECT * FROM events WHERE global_position = 1 "
        "ON CONFLICT (global_position) DO UPDATE SET actor = 'rewritten'",
    ],
)
async def test_stored_events_cannot_be_changed_or_removed(db, statement):
    url, conn = db
    await append_committed(url, "s", 0, [division(1), division(2)])
    before = await conn.fetch("SELECT * FROM events ORDER BY global_position")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
        await conn.execute(statement)
    assert await conn.fetch("SELECT * FROM events ORDER BY global_position") == before


# --- positions: gapless, in commit order -------------------------------------------------


async def test_positions_follow_commit_order_not_start_order(db):
    """A starts appending first but commits last; B must not take a position below A's
    and commit before it, or a reader following positions would skip A forever."""
    url, conn = db
    await append_committed(url, "base", 0, [division(0)])
    a = await asyncpg.connect(url)
    try:
        tx_a = a.transaction()
        await tx_a.start()
        [env_a] = await STORE.append(a, "a", 0, [division("a")], context())

        task_b = asyncio.create_task(append_committed(url, "b", 0, [division("b")]))
        await eventually(lambda: waiting_for_append_lock(conn), what="B waiting on the append lock")
        # While A is open, a reader sees only the committed prefix: no position 2, no B.
        assert [e.global_position for e in await STORE.read_all(conn)] == [1]
        assert not task_b.done()
        await tx_a.commit()
        [env_b] = await asyncio.wait_for(task_b, 10)
    finally:
        await a.close()
    assert (env_a.global_position, env_b.global_position) == (2, 3)
    assert [(e.stream_id, e.global_position) for e in await STORE.read_all(conn)] == [
        ("base", 1), ("a", 2), ("b", 3),
    ]


async def test_a_rolled_back_append_leaves_no_gap(db):
    url, conn = db
    await append_committed(url, "s", 0, [division(1)])
    with pytest.raises(ZeroDivisionError):
        async with conn.transaction():
            written = await STORE.append(conn, "t", 0, [division(2), division(3)], context())
            assert [e.global_position for e in written] == [2, 3]
            1 / 0  # the command fails after appending
    written = await append_committed(url, "u", 0, [division(4)])
    assert written[0].global_position == 2
    assert [r["global_position"] for r in await conn.fetch(
        "SELECT global_position FROM events ORDER BY 1")] == [1, 2]


async def test_positions_are_gapless_and_every_snapshot_is_a_prefix(db):
    """Many writers with transactions held open for random times (some rolling back), and a
    reader polling all along: every snapshot it sees is exactly positions 1..N, so a reader
    that has seen N has seen everything below N. Afterwards the positions are 1..total."""
    url, conn = db
    writers, rounds = 8, 5
    rng = random.Random(20250304)
    plan = [[(rng.uniform(0, 0.03), rng.random() < 0.2) for _ in range(rounds)] for _ in range(writers)]
    done = asyncio.Event()
    snapshots: list[list[int]] = []

    async def writer(w: int) -> int:
        committed = 0
        c = await asyncpg.connect(url)
        try:
            for r, (hold, rollback) in enumerate(plan[w]):
                try:
                    async with c.transaction():
                        version = await STORE.stream_version(c, f"w{w}")
                        await STORE.append(c, f"w{w}", version, [division(f"{w}-{r}")], context())
                        await asyncio.sleep(hold)
                        if rollback:
                            raise LookupError("abandoned")
                    committed += 1
                except LookupError:
                    pass
        finally:
            await c.close()
        return committed

    async def reader() -> None:
        r = await asyncpg.connect(url)
        try:
            while not done.is_set():
                snapshots.append(
                    [x["global_position"] for x in await r.fetch(
                        "SELECT global_position FROM events ORDER BY 1")]
                )
                await asyncio.sleep(0.002)
        finally:
            await r.close()

    reading = asyncio.create_task(reader())
    try:
        committed = await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(writers))), 15)
    finally:
        done.set()
        await reading
    total = sum(committed)
    assert total == sum(not rb for row in plan for _, rb in row)
    positions = [x["global_position"] for x in await conn.fetch(
        "SELECT global_position FROM events ORDER BY 1")]
    assert positions == list(range(1, total + 1))
    assert len(snapshots) > 10
    for snap in snapshots:
        assert snap == list(range(1, len(snap) + 1)), f"a reader saw a gap: {snap}"
    # Each writer's stream is itself gapless.
    for w in range(writers):
        versions = [e.stream_version for e in await STORE.read_stream(conn, f"w{w}")]
        assert versions == list(range(1, committed[w] + 1))
