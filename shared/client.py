"""A small typed client for sending commands and queries to the services over AMQP."""

from __future__ import annotations

import uuid
from typing import Any

from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware

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
