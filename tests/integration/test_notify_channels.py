"""From source events on the real broker to each channel: a bot's queue, the live web stream
(with replay after reconnect), the SMTP mailbox, and the page in headless Chromium."""

import asyncio
import json

import aiohttp
import pytest

from shared.auth import DevIdentityProvider
from tests.conftest import TENANT, eventually
from tests.integration.chromium import CHROMIUM, Browser
from tests.integration.notify_support import (
    CHIEF, DIRECTOR, DIVISION, ENGLISH, HEAD, PEOPLE, STAFF, BotQueue, Clock, envelope, holds,
    leave_requested, Mailbox, notifications, notify_config, notify_events, publish, start_notify,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def mailbox():
    with Mailbox() as box:
        yield box


@pytest.fixture
async def notify(system, mailbox):
    return await start_notify(system, notify_config(Clock(), mailbox))


async def test_leave_request_reaches_the_heads_bot_queue_and_mailbox(system, notify, mailbox):
    runtime = system.runtimes["notify"]
    async with BotQueue(system, f"{TENANT}.person.{HEAD}") as head_bot, \
            BotQueue(system, f"{TENANT}.division.{DIVISION}") as division_bot, \
            BotQueue(system, f"{TENANT}.person.{STAFF[1]}") as other_bot:
        source = leave_requested(STAFF[0])
        await publish(system, source)
        await eventually(lambda: holds(len(head_bot.messages) == 1 and len(mailbox.messages) == 1))
        await eventually(lambda: holds(len(division_bot.messages) == 1))

    message = head_bot.messages[0]
    body = json.loads(message.body)
    applicant = PEOPLE[STAFF[0]]["full_name"]
    assert body["recipient_id"] == HEAD and body["tenant"] == TENANT and body["kind"] == "LeaveRequested"
    assert body["title"] == f"Đơn xin nghỉ phép của {applicant} chờ đồng chí duyệt"
    assert "từ ngày 09/01/2037 đến ngày 13/01/2037" in body["body"]
    assert message.message_id == body["delivery_id"] and message.delivery_mode == 2
    assert division_bot.bodies() == [body]  # the division's bot gets it through the CC key
    assert other_bot.messages == []

    mail = mailbox.messages[0]
    assert mail["To"] == PEOPLE[HEAD]["email"]
    assert mail["Subject"] == body["title"]
    text = mail.get_content()
    assert "Lý do: Việc gia đình." in text and "Sở Thông tin và Truyền thông tỉnh Thanh Hóa" in text

    (stored,) = await notifications(runtime)
    assert stored["recipient_id"] == HEAD and stored["source_event_id"] == source.event_id
    sent = await eventually(lambda: _events(runtime, "NotificationSent", 2))
    assert {(e["channel"], e["recipient_id"], e["attempts"]) for e in sent} == {
        ("bot", HEAD, 1), ("email", HEAD, 1)}


async def test_approval_goes_to_applicant_director_and_chief_in_their_language(system, notify, mailbox):
    runtime = system.runtimes["notify"]
    approved = envelope("LeaveApproved", {
        "application_id": "5f0e4c1e-1111-4c3e-9d7e-0a1b2c3d4e5f", "person_id": ENGLISH,
        "division_id": PEOPLE[ENGLISH]["division_id"], "approver_id": HEAD,
        "working_dates": ["2037-01-09"], "days": 1.0, "content_sha256": "ab", "signature": "sig",
        "key_id": "k1"}, stream=f"leave-{TENANT}-{ENGLISH}")
    await publish(system, approved)
    rows = await eventually(lambda: _rows(runtime, 3))
    by_person = {r["recipient_id"]: r for r in rows}
    assert set(by_person) == {ENGLISH, DIRECTOR, CHIEF}
    assert by_person[ENGLISH]["locale"] == "en"
    assert by_person[ENGLISH]["title"] == f"Leave of {PEOPLE[ENGLISH]['full_name']} approved"
    assert "signed and approved by" in by_person[ENGLISH]["body"]
    assert by_person[DIRECTOR]["title"] == f"Đơn nghỉ phép của {PEOPLE[ENGLISH]['full_name']} đã được duyệt"
    assert "09/01/2037" in by_person[DIRECTOR]["body"]
    # Leaders are told by email and on the web, not by chat pings (role defaults).
    await eventually(lambda: holds(len(mailbox.messages) == 3))
    sent = await eventually(lambda: _events(runtime, "NotificationSent", 5))
    assert sorted((e["recipient_id"], e["channel"]) for e in sent) == sorted([
        (ENGLISH, "bot"), (ENGLISH, "email"), (DIRECTOR, "email"), (CHIEF, "bot"), (CHIEF, "email")])


async def _stream(session, url: str, token: str | None, last_event_id: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return await session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=15))


async def _next_events(response, count: int, timeout: float = 10) -> list[dict]:
    """Read `count` SSE events (id and parsed data) from an open stream."""
    events, block = [], {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), timeout)).decode().rstrip("\n")
        if line.startswith("id: "):
            block["id"] = line[4:]
        elif line.startswith("data: "):
            block["data"] = json.loads(line[6:])
        elif line == "" and "data" in block:
            events.append(block)
            block = {}
    return events


async def test_live_stream_replays_what_was_missed_after_reconnect(system, notify):
    url = f"http://127.0.0.1:{notify.web.port}/notifications/stream"
    token = system.token(HEAD)
    async with aiohttp.ClientSession() as session:
        response = await _stream(session, url, token)
        assert response.status == 200 and response.content_type == "text/event-stream"
        await publish(system, leave_requested(STAFF[0]))
        (first,) = await _next_events(response, 1)
        assert first["data"]["kind"] == "LeaveRequested" and first["data"]["read"] is False
        assert PEOPLE[STAFF[0]]["full_name"] in first["data"]["title"]
        response.close()

        # While disconnected, two more arrive; the reconnect with Last-Event-ID gets exactly those.
        await publish(system, leave_requested(STAFF[1]), leave_requested(STAFF[2]))
        await eventually(lambda: _rows(system.runtimes["notify"], 3))
        response = await _stream(session, url, token, last_event_id=first["id"])
        missed = await _next_events(response, 2)
        assert [int(e["id"]) for e in missed] == sorted(int(e["id"]) for e in missed)
        assert {e["data"]["title"] for e in missed} == {
            f"Đơn xin nghỉ phép của {PEOPLE[p]['full_name']} chờ đồng chí duyệt" for p in STAFF[1:3]}
        # ...and then live ones again.
        await publish(system, leave_requested(STAFF[3]))
        (live,) = await _next_events(response, 1)
        assert int(live["id"]) > int(missed[-1]["id"])
        response.close()

        # Someone else's stream holds none of the head's notifications.
        other = await _stream(session, url, system.token(STAFF[0]))
        assert other.status == 200
        with pytest.raises(TimeoutError):
            await _next_events(other, 1, timeout=1.5)
        other.close()


async def test_forged_or_missing_token_gets_nothing(system, notify):
    url = f"http://127.0.0.1:{notify.web.port}/notifications/stream"
    forged = DevIdentityProvider.generate(system.idp.issuer).mint(HEAD, TENANT)
    await publish(system, leave_requested(STAFF[0]))
    await eventually(lambda: _rows(system.runtimes["notify"], 1))
    async with aiohttp.ClientSession() as session:
        for token in (forged, None, "not-a-jwt"):
            response = await _stream(session, url, token)
            assert response.status == 401
            text = await response.text()
            assert "Không xác thực được" in text and "title" not in text
        response = await session.get(url, params={"access_token": forged})
        assert response.status == 401



async def _rows(runtime, count: int):
    rows = await notifications(runtime)
    return rows if len(rows) >= count else None


async def _events(runtime, event_type: str, count: int):
    found = await notify_events(runtime, event_type)
    return found if len(found) >= count else None


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not found (.ci/run installs Debian's chromium)")
async def test_page_in_headless_chromium_shows_live_notifications(system, notify):
    page = f"http://127.0.0.1:{notify.web.port}/"
    await publish(system, leave_requested(STAFF[0]))
    await eventually(lambda: _rows(system.runtimes["notify"], 1))
    async with Browser() as browser:
        await browser.goto(f"{page}#token={system.token(HEAD)}")
        first = f"Đơn xin nghỉ phép của {PEOPLE[STAFF[0]]['full_name']} chờ đồng chí duyệt"
        text = await browser.wait_for_text("Thông báo của đồng chí", "Đã kết nối", first)
        assert "từ ngày 09/01/2037 đến ngày 13/01/2037" in text
        # A new one shows up live, without reloading the page.
        await publish(system, leave_requested(STAFF[1]))
        await browser.wait_for_text(f"Đơn xin nghỉ phép của {PEOPLE[STAFF[1]]['full_name']}")
        assert await browser.evaluate("document.querySelectorAll('li.unread').length") == 2

        forged = DevIdentityProvider.generate(system.idp.issuer).mint(HEAD, TENANT)
        await browser.goto("about:blank")
        await browser.goto(f"{page}#token={forged}")
        text = await browser.wait_for_text("Không xác thực được người dùng")
        assert "Đơn xin nghỉ phép" not in text


async def test_the_python_client_subscribes_to_a_persons_notifications(system, notify):
    from shared.client import NotificationFeed
    from tests.conftest import AMQP_URL

    async with NotificationFeed(AMQP_URL, system.namespace, TENANT, person_id=HEAD) as feed, \
            NotificationFeed(AMQP_URL, system.namespace, TENANT, division_id=DIVISION) as division:
        source = leave_requested(STAFF[0])
        await publish(system, source)
        told = await feed.next(timeout=15)
        assert told.recipient_id == HEAD and told.source_event_id == source.event_id
        assert told.kind == "LeaveRequested" and "nghỉ phép" in told.title
        assert (await division.next(timeout=15)).delivery_id == told.delivery_id
        with pytest.raises(TimeoutError):
            await feed.next(timeout=1)  # told once
