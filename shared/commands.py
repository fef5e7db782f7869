"""Commands over AMQP request/reply: one envelope in, one reply out, never silence.

A command carries its id, tenant, the actor's token and a payload. The reply is
`{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message", "message_en", "details"}}`.
A command id seen before gets the reply stored the first time (stored in the same
transaction as the command's events), so a retried command is recorded once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.auth import AuthenticationError, Identity, TokenVerifier
from shared.contracts import Envelope, Event
from shared.eventstore import AppendContext, ConcurrencyError, EventStore
from shared.observability import get_logger
from shared.projection import Projection

log = get_logger("wfh.commands")

MAX_COMMAND_BYTES = 256 * 1024
HEALTH = "Health"  # every service answers it: database, relay lag, consumers
CONFLICT_RETRIES = 5
VERIFIED_TOKENS = 10_000  # verified tokens remembered (least recently used dropped first)


class DomainError(Exception):
    """A refusal the user should read: a stable code, a Vietnamese message, an English one."""

    code = "rule_violated"

    def __init__(self, message: str, message_en: str = "", code: str | None = None, **details: Any):
        super().__init__(message_en or message)
        self.message = message
        self.message_en = message_en or message
        if code:
            self.code = code
        self.details = details


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID
    type: str = Field(min_length=1, max_length=100)
    tenant: str = Field(min_length=1, max_length=100)
    token: str | None = Field(default=None, max_length=8192)
    payload: dict[str, Any] = Field(default_factory=dict)


class CommandError(BaseModel):
    code: str
    message: str
    message_en: str
    details: dict[str, Any] = Field(default_factory=dict)


class Reply(BaseModel):
    ok: bool
    command_id: uuid.UUID | None = None
    result: Any = None
    error: CommandError | None = None

    @classmethod
    def failure(cls, command_id, code: str, message: str, message_en: str, **details) -> Reply:
        return cls(
            ok=False,
            command_id=command_id,
            error=CommandError(code=code, message=message, message_en=message_en, details=details),
        )


@dataclass
class UnitOfWork:
    """One command's transaction: reads, appends, and the service's own projections updated with them."""

    conn: asyncpg.Connection
    store: EventStore
    projections: tuple[Projection, ...]
    identity: Identity
    tenant: str
    command_id: uuid.UUID
    appended: list[Envelope] = field(default_factory=list)
    # The dispatcher moves the projections' checkpoints with the stored reply (one statement
    # fewer while the append lock is held); on their own, appends move them at once.
    defer_advance: bool = False
    advance_to: int | None = None

    async def load(self, stream_id: str) -> tuple[list[Event], int]:
        from shared.contracts import decode

        stored = await self.store.read_stream_events(self.conn, stream_id)
        return [decode(e) for e in stored], (stored[-1].stream_version if stored else 0)

    async def append(self, stream_id: str, expected_version: int, events: list[Event]) -> None:
        envelopes = await self.store.append(
            self.conn,
            stream_id,
            expected_version,
            events,
            AppendContext(
                tenant=self.tenant,
                actor=self.identity.person_id,
                correlation_id=self.command_id,
                causation_id=self.command_id,
            ),
        )
        for env, ev in zip(envelopes, events, strict=True):
            for projection in self.projections:
                await projection.apply(self.conn, env, ev)
        if envelopes and self.defer_advance:
            self.advance_to = envelopes[-1].global_position
        elif envelopes:
            await Projection.advance_all(self.conn, self.projections, envelopes[-1].global_position)
        self.appended.extend(envelopes)


Handler = Callable[[BaseModel, UnitOfWork], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    handler: Handler
    mutates: bool
    summary: str


class CommandRouter:
    """Maps command and query type names to their payload models and handlers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def _register(self, model: type[BaseModel], mutates: bool):
        def register(fn: Handler) -> Handler:
            name = model.__name__
            if name in self.routes:
                raise RuntimeError(f"{name} routed twice")
            self.routes[name] = Route(model, fn, mutates, (fn.__doc__ or "").strip())
            return fn

        return register

    def command(self, model: type[BaseModel]):
        return self._register(model, mutates=True)

    def query(self, model: type[BaseModel]):
        return self._register(model, mutates=False)

    @classmethod
    def combine(cls, *routers: CommandRouter) -> CommandRouter:
        """One router from several modules' (a service's commands and its queries)."""
        combined = cls()
        for router in routers:
            for name, route in router.routes.items():
                if name in combined.routes:
                    raise RuntimeError(f"{name} routed twice")
                combined.routes[name] = route
        return combined


class CommandDispatcher:
    def __init__(
        self,
        router: CommandRouter,
        pool_provider: Callable[[], asyncpg.Pool],
        store: EventStore,
        verifier: TokenVerifier,
        projections: tuple[Projection, ...],
        health: Callable[[], Awaitable[dict]] | None = None,
    ) -> None:
        self._router = router
        self._pool = pool_provider
        self._store = store
        self._verifier = verifier
        self._projections = projections
        self._health = health
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def _identity(self, token: str | None) -> Identity:
        """The token's identity. A token whose signature and claims were verified before is
        not verified again until it expires (an actor sends many commands with one token):
        the same token string is the same signed claims, and only its expiry can change."""
        if token and (known := self._verified.get(token)) is not None:
            identity, expires = known
            if time.time() < expires:  # PyJWT's rule: expired once exp <= now
                self._verified.move_to_end(token)
                return identity
            del self._verified[token]
        identity = self._verifier.verify(token)
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(expires, int | float):
            self._verified[token] = (identity, float(expires))
            if len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        return identity

    async def dispatch(self, body: bytes) -> Reply:
        """Answer one raw command body; every failure becomes an error reply."""
        if len(body) > MAX_COMMAND_BYTES:
            return Reply.failure(
                None, "too_large", f"Lệnh quá lớn (tối đa {MAX_COMMAND_BYTES} byte).",
                f"Command too large (at most {MAX_COMMAND_BYTES} bytes).", size=len(body),
            )
        raw: Any = None
        try:
            raw = json.loads(body)
            request = CommandRequest.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            return Reply.failure(
                _command_id_of(raw), "malformed", "Lệnh không đúng định dạng.",
                "The command is malformed.", reason=_validation_text(exc),
            )
        if request.type == HEALTH and self._health is not None:
            # Answered without a token: operators and container probes ask it, and it tells
            # nothing about the department's data.
            return Reply(ok=True, command_id=request.command_id, result=await self._health())
        route = self._router.routes.get(request.type)
        if route is None:
            return Reply.failure(
                request.command_id, "unknown_command", f"Không có lệnh “{request.type}”.",
                f"Unknown command {request.type!r}.", known=sorted(self._router.routes),
            )
        try:
            identity = self._identity(request.token)
        except AuthenticationError as exc:
            return Reply.failure(
                request.command_id, "unauthenticated",
                "Không xác thực được người gửi lệnh (mã thông báo thiếu, sai hoặc hết hạn).",
                f"Not authenticated: {exc}.",
            )
        if identity.tenant != request.tenant:
            log.warning("command refused", code="forbidden", command_id=str(request.command_id),
                        reason="token of another department", actor=identity.person_id)
            return Reply.failure(
                request.command_id, "forbidden", "Người gửi không thuộc đơn vị này.",
                "The actor does not belong to this department.",
            )
        try:
            command = route.model.model_validate(request.payload)
        except ValidationError as exc:
            return Reply.failure(
                request.command_id, "invalid", "Dữ liệu của lệnh không hợp lệ.",
                "The command's data is invalid.", errors=_validation_errors(exc),
            )
        try:
            if route.mutates:
                return await self._run_command(request, route, command, identity)
            return await self._run_query(request, route, command, identity)
        except Exception as exc:  # a bug must answer, not silence the caller
            log.exception("command failed", command_type=request.type)
            return Reply.failure(
                request.command_id, "internal", "Lỗi hệ thống, vui lòng thử lại hoặc báo Tổ CNTT.",
                f"Internal error: {type(exc).__name__}.",
            )

    async def _run_query(self, request, route, command, identity) -> Reply:
        async with self._pool().acquire() as conn:
            uow = UnitOfWork(conn, self._store, (), identity, request.tenant, request.command_id)
            try:
                result = await route.handler(command, uow)
            except DomainError as exc:
                return _domain_failure(request.command_id, exc)
        return Reply(ok=True, command_id=request.command_id, result=_jsonable(result))

    async def _run_command(self, request, route, command, identity) -> Reply:
        pool = self._pool()
        for attempt in range(CONFLICT_RETRIES):
            async with pool.acquire() as conn:
                stored = await self._stored_reply(conn, request, identity)
                if stored is not None:
                    return stored
                try:
                    async with conn.transaction():
                        uow = UnitOfWork(
                            conn, self._store, self._projections, identity, request.tenant,
                            request.command_id, defer_advance=True,
                        )
                        result = await route.handler(command, uow)
                        reply = Reply(
                            ok=True, command_id=request.command_id, result=_jsonable(result)
                        )
                        await self._store_reply(conn, request, identity, reply, uow.advance_to)
                    return reply
                except DomainError as exc:
                    reply = _domain_failure(request.command_id, exc)
                    try:
                        await self._store_reply(conn, request, identity, reply)
                    except asyncpg.UniqueViolationError:
                        # The same command, sent twice at once, was answered meanwhile: its
                        # effect is what refused this copy (say, "already exists"), and its
                        # reply is the answer to both.
                        return await self._stored_reply(conn, request, identity) or reply
                    return reply
                except (ConcurrencyError, asyncpg.UniqueViolationError) as exc:
                    log.info("concurrent change, retrying", attempt=attempt, error=str(exc))
                    await asyncio.sleep(0.01 * (attempt + 1))
        return Reply.failure(
            request.command_id, "conflict",
            "Dữ liệu vừa bị thay đổi đồng thời, vui lòng gửi lại lệnh.",
            "The data changed concurrently; send the command again.",
        )

    async def _stored_reply(self, conn, request: CommandRequest, identity: Identity) -> Reply | None:
        row = await conn.fetchrow(
            "SELECT command_type, tenant, actor, reply FROM command_replies WHERE command_id = $1",
            request.command_id,
        )
        if row is None:
            return None
        # Someone else's command under the same id is a different command: they get neither
        # its reply (which may tell them about it) nor their own command silently dropped.
        if (row["command_type"], row["tenant"], row["actor"]) != (
            request.type, request.tenant, identity.person_id
        ):
            return Reply.failure(
                request.command_id, "command_id_reused",
                "Mã lệnh này đã được dùng cho một lệnh khác.",
                "This command id was already used for a different command.",
            )
        return Reply.model_validate_json(row["reply"])

    async def _store_reply(
        self, conn, request, identity: Identity, reply: Reply, advance_to: int | None = None
    ) -> None:
        """The reply, and with `advance_to` the own projections' checkpoints, in one statement."""
        plain = [p.name for p in self._projections if p.plain_checkpoint]
        if advance_to is None or not plain:
            await conn.execute(
                "INSERT INTO command_replies (command_id, tenant, command_type, actor, reply) "
                "VALUES ($1, $2, $3, $4, $5)",
                request.command_id, request.tenant, request.type, identity.person_id,
                reply.model_dump_json(),
            )
        else:
            await conn.execute(
                "WITH reply AS (INSERT INTO command_replies (command_id, tenant, command_type, actor, "
                "reply) VALUES ($1, $2, $3, $4, $5)) "
                "INSERT INTO projection_checkpoints (projection, position) SELECT unnest($6::text[]), $7 "
                "ON CONFLICT (projection) DO UPDATE SET position = "
                "greatest(projection_checkpoints.position, EXCLUDED.position)",
                request.command_id, request.tenant, request.type, identity.person_id,
                reply.model_dump_json(), plain, advance_to,
            )
        if advance_to is not None:
            await Projection.advance_all(conn, self._projections, advance_to, plain_done=True)


def _command_id_of(raw: Any) -> uuid.UUID | None:
    """The command id of a malformed command, when one can be read, so the caller can match the reply."""
    try:
        return uuid.UUID(str(raw["command_id"]))
    except (TypeError, KeyError, ValueError):
        return None


def _domain_failure(command_id, exc: DomainError) -> Reply:
    if isinstance(exc, Forbidden):  # every refusal is logged (security: least privilege)
        log.warning("command refused", code=exc.code, command_id=str(command_id), reason=exc.message_en)
    return Reply.failure(command_id, exc.code, exc.message, exc.message_en, **_jsonable(exc.details))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=_default, ensure_ascii=False))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (uuid.UUID,)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ][:20]


def _validation_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{e['field']}: {e['problem']}" for e in _validation_errors(exc))
    return str(exc)[:300]
