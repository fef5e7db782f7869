"""The roster service keeps the directory: import, change, authorise, over AMQP."""

import json
from pathlib import Path

import pytest

from services.roster.app import definition

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())


async def test_import_is_idempotent_and_readable(system):
    await system.start(definition())
    first = await system.send("roster", "ImportDepartment", DEMO)
    assert first.ok, first.error
    assert first.result["events"].count("PersonAdded") == len(DEMO["people"])
    again = await system.send("roster", "ImportDepartment", DEMO)
    assert again.ok and again.result["events"] == []
    director = next(p for p in DEMO["people"] if "director" in p["roles"])
    listing = await system.send("roster", "GetDirectory", {}, as_person=director["id"])
    assert listing.ok
    assert {p["person_id"] for p in listing.result["people"]} == {p["id"] for p in DEMO["people"]}


async def test_staff_cannot_change_the_directory(system):
    await system.start(definition())
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    staff = next(p for p in DEMO["people"] if p["roles"] == ["staff"])
    reply = await system.send(
        "roster", "RemovePerson", {"person_id": staff["id"]}, as_person=staff["id"]
    )
    assert not reply.ok and reply.error.code == "forbidden"
    assert "Chánh Văn phòng" in reply.error.message
