"""Leave against rosters, through the real broker: approved leave takes people off the lists;
after the Director's approval it opens coverage gaps, and cancelling it closes them."""

from datetime import date

import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service
from tests.conftest import eventually
from tests.integration.roster_helpers import (
    DIRECTOR, HEADS, MONDAY, TUESDAY, approved_days, compile_, leave_knows_directory, ok, roster_department,
    roster_events, submit_all,
)
from tests.integration.test_leave import _key, request, sign_and_approve

pytestmark = pytest.mark.integration

KHTC_STAFF = ["nv-018", "nv-019", "nv-020", "nv-021"]  # Phòng Kế hoạch - Tài chính, staff
ON_SITE = "nv-018"  # the division's only person on site


@pytest.fixture
async def with_leave(system):
    await system.start(roster_service())
    await system.start(leave_service())
    await roster_department(system)
    keys = {p: await _key(system, p) for p in (HEADS["khtc"], DIRECTOR)}
    await leave_knows_directory(system, keys=len(keys))
    return keys


async def approved_leave(system, keys, person, day) -> str:
    application = ok(await request(system, person, str(day), str(day)))["application_id"]
    ok(await sign_and_approve(system, HEADS["khtc"], keys[HEADS["khtc"]], application))
    return application


async def consumed(system, count: int) -> None:
    async def done():
        async with system.runtimes["roster"].pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM roster_leave_checks") == count

    await eventually(done)


async def day_roster(system, day):
    return ok(await system.send("roster", "GetDayRoster", {"day": str(day)}, as_person=DIRECTOR))


async def test_leave_after_approval_opens_a_gap_and_cancelling_it_closes_the_gap(system, with_leave):
    roster_id = await approved_days(system, [MONDAY, TUESDAY], on_site={"khtc": [ON_SITE]})
    application = await approved_leave(system, with_leave, ON_SITE, MONDAY)
    gaps = await eventually(lambda: roster_events(system, "CoverageGapRecorded"))
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap["roster_id"], gap["day"], gap["division_id"], gap["rule"], gap["person_id"]) == (
        roster_id, "2037-01-05", "khtc", "min_staff_per_division_on_site", ON_SITE)
    assert gap["application_id"] == application
    assert "nghỉ phép" in gap["message"] and "05/01/2037" in gap["message"]
    day = await day_roster(system, MONDAY)
    assert ON_SITE in {p["person_id"] for p in day["on_leave"]}
    assert ON_SITE not in {p["person_id"] for p in day["on_site"]}
    status = ok(await system.send("roster", "GetRosterStatus", {"start": "2037-01-05", "end": "2037-01-06"},
                                  as_person=DIRECTOR))
    assert [d["open_gaps"] for d in status["days"]] == [1, 0]

    # A home worker's leave breaks no rule: no gap.
    await approved_leave(system, with_leave, KHTC_STAFF[1], TUESDAY)
    await consumed(system, 2)
    assert len(await roster_events(system, "CoverageGapRecorded")) == 1

    ok(await system.send("leave", "CancelLeave", {"application_id": application}, as_person=ON_SITE))
    closed = await eventually(lambda: roster_events(system, "CoverageGapClosed"))
    assert [c["gap_id"] for c in closed] == [gap["gap_id"]]
    assert ON_SITE in {p["person_id"] for p in (await day_roster(system, MONDAY))["on_site"]}
    status = ok(await system.send("roster", "GetRosterStatus", {"start": "2037-01-05", "end": "2037-01-05"},
                                  as_person=DIRECTOR))
    assert status["days"][0]["open_gaps"] == 0


async def test_leave_known_before_approval_is_weighed_by_the_director_not_a_gap(system, with_leave):
    wednesday = date(2037, 1, 7)
    await submit_all(system, [wednesday], on_site={"khtc": [ON_SITE]})
    await approved_leave(system, with_leave, ON_SITE, wednesday)
    await consumed(system, 1)
    compiled = ok(await compile_(system, wednesday, wednesday))
    assert [(v["division_id"], v["rule"]) for v in compiled["violations"]] == [
        ("khtc", "min_staff_per_division_on_site")]
    ok(await system.send("roster", "ApproveRoster", {
        "roster_id": compiled["roster_id"], "override_reason": "Phòng KHTC xử lý việc qua phần mềm"},
        as_person=DIRECTOR))
    await approved_leave(system, with_leave, KHTC_STAFF[2], wednesday)  # a home worker, after approval
    await consumed(system, 2)
    assert await roster_events(system, "CoverageGapRecorded") == []
