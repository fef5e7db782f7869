"""Commands over AMQP, against the roster service: every failure is answered with a stable code
and a message in Vietnamese and English, a retried command id gets the first reply and is
recorded once, and a failed command nobody waits for is kept in the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import unicodedata
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.roster.app import definition as roster_definition
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.commands import MAX_COMMAND_BYTES, Reply
from shared.topology import dead_letter_queue
from tests.integration.backbone_helpers import AMQP_URL, TENANT, drain_queue, eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
VIETNAMESE_LETTERS = set("ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")


def assert_bilingual(reply: Reply, code: str) -> None:
    assert not reply.ok and reply.result is None
    assert reply.error is not None and reply.error.code == code, reply.error
    message, message_en = reply.error.message, reply.error.message_en
    assert VIETNAMESE_LETTERS & set(message.lower()), f"no Vietnamese diacritics in {message!r}"
    assert unicodedata.is_normalized("NFC", message)
    assert message_en and message_en.isascii() and message_en != message


@pytest.fixture
async def roster(system):
    runtime = await system.start(roster_definition())
    conn = await asyncpg.connect(runtime.settings.database_url)
    try:
        yield runtime, conn
    finally:
        await conn.close()


async def event_count(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM events")


def body(command_type: str, payload: dict | None = None, *, token: str | None, command_id=None,
         tenant: str = TENANT) -> bytes:
    return json.dumps({
        "command_id": str(command_id or uuid.uuid4()), "type": command_type, "tenant": tenant,
        "token": token, "payload": payload or {},
    }, ensure_ascii=False).encode()


# --- malformed and unknown ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{ this is not json",
        b"\xff\xfe\x00 not utf-8",
        b"",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"type": "GetDirectory", "tenant": "t"}',  # no command id
        b'{"command_id": "not-a-uuid", "type": "GetDirectory", "tenant": "t"}',
    ],
    ids=["broken-json", "not-utf8", "empty", "array", "string", "no-id", "bad-id"],
)
async def test_malformed_command_is_answered_malformed(system, roster, raw):
    _, conn = roster
    client = await system.client()
    reply = await client.send_raw("roster", raw, timeout=5)
    assert_bilingual(reply, "malformed")
    assert reply.error.details["reason"]
    assert await event_count(conn) == 0


async def test_malformed_command_with_a_readable_id_is_answered_under_that_id(system, roster):
    client = await system.client()
    command_id = uuid.uuid4()
    raw = json.dumps({"command_id": str(command_id), "type": "GetDirectory", "surprise": 1}).encode()
    reply = await client.send_raw("roster", raw, timeout=5)
    assert_bilingual(reply, "malformed")
    assert reply.command_id == command_id
    assert "tenant" in reply.error.details["reason"] and "surprise" in reply.error.details["reason"]


async def test_a_command_too_large_is_refused(system, roster):
    client = await system.client()
    raw = body("ImportDepartment", {"name": "x" * (MAX_COMMAND_BYTES + 1)}, token=system.admin_token())
    reply = await client.send_raw("roster", raw, timeout=5)
    assert_bilingual(reply, "too_large")


async def test_unknown_command_type_is_answered_unknown_command(system, roster):
    command_id = uuid.uuid4()
    reply = await system.send("roster", "LaunchRocket", {}, command_id=command_id)
    assert_bilingual(reply, "unknown_command")
    assert reply.command_id == command_id
    assert "LaunchRocket" in reply.error.message and "LaunchRocket" in reply.error.message_en
    assert "ImportDepartment" in reply.error.details["known"]


# --- who is asking -----------------------------------------------------------------------


async def test_missing_token_is_unauthenticated(system, roster):
    _, conn = roster
    client = await system.client()
    for token in (None, ""):
        reply = await client.send("roster", "ImportDepartment", DEMO, tenant=TENANT, token=token)
        assert_bilingual(reply, "unauthenticated")
        assert "no token" in reply.error.message_en
    assert await event_count(conn) == 0


async def test_forged_token_is_unauthenticated(system, roster):
    _, conn = roster
    forger = DevIdentityProvider(Ed25519PrivateKey.generate(), system.idp.issuer)
    forged = forger.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,))
    reply = await system.send("roster", "ImportDepartment", DEMO, token=forged)
    assert_bilingual(reply, "unauthenticated")
    assert await event_count(conn) == 0


async def test_expired_token_is_unauthenticated(system, roster):
    _, conn = roster
    expired = system.idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,), ttl_seconds=-30)
    reply = await system.send("roster", "ImportDepartment", DEMO, token=expired)
    assert_bilingual(reply, "unauthenticated")
    assert "expired" in reply.error.message_en
    assert await event_count(conn) == 0


async def test_token_for_another_tenant_is_forbidden(system, roster):
    _, conn = roster
    elsewhere = system.idp.mint("it-admin", "so-gtvt-nghean", scopes=(ADMIN_SCOPE,))
    reply = await system.send("roster", "ImportDepartment", DEMO, token=elsewhere)
    assert_bilingual(reply, "forbidden")
    assert await event_count(conn) == 0
    # The control: the same command with a token of this tenant is accepted.
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    assert await event_count(conn) > 0


# --- what is asked -----------------------------------------------------------------------


async def test_invalid_payload_is_answered_with_field_errors(system, roster):
    _, conn = roster
    bad = {
        **DEMO,
        "name": "",
        "divisions": [{**DEMO["divisions"][0], "kind": "ministry"}, *DEMO["divisions"][1:]],
        "unexpected": True,
    }
    del bad["symbol"]
    reply = await system.send("roster", "ImportDepartment", bad)
    assert_bilingual(reply, "invalid")
    errors = {e["field"]: e["problem"] for e in reply.error.details["errors"]}
    assert set(errors) == {"name", "symbol", "divisions.0.kind", "unexpected"}, errors
    assert all(errors.values())
    assert await event_count(conn) == 0


async def test_a_domain_refusal_is_answered_in_both_languages(system, roster):
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    reply = await system.send("roster", "RemovePerson", {"person_id": "nobody-by-that-id"})
    assert_bilingual(reply, "not_found")


# --- idempotent commands -----------------------------------------------------------------


async def test_the_same_command_id_twice_gets_the_same_reply_and_appends_once(system, roster):
    _, conn = roster
    command_id = uuid.uuid4()
    first = await system.send("roster", "ImportDepartment", DEMO, command_id=command_id)
    assert first.ok, first.error
    appended = await event_count(conn)
    assert appended == 1 + len(DEMO["divisions"]) + len(DEMO["people"])
    again = await system.send("roster", "ImportDepartment", DEMO, command_id=command_id)
    assert again == first
    assert again.model_dump_json() == first.model_dump_json()
    assert await event_count(conn) == appended
    assert await conn.fetchval("SELECT count(*) FROM command_replies WHERE command_id = $1", command_id) == 1


async def test_a_command_id_retried_after_a_refusal_gets_the_refusal(system, roster):
    """A refusal is an answer too: retrying the id does not re-decide once the world changed."""
    _, conn = roster
    command_id = uuid.uuid4()
    add = {"person_id": "nv-moi", "full_name": "Nguyễn Văn Mới", "email": "moi@example.vn",
           "division_id": "vp", "roles": ["staff"]}
    refused = await system.send("roster", "AddPerson", add, command_id=command_id)
    assert_bilingual(refused, "not_found")  # no division yet
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    before = await event_count(conn)
    assert await system.send("roster", "AddPerson", add, command_id=command_id) == refused
    assert await event_count(conn) == before


async def test_the_same_command_id_sent_concurrently_appends_once(system, roster):
    _, conn = roster
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    before = await event_count(conn)
    command_id = uuid.uuid4()
    add = {"person_id": "nv-dua", "full_name": "Trần Thị Đua", "email": "dua@example.vn",
           "division_id": "vp", "roles": ["staff"]}
    replies = await asyncio.gather(*(
        system.send("roster", "AddPerson", add, command_id=command_id) for _ in range(5)
    ))
    assert all(r.ok for r in replies), [r.error for r in replies]
    assert all(r == replies[0] for r in replies)
    assert await event_count(conn) == before + 1


async def test_a_command_id_reused_for_another_command_is_refused(system, roster):
    _, conn = roster
    command_id = uuid.uuid4()
    assert (await system.send("roster", "ImportDepartment", DEMO, command_id=command_id)).ok
    before = await event_count(conn)
    reply = await system.send("roster", "RemovePerson", {"person_id": DEMO["people"][-1]["id"]},
                              command_id=command_id)
    assert_bilingual(reply, "command_id_reused")
    assert await event_count(conn) == before


# --- nobody waiting for the answer -------------------------------------------------------


async def test_a_failed_command_without_reply_to_is_dead_lettered_with_the_reason(system, roster):
    _, conn = roster
    queue = f"{system.namespace}.roster.commands"
    ok_id, bad_id = uuid.uuid4(), uuid.uuid4()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for raw, message_id in (
            (body("ImportDepartment", DEMO, token=None, command_id=bad_id), str(bad_id)),
            (b"{ not json", "broken"),
            (body("ImportDepartment", DEMO, token=system.admin_token(), command_id=ok_id), str(ok_id)),
        ):
            await channel.default_exchange.publish(
                aio_pika.Message(raw, content_type="application/json", message_id=message_id,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )
    dead = await drain_queue(dead_letter_queue(queue), 2)
    assert len(dead) == 2  # the successful command is not there
    by_id = {m.message_id: m for m in dead}
    unauthenticated = by_id[str(bad_id)]
    assert unauthenticated.headers["x-wfh-reason"].startswith("unauthenticated: Not authenticated: no token")
    assert unauthenticated.headers["x-wfh-queue"] == queue
    # A refused command would be refused again: its identity is kept, its payload is not
    # (it may hold what must not rest in a queue, such as a secret document's text).
    kept = json.loads(unauthenticated.body)
    assert kept["command_id"] == str(bad_id) and kept["type"] == "ImportDepartment"
    assert "payload" not in kept and "token" not in kept and kept["payload_removed"]
    assert by_id["broken"].headers["x-wfh-reason"].startswith("malformed:")
    assert b"not json" not in by_id["broken"].body
    # The command that succeeded was applied although nobody waited for its reply.
    await eventually(lambda: conn.fetchval(
        "SELECT count(*) FROM command_replies WHERE command_id = $1", ok_id), what="the command applied")
    assert await event_count(conn) == 1 + len(DEMO["divisions"]) + len(DEMO["people"])


async def test_a_command_id_reused_by_another_actor_does_not_get_the_first_reply(system, roster):
    """Only the actor who sent a command gets its stored reply back: a staff member replaying
    the IT team's command id learns nothing of it (and is not told it succeeded)."""
    _, conn = roster
    command_id = uuid.uuid4()
    first = await system.send("roster", "ImportDepartment", DEMO, command_id=command_id)
    assert first.ok
    staff = next(p["id"] for p in DEMO["people"] if p["roles"] == ["staff"])
    before = await event_count(conn)
    replay = await system.send("roster", "ImportDepartment", DEMO, command_id=command_id,
                               as_person=staff)
    assert_bilingual(replay, "command_id_reused")
    assert replay.result is None
    assert await event_count(conn) == before
    # The actor who sent it still gets the stored reply.
    assert await system.send("roster", "ImportDepartment", DEMO, command_id=command_id) == first
