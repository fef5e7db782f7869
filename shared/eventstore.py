"""The append-only event store each service keeps in its own database.

Appends take a transaction-scoped advisory lock before assigning global positions, so
positions are handed out in commit order: a reader that has seen position N has seen every
event below N. That is what lets the relay and rebuilds follow a plain checkpoint without
ever skipping a transaction that committed late.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
from opentelemetry import propagate
from pydantic_core import from_json

from shared import chain
from shared.contracts import Envelope, Event

APPEND_LOCK = 7_0001  # advisory lock key serialising position assignment
# Every append notifies this channel at commit, with the position of its last event as payload.
NOTIFY_CHANNEL = "events_appended"


class ConcurrencyError(Exception):
    """The stream moved on since it was read: nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}: nothing was written"
        )
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class AppendsRefused(Exception):
    """Appends held back in a batch were not written: the head or a stream's version was not
    what they were built on. Nothing was written."""


class StoredEvent(NamedTuple):
    """A stored event as `shared.contracts.decode` reads it (type, version, payload), with its
    place in its stream."""

    event_type: str
    schema_version: int
    payload: dict
    stream_version: int
    event_id: uuid.UUID


@dataclass(frozen=True)
class AppendContext:
    """Who caused an append and why: copied into every envelope written."""

    tenant: str
    actor: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None


class StreamVersions:
    """The versions of the streams a service's batches appended to or read, remembered across
    batches while nothing else appends: trusted only while the store's head is where the
    last batch left it. (The baseline's producers keep their versions the same way.) A stale
    version costs a retry (or, for an append held back, the batch given up), never a wrong
    write: every append checks the stream's version in the database."""

    def __init__(self, limit: int = 100_000) -> None:
        self._known: OrderedDict[str, int] = OrderedDict()
        self._limit = limit
        self._head: int | None = None  # the store's head when `_known` was last exact

    def get(self, stream_id: str) -> int | None:
        return self._known.get(stream_id)

    def check_head(self, head: int) -> None:
        """At the top of a batch: another transaction appended since (the head moved), so
        any version known may be stale."""
        if head != self._head:
            self.forget()
            self._head = head

    def forget(self, stream_id: str | None = None) -> None:
        if stream_id is None:
            self._known.clear()
            self._head = None
        else:
            self._known.pop(stream_id, None)

    def committed(self, lock: HeldLock) -> None:
        """A batch committed: what it saw and wrote is known, as of the head it left."""
        for stream_id, version in lock.versions_seen.items():
            self._known[stream_id] = version
            self._known.move_to_end(stream_id)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)
        self._head = lock.position


class Folded(NamedTuple):
    state: object
    version: int
    event_id: uuid.UUID  # the event at `version`, which proves the fold still stands


class FoldedStreams:
    """Aggregates folded from their streams, kept between a service's batches of commands so
    that deciding on a long stream (a department's directory grows by every change for
    years) reads and folds only what was appended since.

    A fold is trusted only once the store still holds the event it was folded up to, at that
    version: a batch given up takes its appends away, and another process may have appended
    anything after it. Only batches use it: they hold the append lock from their start, so no
    two commands work on a kept aggregate at once; the state is advanced in place, which is
    safe because decisions never change the aggregate (`apply` alone does)."""

    def __init__(self, limit: int = 1_000) -> None:
        self._kept: OrderedDict[tuple[str, type], Folded] = OrderedDict()
        self._limit = limit

    def get(self, stream_id: str, kind: type) -> Folded | None:
        return self._kept.get((stream_id, kind))

    def keep(self, stream_id: str, kind: type, folded: Folded) -> None:
        self._kept[(stream_id, kind)] = folded
        self._kept.move_to_end((stream_id, kind))
        while len(self._kept) > self._limit:
            self._kept.popitem(last=False)

    def forget(self, stream_id: str, kind: type) -> None:
        self._kept.pop((stream_id, kind), None)


@dataclass
class HeldLock:
    """The append lock taken at the top of a transaction that appends many times (a batch of
    commands): its appends do not take the lock again, and each remembers the head it wrote,
    so the next one writes in a single statement that checks the head and the stream's version
    itself. A savepoint rolled back may have taken that head away again: the check sees it,
    and the head is read afresh (`forget` says so without the failed attempt).

    `take` takes the lock and reads the head in one statement; without it, the first append
    reads the head."""

    position: int | None = None  # None: not read yet in this transaction
    chain_hash: str | None = None
    known: StreamVersions | None = None  # versions remembered from earlier batches
    versions_seen: dict[str, int] = field(default_factory=dict)  # in this transaction
    # The last event (version, id) of streams read with the lock held from the start (exact),
    # moved on by this transaction's own appends to them (`appended`).
    heads: dict[str, tuple[int, uuid.UUID | None]] = field(default_factory=dict)
    # Appends held back (`defer`), to be written together by `write_deferred`: their rows
    # (the insert's columns), the version each of their streams was at, and the head the
    # first of them was chained to.
    defer: bool = False
    # The head is known exactly: `take` found the lock free, or an append under the lock was
    # written and checked. (Otherwise the head `take` read predates the lock, and the first
    # append is written at once.)
    exact: bool = False
    _rows: list[list] | None = None
    _streams: dict[str, int] = field(default_factory=dict)
    _chained_to: tuple[int, str] | None = None

    def holds_rows(self, stream_id: str | None = None) -> bool:
        """Appends wait to be written (of `stream_id`, or of any stream)."""
        return bool(self._streams) if stream_id is None else stream_id in self._streams

    def _hold(self, rows: list[list], stream_id: str, expected_version: int) -> None:
        if self._rows is None:
            self._rows, self._chained_to = [list(c) for c in rows], (self.position, self.chain_hash)
        else:
            for column, values in zip(self._rows, rows, strict=True):
                column.extend(values)
        self._streams.setdefault(stream_id, expected_version)

    async def write_deferred(self, conn: asyncpg.Connection, also: Sequence[tuple[str, Sequence]] = ()) -> None:
        """Write the appends held back, in one statement that checks the head they were chained
        to and each stream's version (under the lock only this transaction appends, so a
        mismatch means something remembered was wrong: nothing is written, `AppendsRefused`,
        and the caller rolls back). `also`: writes of the caller's (statements with their
        arguments) sent in the same statement, one round trip for all; without appends held
        back, in a statement of their own."""
        if self._rows is None:
            await write_together(conn, also)
            return
        rows, streams, (position, chain_hash) = self._rows, self._streams, self._chained_to
        self._rows, self._streams, self._chained_to = None, {}, None
        args = [*rows, list(streams), list(streams.values()), position, chain_hash]
        ctes, also_args = together(also, len(args))
        written = await conn.fetchrow(
            f"WITH {_DEFERRED_CTES}{', ' + ctes if ctes else ''} {_DEFERRED_RESULT}", *args, *also_args)
        if not written["ok"]:
            self.forget()
            raise AppendsRefused(f"{len(rows[0])} appends held back no longer fit the store")

    def forget(self) -> None:
        self.position = self.chain_hash = None
        self.exact = False
        # The head moved under us (a savepoint rolled back, another transaction appended):
        # any version known may be stale.
        self.versions_seen.clear()
        self.heads.clear()
        if self.known is not None:
            self.known.forget()

    def version_of(self, stream_id: str) -> int | None:
        """The stream's version as this transaction knows it without reading it (None: read it)."""
        if (version := self.versions_seen.get(stream_id)) is not None:
            return version
        return self.known.get(stream_id) if self.known is not None else None

    def saw(self, stream_id: str, version: int) -> None:
        self.versions_seen[stream_id] = version

    def saw_head(self, stream_id: str, version: int, event_id: uuid.UUID | None) -> None:
        """The stream's last event, read with the lock held from the start of the transaction."""
        self.versions_seen[stream_id] = version
        self.heads[stream_id] = (version, event_id)

    def appended(self, stream_id: str, expected_version: int, count: int, last_event_id: uuid.UUID) -> None:
        """This transaction appended `count` events to the stream at `expected_version` (held
        back or written: either is checked before the commit, or the batch is given up)."""
        if self.heads.get(stream_id, (None,))[0] == expected_version:
            self.heads[stream_id] = (expected_version + count, last_event_id)
        else:
            self.heads.pop(stream_id, None)
        self.versions_seen[stream_id] = expected_version + count

    def ends_at(self, stream_id: str, version: int, event_id: uuid.UUID) -> bool:
        """The stream's last event is known, without reading, to be `event_id` at `version`:
        read so with the lock, or appended by this transaction after the last event so read."""
        return self.heads.get(stream_id) == (version, event_id) and self.versions_seen.get(stream_id) == version

    def conflicted(self, stream_id: str) -> None:
        self.versions_seen.pop(stream_id, None)
        self.heads.pop(stream_id, None)
        if self.known is not None:
            self.known.forget(stream_id)

    async def take(self, conn: asyncpg.Connection, extra: str = "", *args):
        """Take the append lock at the top of `conn`'s transaction, and read the store's head in
        the same statement, with `extra` (a select-list expression over `args` from $2 on).

        The statement reads as of its start. When the lock was free then, nobody appended in
        between (but for a commit in the instant between the statement's start and the lock,
        which the first write of the appends held back sees: the batch is then given up), so
        the head is exact and even the first append can be held back. When another transaction
        held the lock, the statement waits for it and reads what was there before: the first
        append is then written at once, sees the head moved, and reads it again."""
        tail = (
            (f", {extra} AS extra" if extra else "")
            + " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT global_position, chain_hash "
            "FROM events ORDER BY global_position DESC LIMIT 1) AS h ON true"
        )
        row = await conn.fetchrow(
            "SELECT pg_try_advisory_xact_lock($1) AS free, h.global_position, h.chain_hash" + tail,
            APPEND_LOCK, *args,
        )
        self.exact = row["free"]
        if not row["free"]:
            row = await conn.fetchrow(
                "SELECT pg_advisory_xact_lock($1), h.global_position, h.chain_hash" + tail, APPEND_LOCK, *args)
        self.position, self.chain_hash = row["global_position"] or 0, row["chain_hash"] or chain.GENESIS
        if self.known is not None:
            self.known.check_head(self.position)
        return row["extra"] if extra else None


_COLUMNS = (
    "global_position, stream_id, stream_version, event_id, event_type, schema_version, tenant, "
    "occurred_at, actor, correlation_id, causation_id, trace_context, payload"
)


def _version_of(stream: str) -> str:
    """A stream's version (0: no events yet) as an SQL expression; `stream` is a parameter or
    a column of the caller's statement."""
    return f"(SELECT coalesce(max(v.stream_version), 0) FROM events AS v WHERE v.stream_id = {stream})"


def heads_of(streams: str) -> str:
    """The last event of each stream in the text[] parameter `streams` as `[version, event
    id]` (`[0, null]`: no events yet), one JSON object, an expression for a statement of the
    caller's own (a batch reads them with its lock)."""
    return (
        "coalesce((SELECT json_object_agg(s, coalesce((SELECT json_build_array(v.stream_version, v.event_id) "
        "FROM events AS v WHERE v.stream_id = s ORDER BY v.stream_version DESC LIMIT 1), json_build_array(0, null))) "
        f"FROM unnest({streams}::text[]) AS s), '{{}}')"
    )


_VERSION_AND_HEAD = (
    f"SELECT {_version_of('$1')} AS version, "
    "h.global_position, h.chain_hash FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
    "SELECT global_position, chain_hash FROM events ORDER BY global_position DESC LIMIT 1"
    ") AS h ON true"
)
_UNNEST = (
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::uuid[], $5::text[], "
    "$6::int[], $7::text[], $8::timestamptz[], $9::text[], $10::uuid[], $11::uuid[], "
    "$12::jsonb[], $13::jsonb[], $14::text[])"
)
# The relay's wake-up, with the position of the statement's last event ($1: the positions).
_NOTIFY_APPENDED = f"pg_notify('{NOTIFY_CHANNEL}', (SELECT max(p) FROM unnest($1::bigint[]) AS p)::text)"
_INSERT = (
    f"WITH appended AS (INSERT INTO events ({_COLUMNS}, chain_hash) {_UNNEST} RETURNING 1) "
    f"SELECT {_NOTIFY_APPENDED} FROM (SELECT count(*) FROM appended) AS done"
)
# Under a held lock: inserts only if the stream is at the expected version ($16) and the head
# is still the one the hashes were chained to ($17, $18); says which, and notifies the relay.
_GUARDED_INSERT = (
    "WITH head AS (SELECT global_position, chain_hash FROM events "
    "ORDER BY global_position DESC LIMIT 1), "
    f"version AS (SELECT {_version_of('$15')} AS v), "
    "checks AS (SELECT (SELECT v FROM version) AS version, "
    "coalesce((SELECT global_position FROM head), 0) = $17 "
    f"AND coalesce((SELECT chain_hash FROM head), '{chain.GENESIS}') = $18 AS head_ok), "
    f"appended AS (INSERT INTO events ({_COLUMNS}, chain_hash) {_UNNEST} AS rows "
    "WHERE (SELECT version = $16 AND head_ok FROM checks) RETURNING 1) "
    "SELECT c.version, c.head_ok, (SELECT count(*) FROM appended) AS appended, "
    f"{_NOTIFY_APPENDED} FROM checks AS c"
)


# Appends held back in a batch, written together: only if the head is still the one they were
# chained to ($17, $18) and each stream ($15) is at the version its first append expected ($16).
_DEFERRED_CTES = (
    "head AS (SELECT global_position, chain_hash FROM events "
    "ORDER BY global_position DESC LIMIT 1), "
    "checks AS (SELECT coalesce((SELECT global_position FROM head), 0) = $17 "
    f"AND coalesce((SELECT chain_hash FROM head), '{chain.GENESIS}') = $18 "
    "AND NOT EXISTS (SELECT 1 FROM unnest($15::text[], $16::int[]) AS e(stream_id, version) "
    f"WHERE {_version_of('e.stream_id')} <> e.version) AS ok), "
    f"appended AS (INSERT INTO events ({_COLUMNS}, chain_hash) {_UNNEST} AS rows "
    "WHERE (SELECT ok FROM checks) RETURNING 1)"
)
_DEFERRED_RESULT = (
    "SELECT (SELECT ok FROM checks) AS ok, (SELECT count(*) FROM appended) AS appended, "
    f"{_NOTIFY_APPENDED}"
)
_PARAMETER = re.compile(r"\$(\d+)")


def together(statements: Sequence[tuple[str, Sequence]], after: int = 0) -> tuple[str, list]:
    """Data-modifying statements (each with its own arguments, $1 on) as the common table
    expressions of one statement, their parameters renumbered to follow `after` others. Each
    runs once, to completion, whether or not the statement reads it (PostgreSQL's rule)."""
    ctes, args = [], []
    for i, (sql, params) in enumerate(statements):
        shift = after + len(args)
        ctes.append(f"w{i} AS ({_PARAMETER.sub(lambda m, s=shift: f'${int(m[1]) + s}', sql)})")
        args.extend(params)
    return ", ".join(ctes), args


async def write_together(conn: asyncpg.Connection, statements: Sequence[tuple[str, Sequence]]) -> None:
    """`statements` (`together`) in one round trip; none, nothing sent."""
    if statements:
        ctes, args = together(statements)
        await conn.execute(f"WITH {ctes} SELECT 1", *args)


def _row_to_envelope(row: asyncpg.Record, source: str) -> Envelope:
    return Envelope.from_store({
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "schema_version": row["schema_version"],
        "source": source,
        "stream_id": row["stream_id"],
        "stream_version": row["stream_version"],
        "tenant": row["tenant"],
        "occurred_at": row["occurred_at"],
        "actor": row["actor"],
        "correlation_id": row["correlation_id"],
        "causation_id": row["causation_id"],
        # pydantic-core's parser: three times json's speed, a fifth of a rebuild's time.
        "trace_context": from_json(row["trace_context"]),
        "global_position": row["global_position"],
        "payload": from_json(row["payload"]),
    })


class EventStore:
    def __init__(self, source: str) -> None:
        self.source = source

    async def stream_version(self, conn: asyncpg.Connection, stream_id: str) -> int:
        return await conn.fetchval(f"SELECT {_version_of('$1')}", stream_id)

    async def append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: AppendContext,
        held: HeldLock | None = None,
    ) -> list[Envelope]:
        """Append `events` to a stream at `expected_version`; must run inside a transaction.

        With `held`, the caller's transaction already holds the append lock (`HeldLock`)."""
        if not conn.is_in_transaction():
            raise RuntimeError("append must run inside the caller's transaction")
        if not events:
            return []
        if held is not None and not held.defer and held.holds_rows():
            await held.write_deferred(conn)  # what is held back comes first
        guarded = held is not None and held.position is not None
        if guarded:
            position, previous_hash = held.position, held.chain_hash
        else:
            if held is None:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            # Read after the lock (a statement of its own, so its snapshot is taken under the
            # lock): the stream's version and the head of the store, in one round trip.
            last = await conn.fetchrow(_VERSION_AND_HEAD, stream_id)
            if last["version"] != expected_version:
                if held is not None:
                    held.conflicted(stream_id)
                raise ConcurrencyError(stream_id, expected_version, last["version"])
            position = last["global_position"] or 0
            previous_hash = last["chain_hash"] or chain.GENESIS
        head_position, head_hash = position, previous_hash
        trace_context: dict[str, str] = {}
        propagate.inject(trace_context)
        now = datetime.now(UTC)
        envelopes = [
            Envelope(
                event_id=uuid.uuid4(),
                event_type=e.event_type,
                schema_version=e.schema_version,
                source=self.source,
                stream_id=stream_id,
                stream_version=expected_version + i,
                tenant=context.tenant,
                occurred_at=now,
                actor=context.actor,
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                trace_context=trace_context,
                global_position=position + i,
                payload=e.model_dump(mode="json"),
            )
            for i, e in enumerate(events, start=1)
        ]
        hashes = []
        for env in envelopes:
            previous_hash = chain.link(previous_hash, env.model_dump())
            hashes.append(previous_hash)
        rows = [
            [env.global_position for env in envelopes],
            [env.stream_id for env in envelopes],
            [env.stream_version for env in envelopes],
            [env.event_id for env in envelopes],
            [env.event_type for env in envelopes],
            [env.schema_version for env in envelopes],
            [env.tenant for env in envelopes],
            [env.occurred_at for env in envelopes],
            [env.actor for env in envelopes],
            [env.correlation_id for env in envelopes],
            [env.causation_id for env in envelopes],
            [json.dumps(env.trace_context) for env in envelopes],
            [json.dumps(env.payload, ensure_ascii=False) for env in envelopes],
            hashes,
        ]
        if guarded and held.defer and held.exact:
            held._hold(rows, stream_id, expected_version)
        elif guarded:
            checked = await conn.fetchrow(
                _GUARDED_INSERT, *rows, stream_id, expected_version, head_position, head_hash
            )
            if checked["version"] != expected_version:
                held.conflicted(stream_id)
                raise ConcurrencyError(stream_id, expected_version, checked["version"])
            if not checked["head_ok"]:
                held.forget()
                return await self.append(conn, stream_id, expected_version, events, context, held)
        else:
            # All rows and the relay's wake-up in one statement (NOTIFY is delivered at commit).
            await conn.execute(_INSERT, *rows)
        if held is not None:
            held.position, held.chain_hash = envelopes[-1].global_position, hashes[-1]
            held.exact = True
            held.appended(stream_id, expected_version, len(events), envelopes[-1].event_id)
        return envelopes

    async def read_stream_events(
        self, conn: asyncpg.Connection, stream_id: str, from_version: int = 1
    ) -> list[StoredEvent]:
        """A stream's events (from `from_version` on) as deciding on it needs them (`decode`
        each): the payloads, versions and ids only, without building whole envelopes."""
        rows = await conn.fetch(
            "SELECT event_type, schema_version, payload, stream_version, event_id FROM events "
            "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version",
            stream_id, from_version,
        )
        return [StoredEvent(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    async def read_stream(self, conn: asyncpg.Connection, stream_id: str) -> list[Envelope]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version",
            stream_id,
        )
        return [_row_to_envelope(r, self.source) for r in rows]

    async def read_all(
        self, conn: asyncpg.Connection, after_position: int = 0, limit: int = 1000
    ) -> list[Envelope]:
        return [self.envelope(r) for r in await self.read_rows(conn, after_position, limit)]

    async def read_rows(
        self, conn: asyncpg.Connection, after_position: int = 0, limit: int = 1000
    ) -> list[asyncpg.Record]:
        """`read_all` in two steps: the stored rows (one query), then `envelope` of each."""
        return await conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE global_position > $1 "
            "ORDER BY global_position LIMIT $2",
            after_position,
            limit,
        )

    def envelope(self, row: asyncpg.Record) -> Envelope:
        return _row_to_envelope(row, self.source)

    async def head_position(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")


async def chain_rows(conn: asyncpg.Connection, after_position: int = 0, limit: int = 10_000):
    """Stored events as the hash chain sees them, in position order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, chain_hash FROM events WHERE global_position > $1 "
        "ORDER BY global_position LIMIT $2",
        after_position, limit,
    )
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def record_checkpoint(conn: asyncpg.Connection, key) -> int | None:
    """Sign the chain's current head (if it moved since the last checkpoint); its position."""
    head = await conn.fetchrow(
        "SELECT global_position, chain_hash FROM events WHERE chain_hash IS NOT NULL "
        "ORDER BY global_position DESC LIMIT 1"
    )
    if head is None:
        return None
    last = await conn.fetchval("SELECT max(position) FROM chain_checkpoints")
    if last is not None and last >= head["global_position"]:
        return None
    public = key.public_key()
    await conn.execute(
        "INSERT INTO chain_checkpoints (position, chain_hash, signature, key_id, public_key) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO NOTHING",
        head["global_position"], head["chain_hash"],
        chain.sign_checkpoint(key, head["global_position"], head["chain_hash"]),
        chain.key_id(public), chain.public_key_text(public),
    )
    return head["global_position"]


async def verify_store(conn: asyncpg.Connection, public_key=None) -> chain.Verdict:
    """Recompute a service's whole chain and check its checkpoints.

    `public_key` pins the checkpoint key (from the operator's records); without it each
    checkpoint is checked against the key stored with it, which proves less.
    """
    rows: list[dict] = []
    position = 0
    while batch := await chain_rows(conn, position):
        rows.extend(batch)
        position = batch[-1]["global_position"]
    checkpoints = [dict(r) for r in await conn.fetch("SELECT * FROM chain_checkpoints ORDER BY position")]
    if public_key is not None:
        return chain.verify_chain(rows, checkpoints, public_key)
    verdict = chain.verify_chain(rows, [], None)
    for cp in checkpoints:
        partial = chain.verify_chain(rows, [cp], chain.load_public_key(cp["public_key"]))
        verdict.checkpoints += 1
        verdict.problems += [p for p in partial.problems if p not in verdict.problems]
    return verdict
