"""Commands decided together, against the real PostgreSQL: each command of a batch gets the
answer it would get alone, a refusal before writing leaves the others be, a refusal after
writing or a failure gives the batch up and every command is decided again on its own, and
the event store comes out as if the commands had been decided one by one (positions gapless,
the hash chain whole)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import asyncpg
import pytest
from pydantic import BaseModel

from services.roster.app import definition as roster_definition
from shared.auth import Identity, TokenVerifier
from shared.commands import CommandBatcher, CommandDispatcher, CommandRouter, DomainError, UnitOfWork
from shared.contracts import roster as ro
from shared.eventstore import EventStore, verify_store
from shared.projection import Projection
from tests.integration.backbone_helpers import TENANT, context, private_database

pytestmark = pytest.mark.integration

STORE = EventStore("roster")
TOY_TABLE = "CREATE TABLE IF NOT EXISTS toy_divisions (stream_id text, division_id text PRIMARY KEY, name text)"


class AddDivision(BaseModel):
    stream: str
    name: str
    # What the handler does besides appending, to put each path of a batch to the test.
    refuse: str = ""  # "before" or "after" the append
    bug: bool = False
    undone_inside: bool = False  # appends again inside a savepoint of its own, then rolls it back
    count_seen: bool = False  # reads the projection its batch's commands wrote before it
    blind: bool = False  # appends at the stream's version without reading its events
    folded: bool = False  # decides on the stream's aggregate (`UnitOfWork.fold`)


class ToyDivisions:
    """The aggregate `folded` commands decide on: the division names in their stream."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def apply(self, e) -> None:
        self.names.append(e.name)


class _Undo(Exception):
    pass


def toy_service() -> tuple[CommandRouter, Projection]:
    router = CommandRouter()
    projection = Projection("toy", ("toy_divisions",))

    @projection.on(ro.DivisionCreated)
    async def _created(conn, env, e: ro.DivisionCreated) -> None:
        await conn.execute("INSERT INTO toy_divisions VALUES ($1, $2, $3)", env.stream_id, e.division_id, e.name)

    @router.command(AddDivision)
    async def add(cmd: AddDivision, uow: UnitOfWork) -> dict:
        if cmd.blind:
            events, version = [], await uow.stream_version(cmd.stream)
        elif cmd.folded:
            aggregate, version = await uow.fold(cmd.stream, ToyDivisions)
            events = list(aggregate.names)
        else:
            events, version = await uow.load(cmd.stream)
        if cmd.refuse == "before":
            raise DomainError("Không được thêm phòng.", "Refused before appending.")
        if cmd.refuse == "after_own_write":  # a write of the handler's own, not an append
            await uow.conn.execute("INSERT INTO toy_divisions VALUES ($1, $2, 'ghi')", cmd.stream, "own-write")
            raise DomainError("Không được thêm phòng.", "Refused after writing.")
        created = ro.DivisionCreated(division_id=f"{cmd.stream}-{version + 1}", name=cmd.name, kind="division")
        await uow.append(cmd.stream, version, [created])
        if cmd.refuse == "after":
            raise DomainError("Không được thêm phòng.", "Refused after appending.")
        if cmd.bug:
            raise RuntimeError("a bug in the handler")
        if cmd.undone_inside:
            try:
                async with uow.conn.transaction():
                    again = ro.DivisionCreated(division_id=f"{cmd.stream}-undone", name="x", kind="division")
                    await uow.append(cmd.stream, version + 1, [again])
                    raise _Undo
            except _Undo:
                pass
        result = {"division_id": created.division_id, "events_before": len(events)}
        if cmd.folded:
            result["names_before"] = events
        if cmd.count_seen:
            result["divisions_seen"] = await uow.conn.fetchval("SELECT count(*) FROM toy_divisions")
        return result

    return router, projection


class Toy:
    """A dispatcher over a private database with the backbone schema and one toy projection."""

    def __init__(self, url: str, idp) -> None:
        self.url = url
        self.idp = idp
        self.router, self.projection = toy_service()
        self.pool: asyncpg.Pool | None = None
        self.dispatcher: CommandDispatcher | None = None

    async def __aenter__(self) -> Toy:
        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
        await self.pool.execute(TOY_TABLE)
        self.dispatcher = CommandDispatcher(
            self.router, lambda: self.pool, STORE, TokenVerifier(self.idp.public_key_pem, self.idp.issuer),
            (self.projection,),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.pool.close()

    def body(self, command_id: uuid.UUID | None = None, actor: str = "it-admin", **payload) -> bytes:
        return json.dumps({
            "command_id": str(command_id or uuid.uuid4()), "type": "AddDivision", "tenant": TENANT,
            "token": self.idp.mint(actor, TENANT), "payload": payload,
        }).encode()

    async def together(self, *bodies: bytes):
        accepted = [self.dispatcher.triage(b) for b in bodies]
        return await self.dispatcher.run_commands(accepted)

    async def one_by_one(self, *bodies: bytes):
        return [await self.dispatcher.dispatch(b) for b in bodies]

    async def events(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT global_position, stream_id, stream_version, payload FROM events ORDER BY global_position")

    async def divisions(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self.pool.fetch(
            "SELECT stream_id, division_id FROM toy_divisions ORDER BY division_id")]

    async def assert_store_whole(self, batches_given_up: int = 0) -> None:
        assert self.dispatcher.batches_given_up == batches_given_up
        events = await self.events()
        assert [e["global_position"] for e in events] == list(range(1, len(events) + 1))
        async with self.pool.acquire() as conn:
            verdict = await verify_store(conn)
            checkpoint = await self.projection.checkpoint(conn)
        assert verdict.intact, verdict.problems
        assert checkpoint == len(events)


@pytest.fixture
async def toy(system, idp):
    async with Toy(await private_database(system, "toy"), idp) as world:
        yield world


@pytest.fixture
async def other_toy(system, idp):
    async with Toy(await private_database(system, "toy2"), idp) as world:
        yield world


async def test_each_command_decided_together_gets_its_own_answer(toy):
    seen = uuid.uuid4()
    [earlier] = await toy.one_by_one(toy.body(seen, stream="s0", name="Phòng đã có"))
    duplicate = uuid.uuid4()
    replies = await toy.together(
        toy.body(duplicate, stream="s1", name="Phòng Một"),
        toy.body(stream="s2", name="Phòng Hai"),
        toy.body(stream="s3", name="Từ chối trước", refuse="before"),
        toy.body(stream="s1", name="Phòng Một bis"),
        toy.body(duplicate, stream="s1", name="Phòng Một"),  # the same command sent twice at once
        toy.body(duplicate, actor="someone-else", stream="s1", name="Phòng Một"),
        toy.body(seen, stream="s0", name="Phòng đã có"),  # answered before: its stored reply
    )
    assert [r.ok for r in replies] == [True, True, False, True, True, False, True]
    assert replies[0].result == {"division_id": "s1-1", "events_before": 0}
    assert replies[1].result == {"division_id": "s2-1", "events_before": 0}
    assert replies[2].error.message_en == "Refused before appending."
    assert replies[3].result == {"division_id": "s1-2", "events_before": 1}
    assert replies[4] == replies[0]
    assert replies[5].error.code == "command_id_reused"
    assert replies[6] == earlier
    events = await toy.events()
    assert [(e["stream_id"], e["stream_version"]) for e in events] == [("s0", 1), ("s1", 1), ("s2", 1), ("s1", 2)]
    assert await toy.divisions() == [("s0", "s0-1"), ("s1", "s1-1"), ("s1", "s1-2"), ("s2", "s2-1")]
    await toy.assert_store_whole()
    stored = await toy.pool.fetchval("SELECT count(*) FROM command_replies")
    assert stored == 1 + 4  # s0, then every command of the batch once (the refusal too)
    # Asked again, every command gets the answer it got.
    again = await toy.together(
        toy.body(duplicate, stream="s1", name="Phòng Một"),
        toy.body(uuid.UUID(str(replies[2].command_id)), stream="s3", name="Từ chối trước", refuse="before"),
    )
    assert again == [replies[0], replies[2]]
    assert len(await toy.events()) == 4


@pytest.mark.parametrize("refuse", ["after", "after_own_write"])
async def test_a_refusal_after_writing_gives_the_batch_up_and_undoes_only_that_command(toy, refuse):
    replies = await toy.together(
        toy.body(stream="s1", name="Phòng Một"),
        toy.body(stream="s1", name="Từ chối sau", refuse=refuse),
        toy.body(stream="s2", name="Phòng Hai"),
    )
    assert [r.ok for r in replies] == [True, False, True]
    assert replies[1].error.message_en in ("Refused after appending.", "Refused after writing.")
    assert [(e["stream_id"], e["stream_version"]) for e in await toy.events()] == [("s1", 1), ("s2", 1)]
    assert await toy.divisions() == [("s1", "s1-1"), ("s2", "s2-1")]
    await toy.assert_store_whole(batches_given_up=1)


async def test_a_failing_handler_gives_the_batch_up_and_each_command_is_decided_alone(toy):
    replies = await toy.together(
        toy.body(stream="s1", name="Phòng Một"),
        toy.body(stream="s2", name="Lỗi", bug=True),
        toy.body(stream="s1", name="Phòng Một bis"),
    )
    assert [r.ok for r in replies] == [True, False, True]
    assert replies[1].error.code == "internal"
    assert [(e["stream_id"], e["stream_version"]) for e in await toy.events()] == [("s1", 1), ("s1", 2)]
    assert await toy.divisions() == [("s1", "s1-1"), ("s1", "s1-2")]
    await toy.assert_store_whole(batches_given_up=1)


async def test_a_savepoint_rolled_back_inside_a_command_leaves_the_chain_whole(toy):
    """The head the store remembered for the batch was taken away by the handler's own
    savepoint: the next append sees it and reads the head again."""
    replies = await toy.together(
        toy.body(stream="s1", name="Phòng Một"),
        toy.body(stream="s2", name="Phòng Hai", undone_inside=True),
        toy.body(stream="s3", name="Phòng Ba"),
        toy.body(stream="s2", name="Phòng Hai bis"),
    )
    assert all(r.ok for r in replies), [r.error for r in replies]
    events = await toy.events()
    assert [(e["stream_id"], e["stream_version"]) for e in events] == [("s1", 1), ("s2", 1), ("s3", 1), ("s2", 2)]
    assert "s2-undone" not in {d for _, d in await toy.divisions()}
    await toy.assert_store_whole()


@pytest.mark.parametrize("kinds", [
    ["", "", "before", "", "", "", "before", "", "before", "", "", ""],
    ["", "", "before", "after", "", "", "after", "", "before", "", "", ""],
], ids=["refused-before-writing", "refused-after-writing"])
async def test_commands_decided_together_store_what_they_store_one_by_one(toy, other_toy, kinds):
    def bodies(world: Toy) -> list[bytes]:
        ids = [uuid.UUID(int=n) for n in range(1, 13)]
        return [world.body(ids[n], stream=f"s{n % 3}", name=f"Phòng {n}", refuse=kinds[n]) for n in range(12)]

    together = await toy.together(*bodies(toy))
    alone = await other_toy.one_by_one(*bodies(other_toy))
    assert together == alone
    shape = [(e["stream_id"], e["stream_version"], json.loads(e["payload"])) for e in await toy.events()]
    assert shape == [(e["stream_id"], e["stream_version"], json.loads(e["payload"])) for e in await other_toy.events()]
    assert await toy.divisions() == await other_toy.divisions()
    await toy.assert_store_whole(batches_given_up=int("after" in kinds))
    await other_toy.assert_store_whole(batches_given_up=kinds.count("after"))


async def test_a_command_reads_what_the_projections_deferred_for_the_commands_before_it(toy, other_toy):
    """In a batch the own projections' writes wait (to be sent together); a statement that
    may see what they touch sends them first."""
    def bodies(world: Toy) -> list[bytes]:
        ids = [uuid.UUID(int=n) for n in range(1, 9)]
        return [world.body(ids[n], stream=f"s{n % 2}", name=f"Phòng {n}", count_seen=n % 3 == 2)
                for n in range(8)]

    together = await toy.together(*bodies(toy))
    alone = await other_toy.one_by_one(*bodies(other_toy))
    assert together == alone
    assert [r.result.get("divisions_seen") for r in together] == [None, None, 3, None, None, 6, None, None]
    assert await toy.divisions() == await other_toy.divisions()
    await toy.assert_store_whole()


async def test_deferred_writes_wait_for_statements_that_cannot_see_them(toy):
    from shared.projection import BatchedWrites

    async with toy.pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE VIEW toy_names AS SELECT name FROM toy_divisions")
        deferred = BatchedWrites(conn, *await BatchedWrites.catalog(conn))
        await deferred.execute("INSERT INTO toy_divisions VALUES ($1, $2, $3)", "s", "d1", "Một")
        # The event store (its trigger only refuses changes) and other tables: still waiting.
        for unrelated in ("SELECT count(*) FROM events", "SELECT count(*) FROM command_replies"):
            await deferred.before(unrelated)
            assert deferred.holds, unrelated
        assert await conn.fetchval("SELECT count(*) FROM toy_divisions") == 0
        # The table itself, a view over it, a statement naming no table: sent first.
        seeing = ("SELECT count(*) FROM toy_divisions", "SELECT count(*) FROM toy_names", "SELECT now()")
        for sent, query in enumerate(seeing, start=1):
            await deferred.before(query)
            assert not deferred.holds, query
            assert await conn.fetchval("SELECT count(*) FROM toy_divisions") == sent
            await deferred.execute("INSERT INTO toy_divisions VALUES ($1, $2, $3)", "s", f"d{sent + 1}", "x")
        deferred.discard()  # what a savepoint rolled back had deferred
        assert not deferred.holds
        assert await conn.fetchval("SELECT count(*) FROM toy_divisions") == len(seeing)


async def test_rows_of_a_keyed_statement_go_together_unless_they_share_a_key(toy):
    """Rows of one statement go as expressions of the statement storing the replies when it
    is declared keyed and their keys differ; sharing a key (the later must win, and as two
    expressions of one statement PostgreSQL keeps one of them) or undeclared, they stay
    deferred and are sent in order."""
    from shared.eventstore import write_together
    from shared.projection import BatchedWrites, rows_keyed_by

    rename = "UPDATE toy_divisions SET name = $2 WHERE division_id = $1"
    rows_keyed_by(1, rename)
    async with toy.pool.acquire() as conn, conn.transaction():
        await conn.executemany("INSERT INTO toy_divisions VALUES ('s', $1, 'cũ')", [("d1",), ("d2",)])

        async def names() -> dict[str, str]:
            return dict(await conn.fetch("SELECT division_id, name FROM toy_divisions"))

        deferred = BatchedWrites(conn, *await BatchedWrites.catalog(conn))
        await deferred.executemany(rename, [("d1", "Một"), ("d2", "Hai")])
        joined = deferred.take_joinable(frozenset({"events"}))
        assert joined == [(rename, ("d1", "Một")), (rename, ("d2", "Hai"))] and not deferred.holds
        await write_together(conn, joined)
        assert await names() == {"d1": "Một", "d2": "Hai"}

        await deferred.executemany(rename, [("d1", "Ba"), ("d2", "Bốn"), ("d1", "Năm")])
        assert deferred.take_joinable(frozenset({"events"})) == [] and deferred.holds
        await deferred.flush()
        assert await names() == {"d1": "Năm", "d2": "Bốn"}

        undeclared = "UPDATE toy_divisions SET stream_id = $2 WHERE division_id = $1"
        await deferred.executemany(undeclared, [("d1", "x"), ("d2", "y")])
        assert deferred.take_joinable(frozenset({"events"})) == [] and deferred.holds
        # Touching a table of the other statement: never joined, keyed or not.
        deferred.discard()
        await deferred.executemany(rename, [("d1", "Sáu"), ("d2", "Bảy")])
        assert deferred.take_joinable(frozenset({"toy_divisions"})) == [] and deferred.holds


def count_version_reads(monkeypatch) -> list[str]:
    """The streams whose versions are read one at a time (`EventStore.stream_version`)."""
    reads = []
    read_version = STORE.stream_version

    async def counted(conn, stream_id):
        reads.append(stream_id)
        return await read_version(conn, stream_id)

    monkeypatch.setattr(STORE, "stream_version", counted)
    return reads


async def test_stream_versions_are_remembered_between_batches_and_a_stale_one_is_refused(toy, monkeypatch):
    reads = count_version_reads(monkeypatch)

    async def blind(*streams: str) -> list[str]:
        replies = await toy.together(*(toy.body(stream=s, name=f"Phòng {s}", blind=True) for s in streams))
        assert all(r.ok for r in replies), [r.error for r in replies]
        return [r.result["division_id"] for r in replies]

    assert await blind("s1", "s2", "s1") == ["s1-1", "s2-1", "s1-2"]
    assert reads == ["s1", "s2"]  # the second s1 knew its version from the first
    reads.clear()
    assert await blind("s1", "s2") == ["s1-3", "s2-2"]
    assert reads == []  # remembered from the batch before: nothing appended since
    # Another transaction appends: the head moved, nothing remembered is trusted.
    async with toy.pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "s1", 3, [ro.DivisionCreated(division_id="s1-4", name="x", kind="division")],
                           context())
    assert await blind("s1") == ["s1-5"]
    assert reads == ["s1"]
    # A version remembered wrongly (the head where it was). The appends held back are written
    # in one statement that checks every stream's version: the batch is given up and its
    # commands decided alone, with the versions read.
    reads.clear()
    toy.dispatcher._versions._known["s2"] = 7
    assert await blind("s2") == ["s2-3"]
    assert reads == ["s2"]
    await toy.assert_store_whole(batches_given_up=1)
    assert await blind("s2", "s1") == ["s2-4", "s1-6"]  # a batch given up forgot what it knew
    toy.dispatcher._versions._known["s2"] = 9  # known again since: remembered wrongly once more
    assert await blind("s1", "s2") == ["s1-7", "s2-5"]
    events = await toy.events()
    assert [e["stream_version"] for e in events if e["stream_id"] == "s2"] == [1, 2, 3, 4, 5]
    await toy.assert_store_whole(batches_given_up=2)
    assert await blind("s2", "s1") == ["s2-6", "s1-8"]  # and the next batch knows nothing wrong
    await toy.assert_store_whole(batches_given_up=2)


async def test_a_batch_reads_the_versions_its_commands_name_with_its_lock(toy, monkeypatch):
    """A command that names the streams whose versions it will ask for has them read with its
    batch's lock, in the one statement that takes it, not one round trip each; versions read
    while another transaction held the lock are not trusted, and a wrong name only goes unused."""
    reads = count_version_reads(monkeypatch)
    named: dict[str, list[str]] = {}  # stream -> the streams its command names

    def streams(cmd, tenant, identity):
        assert tenant == TENANT and identity.person_id == "it-admin"
        if cmd.stream == "broken":
            raise RuntimeError("a hint that fails")
        return named.get(cmd.stream, [cmd.stream])

    route = toy.router.routes["AddDivision"]
    monkeypatch.setitem(toy.router.routes, "AddDivision", dataclasses.replace(route, streams=streams))

    async def blind(*streams: str) -> list[str]:
        replies = await toy.together(*(toy.body(stream=s, name=f"Phòng {s}", blind=True) for s in streams))
        assert all(r.ok for r in replies), [r.error for r in replies]
        return [r.result["division_id"] for r in replies]

    assert await blind("h1", "h2", "h1") == ["h1-1", "h2-1", "h1-2"]
    assert reads == []
    # Another transaction appends: the next batch reads the version afresh with its lock.
    async with toy.pool.acquire() as conn, conn.transaction():
        await STORE.append(conn, "h1", 2, [ro.DivisionCreated(division_id="h1-3", name="x", kind="division")],
                           context())
    assert await blind("h1") == ["h1-4"]
    assert reads == []
    named["h2"] = ["elsewhere"]  # named wrongly: its own version is read when asked for
    assert await blind("h2", "broken") == ["h2-2", "broken-1"]
    assert reads == ["h2", "broken"]
    reads.clear()
    # The batch waits for the lock another transaction holds while it appends to h1: what the
    # batch's statement read before it had the lock is not used.
    async with toy.pool.acquire() as other:
        holding = other.transaction()
        await holding.start()
        await STORE.append(other, "h1", 4, [ro.DivisionCreated(division_id="h1-5", name="x", kind="division")],
                           context())
        batch = asyncio.create_task(blind("h1"))
        await asyncio.sleep(0.3)
        assert not batch.done()
        await holding.commit()
        assert await batch == ["h1-6"]
    assert reads == ["h1"]
    await toy.assert_store_whole()


def count_held_writes(monkeypatch) -> list[tuple[int, int]]:
    """Each write of appends held back: (appends, the caller's statements sent with them)."""
    from shared.eventstore import HeldLock

    written = []
    write = HeldLock.write_deferred

    async def counted(self, conn, also=()):
        if self.holds_rows():
            written.append((len(self._rows[0]), len(also)))
        await write(self, conn, also)

    monkeypatch.setattr(HeldLock, "write_deferred", counted)
    return written


async def test_a_batch_holds_its_appends_back_and_writes_them_with_its_replies(toy, monkeypatch):
    written = count_held_writes(monkeypatch)
    replies = await toy.together(*(toy.body(stream=f"s{n}", name=f"Phòng {n}", blind=True) for n in range(6)))
    assert all(r.ok for r in replies)
    # The lock was free: the head read with it is exact, and every append waits for the
    # statement that stores the replies (and moves the checkpoints).
    assert written == [(6, 2)]
    # A command loading a stream that an earlier command of its batch appended to sees it:
    # what is held back is written before the read.
    replies = await toy.together(toy.body(stream="s7", name="a", blind=True), toy.body(stream="s8", name="b"),
                                 toy.body(stream="s8", name="c"))
    assert [r.result["events_before"] for r in replies] == [0, 0, 1]
    assert written == [(6, 2), (2, 0), (1, 2)]
    # A command decided alone: its projection's one row goes in that statement too.
    written.clear()
    [reply] = await toy.together(toy.body(stream="s9", name="d", blind=True))
    assert reply.ok and written == [(1, 3)]
    assert ("s9", "s9-1") in await toy.divisions()
    await toy.assert_store_whole()


async def test_a_batch_that_waited_for_the_lock_writes_its_first_append_at_once(toy, monkeypatch):
    """Another transaction held the append lock as the batch began: what the batch read with
    the lock may be older than the lock, so its first append is written at once, checked,
    and the rest held back as usual."""
    from shared.eventstore import APPEND_LOCK

    written = count_held_writes(monkeypatch)
    async with toy.pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        await STORE.append(other, "s0", 0, [ro.DivisionCreated(division_id="s0-1", name="x", kind="division")],
                           context())
        batch = asyncio.create_task(toy.together(
            *(toy.body(stream=f"s{n}", name=f"Phòng {n}", blind=True) for n in (1, 2, 0))))
        await asyncio.sleep(0.3)
        assert not batch.done()  # waiting for the lock
        await tx.commit()
        replies = await batch
    assert [r.result["division_id"] for r in replies] == ["s1-1", "s2-1", "s0-2"]
    assert [appends for appends, _ in written] == [2]
    await toy.assert_store_whole()


def count_stream_reads(monkeypatch) -> list[tuple[int, int]]:
    """(from version, events found) of each stream read from here on."""
    reads = []
    read = STORE.read_stream_events

    async def counted(conn, stream_id, from_version=1):
        stored = await read(conn, stream_id, from_version)
        reads.append((from_version, len(stored)))
        return stored

    monkeypatch.setattr(STORE, "read_stream_events", counted)
    return reads


async def test_an_aggregate_folded_in_a_batch_is_taken_up_where_it_was_left(toy, idp, monkeypatch):
    """Later batches read only the events after the fold they keep (the command's own appends
    applied to it once it is decided), and fold afresh when what it was folded up to is gone
    (a batch given up) or another process appended meanwhile."""
    reads = count_stream_reads(monkeypatch)

    async def fold(*names: str, **extra) -> list:
        return await toy.together(*(toy.body(stream="s1", name=n, folded=True, **extra) for n in names))

    replies = await fold("A", "B", "C")
    assert [r.result["names_before"] for r in replies] == [[], ["A"], ["A", "B"]]
    # An empty stream keeps nothing; then each fold reads from the event it was kept at, the
    # last one the command before appended.
    assert reads == [(1, 0), (1, 1), (2, 1)]
    reads.clear()
    [reply] = await fold("D")
    assert reply.result["names_before"] == ["A", "B", "C"]
    assert reads == [(3, 1)]  # the event it was kept at, still there, and none after it
    # A batch given up: its appends are rolled back, and the fold kept at the last of them
    # ("E" as v5) is not trusted. Decided alone, "E" is v5 again, a new event.
    replies = await toy.together(toy.body(stream="s1", name="E", folded=True),
                                 toy.body(stream="s1", name="Lỗi", folded=True, bug=True))
    assert [r.ok for r in replies] == [True, False]
    assert replies[0].result["names_before"] == ["A", "B", "C", "D"]
    reads.clear()
    [reply] = await fold("F")
    assert reply.result["names_before"] == ["A", "B", "C", "D", "E"]
    assert reads == [(5, 1), (1, 5)]  # v5 is not the event kept: folded afresh
    # Another process appends: the kept fold still stands and its events are folded on.
    async with Toy(toy.url, idp) as replica:
        [other] = await replica.together(replica.body(stream="s1", name="G", folded=True))
    assert other.result["names_before"] == ["A", "B", "C", "D", "E", "F"]
    reads.clear()
    [reply] = await fold("H")
    assert reply.result["names_before"] == ["A", "B", "C", "D", "E", "F", "G"]
    assert reads == [(6, 2)]
    # Some other event where the kept one was: folded afresh.
    folds = toy.dispatcher._folds
    folds.keep("s1", ToyDivisions, folds.get("s1", ToyDivisions)._replace(event_id=uuid.uuid4()))
    reads.clear()
    [reply] = await fold("I")
    assert reply.result["names_before"] == ["A", "B", "C", "D", "E", "F", "G", "H"]
    assert reads == [(8, 1), (1, 8)]
    await toy.assert_store_whole(batches_given_up=1)


async def test_a_fold_whose_last_event_the_lock_read_reads_nothing(toy, idp, monkeypatch):
    """A command naming the stream it folds has the stream's last event read with its batch's
    lock: a fold kept at that very event (or at the last one appended in the batch since) is
    taken as it is, without a read; a fold kept at any other event is read on or folded afresh."""
    reads = count_stream_reads(monkeypatch)
    route = toy.router.routes["AddDivision"]
    monkeypatch.setitem(toy.router.routes, "AddDivision",
                        dataclasses.replace(route, streams=lambda cmd, tenant, identity: [cmd.stream]))

    async def fold(*names: str, **extra) -> list:
        replies = await toy.together(*(toy.body(stream="s1", name=n, folded=True, **extra) for n in names))
        return [r.result["names_before"] if r.ok else r.error.code for r in replies]

    assert await fold("A", "B") == [[], ["A"]]
    assert reads == [(1, 0), (1, 1)]  # an empty stream keeps nothing
    reads.clear()
    assert await fold("C", "D") == [["A", "B"], ["A", "B", "C"]]
    assert reads == []
    # A batch given up: its commands are decided again alone, outside any batch (each reads
    # the whole stream), and the fold kept at the rolled-back "E" is not the last event the
    # next batch's lock reads: it is read on from, found gone, and folded afresh.
    replies = await toy.together(toy.body(stream="s1", name="E", folded=True),
                                 toy.body(stream="s1", name="Lỗi", folded=True, bug=True))
    assert [r.ok for r in replies] == [True, False]
    assert replies[0].result["names_before"] == ["A", "B", "C", "D"]
    assert reads == [(1, 4), (1, 5)]
    reads.clear()
    assert await fold("F") == [["A", "B", "C", "D", "E"]]
    assert reads == [(5, 1), (1, 5)]
    reads.clear()
    # Another process appends: its event is the last one, so the kept fold is read on from.
    async with Toy(toy.url, idp) as replica:
        [other] = await replica.together(replica.body(stream="s1", name="G", folded=True))
    assert other.ok
    reads.clear()
    assert await fold("H") == [["A", "B", "C", "D", "E", "F", "G"]]
    assert reads == [(6, 2)]
    reads.clear()
    assert await fold("I", "J") == [["A", "B", "C", "D", "E", "F", "G", "H"],
                                   ["A", "B", "C", "D", "E", "F", "G", "H", "I"]]
    assert reads == []
    # Some other event where the kept one was: folded afresh.
    folds = toy.dispatcher._folds
    folds.keep("s1", ToyDivisions, folds.get("s1", ToyDivisions)._replace(event_id=uuid.uuid4()))
    assert await fold("K") == [["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]]
    assert reads == [(10, 1), (1, 10)]
    await toy.assert_store_whole(batches_given_up=1)


async def test_two_processes_deciding_batches_at_once_write_one_chain(toy, idp):
    """Two replicas of a service, each with its own batches, on one database: the append lock
    serialises the batches, nothing conflicts, the chain and the streams stay whole."""
    async with Toy(toy.url, idp) as replica:
        rounds = await asyncio.gather(*(
            world.together(*(world.body(stream=f"s{n % 4}", name=f"Phòng {w}-{r}-{n}") for n in range(8)))
            for r in range(5) for w, world in enumerate((toy, replica))
        ))
    assert all(reply.ok for replies in rounds for reply in replies)
    events = await toy.events()
    assert len(events) == 80
    for stream in ("s0", "s1", "s2", "s3"):
        assert [e["stream_version"] for e in events if e["stream_id"] == stream] == list(range(1, 21))
    await toy.assert_store_whole()


async def test_the_batcher_decides_what_waits_together_and_answers_each(toy):
    batcher = CommandBatcher(toy.dispatcher, max_batch=8)
    try:
        replies = await asyncio.gather(*(
            batcher.decide(toy.dispatcher.triage(toy.body(stream=f"s{n % 5}", name=f"Phòng {n}")))
            for n in range(30)
        ))
    finally:
        await batcher.stop()
    assert all(r.ok for r in replies), [r.error for r in replies if not r.ok]
    assert 1 < batcher.largest_batch <= 8
    assert len(await toy.events()) == 30
    await toy.assert_store_whole()


async def test_a_redelivered_command_is_decided_on_its_own(toy):
    batcher = CommandBatcher(toy.dispatcher, max_batch=8)
    sizes = []
    run_commands = toy.dispatcher.run_commands

    async def recording(commands):
        sizes.append(len(commands))
        return await run_commands(commands)

    toy.dispatcher.run_commands = recording
    try:
        first = asyncio.ensure_future(batcher.decide(toy.dispatcher.triage(toy.body(stream="s0", name="Đầu"))))
        await asyncio.sleep(0)
        rest = [batcher.decide(toy.dispatcher.triage(toy.body(stream=f"s{n}", name=f"Phòng {n}")), alone=n == 3)
                for n in range(1, 7)]
        replies = [await first, *await asyncio.gather(*rest)]
    finally:
        await batcher.stop()
    assert all(r.ok for r in replies)
    # The first alone (nothing else waited yet), then 1-2, the redelivered 3 alone, then 4-6.
    assert sizes == [1, 2, 1, 3]


async def test_the_roster_service_decides_commands_arriving_together_in_batches(system):
    runtime = await system.start(roster_definition())
    assert (await system.send("roster", "ImportDepartment", json.loads(
        (__import__("pathlib").Path(__file__).parents[2] / "services/roster/demo/department.json").read_text()))).ok
    conn = await asyncpg.connect(runtime.settings.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM events")
        people = [r["person_id"] for r in await conn.fetch(
            "SELECT person_id FROM dir_people WHERE tenant = $1 AND 'staff' = ANY(roles) ORDER BY person_id LIMIT 30",
            TENANT)]
        replies = await asyncio.gather(*(
            system.send("roster", "ChangeRoles", {"person_id": p, "roles": ["staff", "secret_document_handler"]})
            for p in people
        ))
        assert all(r.ok for r in replies), [r.error for r in replies if not r.ok]
        assert runtime.batcher.largest_batch > 1
        assert runtime.batcher.dispatcher.batches > 0 and runtime.batcher.dispatcher.batches_given_up == 0
        assert await conn.fetchval("SELECT count(*) FROM events") == before + len(people)
        changed = await conn.fetchval(
            "SELECT count(*) FROM dir_people WHERE tenant = $1 AND 'secret_document_handler' = ANY(roles)", TENANT)
        assert changed >= len(people)
        verdict = await verify_store(conn)
        assert verdict.intact, verdict.problems
    finally:
        await conn.close()


async def test_a_batch_reads_its_actors_ahead_and_afresh_once_the_directory_changed(system):
    """The actors' directory rows are read with the batch's lock; a command of the batch that
    changes the directory makes the commands after it read them again: someone removed earlier
    in the batch is refused as they would be alone."""
    runtime = await system.start(roster_definition())
    department = json.loads((__import__("pathlib").Path(__file__).parents[2]
                             / "services/roster/demo/department.json").read_text())
    assert (await system.send("roster", "ImportDepartment", department)).ok
    dispatcher = runtime.batcher.dispatcher
    leaving, staying = (p["id"] for p in department["people"][-2:])

    def body(command: str, payload: dict, token: str) -> bytes:
        return json.dumps({"command_id": str(uuid.uuid4()), "type": command, "tenant": TENANT,
                           "token": token, "payload": payload}).encode()

    declare = {"status": "well"}
    batch = [
        body("DeclareHealth", declare, system.token(leaving)),
        body("DeclareHealth", declare, system.token(staying)),
        body("RemovePerson", {"person_id": leaving}, system.admin_token()),
        body("DeclareHealth", declare, system.token(leaving)),
        body("DeclareHealth", declare, system.token(staying)),
        body("DeclareHealth", declare, system.token("nobody-of-this-department")),
    ]
    batches_before = dispatcher.batches
    replies = await dispatcher.run_commands([dispatcher.triage(b) for b in batch])
    assert dispatcher.batches == batches_before + 1 and dispatcher.batches_given_up == 0
    assert [r.ok for r in replies] == [True, True, True, False, True, False]
    assert replies[3].error.code == replies[5].error.code == "forbidden"


async def roster_with_demo(system):
    """Roster running with the demo department imported: the runtime, the department, its Chief
    of Office."""
    runtime = await system.start(roster_definition())
    department = json.loads((__import__("pathlib").Path(__file__).parents[2]
                             / "services/roster/demo/department.json").read_text())
    assert (await system.send("roster", "ImportDepartment", department)).ok
    return runtime, department, next(p for p in department["people"] if "chief_of_office" in p["roles"])


def change_roles(system, chief: dict, person_id: str, roles: list[str]) -> bytes:
    """A `ChangeRoles` command of the Chief of Office's."""
    return json.dumps({"command_id": str(uuid.uuid4()), "type": "ChangeRoles", "tenant": TENANT,
                       "token": system.token(chief["id"]),
                       "payload": {"person_id": person_id, "roles": roles}}).encode()


async def test_a_directory_change_makes_a_batch_read_again_only_the_person_it_changed(system, monkeypatch):
    """The Chief of Office changing others' roles in one batch is read once, with the lock; once
    a command changes the Chief's own roles, the Chief is read again and refused after it."""
    from shared import directory

    runtime, department, chief = await roster_with_demo(system)
    dispatcher = runtime.batcher.dispatcher
    others = [p for p in department["people"] if p["roles"] == ["staff"]][:3]
    read_again: list[str] = []
    person = directory.Directory.person

    async def counting(self, person_id):
        read_again.append(person_id)
        return await person(self, person_id)

    monkeypatch.setattr(directory.Directory, "person", counting)

    def change(person_id: str, roles: list[str]) -> bytes:
        return change_roles(system, chief, person_id, roles)

    batch = [change(p["id"], ["staff", "secret_document_handler"]) for p in others]
    batch.append(change(chief["id"], ["division_head"]))  # the Chief gives the office up
    batch.append(change(others[0]["id"], ["staff"]))
    batches_before = dispatcher.batches
    replies = await dispatcher.run_commands([dispatcher.triage(b) for b in batch])
    assert dispatcher.batches == batches_before + 1 and dispatcher.batches_given_up == 0
    assert [r.ok for r in replies] == [True, True, True, True, False]
    assert replies[4].error.code == "forbidden"
    assert read_again == [chief["id"]]  # after the Chief's own change only


async def test_a_batch_writes_its_directory_changes_with_its_replies_and_the_later_change_wins(system, monkeypatch):
    """Role changes of different people in one batch go into the statement that stores the
    replies (no round trip of their own); the same person changed twice in a batch ends with
    the later change, as one by one."""
    from shared import directory

    runtime, department, chief = await roster_with_demo(system)
    dispatcher = runtime.batcher.dispatcher
    first, second = [p["id"] for p in department["people"] if p["roles"] == ["staff"]][:2]
    sent_apart: list[int] = []
    executemany = asyncpg.Connection.executemany

    async def counting(self, command, args, **kwargs):
        if command == directory._CHANGE_ROLES:
            sent_apart.append(len(args))
        return await executemany(self, command, args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "executemany", counting)

    def change(person_id: str, roles: list[str]) -> bytes:
        return change_roles(system, chief, person_id, roles)

    async def roles() -> dict[str, list[str]]:
        async with runtime.pool.acquire() as conn:
            return {r["person_id"]: sorted(r["roles"]) for r in await conn.fetch(
                "SELECT person_id, roles FROM dir_people WHERE tenant = $1 AND person_id = ANY($2::text[])",
                TENANT, [first, second])}

    handler = ["secret_document_handler", "staff"]
    replies = await dispatcher.run_commands([dispatcher.triage(change(p, handler)) for p in (first, second)])
    assert all(r.ok for r in replies) and sent_apart == []
    assert await roles() == {first: handler, second: handler}

    replies = await dispatcher.run_commands([dispatcher.triage(b) for b in (
        change(first, ["staff"]), change(second, ["staff"]), change(first, ["division_head", "staff"]))])
    assert all(r.ok for r in replies)
    assert sent_apart == [3]  # in order, in a round trip of their own
    assert await roles() == {first: ["division_head", "staff"], second: ["staff"]}


async def test_a_batch_and_the_leave_consumer_take_their_locks_in_one_order(toy):
    """Roster's leave consumer takes the department's roster lock, then appends; a batch holds
    the append lock from its start, then a roster command in it takes the department's lock.
    Taken in opposite orders the two would deadlock; the roster lock takes the append lock
    first, so the batch simply waits."""
    from services.roster import book
    from shared.eventstore import APPEND_LOCK

    consumer_locked = asyncio.Event()

    async def consumer() -> None:
        async with toy.pool.acquire() as conn, conn.transaction():
            await book.lock(conn, TENANT)
            consumer_locked.set()
            await asyncio.sleep(0.3)  # the batch starts meanwhile
            await STORE.append(conn, "s-consumer", 0, [ro.DivisionCreated(
                division_id="gap", name="Khoảng trống", kind="division")], context())

    async def batch() -> None:
        await consumer_locked.wait()
        async with toy.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
            await book.lock(conn, TENANT)

    await asyncio.wait_for(asyncio.gather(consumer(), batch()), timeout=10)
    assert len(await toy.events()) == 1
