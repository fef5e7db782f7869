"""One trace follows a command through every service it touches."""

import json
from pathlib import Path

import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service
from tests.conftest import SPANS, eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())


async def test_command_to_other_services_projection_is_one_trace(system):
    await system.start(roster_service())
    leave = await system.start(leave_service())
    SPANS.clear()
    person = DEMO["people"][5]
    reply = await system.send("roster", "ImportDepartment", {**DEMO, "people": [person]})
    assert reply.ok, reply.error

    async def leave_has_person():
        async with leave.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM dir_people") == 1

    await eventually(leave_has_person)
    spans = SPANS.get_finished_spans()
    command_queue = f"{system.namespace}.roster.commands"
    command_span = next(s for s in spans if command_queue in s.name and "process" in s.name)
    trace_id = command_span.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    names = [s.name for s in in_trace]
    # The command's processing, the relay's publish and leave's consumption share one trace...
    assert "roster.PersonAdded publish" in names, names
    # (leave is the only consumer bound to roster.PersonAdded in this test)
    assert f"{system.namespace}.events.roster.PersonAdded process" in names, names
    # ...and so do the database statements on both sides (asyncpg instrumentation).
    databases = {s.attributes.get("db.name") for s in in_trace if s.attributes.get("db.system") == "postgresql"}
    assert {f"{system.namespace}_roster", f"{system.namespace}_leave"} <= databases, databases
    # The stored event remembers the trace it was written in.
    roster = system.runtimes["roster"]
    async with roster.pool.acquire() as conn:
        stored = json.loads(await conn.fetchval(
            "SELECT trace_context FROM events WHERE event_type = 'PersonAdded'"))
    assert format(trace_id, "032x") in stored["traceparent"]
