"""A small typed client for sending commands and queries to the services over AMQP."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
from opentelemetry import propagate, trace
from pydantic import BaseModel

from shared.commands import Reply
from shared.settings import command_queue

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class CommandClient:
    """Sends commands and queries to the services and awaits their replies.

    Any number may be under way at once on the one connection: replies come back on RabbitMQ's
    direct reply-to and are matched to their request by correlation id. Each command is
    published persistent with a publisher confirm, in a producer span whose context travels in
    the message headers, so the service's work joins the caller's trace. A command whose reply
    does not come (the connection was lost, the service is down) times out; sending it again
    with the same command id is safe, the service answers a command id once.
    """

    def __init__(self, amqp_url: str, namespace: str, tracer_provider=None) -> None:
        self.namespace = namespace
        self._url = amqp_url
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("wfh.client")
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._waiting: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> CommandClient:
        self._connection = await aio_pika.connect_robust(self._url)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        # Declared (passively) rather than looked up, so a restored connection consumes again.
        replies = await self._channel.declare_queue(DIRECT_REPLY_TO, passive=True)
        await replies.consume(self._on_reply, no_ack=True)
        return self

    async def __aexit__(self, *exc) -> None:
        for waiting in self._waiting.values():
            waiting.cancel()
        if self._connection is not None:
            await self._connection.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        waiting = self._waiting.pop(message.correlation_id or "", None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message.body)

    async def send_raw(self, service: str, body: bytes, timeout: float = 10.0) -> Reply:
        queue = command_queue(self.namespace, service)
        correlation_id = uuid.uuid4().hex
        reply = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = reply
        try:
            with self._tracer.start_as_current_span(
                f"{queue} publish", kind=trace.SpanKind.PRODUCER,
                attributes={"messaging.system": "rabbitmq", "messaging.operation": "publish",
                            "messaging.destination.name": queue,
                            "messaging.message.conversation_id": correlation_id},
            ):
                headers: dict[str, str] = {}
                propagate.inject(headers)
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        body, headers=headers, content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        correlation_id=correlation_id, reply_to=DIRECT_REPLY_TO,
                    ),
                    routing_key=queue,
                    timeout=timeout,
                )
                async with asyncio.timeout(timeout):
                    return Reply.model_validate_json(await reply)
        finally:
            self._waiting.pop(correlation_id, None)

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
