"""Daily rosters over AMQP: divisions submit, the Office compiles, the Director approves or
returns; who may do what."""

from datetime import date, timedelta

import pytest

from services.roster.app import definition
from tests.integration.roster_helpers import (
    CHIEF, DEPUTY_DIRECTORS, DIRECTOR, DIVISIONS, HEADS, MONDAY, TUESDAY, compile_, first, members, ok, place,
    roster_department, roster_events, submit, submit_all,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def roster(system):
    await system.start(definition())
    await roster_department(system)


async def test_submit_compile_approve_and_read_the_day(system, roster):
    await submit_all(system, [MONDAY, TUESDAY])
    status = ok(await system.send("roster", "GetRosterStatus", {"start": "2037-01-05", "end": "2037-01-06"},
                                  as_person=CHIEF))
    assert [(d["status"], d["submitted"], d["missing"]) for d in status["days"]] == [
        ("not_compiled", sorted(DIVISIONS), [])] * 2

    compiled = ok(await compile_(system, MONDAY, TUESDAY))
    assert compiled["days"] == ["2037-01-05", "2037-01-06"]
    assert (compiled["lists"], compiled["missing"], compiled["violations"]) == (16, [], [])
    approved = ok(await system.send("roster", "ApproveRoster", {"roster_id": compiled["roster_id"]},
                                    as_person=DIRECTOR))
    assert approved["status"] == "approved" and approved["overridden"] == 0

    staff = first("staff", "cntt")
    day = ok(await system.send("roster", "GetDayRoster", {"day": "2037-01-05"}, as_person=staff))
    assert (day["status"], day["roster_id"], day["working_day"]) == ("approved", compiled["roster_id"], True)
    assert {p["person_id"] for p in day["on_site"]} == {members(d)[0] for d in DIVISIONS}
    assert len(day["at_home"]) == 46 - 8 and day["unlisted"] == [] and day["on_leave"] == []
    at_home = next(p for p in day["at_home"] if p["person_id"] == staff)
    assert at_home["work_place"] == place(staff) and at_home["full_name"]

    lists = ok(await system.send("roster", "GetDivisionLists",
                                 {"division_id": "cntt", "start": "2037-01-05", "end": "2037-01-11"}, as_person=staff))
    assert [(d["day"], d["submitted"]) for d in lists["days"]] == [
        ("2037-01-05", True), ("2037-01-06", True), ("2037-01-07", False), ("2037-01-08", False),
        ("2037-01-09", False)]
    assert lists["days"][0]["revision"] == 1 and len(lists["days"][0]["entries"]) == len(members("cntt"))

    again = await submit(system, "cntt", [MONDAY])
    assert again.error.code == "already_approved" and "05/01/2037" in again.error.message
    recompile = await compile_(system, MONDAY, MONDAY)
    assert recompile.error.code == "already_approved"
    roster = ok(await system.send("roster", "GetRoster", {"roster_id": compiled["roster_id"]}, as_person=DIRECTOR))
    assert roster["status"] == "approved" and roster["decided_by"] == DIRECTOR
    types = [e["type"] for e in await roster_events(system, "RosterSubmitted", "RosterCompiled", "RosterApproved")]
    assert types == ["RosterSubmitted"] * 8 + ["RosterCompiled", "RosterApproved"]


async def test_return_with_a_reason_then_resubmit_and_recompile(system, roster):
    # Thanh tra has not submitted; CNTT put nobody on site on Monday.
    await submit_all(system, [MONDAY], on_site={"cntt": []}, skip=("ttra",))
    first_try = ok(await compile_(system, MONDAY, MONDAY))
    assert first_try["missing"] == [{"day": "2037-01-05", "division_id": "ttra"}]
    assert [(v["division_id"], v["rule"]) for v in first_try["violations"]] == [
        ("cntt", "min_staff_per_division_on_site")]
    refused = await system.send("roster", "ApproveRoster", {"roster_id": first_try["roster_id"],
                                                            "override_reason": "Duyệt"}, as_person=DIRECTOR)
    assert refused.error.code == "lists_missing" and "Thanh tra Sở (05/01/2037)" in refused.error.message
    reason = "Thanh tra Sở chưa đăng ký; Phòng CNTT chưa bố trí người trực"
    ok(await system.send("roster", "ReturnRoster", {"roster_id": first_try["roster_id"], "reason": reason},
                         as_person=DIRECTOR))
    late = await system.send("roster", "ApproveRoster", {"roster_id": first_try["roster_id"]}, as_person=DIRECTOR)
    assert late.error.code == "invalid_state" and "bị trả lại" in late.error.message

    ok(await submit(system, "ttra", [MONDAY]))
    resubmitted = ok(await submit(system, "cntt", [MONDAY]))
    assert resubmitted["replaced"] == ["2037-01-05"]
    lists = ok(await system.send("roster", "GetDivisionLists",
                                 {"division_id": "cntt", "start": "2037-01-05", "end": "2037-01-05"}, as_person=CHIEF))
    assert lists["days"][0]["revision"] == 2
    second_try = ok(await compile_(system, MONDAY, MONDAY))
    assert (second_try["missing"], second_try["violations"], second_try["supersedes"]) == ([], [], [])
    ok(await system.send("roster", "ApproveRoster", {"roster_id": second_try["roster_id"]}, as_person=DIRECTOR))
    returned = ok(await system.send("roster", "GetRoster", {"roster_id": first_try["roster_id"]}, as_person=CHIEF))
    assert (returned["status"], returned["decision_reason"]) == ("returned", reason)


async def test_violations_are_approved_only_with_an_override_reason_and_changes_need_recompiling(system, roster):
    await submit_all(system, [MONDAY], on_site={"bgd": []})
    compiled = ok(await compile_(system, MONDAY, MONDAY))
    assert [v["rule"] for v in compiled["violations"]] == ["min_leaders_on_site"]
    assert compiled["violations"][0]["message"].startswith("Ngày 05/01/2037: 0 lãnh đạo Sở")
    bare = await system.send("roster", "ApproveRoster", {"roster_id": compiled["roster_id"]}, as_person=DIRECTOR)
    assert bare.error.code == "violations_need_override" and "lý do" in bare.error.message

    # A division changes its list before the decision: the compiled roster is stale.
    ok(await submit(system, "khtc", [MONDAY], on_site=members("khtc")[:2]))
    stale = await system.send("roster", "ApproveRoster", {"roster_id": compiled["roster_id"],
                                                          "override_reason": "x"}, as_person=DIRECTOR)
    assert stale.error.code == "stale" and "Phòng Kế hoạch - Tài chính" in stale.error.message
    recompiled = ok(await compile_(system, MONDAY, MONDAY))
    assert recompiled["supersedes"] == [compiled["roster_id"]]
    superseded = await system.send("roster", "ApproveRoster", {"roster_id": compiled["roster_id"],
                                                               "override_reason": "x"}, as_person=DIRECTOR)
    assert superseded.error.code == "invalid_state"
    approved = ok(await system.send("roster", "ApproveRoster", {
        "roster_id": recompiled["roster_id"], "override_reason": "Ban Giám đốc họp trực tuyến cả ngày với UBND tỉnh",
    }, as_person=DIRECTOR))
    assert approved["overridden"] == 1
    roster = ok(await system.send("roster", "GetRoster", {"roster_id": recompiled["roster_id"]}, as_person=DIRECTOR))
    assert roster["decision_reason"].startswith("Ban Giám đốc họp") and roster["overridden"][0]["division_id"] == "bgd"


async def test_authorisation_refusals(system, roster):
    staff, other_head = first("staff", "cntt"), HEADS["khtc"]
    for actor in (staff, other_head):
        reply = await submit(system, "cntt", [MONDAY], as_person=actor)
        assert reply.error.code == "forbidden", actor
    as_admin = await system.send("roster", "SubmitRoster", {"division_id": "cntt", "days": [
        {"day": "2037-01-05", "entries": []}]})
    assert as_admin.error.code == "forbidden" and "danh bạ" in as_admin.error.message
    ok(await submit(system, "cntt", [MONDAY], as_person=first("deputy_division_head", "cntt")))
    await submit_all(system, [MONDAY])
    for actor in (staff, HEADS["cntt"], DIRECTOR):
        reply = await compile_(system, MONDAY, MONDAY, as_person=actor)
        assert reply.error.code == "forbidden" and "Chánh Văn phòng" in reply.error.message, actor
    roster_id = ok(await compile_(system, MONDAY, MONDAY))["roster_id"]

    deputy, other_deputy = DEPUTY_DIRECTORS
    for actor in (CHIEF, deputy, staff):
        reply = await system.send("roster", "ApproveRoster", {"roster_id": roster_id}, as_person=actor)
        assert reply.error.code == "forbidden" and "Giám đốc" in reply.error.message, actor
    by_deputy = await system.send("roster", "DelegateRosterApproval", {
        "person_id": other_deputy, "valid_from": "2020-01-01", "valid_until": "2020-01-31"}, as_person=deputy)
    assert by_deputy.error.code == "forbidden"
    today = date.today()
    ok(await system.send("roster", "DelegateRosterApproval", {
        "person_id": deputy, "valid_from": str(today), "valid_until": str(today + timedelta(days=7))},
        as_person=DIRECTOR))
    ok(await system.send("roster", "DelegateRosterApproval", {  # a delegation that has run out
        "person_id": other_deputy, "valid_from": str(today - timedelta(days=9)),
        "valid_until": str(today - timedelta(days=2))}, as_person=DIRECTOR))
    expired = await system.send("roster", "ReturnRoster", {"roster_id": roster_id, "reason": "x"},
                                as_person=other_deputy)
    assert expired.error.code == "forbidden"
    approved = ok(await system.send("roster", "ApproveRoster", {"roster_id": roster_id}, as_person=deputy))
    assert approved["delegated_by"] == DIRECTOR
    [event] = await roster_events(system, "RosterApproved")
    assert (event["approved_by"], event["delegated_by"]) == (deputy, DIRECTOR)

    detect = await system.send("roster", "DetectMissingCheckIns", {}, as_person=CHIEF)
    assert detect.error.code == "forbidden"
    missing = await system.send("roster", "ListMissingCheckIns", {"day": "2037-01-05"}, as_person=staff)
    assert missing.error.code == "forbidden"
    other_division = await system.send("roster", "ListMissingCheckIns", {"day": "2037-01-05", "division_id": "cntt"},
                                       as_person=other_head)
    assert other_division.error.code == "forbidden"


async def test_lists_are_checked_against_the_directory_and_the_plan(system, roster):
    short = await system.send("roster", "SubmitRoster", {"division_id": "cntt", "days": [
        {"day": "2037-01-05", "entries": [{"person_id": members("cntt")[0], "location": "on_site"}]}]},
        as_person=HEADS["cntt"])
    assert short.error.code == "member_missing" and "mỗi cán bộ phải có tên" in short.error.message
    for day, code in (("2037-01-10", "not_working_day"), ("2037-01-12", "not_working_day"),
                      ("2037-03-01", "outside_plan")):
        reply = await submit(system, "cntt", [date.fromisoformat(day)])
        assert reply.error.code == code, day
    # The department's calendar is editable: a new holiday closes the day for every plan.
    ok(await system.send("roster", "AddHoliday", {"day": "2037-01-07", "name": "Nghỉ bù"}, as_person=CHIEF))
    assert (await submit(system, "cntt", [date(2037, 1, 7)])).error.code == "not_working_day"
    plans = ok(await system.send("roster", "GetPlans", {}, as_person=CHIEF))
    assert "2037-01-07" in plans[0]["holidays"] and plans[0]["onsite_rules"][0]["rule"] == "min_leaders_on_site"
    ok(await system.send("roster", "RemoveHoliday", {"day": "2037-01-07"}, as_person=CHIEF))
    ok(await submit(system, "cntt", [date(2037, 1, 7)]))
    staff_edit = await system.send("roster", "AddHoliday", {"day": "2037-01-08", "name": "x"},
                                   as_person=first("staff", "cntt"))
    assert staff_edit.error.code == "forbidden"


async def test_an_amended_plan_changes_the_rules_the_office_compiles_against(system, roster):
    await submit_all(system, [MONDAY])
    assert ok(await compile_(system, MONDAY, MONDAY))["violations"] == []
    amendment = {"plan_id": "kh-2037", "reason": "Giãn cách xã hội theo Chỉ thị 16",
                 "onsite_rules": [{"rule": "only_designated_on_site"}],
                 "sessions": [{"starts": "07:30", "ends": "11:30"}, {"starts": "13:30", "ends": "16:30"}],
                 "check_in_grace_minutes": 15}
    by_chief = await system.send("roster", "AmendPlan", amendment, as_person=CHIEF)
    assert by_chief.error.code == "forbidden"
    assert ok(await system.send("roster", "AmendPlan", amendment, as_person=DIRECTOR))["events"] == ["PlanAmended"]
    unchanged = await system.send("roster", "AmendPlan", amendment, as_person=DIRECTOR)
    assert unchanged.error.code == "no_change"
    [plan] = ok(await system.send("roster", "GetPlans", {}, as_person=CHIEF))
    assert (plan["onsite_rules"], plan["check_in_grace_minutes"], plan["sessions"][0]["starts"]) == (
        [{"rule": "only_designated_on_site",
          "duties": ["leader_on_duty", "covid_duty", "office_duty", "secret_documents"]}], 15, "07:30:00")
    assert plan["effective_until"] == "2037-02-27" and "2037-01-12" in plan["holidays"]
    recompiled = ok(await compile_(system, MONDAY, MONDAY))
    assert {v["rule"] for v in recompiled["violations"]} == {"only_designated_on_site"}
    assert len(recompiled["violations"]) == len(DIVISIONS)  # each division's person on site has no duty
