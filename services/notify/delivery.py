"""The delivery loop: fires due reminders, drains due deliveries, records each outcome once.

Runs in every notify process; `FOR UPDATE SKIP LOCKED` gives each delivery to one of them.
PostgreSQL wakes it when notifications commit (the web feed's NOTIFY), so a delivery leaves as
soon as it is written; the poll every `poll_seconds` finds what falls due later (quiet hours,
retries) and covers a listening connection lost.
A delivery is sent while its row is locked, and its outcome (the row's new state and the
`NotificationSent` / `NotificationFailed` event) commits in one transaction, with those of the
other bot messages of its pass: a crash in between rolls back and they are sent again later
(at least once; bots and mail clients see the same message id). Failures wait with
exponential backoff in the row's `due_at`, so retries survive restarts too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg

from shared.contracts.notify import NotificationFailed, NotificationSent, delivery_stream
from shared.eventstore import AppendContext, EventStore
from shared.observability import get_logger
from services.notify.channels import BotChannel, DeliveryError, EmailChannel, Outgoing
from services.notify.config import NotifyConfig
from services.notify.domain import retry_delay
from services.notify.routing import NOTIFIED_CHANNEL, Notifier

log = get_logger("wfh.notify.delivery")

LISTENER_NAME = "wfh-notify-deliveries"  # its connection's application_name, as operators see it

_DUE = (
    "SELECT d.delivery_id, d.notification_id, d.tenant, d.channel, d.address, d.attempts, "
    "n.recipient_id, n.division_id, n.source_event_id, n.source_event_type, n.correlation_id, "
    "n.kind, n.category, n.urgent, n.locale, n.title, n.body, n.created_at, "
    "coalesce(dep.name, d.tenant) AS department_name "
    "FROM deliveries d JOIN notifications n USING (notification_id) "
    "LEFT JOIN dir_departments dep ON dep.tenant = d.tenant "
    "WHERE d.delivery_id = ANY($1::uuid[]) AND d.status = 'pending' AND d.due_at <= $2 "
    "ORDER BY d.due_at FOR UPDATE OF d SKIP LOCKED"
)


class DeliveryLoop:
    def __init__(self, config: NotifyConfig, notifier: Notifier, concurrency: int = 4) -> None:
        self.config = config
        self.notifier = notifier
        self.channels: dict[str, object] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self._written = asyncio.Event()  # notifications committed since the last pass began

    async def deliveries(self, runtime) -> None:
        """Background loop of the service (ServiceDefinition.background)."""
        bot = BotChannel(runtime.settings.amqp_url, runtime.settings.namespace)
        await bot.open()
        self.channels = {"bot": bot, "email": EmailChannel(self.config)}
        url = runtime.settings.database_url
        listener = None
        log.info("delivery loop started", email=(
            f"{self.config.smtp_host}:{self.config.smtp_port}" if self.config.email_enabled
            else "off (no WFH_SMTP_HOST)"))
        try:
            while True:
                # Checked before each pass, not after a wait: one lost during a pass wakes the
                # loop, and the pass that follows clears that wake-up.
                if listener is None or listener.is_closed():
                    listener = await self._listen(url)
                self._written.clear()  # before the pass: what commits during it wakes the next
                if await self.tick(runtime.pool, runtime.store):
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._written.wait(), self.config.poll_seconds)
        finally:
            await bot.close()
            if listener is not None:
                listener.terminate()

    async def _listen(self, url: str) -> asyncpg.Connection | None:
        """A connection on which PostgreSQL tells the loop of notifications committed (and so of
        their deliveries); None while the database cannot be reached, the poll covering it."""
        listener = None
        try:
            listener = await asyncpg.connect(url, server_settings={"application_name": LISTENER_NAME})
            await listener.add_listener(NOTIFIED_CHANNEL, self._on_written)
            # Lost, it is replaced at once, with a pass for what it would have told meanwhile.
            listener.add_termination_listener(lambda _conn: self._written.set())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if listener is not None:
                listener.terminate()
            log.warning("delivery loop not woken by new notifications, polling", error=repr(exc))
            return None
        return listener

    def _on_written(self, _conn, _pid, _channel, _payload: str) -> None:
        self._written.set()

    async def tick(self, pool: asyncpg.Pool, store: EventStore) -> int:
        """One pass: fire due reminders, then try every due delivery. Returns how much it did."""
        now = self.config.clock()
        async with pool.acquire() as conn:
            async with conn.transaction():
                fired = await self.notifier.fire_due_reminders(conn, now)
            due = await conn.fetch(
                "SELECT delivery_id, channel FROM deliveries WHERE status = 'pending' AND due_at <= $1 "
                "ORDER BY due_at LIMIT 100", now,
            )
        # Bot messages leave together, their outcomes committed in one transaction (a roster's
        # approval tells a whole department at once); each email on its own, so that a slow
        # mail server holds up no other delivery.
        batches = [[r["delivery_id"]] for r in due if r["channel"] != "bot"]
        if bots := [r["delivery_id"] for r in due if r["channel"] == "bot"]:
            batches.append(bots)
        done = await asyncio.gather(*(self._deliver(pool, store, batch) for batch in batches))
        return fired + sum(done)

    async def _deliver(self, pool: asyncpg.Pool, store: EventStore, deliveries: list[uuid.UUID]) -> int:
        """Send these deliveries, then commit their outcomes together; one another process
        holds, or done meanwhile, is left. Returns how many were tried."""
        async with self._limit, pool.acquire() as conn, conn.transaction():
            outgoing = [Outgoing.from_row(row) for row in await conn.fetch(_DUE, deliveries, self.config.clock())]
            failures = await asyncio.gather(*(self._send(out) for out in outgoing))
            for out, failure in zip(outgoing, failures, strict=True):
                attempts = out.attempts + 1
                if failure is not None:
                    await self._failed(conn, store, out, attempts, failure)
                    continue
                await conn.execute(
                    "UPDATE deliveries SET status = 'sent', attempts = $2, finished_at = $3, "
                    "last_error = NULL WHERE delivery_id = $1",
                    out.delivery_id, attempts, self.config.clock(),
                )
                await self._record(conn, store, out, NotificationSent(**_facts(out), attempts=attempts))
                log.info("delivered", channel=out.channel, kind=out.kind, delivery_id=str(out.delivery_id),
                         attempts=attempts)
            return len(outgoing)

    async def _send(self, out: Outgoing) -> DeliveryError | None:
        try:
            await self.channels[out.channel].send(out)
        except DeliveryError as exc:
            return exc
        return None

    async def _failed(self, conn, store, out: Outgoing, attempts: int, exc: DeliveryError) -> None:
        now = self.config.clock()
        if exc.permanent or attempts >= self.config.max_attempts:
            reason = exc.reason if exc.permanent else f"gave up after {attempts} attempts: {exc.reason}"
            await conn.execute(
                "UPDATE deliveries SET status = 'failed', attempts = $2, finished_at = $3, "
                "last_error = $4 WHERE delivery_id = $1",
                out.delivery_id, attempts, now, reason,
            )
            await self._record(conn, store, out, NotificationFailed(
                **_facts(out), attempts=attempts, reason=reason))
            log.warning("delivery failed", channel=out.channel, kind=out.kind,
                        delivery_id=str(out.delivery_id), attempts=attempts, reason=reason)
            return
        wait = retry_delay(attempts, self.config.retry_base_seconds, self.config.retry_max_seconds)
        await conn.execute(
            "UPDATE deliveries SET attempts = $2, last_error = $3, due_at = $4 WHERE delivery_id = $1",
            out.delivery_id, attempts, exc.reason, now + wait,
        )
        log.info("delivery will be retried", channel=out.channel, delivery_id=str(out.delivery_id),
                 attempts=attempts, in_seconds=wait.total_seconds(), reason=exc.reason)

    async def _record(self, conn, store: EventStore, out: Outgoing, event) -> None:
        await store.append(
            conn, delivery_stream(out.delivery_id), 0, [event],
            AppendContext(tenant=out.tenant, actor="notify", correlation_id=out.correlation_id,
                          causation_id=out.source_event_id),
        )


def _facts(out: Outgoing) -> dict:
    return {
        "delivery_id": out.delivery_id, "notification_id": out.notification_id,
        "source_event_id": out.source_event_id, "source_event_type": out.source_event_type,
        "kind": out.kind, "recipient_id": out.recipient_id, "channel": out.channel,
    }
