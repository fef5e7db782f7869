"""A small typed client for sending commands and queries to the services over AMQP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware

from pydantic import BaseModel

from shared.commands import Reply
from shared.settings import command_queue


class CommandClient:
    def __init__(self, amqp_url: str, namespace: str, tracer_provider=None) -> None:
        self.namespace = namespace
        self._broker = RabbitBroker(
            amqp_url,
            middlewares=[RabbitTelemetryMiddleware(tracer_provider=tracer_provider)],
            logger=None,
        )

    async def __aenter__(self) -> CommandClient:
        await self._broker.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._broker.stop()

    async def send_raw(self, service: str, body: bytes, timeout: float = 10.0) -> Reply:
        response = await self._broker.request(
            body, queue=command_queue(self.namespace, service), timeout=timeout,
            content_type="application/json", persist=True,
        )
        return Reply.model_validate_json(response.body)

    async def send(
        self,
        service: str,
        command_type: str,
        payload: dict[str, Any] | None = None,
        *,
        tenant: str,
        token: str | None,
        command_id: uuid.UUID | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        import json

        body = json.dumps(
            {
                "command_id": str(command_id or uuid.uuid4()),
                "type": command_type,
                "tenant": tenant,
                "token": token,
                "payload": payload or {},
            },
            ensure_ascii=False,
            default=str,
        ).encode()
        return await self.send_raw(service, body, timeout)


class Notification(BaseModel):
    """One notification as notify publishes it to chat bots (and frontends that listen the same way)."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    tenant: str
    recipient_id: str
    division_id: str | None = None
    kind: str
    category: str
    urgent: bool
    source_event_id: uuid.UUID
    source_event_type: str
    locale: str
    title: str
    body: str
    created_at: str


class NotificationFeed:
    """Subscribe to notifications like a chat bot: a queue of one's own bound to the
    notifications exchange for a person (`<tenant>.person.<id>`), a division
    (`<tenant>.division.<id>`) or a whole department (`<tenant>.#`).

    The queue is exclusive and goes away with the feed; a bot that must not miss anything
    while it is down binds a durable queue of its own the same way. `delivery_id` is unique
    per delivery: a bot drops what it has seen (the broker may deliver twice).
    """

    def __init__(self, amqp_url: str, namespace: str, tenant: str, *, person_id: str | None = None,
                 division_id: str | None = None) -> None:
        from shared.topology import notifications_exchange

        if person_id:
            self.routing_key = f"{tenant}.person.{person_id}"
        elif division_id:
            self.routing_key = f"{tenant}.division.{division_id}"
        else:
            self.routing_key = f"{tenant}.#"
        self._url = amqp_url
        self._exchange = notifications_exchange(namespace)
        self._connection = None
        self._queue = None

    async def __aenter__(self) -> NotificationFeed:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=100)
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.bind(self._exchange, routing_key=self.routing_key)
        self._arrived = asyncio.Queue()
        await self._queue.consume(lambda message: self._arrived.put_nowait(message.body), no_ack=True)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def next(self, timeout: float = 10.0) -> Notification:
        """The next notification; TimeoutError if none arrives in time."""
        try:
            body = await asyncio.wait_for(self._arrived.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no notification for {self.routing_key} within {timeout:g} s") from None
        return Notification.model_validate_json(body)
