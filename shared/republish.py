"""`RepublishEvents`: every service re-sends its stored events to one consumer's replay routing.

A consumer that lost its own copy of the stream (reporting, its database dropped) asks each
service for its history again. The events go to `replay.<target>.<source>.<EventType>` on the
events exchange, which only the target's queue binds: other consumers never see them twice.
They are the stored envelopes unchanged (same event ids), so the target's inbox still drops
what it already has. The runtime adds the command to every service's router; it appends
nothing, and only the IT team (admin scope) may send it. One call publishes at most `limit`
events from `from_position` and says where to go on; `replay_all` loops until the head.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aio_pika
from pydantic import BaseModel, ConfigDict, Field

from shared.commands import CommandRouter, Forbidden, UnitOfWork
from shared.relay import publish_envelope
from shared.topology import replay_routing_key

MAX_BATCH = 20_000


class RepublishEvents(BaseModel):
    """Publish this service's stored events after `from_position` again, to `target`'s replay routing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    from_position: int = Field(default=0, ge=0)
    limit: int = Field(default=5000, ge=1, le=MAX_BATCH)
    target: str = Field(default="reporting", pattern="^[a-z][a-z_]*$")


def republish_router(
    channel: Callable[[], aio_pika.abc.AbstractChannel], exchange_name: str
) -> CommandRouter:
    router = CommandRouter()

    @router.query(RepublishEvents)
    async def republish_events(cmd: RepublishEvents, uow: UnitOfWork) -> dict:
        """Re-send stored events to one consumer (the IT team recovers that consumer's store)."""
        if not uow.identity.is_admin:
            raise Forbidden(
                "Chỉ Tổ CNTT (quản trị hệ thống) được yêu cầu phát lại sự kiện.",
                "Only the IT team (administrators) may ask for events to be republished.",
            )
        envelopes = await uow.store.read_all(uow.conn, cmd.from_position, cmd.limit)
        head = await uow.store.head_position(uow.conn)
        # On one AMQP channel, as the relay does, so a drop fails the rest of the call rather
        # than sending it on the reopened channel out of order; confirms awaited together.
        underlay = await channel().get_underlay_channel()
        await asyncio.gather(*(
            publish_envelope(underlay, exchange_name, env, replay_routing_key(cmd.target, env.routing_key), {})
            for env in envelopes
        ))
        last = envelopes[-1].global_position if envelopes else cmd.from_position
        return {"source": uow.store.source, "published": len(envelopes), "from_position": cmd.from_position,
                "last_position": last, "head_position": head, "done": last >= head}

    return router


async def replay_all(send, service: str, target: str = "reporting", limit: int = 5000) -> int:
    """Ask one service for its whole history, call after call; `send(service, type, payload)`
    is a `CommandClient.send` with the tenant and an admin token bound. Returns the count."""
    position, published = 0, 0
    while True:
        reply = await send(service, "RepublishEvents",
                           {"from_position": position, "limit": limit, "target": target})
        if not reply.ok:
            raise RuntimeError(f"{service} refused RepublishEvents: {reply.error.code}: {reply.error.message_en}")
        published += reply.result["published"]
        position = reply.result["last_position"]
        if reply.result["done"]:
            return published
