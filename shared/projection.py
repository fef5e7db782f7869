"""Projections: read tables built from events, with a checkpoint, rebuildable from zero.

A projection is fed either by its own service's event store (`source="own"`) or by one of
the service's subscriptions (`source=<subscription name>`), whose events the inbox keeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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

    async def rebuild(self, conn: asyncpg.Connection, store: EventStore, batch: int = 5000) -> int:
        """Drop the projection's rows and replay its source from the start, in one transaction."""
        applied = 0
        async with conn.transaction():
            # Lock out concurrent appends so the rebuilt tables match one point of the stream.
            await conn.execute(f"TRUNCATE {', '.join(self.tables)}")
            await conn.execute("DELETE FROM projection_checkpoints WHERE projection = $1", self.name)
            position = 0
            while True:
                envelopes = await self._source_batch(conn, store, position, batch)
                if not envelopes:
                    break
                for env in envelopes:
                    await self.apply(conn, env, decode(env))
                    applied += 1
                position = envelopes[-1].global_position or position
            await self.advance(conn, position)
        return applied

    async def _source_batch(
        self, conn: asyncpg.Connection, store: EventStore, after: int, limit: int
    ) -> list[Envelope]:
        if self.source == "own":
            return await store.read_all(conn, after, limit)
        rows = await conn.fetch(
            "SELECT seq, envelope FROM inbox WHERE consumer = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            self.source,
            after,
            limit,
        )
        return [
            Envelope.model_validate_json(r["envelope"]).model_copy(update={"global_position": r["seq"]})
            for r in rows
        ]
