"""The operator CLI against running services: send as an actor, dead letters, lag, health, rebuild."""

import importlib
import json
import uuid
from datetime import UTC, datetime

import aio_pika
import pytest
from cryptography.hazmat.primitives import serialization

from ops import cli
from shared import topology
from shared.contracts import Envelope
from tests.conftest import AMQP_URL, TENANT, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def services(system, monkeypatch, tmp_path):
    monkeypatch.setenv("WFH_NOTIFY_HTTP_PORT", "0")  # notify's web feed on any free port
    # `wfh health` and `wfh lag` report every service that takes commands: start them all.
    for service in topology.COMMAND_SERVICES:
        await system.start(importlib.import_module(f"services.{service}.app").definition())
    leave = system.runtimes["leave"]
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(system.idp.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    monkeypatch.setenv("WFH_DEV_IDP_KEY_FILE", str(key_file))
    monkeypatch.setenv("WFH_JWT_ISSUER", system.idp.issuer)
    monkeypatch.setenv("WFH_NAMESPACE", system.namespace)
    for service, runtime in system.runtimes.items():
        monkeypatch.setenv(f"WFH_{service.upper()}_DATABASE_URL", runtime.settings.database_url)
    return leave


async def run(capsys, *argv) -> tuple[int, str, str]:
    args = cli.parser().parse_args(list(argv))
    code = await args.run(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def person_added(person_id: str, version: int) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(), event_type="PersonAdded", schema_version=1, source="roster",
        stream_id=f"directory-{TENANT}", stream_version=version, tenant=TENANT,
        occurred_at=datetime.now(UTC), actor="it-admin", correlation_id=uuid.uuid4(),
        payload={"person_id": person_id, "full_name": "Lê Thị Mai", "email": "mai@x",
                 "division_id": "cntt", "roles": ["staff"], "locale": "vi"},
    )


async def test_send_as_actor_and_as_admin(system, services, capsys):
    code, out, _ = await run(capsys, "send", "roster", "AddPerson", json.dumps({
        "person_id": "nv-900", "full_name": "Trần Văn Bình", "email": "b@x", "division_id": "x",
        "roles": ["staff"]}), "--admin")
    assert code == 2 and json.loads(out)["error"]["code"] == "not_found"
    code, out, _ = await run(capsys, "send", "roster", "GetPlans", "{}", "--as", "nv-001")
    assert code == 0 and json.loads(out) == {"ok": True, "command_id": json.loads(out)["command_id"], "result": []}


async def test_dead_letters_are_shown_with_reason_and_redriven_after_a_fix(system, services, capsys):
    leave = services
    queue = f"{system.namespace}.leave.directory"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        # A poison message is dead-lettered by the consumer with its reason...
        await channel.default_exchange.publish(aio_pika.Message(b"{not json"), routing_key=queue)
        # ...and a good event sits in the DLQ as if an earlier bug had put it there.
        good = person_added("nv-901", 1)
        await channel.default_exchange.publish(
            aio_pika.Message(good.model_dump_json().encode(), headers={"x-wfh-reason": "a bug, since fixed",
                                                                       "x-wfh-queue": queue}),
            routing_key=f"{queue}.dlq")

        async def two_dead_letters():
            q = await channel.declare_queue(f"{queue}.dlq", passive=True)
            return q.declaration_result.message_count == 2

        await eventually(two_dead_letters)
    code, out, _ = await run(capsys, "dlq", "show", queue)
    shown = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(shown) == 2
    assert any("undecodable" in (s["reason"] or "") for s in shown)
    code, out, _ = await run(capsys, "dlq", "list")
    assert f"       2  {queue}.dlq" in out  # show left them queued

    code, _, err = await run(capsys, "dlq", "redrive", queue)
    assert "2 dead letter(s) re-driven" in err

    async def applied_and_poison_back():
        async with leave.pool.acquire() as conn:
            added = await conn.fetchval("SELECT count(*) FROM dir_people WHERE person_id = 'nv-901'")
        code, out, _ = await run(capsys, "dlq", "list")
        return added == 1 and f"       1  {queue}.dlq" in out

    await eventually(applied_and_poison_back)


async def test_lag_health_and_rebuild(system, services, capsys):
    code, out, _ = await run(capsys, "health", "--timeout", "2")
    reports = {r["service"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and set(reports) == set(topology.COMMAND_SERVICES)
    assert all(r["answers"] and r["healthy"] and r["database"] == "up" for r in reports.values())
    # A stopped service does not answer: the CLI says so, checks its database directly, and fails.
    await system.runtimes.pop("roster").stop()
    code, out, _ = await run(capsys, "health", "--timeout", "1")
    reports = {r["service"]: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and not reports["roster"]["answers"] and not reports["roster"]["healthy"]
    assert reports["roster"]["database"] == "up" and reports["leave"]["answers"]
    code, out, _ = await run(capsys, "lag")
    assert code == 0 and f"{system.namespace}.leave.directory " in out and "1 consumer(s)" in out
    code, out, _ = await run(capsys, "rebuild", "leave")
    assert code == 0 and "identical to before" in out


async def test_republish_refills_reporting_from_every_service(system, services, capsys):
    assert (await system.send("roster", "ImportDepartment", {
        "tenant": TENANT, "name": "Sở Thử nghiệm", "symbol": "STN",
        "divisions": [{"id": "vp", "name": "Văn phòng Sở", "kind": "office"}], "people": []})).ok
    code, out, _ = await run(capsys, "republish", "reporting")
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert code == 0 and set(lines) == set(topology.COMMAND_SERVICES) - {"reporting"}
    assert lines["roster"] == "2 events republished to reporting"  # the department, its division


async def test_report_is_shown_and_exported(system, services, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WFH_REPORTING_DATABASE_URL", system.runtimes["reporting"].settings.database_url)
    demo = json.loads(open("services/roster/demo/department.json").read())
    assert (await system.send("roster", "ImportDepartment", demo)).ok
    chief = next(p["id"] for p in demo["people"] if "chief_of_office" in p["roles"])

    async def reporting_knows_the_chief():
        code, out, _ = await run(capsys, "report", "--day", "2037-01-05", "--as", chief)
        return code == 0 and out

    out = await eventually(reporting_knows_the_chief, timeout=20)
    assert out.startswith("Báo cáo") and "05/01/2037" in out.splitlines()[0]
    exported = tmp_path / "exported"
    code, out, err = await run(capsys, "report", "--day", "2037-01-05", "--locale", "en",
                               "--out", str(exported), "--json")
    assert code == 0 and "written:" in err
    assert sorted(p.suffix for p in exported.iterdir()) == [".html", ".json", ".pdf"]
    assert next(exported.glob("*.pdf")).read_bytes().startswith(b"%PDF")
    assert json.loads(next(exported.glob("*.json")).read_text())["kind"] == "daily"
