"""Sends commands through the public AMQP interface (`shared.client.CommandClient`) and records
each one: when it was sent (wall clock, to compare with the services' database timestamps), how
long its reply took, and how it was answered.

One `CommandClient` (one connection) carries every command, as a gateway carries many
people's: those ready at once, or sent while its message to a service is unanswered, travel
together (`shared.client`); a semaphore sets how many are in flight at once in a closed loop
(an open loop sends each at its time, `bounded=False`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from bench.common import AMQP_URL
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.commands import Reply


@dataclass
class Sent:
    service: str
    command_type: str
    command_id: uuid.UUID
    tenant: str
    sent_at: float  # time.time() when sent
    seconds: float  # until the reply arrived
    ok: bool
    code: str | None


class Driver:
    def __init__(self, namespace: str, idp: DevIdentityProvider, clients: int) -> None:
        self.namespace = namespace
        self.idp = idp
        self.size = clients
        self.client = CommandClient(AMQP_URL, namespace)
        self._in_flight = asyncio.Semaphore(clients)
        self._tokens: dict[tuple[str, str, bool], str] = {}
        self.sent: list[Sent] = []
        self.on_reply = None  # callable(Sent), e.g. a progress bar

    async def __aenter__(self) -> Driver:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.__aexit__(None, None, None)

    def token(self, tenant: str, person: str = "it-admin", admin: bool = False) -> str:
        key = (tenant, person, admin)
        if key not in self._tokens:
            self._tokens[key] = self.idp.mint(person, tenant, scopes=(ADMIN_SCOPE,) if admin else (),
                                              ttl_seconds=6 * 3600)
        return self._tokens[key]

    async def send(self, service: str, command_type: str, payload: dict, *, tenant: str,
                   person: str | None = None, admin: bool = False, record: bool = True,
                   timeout: float = 60.0, bounded: bool = True) -> tuple[Reply, Sent]:
        """The command sent and answered. `bounded`: first wait for one of the `clients` places
        in flight (a closed loop's concurrency); an open loop sends at once."""
        token = self.token(tenant, person or "it-admin", admin or person is None)
        command_id = uuid.uuid4()
        async with self._in_flight if bounded else contextlib.nullcontext():
            sent_at, started = time.time(), time.perf_counter()
            reply = await self.client.send(service, command_type, payload, tenant=tenant, token=token,
                                           command_id=command_id, timeout=timeout)
            seconds = time.perf_counter() - started
        sent = Sent(service, command_type, command_id, tenant, sent_at, seconds, reply.ok,
                    None if reply.ok else reply.error.code)
        if record:
            self.sent.append(sent)
        if self.on_reply is not None:
            self.on_reply(sent)
        return reply, sent

    def outcomes(self, since: int = 0) -> dict[str, dict[str, int]]:
        """Per command type: how many were answered ok and with each error code."""
        out: dict[str, Counter] = {}
        for s in self.sent[since:]:
            out.setdefault(f"{s.service}.{s.command_type}", Counter())["ok" if s.ok else s.code] += 1
        return {k: dict(v) for k, v in sorted(out.items())}
