"""What the notify tests share: a movable clock, a real SMTP mailbox, a bot queue, the demo
department loaded into roster (and so into notify's directory copy), source events published."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aio_pika
from aiosmtpd.controller import Controller

from shared.contracts import Envelope
from shared.localtime import LOCAL_TZ
from shared.topology import notifications_exchange
from services.notify.app import NotifyService
from services.notify.config import NotifyConfig
from tests.conftest import AMQP_URL, TENANT, eventually

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
PEOPLE = {p["id"]: p for p in DEMO["people"]}


def first(role: str, division: str | None = None) -> str:
    return next(p["id"] for p in DEMO["people"]
                if role in p["roles"] and (division is None or p["division_id"] == division))


DIVISION = "cntt"
HEAD = first("division_head", DIVISION)
STAFF = [p["id"] for p in DEMO["people"] if p["division_id"] == DIVISION and p["roles"] == ["staff"]]
DIRECTOR = first("director")
CHIEF = first("chief_of_office")
ENGLISH = next(p["id"] for p in DEMO["people"] if p.get("locale") == "en")

# Monday 05/01/2037 to Friday 27/02/2037, with a holiday on Monday 12/01/2037.
PLAN = {"plan_id": "kh-2037", "title": "Kế hoạch làm việc trực tuyến",
        "effective_from": "2037-01-05", "effective_until": "2037-02-27", "holidays": ["2037-01-12"]}
TUESDAY_MORNING = datetime(2037, 1, 6, 9, 0, tzinfo=LOCAL_TZ)


class Clock:
    """A clock that runs in real time from a chosen moment and can be moved."""

    def __init__(self, start: datetime = TUESDAY_MORNING) -> None:
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._anchor, self._since = moment.astimezone(UTC), time.monotonic()

    def __call__(self) -> datetime:
        from datetime import timedelta

        return self._anchor + timedelta(seconds=time.monotonic() - self._since)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """A real SMTP server (aiosmtpd) keeping what arrives; it can refuse the first attempts."""

    def __init__(self, fail_first: int = 0, always: str | None = None) -> None:
        self.fail_first = fail_first
        self.always = always
        self.attempts = 0
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.attempts += 1
        if self.always:
            return self.always
        if self.attempts <= self.fail_first:
            return "451 4.3.0 Hộp thư tạm thời bận, thử lại sau"
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def __enter__(self) -> Mailbox:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()


def notify_config(clock: Clock, mailbox: Mailbox | None = None, **kw) -> NotifyConfig:
    return NotifyConfig(
        http_port=0, smtp_host="127.0.0.1" if mailbox else "",
        smtp_port=mailbox.port if mailbox else 25, smtp_timeout_seconds=3,
        poll_seconds=0.05, retry_base_seconds=0.1, retry_max_seconds=0.5, clock=clock, **kw,
    )


def directory_events() -> list[Envelope]:
    """The demo department and the 2037 plan as roster publishes them (one directory stream)."""
    from shared.contracts import roster as ev

    events = [ev.DepartmentRegistered(name=DEMO["name"], symbol=DEMO["symbol"])]
    events += [ev.DivisionCreated(division_id=d["id"], name=d["name"], kind=d["kind"])
               for d in DEMO["divisions"]]
    events += [ev.PersonAdded(person_id=p["id"], full_name=p["full_name"], email=p["email"],
                              division_id=p["division_id"], roles=tuple(p["roles"]),
                              locale=p.get("locale", "vi")) for p in DEMO["people"]]
    events.append(ev.PlanActivated(**PLAN))
    return [envelope(e.event_type, e.model_dump(mode="json"), source="roster",
                     stream=ev.directory_stream(TENANT), version=i)
            for i, e in enumerate(events, start=1)]


async def start_department(system) -> None:
    """The demo department and the 2037 plan, published as roster's events, so these tests do
    not depend on the roster service's own state."""
    await publish(system, *directory_events())


async def start_notify(system, config: NotifyConfig, department: bool = True) -> NotifyService:
    """Notify, with the demo department in its directory copy (published unless told not to)."""
    service = NotifyService(config)
    runtime = await system.start(service.definition())
    if department:
        await start_department(system)

    async def directory_arrived():
        async with runtime.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM dir_people") == len(PEOPLE) and \
                await conn.fetchval("SELECT count(*) FROM dir_plans") == 1

    await eventually(directory_arrived)
    await eventually(lambda: holds(service.web.ready.is_set()))
    return service


async def holds(value):
    """`eventually` polls async checks: this makes a plain condition one."""
    return value


def envelope(event_type: str, payload: dict, *, source: str = "leave", stream: str | None = None,
             version: int = 1, schema_version: int | None = None) -> Envelope:
    from shared.contracts import event_class

    return Envelope(
        event_id=uuid.uuid4(), event_type=event_type,
        schema_version=schema_version or event_class(event_type).schema_version, source=source,
        stream_id=stream or f"test-{uuid.uuid4()}", stream_version=version, tenant=TENANT,
        occurred_at=datetime.now(UTC), actor="test", correlation_id=uuid.uuid4(), payload=payload,
    )


def leave_requested(person_id: str = None, **overrides) -> Envelope:
    person_id = person_id or STAFF[0]
    return envelope("LeaveRequested", {
        "application_id": str(uuid.uuid4()), "person_id": person_id,
        "division_id": PEOPLE[person_id]["division_id"], "start_date": "2037-01-09",
        "end_date": "2037-01-13", "half_day": None, "working_dates": ["2037-01-09", "2037-01-13"],
        "days": 2.0, "reason": "Việc gia đình", **overrides,
    }, stream=f"leave-{TENANT}-{person_id}")


async def publish(system, *envelopes: Envelope) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{system.namespace}.events", ensure=False)
        for env in envelopes:
            await exchange.publish(
                aio_pika.Message(env.model_dump_json().encode(), content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=str(env.event_id), type=env.event_type),
                routing_key=env.routing_key,
            )


class BotQueue:
    """A chat bot's own queue bound to the notifications exchange."""

    def __init__(self, system, *binding_keys: str) -> None:
        self.exchange = notifications_exchange(system.namespace)
        self.keys = binding_keys
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def __aenter__(self) -> BotQueue:
        self._connection = await aio_pika.connect(AMQP_URL)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for key in self.keys:
            await queue.bind(self.exchange, routing_key=key)
        await queue.consume(self._received)
        return self

    async def _received(self, message) -> None:
        self.messages.append(message)
        await message.ack()

    def bodies(self) -> list[dict]:
        return [json.loads(m.body) for m in self.messages]

    async def __aexit__(self, *exc) -> None:
        await self._connection.close()


async def notifications(service_runtime, **where) -> list:
    clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, start=1)) or "true"
    async with service_runtime.pool.acquire() as conn:
        return await conn.fetch(f"SELECT * FROM notifications WHERE {clauses} ORDER BY seq", *where.values())


async def deliveries(service_runtime) -> list:
    async with service_runtime.pool.acquire() as conn:
        return await conn.fetch(
            "SELECT d.*, n.recipient_id, n.kind FROM deliveries d JOIN notifications n "
            "USING (notification_id) ORDER BY n.recipient_id, d.channel")


async def notify_events(service_runtime, event_type: str) -> list[dict]:
    async with service_runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT payload FROM events WHERE event_type = $1 ORDER BY global_position",
                                event_type)
    return [json.loads(r["payload"]) for r in rows]


async def first_streamed(service: NotifyService, token: str) -> dict:
    """The first notification the live stream sends to the token's holder."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{service.web.port}/notifications/stream",
                               headers={"Authorization": f"Bearer {token}"}) as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    return json.loads(line[6:])
    raise AssertionError("the stream closed before sending a notification")
