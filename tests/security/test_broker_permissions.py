"""RabbitMQ least privilege, proven on a private vhost with the real permission regexes.

The users and their permissions are read from deploy/rabbitmq/definitions.json (only the vhost
is substituted), the topology is declared as the administrator (guest), and each service's user
is then tried on a matrix of operations: what it needs succeeds, everything else is refused
with 403 ACCESS_REFUSED. Finally two real services run as their own users with
`declare_topology=False` and a command and an event travel between them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aio_pika
import aiormq
import pytest
import yaml

from shared import topology
from shared.auth import ADMIN_SCOPE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
DEPLOYED_VHOST = DEFINITIONS["vhosts"][0]["name"]
NS = "wfh"  # the deployed namespace: the regexes name it; only the vhost is private
SERVICES = topology.COMMAND_SERVICES
GUEST_URL = "amqp://guest:guest@127.0.0.1:5672/"
REFUSED = 403


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _password_hash(password: str) -> str:
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass
class Broker:
    vhost: str
    users: dict[str, str]  # service -> user name
    password: str

    def url(self, service: str | None = None) -> str:
        vhost = quote(self.vhost, safe="")
        if service is None:
            return f"{GUEST_URL}{vhost}"
        return f"amqp://{self.users[service]}:{self.password}@127.0.0.1:5672/{vhost}"


def _service_permissions() -> dict[str, dict]:
    """definitions.json's permission entry of each service's user `wfh_<service>`."""
    by_user = {p["user"]: p for p in DEFINITIONS["permissions"]}
    return {s: by_user[f"wfh_{s}"] for s in SERVICES}


@pytest.fixture(scope="module")
async def broker():
    run = uuid.uuid4().hex[:8]
    vhost = f"sec-{run}"
    password = uuid.uuid4().hex
    users = {s: f"sec-{run}-wfh_{s}" for s in SERVICES}
    perms = _service_permissions()
    for service in SERVICES:
        assert DEFINITIONS["users"][[u["name"] for u in DEFINITIONS["users"]].index(f"wfh_{service}")]["tags"] == []
    definitions = {
        "vhosts": [{"name": vhost}],
        "users": [
            {"name": users[s], "password_hash": _password_hash(password),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
            for s in SERVICES
        ],
        "permissions": [
            {"user": users[s], "vhost": vhost, "configure": perms[s]["configure"],
             "write": perms[s]["write"], "read": perms[s]["read"]}
            for s in SERVICES
        ] + [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(definitions, f)
        f.flush()
        os.chmod(f.name, 0o644)
        try:
            _rabbitmqctl("import_definitions", f.name)
            world = Broker(vhost, users, password)
            connection = await aio_pika.connect(world.url())
            async with connection:
                await topology.declare(await connection.channel(), NS)
            yield world
        finally:
            failures = []
            for args in [("delete_vhost", vhost)] + [("delete_user", u) for u in users.values()]:
                try:
                    await asyncio.to_thread(_rabbitmqctl, *args)
                except AssertionError as exc:
                    failures.append(exc)
            assert not failures, failures


@pytest.fixture(scope="module")
async def connections(broker):
    opened = {s: await aio_pika.connect(broker.url(s)) for s in SERVICES}
    try:
        yield opened
    finally:
        for c in opened.values():
            await c.close()


# --- the operations ------------------------------------------------------------------------

def own_queues(service: str) -> list[str]:
    return [q for q in topology.all_queues(NS) if q.startswith(f"{NS}.{service}.")]


def other_queues(service: str) -> list[str]:
    names = [q for q in topology.all_queues(NS) if not q.startswith(f"{NS}.{service}.")]
    return names + [topology.dead_letter_queue(q) for q in names]


async def _ignore(message):
    return None


async def consume(ch, queue):
    q = await ch.get_queue(queue, ensure=False)
    tag = await q.consume(_ignore, no_ack=False)
    await q.cancel(tag)


async def get(ch, queue):
    q = await ch.get_queue(queue, ensure=False)
    await q.get(no_ack=False, fail=False)


async def declare_queue(ch, queue):
    arguments = (topology.queue_arguments(NS, queue) if not queue.endswith(".dlq")
                 else {"x-queue-type": "quorum"})
    await ch.declare_queue(queue, durable=True, arguments=arguments)


async def declare_new_queue(ch, queue):
    await ch.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})


async def delete_queue(ch, queue):
    await ch.queue_delete(queue, if_unused=True, if_empty=True)


async def purge_queue(ch, queue):
    q = await ch.get_queue(queue, ensure=False)
    await q.purge()


async def bind(ch, queue, exchange, key="sec.test"):
    q = await ch.get_queue(queue, ensure=False)
    await q.bind(exchange, routing_key=key)
    await q.unbind(exchange, routing_key=key)


async def publish(ch, exchange, routing_key="sec.test"):
    ex = ch.default_exchange if exchange == "" else await ch.get_exchange(exchange, ensure=False)
    # No queue binds `sec.test`: the message is dropped after the permission check.
    await ex.publish(aio_pika.Message(b"{}"), routing_key=routing_key)


async def declare_exchange(ch, exchange):
    await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)


async def delete_exchange(ch, exchange):
    await ch.exchange_delete(exchange, if_unused=True)


EVENTS, DEAD, NOTIFICATIONS = f"{NS}.events", f"{NS}.dead-letters", topology.notifications_exchange(NS)


def matrix() -> list:
    cases = []

    def case(service, name, op, *args, allowed):
        cases.append(pytest.param(service, op, args, allowed,
                                  id=f"{service}-{'allow' if allowed else 'deny'}-{name}"))

    for s in SERVICES:
        commands = f"{NS}.{s}.commands"
        for q in own_queues(s):
            case(s, f"consume-{q}", consume, q, allowed=True)
            case(s, f"get-{q}.dlq", get, topology.dead_letter_queue(q), allowed=True)
            case(s, f"redeclare-{q}", declare_queue, q, allowed=True)
        for sub in topology.subscriptions_of(s):
            case(s, f"bind-{sub.name}-to-events", bind, sub.queue(NS), EVENTS, allowed=True)
        case(s, "purge-own-dlq", purge_queue, topology.dead_letter_queue(commands), allowed=True)
        case(s, "publish-events", publish, EVENTS, f"{s}.SecurityProbe", allowed=True)
        case(s, "publish-dead-letters", publish, DEAD, allowed=True)
        for other in SERVICES:  # request (and reply) over the default exchange
            case(s, f"request-{other}", publish, "", f"{NS}.{other}.commands.sec-probe", allowed=True)
        case(s, "publish-notifications", publish, NOTIFICATIONS, allowed=(s == "notify"))

        for q in other_queues(s):
            case(s, f"consume-{q}", consume, q, allowed=False)
            case(s, f"get-{q}", get, q, allowed=False)
        for other in SERVICES:
            if other == s:
                continue
            q = f"{NS}.{other}.commands"
            case(s, f"declare-{q}", declare_queue, q, allowed=False)
            case(s, f"delete-{q}", delete_queue, q, allowed=False)
            case(s, f"purge-{q}", purge_queue, q, allowed=False)
            case(s, f"bind-{q}-to-events", bind, q, EVENTS, allowed=False)
            case(s, f"create-{NS}.{other}.evil", declare_new_queue, f"{NS}.{other}.evil", allowed=False)
        case(s, "create-unprefixed-queue", declare_new_queue, f"{NS}.evil", allowed=False)
        case(s, "bind-own-to-notifications", bind, commands, NOTIFICATIONS, allowed=False)
        case(s, "bind-dead-letters-to-own", bind, commands, DEAD, allowed=True)
        for ex in (EVENTS, DEAD, NOTIFICATIONS):
            case(s, f"declare-exchange-{ex}", declare_exchange, ex, allowed=False)
            case(s, f"delete-exchange-{ex}", delete_exchange, ex, allowed=False)
        case(s, "publish-amq.topic", publish, "amq.topic", allowed=False)
    return cases


MATRIX = matrix()


@pytest.mark.parametrize(("service", "operation", "args", "allowed"), MATRIX)
async def test_service_user_permission(connections, service, operation, args, allowed):
    channel = await connections[service].channel(publisher_confirms=True)
    try:
        if allowed:
            await asyncio.wait_for(operation(channel, *args), 10)
        else:
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
                await asyncio.wait_for(operation(channel, *args), 10)
            # aiormq raises ChannelAccessRefused for exactly reply code 403 (its code table);
            # the reply text names it too.
            assert aiormq.channel.EXCEPTION_MAPPING[REFUSED] is aiormq.exceptions.ChannelAccessRefused
            assert str(refused.value.args[0]).startswith("ACCESS_REFUSED"), refused.value
    finally:
        if not channel.is_closed:
            await channel.close()


def test_the_matrix_is_large_and_has_both_outcomes():
    allowed = sum(1 for p in MATRIX if p.values[3])
    denied = len(MATRIX) - allowed
    assert allowed >= 40 and denied >= 200, (allowed, denied)


def test_service_permissions_are_anchored_and_only_for_the_deployed_vhost():
    for service, perm in _service_permissions().items():
        assert perm["vhost"] == DEPLOYED_VHOST
        for kind in ("configure", "write", "read"):
            regex = perm[kind]
            assert regex.startswith("^(") and regex.endswith(")$"), (service, kind, regex)
            assert ".*|" not in regex.replace("\\..*|", "") and regex != ".*", (service, kind, regex)
            # No other service's prefix matches
            for other in SERVICES:
                if other != service:
                    assert not re.match(regex, f"{NS}.{other}.commands"), (service, kind, other)


def test_compose_never_uses_guest():
    compose_text = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert "guest" not in compose_text.lower()
    compose = yaml.safe_load(compose_text)
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        url = env["WFH_AMQP_URL"]
        assert url.startswith(f"amqp://wfh_{name}:"), url
        assert url.endswith(f"/{DEPLOYED_VHOST}"), url
        assert str(env.get("WFH_DECLARE_TOPOLOGY", "")).lower() == "false", (name, env)
    users = {u["name"] for u in DEFINITIONS["users"]}
    assert "guest" not in users


async def test_real_services_run_as_their_own_users(broker, idp):
    """Roster and leave run with their own users on the provisioned vhost, declaring nothing:
    a command round trip works and roster's events reach leave's own queue."""
    from services.leave.app import definition as leave_definition
    from services.roster.app import definition as roster_definition
    from shared.client import CommandClient
    from shared.migrations import drop_database
    from shared.runtime import ServiceRuntime
    from shared.settings import Settings
    from tests.conftest import PG_URL, TENANT, eventually

    demo = json.loads((ROOT / "services/roster/demo/department.json").read_text())
    prefix = broker.vhost.replace("-", "_")
    runtimes, databases = [], []
    try:
        for definition in (roster_definition(), leave_definition()):
            database = f"{PG_URL}/{prefix}_{definition.name}"
            databases.append(database)
            runtime = ServiceRuntime(definition, Settings(
                service=definition.name, amqp_url=broker.url(definition.name), database_url=database,
                namespace=NS, jwt_public_key_pem=idp.public_key_pem, jwt_issuer=idp.issuer,
                relay_poll_seconds=0.2, declare_topology=False,
            ))
            runtimes.append(runtime)
            await runtime.start()
        # The caller (a gateway) is a service user too: publishes to the default exchange and
        # consumes its replies from direct reply-to.
        async with CommandClient(broker.url("reporting"), NS) as client:
            admin = idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,))
            reply = await client.send("roster", "ImportDepartment", demo, tenant=TENANT, token=admin)
            assert reply.ok, reply
            someone = demo["people"][-1]["id"]

            async def leave_knows():
                r = await client.send("leave", "GetLeaveBalance", {"person_id": someone},
                                      tenant=TENANT, token=admin)
                return r if r.ok else None

            await eventually(leave_knows, timeout=20)
            health = await client.send("leave", "Health", {}, tenant=TENANT, token=None)
            assert health.ok, health
            assert health.result["consumers"][f"{NS}.leave.directory"]["applied"] > 0
    finally:
        for runtime in runtimes:
            await runtime.stop()
        for database in databases:
            await drop_database(database)
