"""The append-only event store each service keeps in its own database.

Appends take a transaction-scoped advisory lock before assigning global positions, so
positions are handed out in commit order: a reader that has seen position N has seen every
event below N. That is what lets the relay and rebuilds follow a plain checkpoint without
ever skipping a transaction that committed late.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from opentelemetry import propagate

from shared.contracts import Envelope, Event

APPEND_LOCK = 7_0001  # advisory lock key serialising position assignment
NOTIFY_CHANNEL = "events_appended"


class ConcurrencyError(Exception):
    """The stream moved on since it was read: nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}: nothing was written"
        )
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


@dataclass(frozen=True)
class AppendContext:
    """Who caused an append and why: copied into every envelope written."""

    tenant: str
    actor: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None


_COLUMNS = (
    "global_position, stream_id, stream_version, event_id, event_type, schema_version, tenant, "
    "occurred_at, actor, correlation_id, causation_id, trace_context, payload"
)


def _row_to_envelope(row: asyncpg.Record, source: str) -> Envelope:
    return Envelope(
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        source=source,
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        tenant=row["tenant"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        trace_context=json.loads(row["trace_context"]),
        global_position=row["global_position"],
        payload=json.loads(row["payload"]),
    )


class EventStore:
    def __init__(self, source: str) -> None:
        self.source = source

    async def stream_version(self, conn: asyncpg.Connection, stream_id: str) -> int:
        return await conn.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream_id
        )

    async def append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        context: AppendContext,
    ) -> list[Envelope]:
        """Append `events` to a stream at `expected_version`; must run inside a transaction."""
        if not conn.is_in_transaction():
            raise RuntimeError("append must run inside the caller's transaction")
        if not events:
            return []
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        actual = await self.stream_version(conn, stream_id)
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        position = await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
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
        await conn.executemany(
            f"INSERT INTO events ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
            [
                (
                    env.global_position,
                    env.stream_id,
                    env.stream_version,
                    env.event_id,
                    env.event_type,
                    env.schema_version,
                    env.tenant,
                    env.occurred_at,
                    env.actor,
                    env.correlation_id,
                    env.causation_id,
                    json.dumps(env.trace_context),
                    json.dumps(env.payload, ensure_ascii=False),
                )
                for env in envelopes
            ],
        )
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        return envelopes

    async def read_stream(self, conn: asyncpg.Connection, stream_id: str) -> list[Envelope]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version",
            stream_id,
        )
        return [_row_to_envelope(r, self.source) for r in rows]

    async def read_all(
        self, conn: asyncpg.Connection, after_position: int = 0, limit: int = 1000
    ) -> list[Envelope]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE global_position > $1 "
            "ORDER BY global_position LIMIT $2",
            after_position,
            limit,
        )
        return [_row_to_envelope(r, self.source) for r in rows]

    async def head_position(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
