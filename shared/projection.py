"""Projections: read tables built from events, with a checkpoint, rebuildable from zero.

A projection is fed either by its own service's event store (`source="own"`) or by one of
the service's subscriptions (`source=<subscription name>`), whose events the inbox keeps.
"""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import asyncpg

from shared.contracts import Envelope, Event, decode
from shared.eventstore import EventStore

Apply = Callable[[asyncpg.Connection, Envelope, Event], Awaitable[None]]
E = TypeVar("E", bound=Event)


class Projection:
    def __init__(self, name: str, tables: tuple[str, ...], source: str = "own") -> None:
        self.name = name
        self.tables = tables
        self.source = source
        self._handlers: dict[str, Apply] = {}

    def on(self, event_cls: type[E]) -> Callable[[Apply], Apply]:
        def register(fn: Apply) -> Apply:
            self._handlers[event_cls.event_type] = fn
            return fn

        return register

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def apply(self, conn: asyncpg.Connection, envelope: Envelope, event: Event) -> None:
        handler = self._handlers.get(envelope.event_type)
        if handler is not None:
            await handler(conn, envelope, event)

    async def checkpoint(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval(
            "SELECT coalesce((SELECT position FROM projection_checkpoints WHERE projection = $1), 0)",
            self.name,
        )

    async def advance(self, conn: asyncpg.Connection, position: int) -> None:
        await conn.execute(
            "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, $2) "
            "ON CONFLICT (projection) DO UPDATE SET position = greatest("
            "projection_checkpoints.position, EXCLUDED.position)",
            self.name,
            position,
        )

    @property
    def plain_checkpoint(self) -> bool:
        """Whether `advance` is the one above (a row in projection_checkpoints), which a caller
        may fold into a statement of its own; subclasses may keep their checkpoint otherwise."""
        return type(self).advance is Projection.advance

    @staticmethod
    async def advance_all(
        conn: asyncpg.Connection, projections, position: int, *, plain_done: bool = False
    ) -> None:
        """`advance` of several projections to one position, the plain checkpoints in one
        statement (or, with `plain_done`, already moved by the caller's own statement)."""
        plain = [p.name for p in projections if p.plain_checkpoint]
        if plain and not plain_done:
            await conn.execute(
                "INSERT INTO projection_checkpoints (projection, position) "
                "SELECT unnest($1::text[]), $2 ON CONFLICT (projection) DO UPDATE SET position = "
                "greatest(projection_checkpoints.position, EXCLUDED.position)",
                plain,
                position,
            )
        for projection in projections:
            if not projection.plain_checkpoint:
                await projection.advance(conn, position)

    async def rebuild(self, conn: asyncpg.Connection, store: EventStore, batch: int = 10_000) -> int:
        """Drop the projection's rows and replay its source from the start, in one transaction.

        The handlers' writes are batched (`BatchedWrites`). Should anything go wrong that way (a
        failing statement, a handler using what batching cannot give it), the transaction is
        rolled back and the replay runs again one statement at a time, exactly as written, so
        the outcome (rebuilt tables or the error) is the handlers' own.
        """
        with _rare_full_collections():
            try:
                return await self._replay(conn, store, batch, batched=True)
            except Exception:
                if conn.is_closed():
                    raise
                return await self._replay(conn, store, batch, batched=False)

    async def _replay(self, conn: asyncpg.Connection, store: EventStore, batch: int, batched: bool) -> int:
        applied = 0
        async with conn.transaction():
            # Lock out concurrent appends so the rebuilt tables match one point of the stream.
            await conn.execute(f"TRUNCATE {', '.join(self.tables)}")
            await conn.execute("DELETE FROM projection_checkpoints WHERE projection = $1", self.name)
            target = await BatchedWrites.over(conn) if batched else conn
            source_table = "events" if self.source == "own" else "inbox"
            try:
                position = 0
                rows = await self._source_rows(conn, store, position, batch)
                while rows:
                    envelopes = self._envelopes(store, rows)
                    for env in envelopes:
                        await self.apply(target, env, decode(env))
                        applied += 1
                        if batched and not applied % YIELD_EVERY:
                            # Deferred writes never wait, so nothing here gives way to the
                            # batch being sent in the background: without this it would send
                            # its first socket buffer only and the server would sit idle.
                            await asyncio.sleep(0)
                    position = envelopes[-1].global_position or position
                    if batched:
                        # Read the next batch first, then send this batch's writes, which the
                        # server applies while the next batch is decoded here.
                        await target.settle(also_send=source_table)
                    rows = await self._source_rows(conn, store, position, batch)
                    if batched:
                        target.send_in_background()
                if batched:
                    await target.flush()
            finally:
                if batched:
                    await target.abandon()
            await self.advance(conn, position)
        return applied

    async def _source_rows(
        self, conn: asyncpg.Connection, store: EventStore, after: int, limit: int
    ) -> list[asyncpg.Record]:
        if self.source == "own":
            return await store.read_rows(conn, after, limit)
        return await conn.fetch(
            "SELECT seq, envelope FROM inbox WHERE consumer = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            self.source,
            after,
            limit,
        )

    def _envelopes(self, store: EventStore, rows: list[asyncpg.Record]) -> list[Envelope]:
        if self.source == "own":
            return [store.envelope(r) for r in rows]
        return [
            Envelope.model_validate_json(r["envelope"]).model_copy(update={"global_position": r["seq"]})
            for r in rows
        ]


YIELD_EVERY = 200  # events decoded between two chances for the background send to go on


@contextmanager
def _rare_full_collections() -> Iterator[None]:
    """A replay keeps a batch's records, envelopes and events alive while it applies them, so
    they outlive the young generations and soon make the collector walk the whole heap, again
    and again: a third of a rebuild's time (17,600 against 25,400 events/s). None of them
    form cycles; the young generations are still collected as usual. Replays that overlap
    (in one event loop) share the change, and the last to finish undoes it."""
    global _replays, _thresholds_before
    if not _replays:
        _thresholds_before = gc.get_threshold()
        young, middle, full = _thresholds_before
        gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
    _replays += 1
    try:
        yield
    finally:
        _replays -= 1
        if not _replays:
            gc.set_threshold(*_thresholds_before)


FULL_COLLECTION_EVERY = 1000  # middle-generation collections between full ones (Python's: 10)
_replays = 0  # replays under way in this process
_thresholds_before = gc.get_threshold()


class BatchingUnavailable(RuntimeError):
    """A handler used the connection in a way `BatchedWrites` does not batch."""


class NoConnection:
    """Where `BatchedWrites` only collects: sending anything (a read, a flush) is refused, so a
    handler that needs the database before its writes is seen."""

    def __getattr__(self, name: str):
        raise BatchingUnavailable(f"connection.{name}: only deferred writes are collected here")


class _DeferredStatus:
    """What a deferred `execute` returns: its status is not known yet, so any use of it fails
    (and a rebuild then replays one statement at a time, where the status is real)."""

    def _refuse(self, *_args, **_kwargs):
        raise BatchingUnavailable("the status of a batched statement is not known")

    __eq__ = __ne__ = __bool__ = __str__ = __len__ = __contains__ = __iter__ = __hash__ = _refuse

    def __getattr__(self, name):
        self._refuse()


DEFERRED = _DeferredStatus()
# Trigger functions that refuse a change and touch nothing (shared/sql/backbone: the stored
# events' immutability): a table with only these is no barrier to batching.
REFUSING_TRIGGERS = ("events_are_immutable",)
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
_MODIFIES = re.compile(r"\s*(insert|update|delete)\b", re.IGNORECASE)
_KEYED: dict[str, int] = {}  # statement -> how many leading arguments are its row's key (`rows_keyed_by`)


def rows_keyed_by(width: int, *statements: str) -> None:
    """Declare data-modifying statements that write one row, named by their first `width`
    arguments, and read no other: several executions with different keys may then run as
    expressions of one statement (`BatchedWrites.take_joinable`), where they see the same
    snapshot and could not see each other. (Two expressions updating one row would keep one
    update, which one PostgreSQL does not say: executions sharing a key are never joined.)"""
    _KEYED.update(dict.fromkeys(statements, width))


def _distinct_keys(query: str, rows: list) -> bool:
    width = _KEYED.get(query)
    return width is not None and len({tuple(row[:width]) for row in rows}) == len(rows)


def _after_flush(name: str):
    """A read method of `BatchedWrites`: it sees every write before it."""

    async def read(self, *args, **kwargs):
        await self.flush()
        return await getattr(self._conn, name)(*args, **kwargs)

    read.__name__ = name
    return read


class BatchedWrites:
    """The connection projection handlers get during a rebuild, a consumer's batch or a batch
    of commands: fewer round trips, same result.

    Each `execute`/`executemany` with arguments is deferred; a deferred statement's rows go to
    the server as one pipelined `executemany`, in the order they were written. Different
    statements may be sent out of their interleaved order only when they touch disjoint sets
    of tables (every table named in the statement, its foreign-key neighbours included), so
    no statement can observe the reordering. Anything else waits for what is deferred first:
    every read (`fetch*`), a statement naming no known table or one with triggers, a
    statement sharing a table with a deferred one. Other uses of the connection are refused.
    """

    def __init__(self, conn: asyncpg.Connection, related: dict[str, frozenset[str]],
                 barriers: frozenset[str], limit: int = 50_000) -> None:
        self._conn = conn
        self._related = related  # table -> itself and its foreign-key neighbours
        self._barriers = barriers  # tables with triggers: never deferred
        self._limit = limit
        self._pending: dict[str, list] = {}
        self._touches: dict[str, frozenset[str] | None] = {}
        self._count = 0
        self._sending: asyncio.Task | None = None  # statements on their way, the connection busy

    @classmethod
    async def over(cls, conn: asyncpg.Connection) -> BatchedWrites:
        return cls(conn, *await cls.catalog(conn))

    @staticmethod
    async def catalog(conn: asyncpg.Connection) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        """What batching needs of the schema: each table with its foreign-key neighbours, and
        the tables with triggers and the views. (A running service's schema does not change:
        keep it.)"""
        tables = await conn.fetch(
            "SELECT c.relname, c.relkind IN ('v', 'm', 'f') OR EXISTS (SELECT 1 FROM pg_trigger t "
            "JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = c.oid AND p.proname <> ALL($1)) "
            "AS barrier FROM pg_class c "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relnamespace = ANY("
            "SELECT oid FROM pg_namespace WHERE nspname = ANY(current_schemas(false)))",
            list(REFUSING_TRIGGERS),
        )
        related = {r["relname"]: {r["relname"]} for r in tables}
        for r in await conn.fetch(
            "SELECT c.conrelid::regclass::text AS a, c.confrelid::regclass::text AS b "
            "FROM pg_constraint c WHERE c.contype = 'f'"
        ):
            a, b = r["a"].split(".")[-1].strip('"'), r["b"].split(".")[-1].strip('"')
            related.setdefault(a, {a}).add(b)
            related.setdefault(b, {b}).add(a)
        # A view's tables are not known here, nor what a trigger touches (but one that only
        # refuses the change): never deferred.
        barriers = frozenset(r["relname"] for r in tables if r["barrier"])
        return {t: frozenset(v) for t, v in related.items()}, barriers

    def _tables_of(self, query: str) -> frozenset[str] | None:
        """The tables a statement may touch, or None when it must not be deferred."""
        if query in self._touches:
            return self._touches[query]
        named = {w for w in _WORD.findall(query.lower()) if w in self._related}
        touched = frozenset().union(*(self._related[t] for t in named)) if named else None
        if touched is not None and touched & self._barriers:
            touched = None
        if len(self._touches) < 10_000:
            self._touches[query] = touched
        return touched

    async def execute(self, query: str, *args, timeout: float | None = None):
        if not args or timeout is not None:
            await self.flush()
            return await self._conn.execute(query, *args, timeout=timeout)
        await self._defer(query, [args])
        return DEFERRED

    async def executemany(self, command: str, args, *, timeout: float | None = None) -> None:
        rows = [tuple(a) for a in args]
        if timeout is not None:
            await self.flush()
            await self._conn.executemany(command, rows, timeout=timeout)
        elif rows:
            await self._defer(command, rows)

    async def _defer(self, query: str, rows: list) -> None:
        touched = self._tables_of(query)
        if touched is None:
            await self.flush()
            await self._conn.executemany(query, rows)
            return
        if query not in self._pending:
            # Deferred statements touch pairwise disjoint tables; one sharing a table with
            # any of them waits until they are sent.
            if any(self._touches[q] & touched for q in self._pending):
                await self.flush()
            self._pending[query] = []
        self._pending[query].extend(rows)
        self._count += len(rows)
        if self._count >= self._limit:
            await self.flush()

    async def before(self, query: str) -> None:
        """Before `query` runs on the connection beside this one: send what is deferred that it
        may read or write (everything, when the tables it touches are not known). A statement
        reaching a deferred table only through a function of its own is not seen: the
        schemas have none."""
        if self._pending:
            touched = self._tables_of(query)
            if touched is None or any(self._touches[q] & touched for q in self._pending):
                await self.flush()

    def discard(self) -> None:
        """Forget what is deferred (its savepoint was rolled back)."""
        self._pending, self._count = {}, 0

    def take_joinable(self, apart_from: frozenset[str]) -> list[tuple[str, tuple]]:
        """The deferred statements that can go as expressions of another statement (`together`),
        taken out unsent in the order first written: data-modifying (a SELECT there would not
        run), touching none of `apart_from` (the other statement's tables, which its
        expressions would see unchanged), and with one row, or rows of different keys of a
        statement declared keyed (`rows_keyed_by`), each row its own expression. The rest stay
        deferred; being pairwise disjoint, they may be sent before or after."""
        joinable = []
        for query, rows in list(self._pending.items()):
            if not _MODIFIES.match(query) or self._touches[query] & apart_from:
                continue
            if len(rows) > 1 and not _distinct_keys(query, rows):
                continue
            joinable.extend((query, row) for row in rows)
            del self._pending[query]
            self._count -= len(rows)
        return joinable

    @property
    def holds(self) -> bool:
        return bool(self._pending)

    async def flush(self) -> None:
        """Send everything deferred and wait until the server has applied it."""
        await self.settle()
        pending, self._pending, self._count = self._pending, {}, 0
        await self._send(pending)

    def send_in_background(self) -> None:
        """Start sending what is deferred; the connection is busy until `settle`."""
        assert self._sending is None, "settle first"
        pending, self._pending, self._count = self._pending, {}, 0
        if pending:
            self._sending = asyncio.get_running_loop().create_task(self._send(pending))

    async def settle(self, also_send: str | None = None) -> None:
        """Wait for statements sent in the background (raising their error): the connection is
        free again. With `also_send` (a table name), deferred statements touching that table
        are sent first, so a read of it sees them."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            await sending
        if also_send is not None and any(
            also_send in (self._touches.get(q) or ()) for q in self._pending
        ):
            await self.flush()

    async def abandon(self) -> None:
        """After a failure: let statements on their way finish (their error is not the one
        that matters), so the transaction can be rolled back."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            try:
                await sending
            except Exception:  # noqa: BLE001
                pass

    async def _send(self, pending: dict[str, list]) -> None:
        for query, rows in pending.items():
            await self._conn.executemany(query, rows)

    fetch, fetchrow, fetchval, fetchmany = (_after_flush(n) for n in ("fetch", "fetchrow", "fetchval", "fetchmany"))

    def is_in_transaction(self) -> bool:
        return self._conn.is_in_transaction()

    def __getattr__(self, name: str):
        raise BatchingUnavailable(f"connection.{name} is not available to a batched rebuild")
