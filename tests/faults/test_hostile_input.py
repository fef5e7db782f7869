"""Hostile input against the services running as processes: malformed, oversized, wrongly
typed, unknown-type and unauthorised commands (alone, and together in messages of several,
with malformed messages of several beside them), and malformed, unknown and invalid events
published straight to the events exchange. Zero crashes (every service still answers Health),
every command answered with an error reply carrying a code, every bad event in each bound
queue's dead-letter queue with its `x-wfh-reason`, and nothing else changed.

`make test` sends 1,000 commands and 250 events; `make chaos` (marker chaos_slow) 10,000+."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shared import topology
from shared.auth import DevIdentityProvider
from shared.commands import COMMANDS_HEADER, MAX_BATCH, MAX_COMMAND_BYTES
from shared.settings import command_queue
from tests.conftest import AMQP_URL, TENANT
from tests.faults.harness import DEMO, SERVICES, ProcessWorld, demo_world

pytestmark = [pytest.mark.chaos]

BATCH = 50
STAFF = next(p["id"] for p in DEMO["people"] if p["roles"] == ["staff"])
# Mutating commands an ordinary staff member may not send, with a payload that would pass.
FORBIDDEN_FOR_STAFF = [
    ("roster", "AddPerson", {"person_id": "hx-intruder", "full_name": "Kẻ lạ", "email": "x@example.vn",
                             "division_id": DEMO["divisions"][0]["id"], "roles": ["director"]}),
    ("roster", "RemovePerson", {"person_id": DEMO["people"][0]["id"]}),
    ("roster", "RepublishEvents", {}),
]
KNOWN = {
    "roster": ["AddPerson", "ImportDepartment", "ChangeRoles", "CheckIn", "SubmitRoster", "GetDirectory"],
    "leave": ["RequestLeave", "ApproveLeave", "SetLeaveEntitlement", "ListLeaveApplications"],
    "notify": ["MarkRead", "SetNotificationPreferences", "ListNotifications"],
    "documents": ["RegisterIncomingDocument", "SubmitDraft", "AssignTask", "ListDocuments"],
    "reporting": ["GenerateReport", "ListPublishedReports"],
}
# Routing keys the services bind, with the queues each reaches.
EVENT_KEYS = sorted({k for s in topology.SUBSCRIPTIONS for k in s.routing_keys if "#" not in k})


def queues_for(namespace: str, key: str) -> list[str]:
    return [s.queue(namespace) for s in topology.SUBSCRIPTIONS if key in s.routing_keys]


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@st.composite
def hostile_command(draw, world: ProcessWorld, tokens: dict[str, str]):
    """(service, body bytes): never a command that may pass."""
    service = draw(st.sampled_from(SERVICES))
    kind = draw(st.sampled_from(["bytes", "json", "oversized", "envelope", "wrong_types",
                                 "unknown", "no_token", "forged", "expired", "tenant", "staff"]))
    cid = str(uuid.uuid4())
    if kind == "bytes":
        return service, kind, draw(st.binary(max_size=200)).replace(b"{", b"(")  # never an object
    if kind == "json":
        return service, kind, json.dumps(draw(st.one_of(st.lists(junk, max_size=3), st.text(), st.integers()))).encode()
    if kind == "oversized":
        return service, kind, b'{"command_id": "' + cid.encode() + b'", "payload": "' + b"x" * (MAX_COMMAND_BYTES + 1) + b'"}'
    if kind == "envelope":  # the envelope itself broken: missing, extra or mistyped fields
        body = {"command_id": draw(st.sampled_from([cid, "not-a-uuid", 7, None])),
                "type": draw(st.sampled_from(["", 5, None, "x" * 101, "AddPerson"])),
                "tenant": draw(st.sampled_from([TENANT, "", None, ["t"]])),
                "token": tokens["admin"], "payload": draw(st.sampled_from([{}, [], "p", 3]))}
        body[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in body))] = draw(junk)
        return service, kind, json.dumps(body).encode()
    command_type = draw(st.sampled_from(KNOWN[service]))
    payload = draw(st.dictionaries(st.text(max_size=12), junk, max_size=5))
    token = tokens["admin"]
    if kind == "wrong_types":
        payload["__not_a_field__"] = draw(junk)  # every payload model forbids unknown fields
    elif kind == "unknown":
        command_type = "Zz" + draw(st.text(alphabet="abcXYZ_", max_size=20))
    elif kind in ("no_token", "forged", "expired", "tenant"):
        token = tokens[kind]
    elif kind == "staff":
        service, command_type, payload = draw(st.sampled_from(FORBIDDEN_FOR_STAFF))
        token = tokens["staff"]
    body = {"command_id": cid, "type": command_type, "tenant": TENANT, "token": token, "payload": payload}
    return service, kind, json.dumps(body, default=str).encode()


# The body of a message of several commands refused whole: not a list, an empty or too long
# one, or one with an item that is not an object or whose headers are not an object.
hostile_several = st.one_of(
    junk.filter(lambda j: not isinstance(j, list)),
    st.just([]),
    st.lists(st.just({"command": {}}), min_size=MAX_BATCH + 1, max_size=MAX_BATCH + 3),
    st.lists(junk, min_size=1, max_size=4).map(lambda items: [*items, 7]),
    st.lists(junk.filter(lambda j: not isinstance(j, dict)), min_size=1, max_size=3).map(
        lambda bad: [{"headers": h, "command": {}} for h in bad]),
)


class Several:
    """Messages of several commands sent raw, with their header, each reply matched by correlation id."""

    def __init__(self, connection, namespace: str) -> None:
        self._connection, self._namespace = connection, namespace
        self._waiting: dict[str, asyncio.Future] = {}

    async def start(self) -> None:
        self._channel = await self._connection.channel()
        self._replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await self._replies.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message) -> None:
        waiting = self._waiting.pop(message.correlation_id or "", None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message.body)

    async def send(self, service: str, body: bytes, timeout: float = 30) -> bytes:
        import aio_pika

        correlation_id = uuid.uuid4().hex
        self._waiting[correlation_id] = reply = asyncio.get_running_loop().create_future()
        await self._channel.default_exchange.publish(
            aio_pika.Message(body, headers={COMMANDS_HEADER: 1}, correlation_id=correlation_id,
                             reply_to=self._replies.name, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=command_queue(self._namespace, service))
        return await asyncio.wait_for(reply, timeout)


@st.composite
def hostile_event(draw, namespace: str):
    key = draw(st.sampled_from(EVENT_KEYS))
    event_type = key.split(".", 1)[1]
    kind = draw(st.sampled_from(["bytes", "json", "unknown_type", "newer_version", "bad_payload"]))
    if kind == "bytes":
        return key, kind, draw(st.binary(max_size=200)).replace(b"{", b"(")
    if kind == "json":
        return key, kind, json.dumps(draw(st.dictionaries(st.text(max_size=10), junk, max_size=5))).encode()
    envelope = {
        "event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
        "source": key.split(".", 1)[0], "stream_id": f"hx-{uuid.uuid4().hex[:8]}", "stream_version": 1,
        "tenant": TENANT, "occurred_at": "2037-01-05T01:00:00+00:00", "actor": "hx",
        "correlation_id": str(uuid.uuid4()), "causation_id": None, "trace_context": {},
        "payload": {},
    }
    if kind == "unknown_type":
        envelope["event_type"] = "Zz" + draw(st.text(alphabet="abcXYZ", max_size=12))
    elif kind == "newer_version":
        envelope["schema_version"] = draw(st.integers(min_value=50, max_value=10**6))
    else:
        envelope["payload"] = draw(st.one_of(st.lists(junk, max_size=3), st.text(), st.integers()))
    return key, kind, json.dumps(envelope).encode()


async def snapshot(world: ProcessWorld) -> dict:
    counts = {}
    for service in SERVICES:
        conn = await asyncpg.connect(world.db_url(service))
        try:
            tables = [r["t"] for r in await conn.fetch(
                "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('command_replies', 'chain_checkpoints', 'schema_migrations')")]
            for t in tables:
                counts[f"{service}.{t}"] = await conn.fetchval(f'SELECT count(*) FROM "{t}"')
        finally:
            await conn.close()
    return counts


@pytest.fixture(scope="module")
async def hostile_world(tmp_path_factory):
    async with demo_world(tmp_path_factory.mktemp("hostile"), "hx") as w:
        yield w


async def run_hostile(world: ProcessWorld, commands: int, events: int) -> dict:
    stranger = DevIdentityProvider.generate()
    tokens = {
        "admin": world.admin_token(), "no_token": None, "staff": world.token(STAFF),
        "forged": stranger.mint("it-admin", TENANT, scopes=("admin",)),
        "expired": world.idp.mint("it-admin", TENANT, ttl_seconds=-120),
        "tenant": world.idp.mint("it-admin", "so-khac", scopes=("admin",)),
    }
    await asyncio.sleep(2)  # let the import's events settle before the "before" picture
    await world.wait_healthy()
    before = await snapshot(world)
    dlq_before = await world.dead_letter_depths()
    started = time.monotonic()
    replies: Counter = Counter()
    failures: list[str] = []
    sent_commands = 0
    expected_dead: Counter = Counter()
    loop = asyncio.get_running_loop()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    async def send_batch(batch, several_junk):
        async def one(service, kind, body):
            try:
                reply = await world.client.send_raw(service, body, timeout=30)
            except Exception as exc:  # noqa: BLE001 - no answer is a failure of the test
                failures.append(f"{service} {kind}: no reply ({type(exc).__name__})")
                return
            if reply.ok or reply.error is None or not reply.error.code:
                failures.append(f"{service} {kind}: {reply.model_dump_json()[:300]} for {body[:200]!r}")
            else:
                replies[(kind, reply.error.code)] += 1
        async def together(service, batch):
            """The same commands in one message of several (`x-wfh-commands`): one refusal each,
            in order; and junk in such a message: refused whole."""
            items = []
            for _, _, body in batch:
                try:
                    command = json.loads(body)
                except ValueError:
                    command = body.decode("utf-8", "replace")
                items.append({"headers": {"traceparent": "junk"}, "command": command})
            messages = [(json.dumps(items).encode(), False)] if items else []
            for body, whole in [*messages, (json.dumps(several_junk).encode(), True)]:
                try:
                    answer = json.loads(await several.send(service, body))
                except Exception as exc:  # noqa: BLE001 - no answer is a failure of the test
                    failures.append(f"{service} several: no reply ({type(exc).__name__})")
                    continue
                answers = [answer] if whole or isinstance(answer, dict) else answer
                if not whole and len(answers) != len(items):
                    failures.append(f"{service} several: {len(answers)} replies to {len(items)}")
                for a in answers:
                    if not isinstance(a, dict) or a.get("ok") or not (a.get("error") or {}).get("code"):
                        failures.append(f"{service} several: {str(a)[:300]}")
                    else:
                        replies[("several", a["error"]["code"])] += 1

        await asyncio.gather(*(one(*c) for c in batch))
        fit = [c for c in batch if c[0] == batch[0][0] and len(c[2]) < MAX_COMMAND_BYTES // BATCH]
        await together(batch[0][0], fit[:MAX_BATCH])

    @settings(max_examples=max(1, commands // BATCH), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile_command(world, tokens), min_size=BATCH, max_size=BATCH), hostile_several)
    def commands_fuzz(batch, several_junk):
        nonlocal sent_commands
        sent_commands += len(batch)
        run(send_batch(batch, several_junk))

    async def publish_batch(batch):
        for key, kind, body in batch:
            await channel_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=key)
            for q in queues_for(world.namespace, key):
                expected_dead[topology.dead_letter_queue(q)] += 1

    @settings(max_examples=max(1, events // BATCH), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile_event(world.namespace), min_size=BATCH, max_size=BATCH))
    def events_fuzz(batch):
        run(publish_batch(batch))

    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    several = Several(connection, world.namespace)
    try:
        await several.start()
        channel = await connection.channel(publisher_confirms=True)
        channel_exchange = await channel.get_exchange(f"{world.namespace}.events", ensure=False)
        await asyncio.to_thread(commands_fuzz)
        await asyncio.to_thread(events_fuzz)
    finally:
        await connection.close()

    assert not failures, f"{len(failures)} commands not refused:\n" + "\n".join(failures[:10])
    # Every bad event dead-lettered by every queue it reached, with its reason.
    want = {q: dlq_before.get(q, 0) + n for q, n in expected_dead.items()}
    deadline = time.monotonic() + 120
    while True:
        depths = await world.dead_letter_depths()
        if all(depths[q] >= n for q, n in want.items()):
            break
        assert time.monotonic() < deadline, f"dead letters: want {want}, have {depths}"
        await asyncio.sleep(0.5)
    assert {q: n for q, n in depths.items() if q not in want and n != dlq_before.get(q, 0)} == {}
    assert {q: depths[q] for q in want} == want, "more dead letters than bad events"
    sample_queue = next(iter(want))
    dead = await world.drain_dead_letters(sample_queue[: -len(".dlq")])
    assert dead and all(m.headers.get("x-wfh-reason") for m in dead)
    reasons = Counter(str(m.headers["x-wfh-reason"]).split(":")[0] for m in dead)
    # Zero crashes, nothing else changed.
    reports = await world.wait_healthy(timeout=30)
    for name, service in world.services.items():
        assert service.process.returncode is None, f"{name} exited:\n{world.logs(name)}"
    assert all(r["relay_lag"] == 0 for r in reports.values())
    after = await snapshot(world)
    assert after == before, {k: (before.get(k), after.get(k)) for k in after if before.get(k) != after.get(k)}
    figures = {"commands": sent_commands, "events": events,
               "dead_letters": sum(expected_dead.values()), "seconds": round(time.monotonic() - started),
               "reply_codes": dict(Counter(code for (_, code) in replies.elements())),
               "refused_in_messages_of_several": sum(n for (kind, _), n in replies.items() if kind == "several"),
               "dead_letter_reasons": dict(reasons)}
    print(f"\nhostile input: {figures}")
    return figures


@pytest.mark.timeout(300)
async def test_hostile_input_fast(hostile_world):
    figures = await run_hostile(hostile_world, commands=1000, events=250)
    assert figures["commands"] >= 1000
    assert figures["refused_in_messages_of_several"] >= 20 * 2  # each fuzz batch sends two


@pytest.mark.chaos_slow
@pytest.mark.timeout(1800)
async def test_hostile_input_full(hostile_world):
    figures = await run_hostile(hostile_world, commands=int(os.environ.get("WFH_HOSTILE_COMMANDS", 10_000)),
                                events=int(os.environ.get("WFH_HOSTILE_EVENTS", 2_000)))
    assert figures["commands"] >= 10_000 or "WFH_HOSTILE_COMMANDS" in os.environ
