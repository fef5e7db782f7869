"""Commands travelling together, against roster on the real broker and database: commands a
client sends at once go in one message and each gets the reply it would get alone, in its own
trace; a malformed message of several is refused whole; refused commands nobody waits for are
dead-lettered one by one; a message delivered again is split into messages of their own."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from opentelemetry import trace

from services.roster.app import definition as roster_definition
from shared.commands import COMMANDS_HEADER, MAX_BATCH, Reply
from shared.settings import command_queue
from shared.topology import dead_letter_queue
from tests.integration.backbone_helpers import AMQP_URL, TENANT, drain_queue, eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
STAFF = [p["id"] for p in DEMO["people"] if p["roles"] == ["staff"]]


@pytest.fixture
async def roster(system):
    runtime = await system.start(roster_definition())
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    conn = await asyncpg.connect(runtime.settings.database_url)
    try:
        yield runtime, conn
    finally:
        await conn.close()


def command(command_type: str, payload: dict, token: str | None, command_id: uuid.UUID | None = None) -> dict:
    return {"command_id": str(command_id or uuid.uuid4()), "type": command_type, "tenant": TENANT,
            "token": token, "payload": payload}


async def publish(namespace: str, body: bytes, *, reply_to: str | None, headers: dict | None = None,
                  correlation_id: str = "together") -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, headers=headers, content_type="application/json", reply_to=reply_to,
                             correlation_id=correlation_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=command_queue(namespace, "roster"),
        )


class Replies:
    """A reply queue of the test's own, as a client would have."""

    async def __aenter__(self) -> Replies:
        self._connection = await aio_pika.connect(AMQP_URL)
        channel = await self._connection.channel()
        self.queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        self.name = self.queue.name
        return self

    async def __aexit__(self, *exc) -> None:
        await self._connection.close()

    async def take(self, count: int, timeout: float = 10.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        taken = []

        async def arrived() -> bool:
            while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
                taken.append(message)
            return len(taken) >= count

        await eventually(arrived, timeout, what=f"{count} replies")
        return taken


async def test_commands_sent_at_once_travel_in_one_message_each_answered_as_alone(system, roster):
    runtime, conn = roster
    client = await system.client()
    events_before = await conn.fetchval("SELECT count(*) FROM events")
    messages_before = client.messages
    declare = {"status": "well"}
    sent = [
        *(("DeclareHealth", declare, system.token(p)) for p in STAFF[:6]),
        ("DeclareHealth", {"status": "not-a-status"}, system.token(STAFF[6])),  # invalid
        ("ApproveRoster", {"roster_id": str(uuid.uuid4())}, system.token(STAFF[7])),  # not the Director
        ("DeclareHealth", declare, "not-a-token"),  # unauthenticated
        ("GetDirectory", {}, system.token(STAFF[8])),  # a query among the commands
    ]
    replies = await asyncio.gather(*(
        client.send("roster", kind, payload, tenant=TENANT, token=token) for kind, payload, token in sent))
    assert client.messages - messages_before <= 2  # the first may go alone, at once
    assert [r.ok for r in replies] == [True] * 6 + [False, False, False, True]
    assert [r.error.code for r in replies[6:9]] == ["invalid", "forbidden", "unauthenticated"]
    assert {r.result["status"] for r in replies[:6]} == {"well"}
    assert len(replies[9].result["people"]) == len(DEMO["people"])
    assert await conn.fetchval("SELECT count(*) FROM events") == events_before + 6
    # Each command decided once, its reply stored under its own id.
    stored = await conn.fetch("SELECT command_id FROM command_replies WHERE command_type = 'DeclareHealth'")
    assert {r["command_id"] for r in stored} >= {r.command_id for r in replies[:6]}


async def test_each_command_of_a_message_keeps_its_own_trace(system, roster):
    runtime, conn = roster
    client = await system.client()
    tracer = trace.get_tracer("test")
    traces: dict[uuid.UUID, int] = {}

    async def declare(person: str) -> None:
        with tracer.start_as_current_span(f"{person} declares") as span:
            command_id = uuid.uuid4()
            reply = await client.send("roster", "DeclareHealth", {"status": "well"}, tenant=TENANT,
                                      token=system.token(person), command_id=command_id)
            assert reply.ok, reply.error
            traces[command_id] = span.get_span_context().trace_id

    messages_before = client.messages
    await asyncio.gather(*(declare(p) for p in STAFF[:4]))
    assert client.messages - messages_before <= 2
    rows = await conn.fetch("SELECT correlation_id, trace_context FROM events WHERE correlation_id = ANY($1)",
                            list(traces))
    assert len(rows) == 4
    for row in rows:
        assert format(traces[row["correlation_id"]], "032x") in json.loads(row["trace_context"])["traceparent"]


@pytest.mark.parametrize("body", [
    b"{ not json",
    b'{"command_id": "00000000-0000-0000-0000-000000000000"}',  # an object, not a list
    b"[]",
    json.dumps([{"headers": {}, "command": {}}] * (MAX_BATCH + 1)).encode(),
    b'[{"headers": {}, "command": {}}, 42]',
    b'[{"headers": "not an object", "command": {}}]',
], ids=["broken-json", "object", "empty", "too-many", "not-an-object", "headers-not-an-object"])
async def test_a_malformed_message_of_several_commands_is_refused_whole(system, roster, body):
    runtime, conn = roster
    events_before = await conn.fetchval("SELECT count(*) FROM events")
    async with Replies() as replies:
        await publish(system.namespace, body, reply_to=replies.name, headers={COMMANDS_HEADER: 2})
        [message] = await replies.take(1)
    reply = Reply.model_validate_json(message.body)
    assert not reply.ok and reply.error.code == "malformed" and reply.error.message.startswith("Thông điệp")
    assert await conn.fetchval("SELECT count(*) FROM events") == events_before


async def test_a_bad_command_among_several_gets_its_own_refusal(system, roster):
    """Commands a client did not build (the service cannot tell): each item is judged alone."""
    runtime, conn = roster
    items = [
        {"headers": {}, "command": command("DeclareHealth", {"status": "well"}, system.token(STAFF[0]))},
        {"headers": {"traceparent": 7}, "command": "not a command"},
        {"command": command("NoSuchCommand", {}, system.token(STAFF[1]))},
    ]
    async with Replies() as replies:
        await publish(system.namespace, json.dumps(items).encode(), reply_to=replies.name, headers={COMMANDS_HEADER: 3})
        [message] = await replies.take(1)
    answers = [Reply.model_validate(a) for a in json.loads(message.body)]
    assert [a.ok for a in answers] == [True, False, False]
    assert [a.error.code for a in answers[1:]] == ["malformed", "unknown_command"]


async def test_refused_commands_of_a_message_nobody_waits_for_are_dead_lettered_one_by_one(system, roster):
    runtime, conn = roster
    refused = command("DeclareHealth", {"status": "well"}, None)
    fine = command("DeclareHealth", {"status": "well"}, system.token(STAFF[0]))
    forbidden = command("ApproveRoster", {"roster_id": str(uuid.uuid4())}, system.token(STAFF[1]))
    items = [{"headers": {}, "command": c} for c in (refused, fine, forbidden)]
    await publish(system.namespace, json.dumps(items).encode(), reply_to=None, headers={COMMANDS_HEADER: 3})
    queue = command_queue(system.namespace, "roster")
    dead = await drain_queue(dead_letter_queue(queue), 2)
    kept = sorted((json.loads(m.body) for m in dead), key=lambda c: c["type"])
    assert [(k["type"], k["command_id"]) for k in kept] == [
        ("ApproveRoster", forbidden["command_id"]), ("DeclareHealth", refused["command_id"])]
    # As for a command alone: a refused command's payload is not kept.
    assert all("payload" not in k and "token" not in k for k in kept)
    reasons = sorted(m.headers["x-wfh-reason"].split(":")[0] for m in dead)
    assert reasons == ["forbidden", "unauthenticated"]
    await eventually(lambda: conn.fetchval(
        "SELECT count(*) FROM command_replies WHERE command_id = $1", uuid.UUID(fine["command_id"])))


async def test_a_message_of_several_delivered_again_is_split_into_messages_of_their_own(system, roster):
    """Its process may have died deciding one of them: each goes back alone (a command that
    kills the process then reaches the dead letters by itself), answered where the message was."""
    runtime, conn = roster
    await runtime.acks.flush()  # the import's delivery acknowledged before the consumer stops
    await runtime.broker.stop()  # roster takes nothing while the message is delivered once
    queue = command_queue(system.namespace, "roster")
    commands = [command("DeclareHealth", {"status": "well"}, system.token(p)) for p in STAFF[:3]]
    async with Replies() as replies:
        await publish(system.namespace, json.dumps([{"headers": {}, "command": c} for c in commands]).encode(),
                      reply_to=replies.name, headers={COMMANDS_HEADER: 3}, correlation_id="again")
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:  # delivered, not acknowledged: it goes back, delivered again
            channel = await connection.channel()
            taken: asyncio.Queue = asyncio.Queue()
            await (await channel.get_queue(queue, ensure=False)).consume(taken.put)
            delivered = await asyncio.wait_for(taken.get(), 5)
            assert not delivered.redelivered
        await runtime.broker.start()
        answers = await replies.take(3)
    assert {m.correlation_id for m in answers} == {"again"}
    by_id = {r.command_id: r for r in (Reply.model_validate_json(m.body) for m in answers)}
    assert set(by_id) == {uuid.UUID(c["command_id"]) for c in commands}
    assert all(r.ok for r in by_id.values())
    assert await conn.fetchval("SELECT count(*) FROM command_replies WHERE command_id = ANY($1)",
                               list(by_id)) == 3


async def test_a_client_told_apart_gets_each_reply_to_its_own_command(system, roster):
    """The client side of the split: replies with a command id, each to its sender."""
    from shared.client import _Gathered

    loop = asyncio.get_running_loop()
    gathered = _Gathered()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for command_id in ids:
        gathered.add(command_id, b"{}", {}, loop.create_future())
    for command_id in reversed(ids):
        gathered.answered(Reply(ok=True, command_id=command_id, result=command_id).model_dump_json().encode())
    assert [f.result()["result"] for f in gathered.replies] == ids
    whole = _Gathered()
    whole.add(ids[0], b"{}", {}, loop.create_future())
    whole.add(ids[1], b"{}", {}, loop.create_future())
    refusal = Reply.failure(None, "malformed", "Sai.", "Wrong.").model_dump_json().encode()
    whole.answered(refusal)
    assert all(f.result()["error"]["code"] == "malformed" for f in whole.replies)
