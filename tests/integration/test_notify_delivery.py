"""Delivery guarantees on the real broker and database: once per (event, recipient, channel)
under redelivery, retries with backoff ending in NotificationSent or NotificationFailed,
reminders that survive a restart, quiet hours, and no secret text anywhere."""

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.contracts import decode
from shared.localtime import LOCAL_TZ
from services.notify.delivery import LISTENER_NAME
from tests.conftest import TENANT, eventually
from tests.integration.notify_support import (
    DIVISION, HEAD, PEOPLE, STAFF, BotQueue, Clock, deliveries, envelope, first_streamed, holds,
    leave_requested, Mailbox, notifications, notify_config, notify_events, publish, start_notify,
)

pytestmark = pytest.mark.integration

SATURDAY_MORNING = datetime(2037, 1, 10, 10, 0, tzinfo=LOCAL_TZ)
# Monday 12/01/2037 is a holiday in the plan: the next session is Tuesday's.
TUESDAY_SESSION = datetime(2037, 1, 13, 7, 0, tzinfo=LOCAL_TZ)


async def _settle() -> None:
    """Long enough for the delivery loop (polling every 50 ms) to have done anything it would."""
    await asyncio.sleep(0.8)


async def _count(getter, count: int):
    found = await getter()
    return found if len(found) >= count else None


async def test_redelivered_event_is_told_once_per_recipient_and_channel(system):
    with Mailbox() as mailbox:
        notify = await start_notify(system, notify_config(Clock(), mailbox))
        runtime = system.runtimes["notify"]
        async with BotQueue(system, f"{TENANT}.#") as bot:
            source = leave_requested(STAFF[0])
            await publish(system, source, source, source)
            await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationSent"), 2))
            # A second pass of the routing itself (not the inbox) writes nothing either.
            async with runtime.pool.acquire() as conn, conn.transaction():
                await notify.notifier.on_event(conn, source, decode(source))
            await _settle()
            assert len(bot.messages) == 1 and len(mailbox.messages) == 1
        assert len(await notifications(runtime)) == 1
        assert [(d["channel"], d["status"]) for d in await deliveries(runtime)] == [
            ("bot", "sent"), ("email", "sent")]
        assert len(await notify_events(runtime, "NotificationSent")) == 2


async def test_smtp_refusing_the_first_attempts_is_retried_until_sent(system):
    with Mailbox(fail_first=2) as mailbox:
        await start_notify(system, notify_config(Clock(), mailbox, max_attempts=5))
        runtime = system.runtimes["notify"]
        await publish(system, leave_requested(STAFF[0]))
        sent = await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationSent"), 2))
    email = next(e for e in sent if e["channel"] == "email")
    assert email["attempts"] == 3 and email["recipient_id"] == HEAD
    assert mailbox.attempts == 3 and len(mailbox.messages) == 1
    row = next(d for d in await deliveries(runtime) if d["channel"] == "email")
    assert row["status"] == "sent" and row["attempts"] == 3 and row["last_error"] is None
    assert await notify_events(runtime, "NotificationFailed") == []


@pytest.mark.parametrize("answer, attempts, reason", ids=["transient", "permanent"], argvalues=[
    ("451 4.3.0 Máy chủ thư đang quá tải", 3, "gave up after 3 attempts: SMTP 451 4.3.0 Máy chủ thư đang quá tải"),
    ("550 5.1.1 Hộp thư không tồn tại", 1, "SMTP 550 5.1.1 Hộp thư không tồn tại"),
])
async def test_smtp_always_failing_ends_in_notification_failed_with_the_reason(system, answer, attempts, reason):
    with Mailbox(always=answer) as mailbox:
        await start_notify(system, notify_config(Clock(), mailbox, max_attempts=3))
        runtime = system.runtimes["notify"]
        source = leave_requested(STAFF[0])
        await publish(system, source)
        (failed,) = await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationFailed"), 1))
    assert failed["channel"] == "email" and failed["recipient_id"] == HEAD
    assert failed["attempts"] == attempts and failed["reason"] == reason
    assert failed["source_event_id"] == str(source.event_id)
    assert mailbox.attempts == attempts and mailbox.messages == []
    # The bot delivery of the same notification is unaffected (its outcome commits apart, in
    # its own time).
    sent = await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationSent"), 1))
    assert [e["channel"] for e in sent] == ["bot"]
    status = await system.send("notify", "GetDeliveryStatus", {"source_event_id": str(source.event_id)})
    (told,) = status.result["notifications"]
    email = next(c for c in told["channels"] if c["channel"] == "email")
    assert email["status"] == "failed" and email["last_error"] == reason


def meeting(clock: Clock, join_in: timedelta, invitees=(STAFF[0], STAFF[1])) -> tuple:
    join_at = clock() + join_in
    meeting_id = str(uuid.uuid4())
    scheduled = envelope("MeetingScheduled", {
        "meeting_id": meeting_id, "title": "Giao ban trực tuyến tuần", "starts_at": (join_at + timedelta(minutes=15)).isoformat(),
        "join_at": join_at.isoformat(), "ends_at": (join_at + timedelta(minutes=75)).isoformat(),
        "link": "https://hop.example.vn/giao-ban", "chair_id": HEAD, "invitees": list(invitees),
        "organiser_id": HEAD}, source="documents", stream=f"meeting-{TENANT}-{meeting_id}")
    return scheduled, meeting_id


async def test_meeting_reminder_is_persisted_and_delivered_after_a_restart(system):
    clock = Clock()
    await start_notify(system, notify_config(clock))
    runtime = system.runtimes["notify"]
    scheduled, _ = meeting(clock, timedelta(minutes=30))
    await publish(system, scheduled)
    invitations = await eventually(lambda: _count(lambda: notifications(runtime, kind="MeetingScheduled"), 3))
    assert "vào phòng họp lúc" in invitations[0]["body"]
    async with runtime.pool.acquire() as conn:
        (reminder,) = await conn.fetch("SELECT * FROM reminders")
    assert reminder["status"] == "pending" and reminder["kind"] == "MeetingJoinReminder"

    await runtime.stop()
    clock.set(reminder["due_at"] + timedelta(seconds=1))  # the join time came while it was down
    async with BotQueue(system, f"{TENANT}.person.{STAFF[1]}") as bot:
        await start_notify(system, notify_config(clock), department=False)
        runtime = system.runtimes["notify"]
        told = await eventually(lambda: _count(lambda: notifications(runtime, kind="MeetingJoinReminder"), 3))
        # (The invitation's own deliveries, if still pending at the stop, go out now as well.)
        await eventually(lambda: holds(len(_of_kind(bot, "MeetingJoinReminder")) == 1))
    assert {n["recipient_id"] for n in told} == {HEAD, STAFF[0], STAFF[1]}
    (reminded,) = _of_kind(bot, "MeetingJoinReminder")
    assert reminded["title"] == "Đến giờ vào phòng họp: Giao ban trực tuyến tuần"
    assert "https://hop.example.vn/giao-ban" in reminded["body"]
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM reminders") == "fired"


def _of_kind(bot: BotQueue, kind: str) -> list[dict]:
    return [b for b in bot.bodies() if b["kind"] == kind]


async def test_cancelled_meeting_calls_its_reminder_off(system):
    clock = Clock()
    await start_notify(system, notify_config(clock))
    runtime = system.runtimes["notify"]
    scheduled, meeting_id = meeting(clock, timedelta(minutes=30))
    cancelled = envelope("MeetingCancelled", {"meeting_id": meeting_id, "reason": "Lãnh đạo bận đột xuất"},
                         source="documents", stream=scheduled.stream_id, version=2)
    await publish(system, scheduled, cancelled)

    async def called_off():
        async with runtime.pool.acquire() as conn:
            return await conn.fetchval("SELECT status FROM reminders") == "dropped"

    await eventually(called_off)
    clock.set(clock() + timedelta(minutes=31))
    await _settle()
    assert await notifications(runtime, kind="MeetingJoinReminder") == []


async def test_quiet_hours_hold_bot_and_email_until_the_next_session_but_not_urgent_ones(system):
    clock = Clock(SATURDAY_MORNING)
    with Mailbox() as mailbox:
        notify = await start_notify(system, notify_config(clock, mailbox))
        runtime = system.runtimes["notify"]
        async with BotQueue(system, f"{TENANT}.#") as bot:
            await publish(system, leave_requested(STAFF[0]))
            (held,) = await eventually(lambda: _count(lambda: notifications(runtime), 1))
            # The web stream shows it at once...
            shown = await first_streamed(notify, system.token(HEAD))
            assert shown["notification_id"] == str(held["notification_id"])
            # ...bots and email wait for Tuesday's first session (Monday is a holiday).
            assert {d["due_at"] for d in await deliveries(runtime)} == {TUESDAY_SESSION}
            await _settle()
            assert bot.messages == [] and mailbox.messages == []

            # An urgent summons goes out at once, on the weekend too.
            await publish(system, summons(STAFF[2]))
            await eventually(lambda: holds(len(mailbox.messages) == 2 and len(bot.messages) == 2))
            assert {m["To"] for m in mailbox.messages} == {PEOPLE[STAFF[2]]["email"], PEOPLE[HEAD]["email"]}

            clock.set(TUESDAY_SESSION + timedelta(seconds=1))
            await eventually(lambda: holds(len(mailbox.messages) == 3 and len(bot.messages) == 3))
    assert mailbox.messages[-1]["Subject"].startswith("Đơn xin nghỉ phép của")


def summons(person_id: str) -> tuple:
    document_id = str(uuid.uuid4())
    return envelope("SecretDocumentSummons", {
        "document_id": document_id, "number": 4711, "person_id": person_id, "division_id": DIVISION,
        "division_head_id": HEAD, "urgency": "flash", "come_in_on": "2037-01-10"},
        source="documents", stream=f"document-{TENANT}-{document_id}")


async def test_secret_document_summons_carries_no_secret_text_on_any_channel(system):
    with Mailbox() as mailbox:
        notify = await start_notify(system, notify_config(Clock(), mailbox))
        runtime = system.runtimes["notify"]
        async with BotQueue(system, f"{TENANT}.#") as bot:
            source = summons(STAFF[0])
            await publish(system, source)
            await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationSent"), 4))
        web = await first_streamed(notify, system.token(STAFF[0]))
    rows = await notifications(runtime)
    texts = [f"{r['title']}\n{r['body']}" for r in rows]
    texts += [f"{m['Subject']}\n{m.get_content()}" for m in mailbox.messages]
    texts += [f"{b['title']}\n{b['body']}" for b in bot.bodies()]
    texts += [f"{web['title']}\n{web['body']}"]
    texts += [json.dumps(e, ensure_ascii=False) for e in await notify_events(runtime, "NotificationSent")]
    assert len(texts) == 2 + 2 + 2 + 1 + 4
    for text in texts:
        for secret in (source.payload["document_id"], "4711", "10/01/2037", "2037-01-10", "flash"):
            assert secret not in text
    assert {r["title"] for r in rows} == {"Đề nghị đồng chí đến cơ quan"}
    assert all(r["body"].endswith("đề nghị đồng chí đến cơ quan, liên hệ Văn phòng Sở.") for r in rows)
    assert all(r["urgent"] for r in rows)


async def _listeners(runtime) -> list[int]:
    """The backends of the delivery loop's listening connections."""
    async with runtime.pool.acquire() as conn:
        return [r["pid"] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            LISTENER_NAME)]


async def _terminate(runtime, backend: int) -> None:
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", backend)


async def _listening_again(runtime, cut: int) -> list[int] | None:
    found = await _listeners(runtime)
    return found if found and cut not in found else None


async def test_a_delivery_leaves_when_its_notification_commits_not_at_the_next_poll(system):
    # Polling once a minute: only PostgreSQL's wake-up at the notification's commit sends it sooner.
    notify = await start_notify(system, replace(notify_config(Clock()), poll_seconds=60))
    runtime = system.runtimes["notify"]
    async with BotQueue(system, f"{TENANT}.#") as bot:
        await publish(system, leave_requested(STAFF[0]))
        await eventually(lambda: holds(len(bot.messages) == 1), timeout=15)

        # Its listening connection cut while it waits, the loop listens again on a new one at once.
        (cut,) = await _listeners(runtime)
        await _terminate(runtime, cut)
        (cut,) = await eventually(lambda: _listening_again(runtime, cut), timeout=15)
        await publish(system, leave_requested(STAFF[1]))
        await eventually(lambda: holds(len(bot.messages) == 2), timeout=15)

        # And cut during a pass (whose end clears what woke it): at the next pass.
        loop = notify.delivery
        passes = loop.tick

        async def cut_during_a_pass(pool, store) -> int:
            loop.tick = passes
            await _terminate(runtime, cut)
            await asyncio.sleep(0.3)  # the loss is known before the pass ends
            return await passes(pool, store)

        loop.tick = cut_during_a_pass
        await publish(system, leave_requested(STAFF[2]))
        await eventually(lambda: holds(len(bot.messages) == 3), timeout=15)
        await eventually(lambda: _listening_again(runtime, cut), timeout=15)
        await publish(system, leave_requested(STAFF[3]))
        await eventually(lambda: holds(len(bot.messages) == 4), timeout=15)


async def test_a_meetings_bot_messages_leave_together_with_one_commit_for_their_outcomes(system):
    clock = Clock()
    await start_notify(system, notify_config(clock))
    runtime = system.runtimes["notify"]
    invitees = [p for p in PEOPLE if p != HEAD][:12]
    async with BotQueue(system, f"{TENANT}.#") as bot:
        scheduled, _ = meeting(clock, timedelta(hours=2), invitees=invitees)
        await publish(system, scheduled)
        told = len(invitees) + 1  # and the chair
        await eventually(lambda: holds(len(bot.messages) == told), timeout=15)
        sent = await eventually(lambda: _count(lambda: notify_events(runtime, "NotificationSent"), told))
    assert len(sent) == told
    async with runtime.pool.acquire() as conn:
        outcomes = await conn.fetch(
            "SELECT status, xmin::text AS transaction FROM deliveries WHERE channel = 'bot'")
    assert len(outcomes) == told and {o["status"] for o in outcomes} == {"sent"}
    assert len({o["transaction"] for o in outcomes}) == 1
