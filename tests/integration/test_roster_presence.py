"""Presence over AMQP: home workers check in per session from their registered place, declare
their health; missed check-ins are recorded by DetectMissingCheckIns, sent by a test with
explicit times or run by the service's own schedule."""

from datetime import datetime

import pytest

from services.roster.app import definition
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually
from tests.integration.roster_helpers import (
    CHIEF, DIRECTOR, HEADS, MONDAY, FixedClock, approved_days, members, ok, place, roster_department,
    roster_events,
)

pytestmark = pytest.mark.integration

CNTT = members("cntt")  # nv-027 (head, on site by default) .. nv-033
HOME = CNTT[1:]


async def check_in(system, person, **payload):
    return await system.send("roster", "CheckIn", payload, as_person=person)


async def detect(system, at: datetime):
    return ok(await system.send("roster", "DetectMissingCheckIns", {"at": at.isoformat()}))


async def test_check_ins_misses_and_health_through_the_day(system, monkeypatch):
    clock = FixedClock(monkeypatch, datetime(2037, 1, 5, 6, 0, tzinfo=LOCAL_TZ))
    await system.start(definition())
    await roster_department(system)
    await approved_days(system, [MONDAY])

    clock.set(MONDAY, 6, 30)
    early = await check_in(system, HOME[0])
    assert early.error.code == "outside_session" and "07:00-11:30, 13:30-17:00" in early.error.message
    clock.set(MONDAY, 7, 5)
    first = ok(await check_in(system, HOME[0]))
    assert (first["session"], first["place"], first["at_registered_place"], first["late"]) == (
        0, place(HOME[0]), True, False)
    assert ok(await check_in(system, HOME[0]))["already_checked_in"] is True
    elsewhere = ok(await check_in(system, HOME[1], place="Nhà bố mẹ ở Sầm Sơn"))
    assert elsewhere["at_registered_place"] is False
    on_site = await check_in(system, CNTT[0])
    assert on_site.error.code == "not_home_worker"
    health = ok(await system.send("roster", "DeclareHealth", {"status": "symptoms", "note": "Sốt nhẹ"},
                                  as_person=HOME[2]))
    assert health["status_vi"].startswith("có triệu chứng")

    # 07:29: nobody is late yet; 07:30 the morning deadline (07:00 + 30 min grace) has passed.
    assert (await detect(system, datetime(2037, 1, 5, 7, 29, tzinfo=LOCAL_TZ)))["recorded"] == []
    recorded = (await detect(system, datetime(2037, 1, 5, 7, 30, tzinfo=LOCAL_TZ)))["recorded"]
    missed = {r["person_id"] for r in recorded}
    assert HOME[2] in missed and HOME[0] not in missed and HOME[1] not in missed and CNTT[0] not in missed
    assert len(missed) == 46 - 8 - 2 and {r["session"] for r in recorded} == {0}
    assert (await detect(system, datetime(2037, 1, 5, 7, 31, tzinfo=LOCAL_TZ)))["recorded"] == []

    clock.set(MONDAY, 8, 0)
    late = ok(await check_in(system, HOME[2]))
    assert late["late"] is True
    listing = ok(await system.send("roster", "ListMissingCheckIns", {"day": "2037-01-05", "division_id": "cntt"},
                                   as_person=HEADS["cntt"]))
    [morning] = listing["sessions"]  # the afternoon has not started at 08:00
    assert {m["person_id"] for m in morning["missing"]} == set(HOME[3:])
    assert all(m["missed_recorded"] for m in morning["missing"])
    head_sees_own = ok(await system.send("roster", "ListMissingCheckIns", {"day": "2037-01-05"},
                                         as_person=HEADS["cntt"]))
    assert {m["division_id"] for m in head_sees_own["sessions"][0]["missing"]} == {"cntt"}
    everyone = ok(await system.send("roster", "ListMissingCheckIns", {"day": "2037-01-05"}, as_person=CHIEF))
    assert len(everyone["sessions"][0]["missing"]) == 46 - 8 - 3

    presence = ok(await system.send("roster", "GetPresence", {"day": "2037-01-05", "division_id": "cntt"},
                                    as_person=DIRECTOR))
    by_person = {p["person_id"]: p for p in presence["home_workers"]}
    assert by_person[HOME[2]]["sessions"][0]["late"] is True and by_person[HOME[2]]["sessions"][0]["missed_deadline"]
    assert by_person[HOME[1]]["sessions"][0]["at_registered_place"] is False
    assert [(h["person_id"], h["status"]) for h in presence["health"]] == [(HOME[2], "symptoms")]
    events = await roster_events(system, "CheckedIn", "CheckInMissed", "HealthDeclared")
    assert [e["type"] for e in events].count("CheckedIn") == 3


async def test_the_service_schedule_records_misses_without_being_asked(system, monkeypatch):
    clock = FixedClock(monkeypatch, datetime(2037, 1, 5, 6, 0, tzinfo=LOCAL_TZ))
    await system.start(definition(check_in_tick_seconds=0.1))
    await roster_department(system)
    await approved_days(system, [MONDAY])
    assert await roster_events(system, "CheckInMissed") == []
    clock.set(MONDAY, 14, 5)  # both deadlines (07:30 and 14:00) have passed

    async def everyone_missed_both_sessions():
        return len(await roster_events(system, "CheckInMissed")) == 2 * (46 - 8)

    await eventually(everyone_missed_both_sessions)
    missed = await roster_events(system, "CheckInMissed")
    assert {(m["session"], m["deadline"][11:16]) for m in missed} == {(0, "07:30"), (1, "14:00")}
