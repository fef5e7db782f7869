"""The 2021 plan (Sở Lao động - Thương binh và Xã hội, 06/09/2021 to 08/09/2021) as a scenario:
only the leader on duty, COVID duty, office duty and secret-document handlers come in; the
Office compiles, the Director returns a list that breaks the rule, then approves; home workers
check in; the leader on duty of the last day goes on leave and the gap is recorded."""

from datetime import date, datetime

import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually
from tests.integration.roster_helpers import FixedClock, leave_knows_directory, ok, roster_events, submit
from tests.integration.test_leave import _key, request, sign_and_approve

pytestmark = pytest.mark.integration

DAYS = [date(2021, 9, 6), date(2021, 9, 7), date(2021, 9, 8)]  # Monday to Wednesday


def person(pid, name, division, *roles):
    return {"id": pid, "full_name": name, "email": f"{pid}@sldtbxh.thanhhoa.gov.vn", "division_id": division,
            "roles": list(roles or ("staff",))}


DEPARTMENT = {
    "name": "Sở Lao động - Thương binh và Xã hội tỉnh Thanh Hóa", "symbol": "SLĐTBXH",
    "divisions": [
        {"id": "bgd", "name": "Ban Giám đốc", "kind": "leadership"},
        {"id": "vp", "name": "Văn phòng Sở", "kind": "office"},
        {"id": "ldvl", "name": "Phòng Lao động - Việc làm", "kind": "division"},
        {"id": "ncc", "name": "Phòng Người có công", "kind": "division"},
        {"id": "btxh", "name": "Phòng Bảo trợ xã hội", "kind": "division"},
    ],
    "people": [
        person("gd", "Lê Văn Giám", "bgd", "director"),
        person("pgd1", "Nguyễn Thị Hương", "bgd", "deputy_director"),
        person("pgd2", "Trịnh Văn Minh", "bgd", "deputy_director"),
        person("cvp", "Hoàng Thị Thu", "vp", "chief_of_office", "division_head"),
        person("vp-mat", "Đỗ Văn Bình", "vp", "secret_document_handler"),
        person("vp-truc", "Phạm Thị Hoa", "vp"),
        person("vp-covid", "Bùi Quang Vinh", "vp"),
        person("ldvl-tp", "Ngô Văn Lực", "ldvl", "division_head"),
        person("ldvl-1", "Lê Thị Nga", "ldvl"),
        person("ncc-tp", "Vũ Đình Công", "ncc", "division_head"),
        person("ncc-pp", "Mai Thị Tâm", "ncc", "deputy_division_head"),
        person("ncc-1", "Trần Văn Nghĩa", "ncc"),
        person("btxh-tp", "Cao Thị Ân", "btxh", "division_head"),
        person("btxh-1", "Đặng Văn Tình", "btxh"),
    ],
}
PEOPLE = DEPARTMENT["people"]
HEAD = {"bgd": "gd", "vp": "cvp", "ldvl": "ldvl-tp", "ncc": "ncc-tp", "btxh": "btxh-tp"}
PLAN_2021 = {
    "plan_id": "kh-lam-viec-tai-nha-2021",
    "title": "Kế hoạch triển khai làm việc tại nhà trong thời gian áp dụng các biện pháp giãn cách xã hội "
             "để phòng, chống dịch COVID-19",
    "effective_from": "2021-09-06", "effective_until": "2021-09-08",
    "onsite_rules": [{"rule": "only_designated_on_site"},
                     {"rule": "min_on_duty", "duty": "leader_on_duty", "count": 1}],
}
# §II.1: the Director assigns the leader on duty, COVID duty, office duty and secret documents.
LEADER_ON_DUTY = {DAYS[0]: "pgd1", DAYS[1]: "pgd2", DAYS[2]: "pgd1"}
OFFICE_DUTIES = {"vp-truc": "office_duty", "vp-covid": "covid_duty", "vp-mat": "secret_documents"}


async def submit_day(system, division, day, on_site=(), duties=None):
    return ok(await submit(system, division, [day], on_site=on_site, as_person=HEAD[division], people=PEOPLE,
                           duties=duties))


async def test_three_days_of_the_2021_plan(system, monkeypatch):
    clock = FixedClock(monkeypatch, datetime(2021, 9, 3, 14, 0, tzinfo=LOCAL_TZ))  # the plan was signed 03/09
    await system.start(roster_service())
    await system.start(leave_service())
    ok(await system.send("roster", "ImportDepartment", DEPARTMENT))
    ok(await system.send("roster", "ActivatePlan", PLAN_2021, as_person="gd"))
    key = await _key(system, "gd")
    await leave_knows_directory(system, keys=1)

    # The divisions register; Phòng Người có công sends someone in on 07/09 without an assignment.
    for day in DAYS:
        leader = LEADER_ON_DUTY[day]
        await submit_day(system, "bgd", day, [leader], {leader: "leader_on_duty"})
        await submit_day(system, "vp", day, OFFICE_DUTIES, OFFICE_DUTIES)
        for division in ("ldvl", "btxh"):
            await submit_day(system, division, day)
        await submit_day(system, "ncc", day, ["ncc-1"] if day == DAYS[1] else [])

    compiled = ok(await system.send("roster", "CompileRoster", {"start": "2021-09-06", "end": "2021-09-08"},
                                    as_person="cvp"))
    assert compiled["days"] == ["2021-09-06", "2021-09-07", "2021-09-08"] and compiled["missing"] == []
    [violation] = compiled["violations"]
    assert (violation["day"], violation["division_id"], violation["rule"], violation["person_id"]) == (
        "2021-09-07", "ncc", "only_designated_on_site", "ncc-1")
    assert violation["message"].startswith("Ngày 07/09/2021, Phòng Người có công: Trần Văn Nghĩa đến cơ quan")
    reason = "Phòng Người có công: chỉ cán bộ được phân công mới đến cơ quan (Kế hoạch, mục II.1)"
    ok(await system.send("roster", "ReturnRoster", {"roster_id": compiled["roster_id"], "reason": reason},
                         as_person="gd"))

    resubmitted = await submit_day(system, "ncc", DAYS[1])
    assert resubmitted["replaced"] == ["2021-09-07"]
    again = ok(await system.send("roster", "CompileRoster", {"start": "2021-09-06", "end": "2021-09-08"},
                                 as_person="cvp"))
    assert again["violations"] == [] and again["missing"] == []
    ok(await system.send("roster", "ApproveRoster", {"roster_id": again["roster_id"]}, as_person="gd"))

    on_07 = ok(await system.send("roster", "GetDayRoster", {"day": "2021-09-07"}, as_person="ncc-1"))
    assert {(p["person_id"], p["duty"]) for p in on_07["on_site"]} == {
        ("pgd2", "leader_on_duty"), ("vp-truc", "office_duty"), ("vp-covid", "covid_duty"),
        ("vp-mat", "secret_documents")}
    assert len(on_07["at_home"]) == len(PEOPLE) - 4

    # Monday morning: everyone at home checks in but one; the deadline is 07:30.
    clock.set(DAYS[0], 7, 10)
    on_06 = ok(await system.send("roster", "GetDayRoster", {"day": "2021-09-06"}, as_person="cvp"))
    home = [p["person_id"] for p in on_06["at_home"]]
    for person_id in home:
        if person_id != "ldvl-1":
            ok(await system.send("roster", "CheckIn", {}, as_person=person_id))
    ok(await system.send("roster", "DeclareHealth", {"status": "well"}, as_person="ldvl-1"))
    detected = ok(await system.send("roster", "DetectMissingCheckIns",
                                    {"at": clock.set(DAYS[0], 7, 31).isoformat()}))
    assert [(r["person_id"], r["day"], r["session"]) for r in detected["recorded"]] == [("ldvl-1", "2021-09-06", 0)]
    missing = ok(await system.send("roster", "ListMissingCheckIns", {"day": "2021-09-06"}, as_person="cvp"))
    assert [m["person_id"] for m in missing["sessions"][0]["missing"]] == ["ldvl-1"]

    # The leader on duty of 08/09 is granted leave by the Director: nobody is on leader duty that day.
    application = ok(await request(system, "pgd1", "2021-09-08", "2021-09-08"))["application_id"]
    ok(await sign_and_approve(system, "gd", key, application))
    [gap] = await eventually(lambda: roster_events(system, "CoverageGapRecorded"))
    assert (gap["day"], gap["division_id"], gap["rule"], gap["person_id"]) == (
        "2021-09-08", "bgd", "min_on_duty", "pgd1")
    assert "0 người trực lãnh đạo tại cơ quan" in gap["message"]

    status = ok(await system.send("roster", "GetRosterStatus", {"start": "2021-09-04", "end": "2021-09-10"},
                                  as_person="gd"))
    assert [(d["day"], d["status"], d["open_gaps"]) for d in status["days"]] == [
        ("2021-09-06", "approved", 0), ("2021-09-07", "approved", 0), ("2021-09-08", "approved", 1)]
    returned = ok(await system.send("roster", "GetRoster", {"roster_id": compiled["roster_id"]}, as_person="cvp"))
    assert (returned["status"], returned["decision_reason"]) == ("returned", reason)
