"""Commands over AMQP request/reply: one envelope in, one reply out, never silence.

A command carries its id, tenant, the actor's token and a payload. The reply is
`{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message", "message_en", "details"}}`.
A command id seen before gets the reply stored the first time (stored in the same
transaction as the command's events), so a retried command is recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import jwt
from opentelemetry import context as otel_context
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.auth import AuthenticationError, Identity, TokenVerifier
from shared.contracts import Envelope, Event
from shared.eventstore import (
    AppendContext, ConcurrencyError, EventStore, Folded, FoldedStreams, HeldLock, StreamVersions, heads_of,
    write_together,
)
from shared.observability import get_logger
from shared.projection import BatchedWrites, BatchingUnavailable, Projection, rows_keyed_by

log = get_logger("wfh.commands")

MAX_COMMAND_BYTES = 256 * 1024
HEALTH = "Health"  # every service answers it: database, relay lag, consumers
CONFLICT_RETRIES = 5
VERIFIED_TOKENS = 10_000  # verified tokens remembered (least recently used dropped first)
MAX_BATCH = 32  # commands decided in one transaction at most
A = TypeVar("A")  # an aggregate folded from its stream (`UnitOfWork.fold`)


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
    # Set when the transaction took the append lock for many commands (`CommandDispatcher`).
    held: HeldLock | None = None
    # In a batch: the directory rows of its commands' actors, read with the append lock
    # ((tenant, person_id) -> row, or None when not in the directory); emptied by any write
    # to the directory (`shared.directory.actor_of` reads them).
    actors: dict | None = None
    # In a batch: where the own projections write (their writes sent together at its end).
    projection_conn: Any = None
    # In a batch: the service's aggregates folded in earlier batches (`fold`).
    folds: FoldedStreams | None = None
    # In a batch: what this command folded (stream -> kinds), and the events it appended to
    # them at the version folded, applied to the kept folds once it is decided.
    _folded: dict[str, list[type]] = field(default_factory=dict, init=False, repr=False)
    _appended_to_folds: list[tuple[str, type, int, list[Event], uuid.UUID]] = field(
        default_factory=list, init=False, repr=False)

    async def load(self, stream_id: str) -> tuple[list[Event], int]:
        from shared.contracts import decode

        stored = await self._read(stream_id)
        version = stored[-1].stream_version if stored else 0
        if self.held is not None:
            self.held.saw(stream_id, version)
        return [decode(e) for e in stored], version

    async def fold(self, stream_id: str, kind: Callable[[], A]) -> tuple[A, int]:
        """The stream's aggregate (`kind()` with each event `apply`-ed) and its version. In a
        batch, an aggregate folded before is taken up where it was left (`FoldedStreams`):
        only the events after it are read, and none when the batch's lock read the stream's
        last event (a command naming the stream, `CommandRouter.command`) and it is the one
        folded up to. The caller must not change it but by `apply`."""
        from shared.contracts import decode

        kept = self.folds.get(stream_id, kind) if self.folds is not None else None
        if kept is not None and self.held is not None and self.held.ends_at(stream_id, kept.version, kept.event_id):
            self.folds.keep(stream_id, kind, kept)  # recently used
            self._folded.setdefault(stream_id, []).append(kind)
            return kept.state, kept.version
        stored = await self._read(stream_id, kept.version if kept else 1)
        if kept is not None and (
            not stored or stored[0].stream_version != kept.version or stored[0].event_id != kept.event_id
        ):
            self.folds.forget(stream_id, kind)  # what it was folded up to is gone: fold afresh
            kept, stored = None, await self._read(stream_id)
        state = kept.state if kept is not None else kind()
        for e in stored[1:] if kept is not None else stored:
            state.apply(decode(e))
        version = stored[-1].stream_version if stored else 0
        if self.folds is not None and stored:
            self.folds.keep(stream_id, kind, Folded(state, version, stored[-1].event_id))
            self._folded.setdefault(stream_id, []).append(kind)
        if self.held is not None:
            self.held.saw(stream_id, version)
        return state, version

    async def _read(self, stream_id: str, from_version: int = 1) -> list:
        conn = self.conn
        if self.held is not None:
            if self.held.holds_rows(stream_id):
                await self.held.write_deferred(_unwatched(conn))
            conn = _unwatched(conn)  # appends held back are of other streams: nothing to wait for
        return await self.store.read_stream_events(conn, stream_id, from_version)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version, to append at when what is appended does not depend on the
        stream's events. In a batch it may be known without a read (`StreamVersions`)."""
        if self.held is not None:
            if (known := self.held.version_of(stream_id)) is not None:
                return known  # a stream with appends held back is always known
            version = await self.store.stream_version(_unwatched(self.conn), stream_id)
            self.held.saw(stream_id, version)
            return version
        return await self.store.stream_version(self.conn, stream_id)

    async def append(self, stream_id: str, expected_version: int, events: list[Event]) -> None:
        wrote_before = getattr(self.conn, "wrote", None)
        try:
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
                self.held,
            )
        except ConcurrencyError:
            if wrote_before is not None:  # refused, the append wrote nothing: the batch can go on
                self.conn.wrote = wrote_before
            raise
        if wrote_before is not None:  # an append held back is written later, but it is a write
            self.conn.wrote = True
        target = self.projection_conn or self.conn
        for env, ev in zip(envelopes, events, strict=True):
            for projection in self.projections:
                await projection.apply(target, env, ev)
        if envelopes and self.defer_advance:
            self.advance_to = envelopes[-1].global_position
        elif envelopes:
            await Projection.advance_all(self.conn, self.projections, envelopes[-1].global_position)
        self.appended.extend(envelopes)
        for kind in self._folded.get(stream_id, ()) if envelopes else ():
            self._appended_to_folds.append((stream_id, kind, expected_version, events, envelopes[-1].event_id))

    def fold_in_appends(self) -> None:
        """Once the command is decided: its appends applied to the folds it kept of their
        streams, so the next command folding them reads nothing (`fold`). Should the batch be
        given up, these events are not in the store, and the next fold sees it."""
        for stream_id, kind, expected_version, events, last_event_id in self._appended_to_folds:
            kept = self.folds.get(stream_id, kind)
            if kept is None or kept.version != expected_version:  # folded again since
                continue
            for event in events:
                kept.state.apply(event)
            self.folds.keep(stream_id, kind, Folded(kept.state, expected_version + len(events), last_event_id))


Handler = Callable[[BaseModel, UnitOfWork], Awaitable[Any]]


# The streams whose versions a command will ask for (`UnitOfWork.stream_version`), named from
# the command, its department and its actor alone.
StreamsRead = Callable[[BaseModel, str, Identity], Sequence[str]]


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    handler: Handler
    mutates: bool
    summary: str
    # A batch reads these versions with its lock (one statement for all its commands) instead
    # of one round trip per command; a stream named wrongly only goes unused.
    streams: StreamsRead | None = None


class CommandRouter:
    """Maps command and query type names to their payload models and handlers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def _register(self, model: type[BaseModel], mutates: bool, streams: StreamsRead | None = None):
        def register(fn: Handler) -> Handler:
            name = model.__name__
            if name in self.routes:
                raise RuntimeError(f"{name} routed twice")
            self.routes[name] = Route(model, fn, mutates, (fn.__doc__ or "").strip(), streams)
            return fn

        return register

    def command(self, model: type[BaseModel], *, streams: StreamsRead | None = None):
        """A command's handler; `streams`, when given, names the streams whose versions it
        will ask for or that it will fold (their last events read ahead with its batch's lock)."""
        return self._register(model, mutates=True, streams=streams)

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


@dataclass
class Accepted:
    """A command or query that passed every check made before the database: readable, known,
    from an authenticated actor of its department, with a valid payload. `context` is the
    trace context it arrived in, so its work joins that trace wherever it runs."""

    request: CommandRequest
    route: Route | None  # None: the Health request
    command: BaseModel | None = None
    identity: Identity | None = None
    context: otel_context.Context | None = None

    @property
    def mutates(self) -> bool:
        return self.route is not None and self.route.mutates


class _BatchAbandoned(Exception):
    """Something other than a refusal or a conflict went wrong in a batch: nothing of it was kept."""


class CommandDispatcher:
    """Answers commands and queries: `triage` checks what needs no database, `run_query` answers
    a query, `run_commands` decides commands and stores their replies with their events.

    Commands that arrive together (one or many) are decided in one transaction: it takes the
    append lock at its start, with the store's head, the replies already stored and the
    actors' directory rows, decides the commands in order (the own projections' writes held
    back until a statement may see them, mostly until the end, then sent together), and
    stores every reply and the own projections' checkpoints in one statement before the one
    commit. A command refused before it wrote anything (deciding
    comes before saving) leaves nothing to undo; one that wrote and then failed, any error of
    the database, anything unexpected, gives the batch up, and its commands are decided again
    one by one, each in a transaction of its own that takes the append lock only to append.
    (A savepoint per command would undo just that one, at a round trip per command; refusals
    after writing are too rare to pay for it.) Any other transaction that takes the append lock
    after a lock of its own can deadlock with a batch, which PostgreSQL then breaks: the roster
    lock takes the append lock first.
    """

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
        self._has_directory: bool | None = None  # does this service's database keep one
        self._schema = None  # what `BatchedWrites` needs of the database's tables, read once
        self._versions = StreamVersions()
        self._folds = FoldedStreams()
        # Told the events of each transaction that committed, in position order (the relay's
        # `offer`: it publishes them without reading them back).
        self.on_committed: Callable[[list[Envelope]], None] | None = None
        # Told, just before a batch commits, the position its events reach (0: it did not
        # commit after all): the relay's `expect`.
        self.on_committing: Callable[[int], None] | None = None
        self.batches = 0  # transactions that decided commands (one or many)
        self.batched = 0  # commands those transactions decided
        self.batches_given_up = 0

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
        accepted = self.triage(body)
        if isinstance(accepted, Reply):
            return accepted
        if accepted.mutates:
            return (await self.run_commands([accepted]))[0]
        return await self.run_query(accepted)

    def triage(self, body: bytes) -> Reply | Accepted:
        """The reply to a body refused before the database, or the command to run."""
        if len(body) > MAX_COMMAND_BYTES:
            return Reply.failure(
                None, "too_large", f"Lệnh quá lớn (tối đa {MAX_COMMAND_BYTES} byte).",
                f"Command too large (at most {MAX_COMMAND_BYTES} bytes).", size=len(body),
            )
        raw: Any = None
        try:
            raw = json.loads(body)
        except ValueError as exc:
            return Reply.failure(
                None, "malformed", "Lệnh không đúng định dạng.",
                "The command is malformed.", reason=_validation_text(exc),
            )
        return self.accept(raw)

    def accept(self, raw: Any) -> Reply | Accepted:
        """The reply to a command read from JSON (`raw`) refused before the database, or the
        command to run, in the current trace context."""
        try:
            request = CommandRequest.model_validate(raw)
        except ValidationError as exc:
            return Reply.failure(
                _command_id_of(raw), "malformed", "Lệnh không đúng định dạng.",
                "The command is malformed.", reason=_validation_text(exc),
            )
        if request.type == HEALTH and self._health is not None:
            # Answered without a token: operators and container probes ask it, and it tells
            # nothing about the department's data.
            return Accepted(request, None)
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
        return Accepted(request, route, command, identity, otel_context.get_current())

    async def run_query(self, accepted: Accepted) -> Reply:
        request = accepted.request
        try:
            if accepted.route is None:
                return Reply(ok=True, command_id=request.command_id, result=await self._health())
            async with self._pool().acquire() as conn:
                uow = UnitOfWork(conn, self._store, (), accepted.identity, request.tenant,
                                 request.command_id)
                try:
                    result = await accepted.route.handler(accepted.command, uow)
                except DomainError as exc:
                    return _domain_failure(request.command_id, exc)
            return Reply(ok=True, command_id=request.command_id, result=_jsonable(result))
        except Exception as exc:  # a bug must answer, not silence the caller
            return _internal(request, exc)

    async def run_commands(self, commands: Sequence[Accepted]) -> list[Reply]:
        """Decide `commands` (mutating ones, in this order) and answer each."""
        try:
            replies = await self._run_batch(commands)
            self.batches += 1
            self.batched += len(commands)
            return replies
        except Exception as exc:  # noqa: BLE001 - each command below meets it on its own
            self.batches_given_up += 1
            log.info("commands decided together gave up; deciding them one by one",
                     commands=len(commands), error=repr(exc))
        replies = []
        for accepted in commands:
            with _within(accepted):
                try:
                    replies.append(await self.decide_alone(accepted))
                except Exception as exc:  # a bug must answer, not silence the caller
                    replies.append(_internal(accepted.request, exc))
        return replies

    async def decide_alone(self, accepted: Accepted) -> Reply:
        """One command in a transaction of its own, which takes the append lock only to append
        (so commands decided so race, and a conflict retries): what a batch given up falls
        back on. A bug raises."""
        request, route, command, identity = (
            accepted.request, accepted.route, accepted.command, accepted.identity)
        pool = self._pool()
        for attempt in range(CONFLICT_RETRIES):
            async with pool.acquire() as conn:
                stored = await self._stored_replies(conn, [request.command_id])
                if stored:
                    return _stored_answer(stored[request.command_id], accepted)
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
                        await self._store_replies(conn, [(accepted, reply)], uow.advance_to)
                    self._committed(uow.appended)
                    return reply
                except DomainError as exc:
                    reply = _domain_failure(request.command_id, exc)
                    try:
                        await self._store_replies(conn, [(accepted, reply)])
                    except asyncpg.UniqueViolationError:
                        # The same command, sent twice at once, was answered meanwhile: its
                        # effect is what refused this copy (say, "already exists"), and its
                        # reply is the answer to both.
                        stored = await self._stored_replies(conn, [request.command_id])
                        return _stored_answer(stored[request.command_id], accepted) if stored else reply
                    return reply
                except (ConcurrencyError, asyncpg.UniqueViolationError) as exc:
                    log.info("concurrent change, retrying", attempt=attempt, error=str(exc))
                    await asyncio.sleep(0.01 * (attempt + 1))
        return _conflict(request)

    async def _run_batch(self, commands: Sequence[Accepted]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(commands)
        first_of: dict[uuid.UUID, int] = {}
        held = HeldLock(known=self._versions)
        appended: list[Envelope] = []
        # The batch's own statements in the first command's trace, each command's in its own.
        with _within(commands[0]):
            try:
                async with self._pool().acquire() as conn, conn.transaction():
                    await self._decide_batch(conn, held, commands, replies, first_of, appended)
                    if appended and self.on_committing is not None:
                        self.on_committing(appended[-1].global_position)
            except BaseException:
                self._versions.forget()
                if appended and self.on_committing is not None:
                    self.on_committing(0)
                raise
        self._versions.committed(held)
        self._committed(appended)
        for i, accepted in enumerate(commands):
            if replies[i] is None:
                first = first_of[accepted.request.command_id]
                replies[i] = replies[first] if _same_command(commands[first], accepted) else _reused(accepted.request)
        return replies

    async def _decide_batch(self, conn, held: HeldLock, commands: Sequence[Accepted], replies: list,
                            first_of: dict, appended: list[Envelope]) -> None:
        """The batch's commands in `conn`'s transaction; the copies sent twice are left to the caller."""
        if self._has_directory is None:
            self._has_directory = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", _DIRECTORY)
        if self._schema is None:
            self._schema = await BatchedWrites.catalog(conn)
        # The own projections' writes wait until something reads or writes what they touch,
        # at the latest until the replies are stored: mostly one pipelined round trip for all.
        deferred = BatchedWrites(conn, *self._schema)
        # The replies already stored, and the actors as the directory knows them, read with
        # the lock and the head in one statement (as of its start: a copy answered elsewhere
        # meanwhile makes storing the replies fail, which gives the batch up, and each command
        # then finds its stored reply; a directory changed elsewhere meanwhile is one
        # changed a moment after these commands were decided).
        ids = [a.request.command_id for a in commands]
        streams = _streams_read(commands)
        if self._has_directory:
            found = json.loads(await held.take(
                conn, f"json_build_array({_STORED_REPLIES.format(ids='$2')}, {heads_of('$3')}, "
                      f"{_ACTORS.format(tenants='$4', people='$5')})::text",
                ids, streams, [a.request.tenant for a in commands], [a.identity.person_id for a in commands]))
            actors = {(a.request.tenant, a.identity.person_id): None for a in commands}
            actors.update({(row["tenant"], row["person_id"]): row for row in found[2]})
        else:
            found, actors = json.loads(await held.take(
                conn, f"json_build_array({_STORED_REPLIES.format(ids='$2')}, "
                      f"{heads_of('$3')})::text", ids, streams)), None
        stored = _stored_rows(found[0])
        # Trusted as the head is: read with the lock free (a commit in the instant before it is
        # caught by the appends' own check); read while waiting for it, they may be stale.
        if held.exact:
            for stream_id, (version, event_id) in found[1].items():
                held.saw_head(stream_id, version, event_id and uuid.UUID(event_id))
        fresh = []
        for i, accepted in enumerate(commands):
            command_id = accepted.request.command_id
            if command_id in stored:
                replies[i] = _stored_answer(stored[command_id], accepted)
            elif command_id not in first_of:  # a copy sent twice at once is answered below
                first_of[command_id] = i
                fresh.append(i)
        advance_to = None
        held.defer = True  # the appends too are written together (`HeldLock.write_deferred`)
        for i in fresh:
            with _within(commands[i]):
                replies[i], position = await self._decide_in_batch(conn, commands[i], held, actors, deferred,
                                                                   appended)
            if position is not None:
                advance_to = max(advance_to or 0, position)
        # A conflict is not stored: the same command sent again may succeed. The replies go
        # with the appends held back, in one statement, and so do the projections' writes
        # that can (mostly all of a command decided alone).
        joined = deferred.take_joinable(_STORED_WITH_REPLIES)
        await deferred.flush()
        await self._store_replies(
            conn, [(commands[i], replies[i]) for i in fresh
                   if replies[i].ok or replies[i].error.code != "conflict"],
            advance_to, held, joined,
        )

    async def _decide_in_batch(self, conn, accepted: Accepted, held: HeldLock, actors: dict | None,
                               deferred: BatchedWrites, appended: list[Envelope]) -> tuple[Reply, int | None]:
        """One command of a batch; raises `_BatchAbandoned` where the batch cannot go on."""
        request = accepted.request
        for attempt in range(CONFLICT_RETRIES):
            watched = WatchedConnection(conn, actors, deferred, held)
            uow = UnitOfWork(
                watched, self._store, self._projections, accepted.identity, request.tenant,
                request.command_id, defer_advance=True, held=held, actors=actors,
                projection_conn=WatchedConnection(deferred, actors), folds=self._folds,
            )
            try:
                result = await accepted.route.handler(accepted.command, uow)
            except (DomainError, ConcurrencyError) as exc:
                if watched.wrote:
                    raise _BatchAbandoned(f"{type(exc).__name__} after writing: {exc}") from exc
                if isinstance(exc, DomainError):
                    return _domain_failure(request.command_id, exc), None
                log.info("concurrent change, retrying", attempt=attempt, error=str(exc))
                continue
            except Exception as exc:
                raise _BatchAbandoned(f"{type(exc).__name__}: {exc}") from exc
            reply = Reply(ok=True, command_id=request.command_id, result=_jsonable(result))
            uow.fold_in_appends()  # after the result is taken: it may hold parts of the aggregate
            appended.extend(uow.appended)
            return reply, uow.advance_to
        return _conflict(request), None

    def _committed(self, appended: list[Envelope]) -> None:
        if appended and self.on_committed is not None:
            self.on_committed(appended)

    async def _stored_replies(self, conn, command_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
        return _stored_rows(await conn.fetchval(f"SELECT {_STORED_REPLIES.format(ids='$1')}", command_ids))

    async def _store_replies(
        self, conn, answered: list[tuple[Accepted, Reply]], advance_to: int | None = None,
        held: HeldLock | None = None, also: Sequence[tuple[str, Sequence]] = (),
    ) -> None:
        """The replies, and with `advance_to` the own projections' checkpoints, in one statement
        (with `held`, the one that writes its appends held back), with the writes `also`."""
        plain = [p.name for p in self._projections if p.plain_checkpoint]
        writes = list(also)
        if answered:
            writes.append((
                "INSERT INTO command_replies (command_id, tenant, command_type, actor, reply) "
                "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[])",
                ([a.request.command_id for a, _ in answered],
                 [a.request.tenant for a, _ in answered],
                 [a.request.type for a, _ in answered],
                 [a.identity.person_id for a, _ in answered],
                 [reply.model_dump_json() for _, reply in answered]),
            ))
        if advance_to is not None and plain:
            writes.append((
                "INSERT INTO projection_checkpoints (projection, position) SELECT unnest($1::text[]), $2 "
                "ON CONFLICT (projection) DO UPDATE SET position = "
                "greatest(projection_checkpoints.position, EXCLUDED.position)",
                (plain, advance_to),
            ))
        if held is not None:
            await held.write_deferred(conn, writes)
        else:
            await write_together(conn, writes)
        if advance_to is not None:
            await Projection.advance_all(conn, self._projections, advance_to, plain_done=True)


# What the statement storing a batch's replies writes: the projections' writes joining it
# must touch none of these.
_STORED_WITH_REPLIES = frozenset({"events", "command_replies", "projection_checkpoints"})
_WRITES = re.compile(r"\b(insert|update|delete|merge|truncate|copy|notify|pg_notify|create|drop|alter|"
                     r"grant|revoke|call|do|setval|nextval)\b")
_DIRECTORY = "dir_people"  # the table whose rows a batch reads ahead for its actors
_ONE_PERSON_WRITES: set[str] = set()  # statements writing one person's row of it (`writes_one_person`)
_EVENTS = re.compile(r"\bevents\b")  # the event store's table, where appends held back go
_READ_ONLY_USES = frozenset({"is_in_transaction", "is_closed", "get_server_pid", "get_settings"})


def writes_one_person(*statements: str) -> None:
    """Declare statements that write one person's directory row and no other, their $1 the
    tenant and $2 the person: after one, a batch reads that person afresh as an actor, and
    keeps the others it read ahead (any other write to the people empties them all). Such a
    statement reads no other row: a batch's several of it, for different people, go as
    expressions of the batch's last statement (`rows_keyed_by`)."""
    _ONE_PERSON_WRITES.update(statements)
    rows_keyed_by(2, *statements)


class WatchedConnection:
    """A command's connection inside a batch: the same connection, and whether the command
    wrote through it (any statement that may change something counts: a refusal after it
    cannot be undone without giving the batch up). A write that may touch the directory's
    people empties the actors the batch read ahead (`actors`), so what comes after reads them
    afresh; one declared to write a single person's row (`writes_one_person`) forgets that
    person's alone."""

    __slots__ = ("_conn", "_actors", "_deferred", "_held", "wrote")
    # query -> (may write, may write the directory, names the event store)
    _verdicts: dict[str, tuple[bool, bool, bool]] = {}

    def __init__(self, conn, actors: dict | None = None, deferred: BatchedWrites | None = None,
                 held: HeldLock | None = None) -> None:
        self._conn = conn
        self._actors = actors
        self._deferred = deferred  # the projections' writes waiting beside this connection
        self._held = held  # and the appends held back
        self.wrote = False

    @property
    def unwatched(self):
        return self._conn

    def _see(self, query: str, rows: Sequence[Sequence] = ()) -> bool:
        """Note what `query` may do (`rows`: the arguments of each execution); whether it may
        see the event store."""
        verdict = self._verdicts.get(query)
        if verdict is None:
            lowered = query.lower()
            writes = bool(_WRITES.search(lowered))
            verdict = (writes, writes and _DIRECTORY in lowered, bool(_EVENTS.search(lowered)))
            if len(self._verdicts) < 10_000:
                self._verdicts[query] = verdict
        if verdict[0]:
            self._wrote(verdict[1], query, rows)
        return verdict[2]

    async def _before(self, query: str, rows: Sequence[Sequence] = ()) -> None:
        """Before `query`: note it, and write what waits that it may see."""
        if self._see(query, rows) and self._held is not None and self._held.holds_rows():
            await self._held.write_deferred(self._conn)
        if self._deferred is not None:
            await self._deferred.before(query)

    def _wrote(self, directory: bool = True, query: str | None = None, rows: Sequence[Sequence] = ()) -> None:
        self.wrote = True
        if not directory or not self._actors:
            return
        if query in _ONE_PERSON_WRITES and rows and all(len(row) >= 2 for row in rows):
            for tenant, person_id, *_ in rows:
                self._actors.pop((tenant, person_id), None)
        else:
            self._actors.clear()

    async def execute(self, query: str, *args, **kwargs):
        await self._before(query, (args,))
        return await self._conn.execute(query, *args, **kwargs)

    async def executemany(self, command: str, args, **kwargs):
        rows = list(args)
        await self._before(command, rows)
        # Any executemany writes; `_before` may have noted it already (noting twice changes nothing).
        self._wrote(_DIRECTORY in command.lower(), command, rows)
        return await self._conn.executemany(command, rows, **kwargs)

    async def fetch(self, query: str, *args, **kwargs):
        await self._before(query, (args,))
        return await self._conn.fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args, **kwargs):
        await self._before(query, (args,))
        return await self._conn.fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args, **kwargs):
        await self._before(query, (args,))
        return await self._conn.fetchval(query, *args, **kwargs)

    def transaction(self, **kwargs):
        if self._deferred is None and self._held is None:
            return self._conn.transaction(**kwargs)
        return _SavepointBesideDeferred(self._conn, self._deferred, self._held, self._conn.transaction(**kwargs))

    def __getattr__(self, name: str):
        if name not in _READ_ONLY_USES:  # anything else may write (copy_*, cursors, prepared)
            self._wrote()
            if (self._deferred is not None and self._deferred.holds) or (
                    self._held is not None and self._held.holds_rows()):
                # What it may read or write cannot be told: the batch is given up.
                raise BatchingUnavailable(f"connection.{name} while projection writes wait")
        return getattr(self._conn, name)


class _SavepointBesideDeferred:
    """A handler's own savepoint in a batch: the appends held back and the projections'
    writes deferred are sent before it starts; inside it appends are written at once (a
    rolled-back one is then seen by the next append's check of the head), and what the
    projections deferred inside it is sent before it is released, or forgotten when it is
    rolled back."""

    def __init__(self, conn, deferred: BatchedWrites | None, held: HeldLock | None, transaction) -> None:
        self._conn = conn
        self._deferred = deferred
        self._held = held
        self._transaction = transaction
        self._was_deferring = False

    async def __aenter__(self):
        if self._held is not None:
            await self._held.write_deferred(self._conn)
            self._was_deferring, self._held.defer = self._held.defer, False
        if self._deferred is not None:
            await self._deferred.flush()
        return await self._transaction.__aenter__()

    async def __aexit__(self, exc_type, exc, tb):
        try:
            if self._deferred is not None and exc_type is None:
                try:
                    await self._deferred.flush()
                except BaseException as failed:
                    self._deferred.discard()
                    await self._transaction.__aexit__(type(failed), failed, failed.__traceback__)
                    raise
            elif self._deferred is not None:
                self._deferred.discard()
            return await self._transaction.__aexit__(exc_type, exc, tb)
        finally:
            if self._held is not None:
                self._held.defer = self._was_deferring
                if exc_type is not None:  # rolled back: what it appended is gone, the head with it
                    self._held.forget()


class CommandBatcher:
    """Hands the commands that arrive while others are being decided to the dispatcher together.

    Each delivered command waits here for its reply. One worker decides them: it takes every
    command waiting (at most `max_batch`) and has them decided in one transaction
    (`CommandDispatcher`). Under light load each command is decided alone, as soon as it
    arrives; the busier the service, the more arrive while a batch is being decided, and the
    larger the next one. (More workers would only wait for one another: a batch holds the
    store's append lock from its start. So a long command, a department's import, holds up the
    commands behind it, as its append lock did once it appended; queries are not held up.) A
    redelivered command (its process may have died
    deciding it) is decided on its own, so a command that kills the process takes no other
    command down with it.
    """

    def __init__(self, dispatcher: CommandDispatcher, max_batch: int = MAX_BATCH) -> None:
        self.dispatcher = dispatcher
        self._max = max(1, min(max_batch, MAX_BATCH))
        self._waiting: deque[tuple[Accepted, asyncio.Future, bool]] = deque()
        self._worker: asyncio.Task | None = None  # while there is something to decide
        self.largest_batch = 0

    async def decide(self, accepted: Accepted, alone: bool = False) -> Reply:
        return (await self.decide_many([accepted], alone))[0]

    async def decide_many(self, commands: Sequence[Accepted], alone: bool = False) -> list[Reply]:
        """Each command's reply, in order; those not `alone` may be decided in one transaction."""
        loop = asyncio.get_running_loop()
        replies = [loop.create_future() for _ in commands]
        self._waiting.extend((accepted, reply, alone) for accepted, reply in zip(commands, replies, strict=True))
        if self._worker is None:
            # Not in this handler's trace context: the worker serves many commands.
            self._worker = asyncio.create_task(self._work(), name="command-worker", context=_untraced())
        # Shielded: a handler cancelled while waiting (the broker stopping) leaves the batch
        # under way intact; its message, not acknowledged, comes back and finds its stored reply.
        if len(replies) == 1:
            return [await asyncio.shield(replies[0])]
        return list(await asyncio.shield(asyncio.gather(*replies)))

    async def answer(self, triaged: Sequence[Reply | Accepted]) -> list[Reply]:
        """The replies to commands and queries triaged together (a message of several), in
        order: the commands decided with whatever else waits, then the queries run."""
        accepted = [a for a in triaged if isinstance(a, Accepted)]
        mutating = [a for a in accepted if a.mutates]
        queries = [a for a in accepted if not a.mutates]
        decided = iter(await self.decide_many(mutating) if mutating else ())
        answered = iter(await asyncio.gather(*(self.dispatcher.run_query(a) for a in queries)))
        return [a if isinstance(a, Reply) else next(decided) if a.mutates else next(answered) for a in triaged]

    def _take(self) -> list[tuple[Accepted, asyncio.Future, bool]]:
        batch = [self._waiting.popleft()]
        if not batch[0][2]:
            while self._waiting and len(batch) < self._max and not self._waiting[0][2]:
                batch.append(self._waiting.popleft())
        return batch

    async def stop(self) -> None:
        """After the broker stopped: the worker, and whoever still waits is let go unanswered
        (their messages, not acknowledged, are delivered again)."""
        if self._worker is not None:
            worker = self._worker
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft()[1].cancel()

    async def _work(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                self.largest_batch = max(self.largest_batch, len(batch))
                try:
                    replies = await self.dispatcher.run_commands([a for a, _, _ in batch])
                except BaseException:
                    for _, reply, _ in batch:
                        reply.cancel()
                    raise
                for (_, reply, _), answer in zip(batch, replies, strict=True):
                    if not reply.done():
                        reply.set_result(answer)
        finally:
            # With nothing awaited since the queue was last seen empty: a command arriving
            # from now on starts the next worker.
            self._worker = None


# A message carrying several commands has this header (its value: how many) and a JSON array
# of `{"headers": {...}, "command": {...}}`, each command with its trace context beside it. It
# is answered by one reply holding their replies in order, or by one reply refusing it whole.
COMMANDS_HEADER = "x-wfh-commands"


def several_commands(commands: Sequence[tuple[bytes, dict[str, str]]]) -> bytes:
    """The body of a message of several: each command's JSON body with its headers."""
    return b"[" + b",".join(
        b'{"headers":' + json.dumps(headers).encode() + b',"command":' + body + b"}" for body, headers in commands
    ) + b"]"


def read_several(body: bytes) -> list[dict] | Reply:
    """The items of a message of several, or the one reply refusing it whole."""
    try:
        if len(body) > MAX_COMMAND_BYTES:
            raise ValueError(f"{len(body)} bytes, at most {MAX_COMMAND_BYTES}")
        items = json.loads(body)
        if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
            raise ValueError(f"not a list of 1 to {MAX_BATCH} commands")
        if not all(isinstance(i, dict) and isinstance(i.get("headers", {}), dict) for i in items):
            raise ValueError("each command must be an object with its headers as an object")
    except ValueError as exc:
        return Reply.failure(None, "malformed", "Thông điệp gồm nhiều lệnh không đúng định dạng.",
                             "The message of several commands is malformed.", reason=str(exc)[:300])
    return items


def trace_headers(item: dict) -> dict[str, str]:
    """An item's headers, text only (its trace context)."""
    return {k: v for k, v in item.get("headers", {}).items() if isinstance(k, str) and isinstance(v, str)}


def several_replies(replies: Sequence[Reply]) -> bytes:
    return b"[" + b",".join(r.model_dump_json().encode() for r in replies) + b"]"


def _untraced() -> contextvars.Context:
    """The current context (the logger's bound values) without the current trace."""
    context = contextvars.copy_context()
    context.run(otel_context.attach, otel_context.Context())
    return context


# The stored replies of some command ids ({ids}: a uuid[] parameter), as one JSON array.
_STORED_REPLIES = (
    "coalesce((SELECT json_agg(json_build_object('command_id', command_id, 'command_type', "
    "command_type, 'tenant', tenant, 'actor', actor, 'reply', reply::text)) FROM command_replies "
    "WHERE command_id = ANY({ids}::uuid[])), '[]')"
)


# The directory rows of some people of some departments, paired by position, as one JSON array.
_ACTORS = (
    "coalesce((SELECT json_agg(row_to_json(p)) FROM dir_people AS p "
    "JOIN unnest({tenants}::text[], {people}::text[]) AS a(tenant, person_id) USING (tenant, person_id)), '[]')"
)


def _streams_read(commands: Sequence[Accepted]) -> list[str]:
    """The streams the batch's commands say they will ask the versions of."""
    streams: dict[str, None] = {}
    for accepted in commands:
        if accepted.route.streams is None:
            continue
        try:
            named = accepted.route.streams(accepted.command, accepted.request.tenant, accepted.identity)
        except Exception as exc:  # noqa: BLE001 - only a hint: the handler reads what it needs
            log.warning("naming a command's streams failed", command_type=accepted.request.type, error=repr(exc))
            continue
        streams.update(dict.fromkeys(named))
    return list(streams)


def _unwatched(conn):
    return conn.unwatched if isinstance(conn, WatchedConnection) else conn


def _stored_rows(found: str | list) -> dict[uuid.UUID, dict]:
    rows = json.loads(found) if isinstance(found, str) else found
    return {uuid.UUID(r["command_id"]): r for r in rows}


def _stored_answer(row, accepted: Accepted) -> Reply:
    """A command id seen before gets its stored reply. Someone else's command under the same id
    is a different command: they get neither its reply (which may tell them about it) nor
    their own command silently dropped."""
    if (row["command_type"], row["tenant"], row["actor"]) != (
        accepted.request.type, accepted.request.tenant, accepted.identity.person_id
    ):
        return _reused(accepted.request)
    return Reply.model_validate_json(row["reply"])


def _same_command(first: Accepted, other: Accepted) -> bool:
    return (first.request.type, first.request.tenant, first.identity.person_id) == (
        other.request.type, other.request.tenant, other.identity.person_id)


def _reused(request: CommandRequest) -> Reply:
    return Reply.failure(
        request.command_id, "command_id_reused",
        "Mã lệnh này đã được dùng cho một lệnh khác.",
        "This command id was already used for a different command.",
    )


def _conflict(request: CommandRequest) -> Reply:
    return Reply.failure(
        request.command_id, "conflict",
        "Dữ liệu vừa bị thay đổi đồng thời, vui lòng gửi lại lệnh.",
        "The data changed concurrently; send the command again.",
    )


def _internal(request: CommandRequest, exc: Exception) -> Reply:
    log.exception("command failed", command_type=request.type, exc_info=exc)
    return Reply.failure(
        request.command_id, "internal", "Lỗi hệ thống, vui lòng thử lại hoặc báo Tổ CNTT.",
        f"Internal error: {type(exc).__name__}.",
    )


@contextlib.contextmanager
def _within(accepted: Accepted):
    """Run a command's work in the trace context it arrived in."""
    if accepted.context is None:
        yield
        return
    token = otel_context.attach(accepted.context)
    try:
        yield
    finally:
        otel_context.detach(token)


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
