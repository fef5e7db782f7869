"""The leave service end to end over AMQP: roster's directory flows in, applications flow through."""

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service
from shared import signatures
from tests.conftest import TENANT, eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
PEOPLE = {p["id"]: p for p in DEMO["people"]}


def first(role: str, division: str | None = None) -> str:
    return next(
        p["id"] for p in DEMO["people"]
        if role in p["roles"] and (division is None or p["division_id"] == division)
    )


DIVISION = "cntt"
HEAD = first("division_head", DIVISION)
DEPUTY = first("deputy_division_head", DIVISION)
STAFF = [p["id"] for p in DEMO["people"] if p["division_id"] == DIVISION and p["roles"] == ["staff"]]
OTHER_HEAD = first("division_head", "khtc")
DIRECTOR = first("director")
DEPUTY_DIRECTOR = first("deputy_director")

# A plan in the future, Monday 05/01/2037 to Friday 27/02/2037, with a holiday on 12/01/2037.
PLAN = {
    "plan_id": "kh-2037", "title": "Kế hoạch làm việc trực tuyến",
    "effective_from": "2037-01-05", "effective_until": "2037-02-27", "holidays": ["2037-01-12"],
}


async def _key(system, person_id: str) -> str:
    key = signatures.development_signing_key(TENANT, person_id)
    key_id = f"{person_id}-k1"
    reply = await system.send("roster", "RegisterSigningKey", {
        "person_id": person_id, "key_id": key_id, "public_key": signatures.public_key_b64(key),
    })
    assert reply.ok, reply.error
    return key_id


@pytest.fixture
async def department(system):
    await system.start(roster_service())
    leave = await system.start(leave_service())
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    assert (await system.send("roster", "ActivatePlan", PLAN, as_person=DIRECTOR)).ok
    keys = {p: await _key(system, p) for p in (HEAD, DEPUTY, OTHER_HEAD, DIRECTOR)}

    async def directory_arrived():
        async with leave.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM dir_signing_keys") == len(keys) and \
                await conn.fetchval("SELECT count(*) FROM dir_plans") == 1

    await eventually(directory_arrived)
    return keys


async def request(system, person, start, end, **extra):
    return await system.send("leave", "RequestLeave", {
        "start_date": start, "end_date": end, "reason": "Việc gia đình", **extra,
    }, as_person=person)


async def sign_and_approve(system, approver, key_id, application_id, command_id=None):
    content = await system.send("leave", "GetApprovalContent",
                                {"application_id": application_id}, as_person=approver)
    assert content.ok, content.error
    signature = signatures.sign(signatures.development_signing_key(TENANT, approver),
                                content.result["content"])
    return await system.send("leave", "ApproveLeave", {
        "application_id": application_id, "key_id": key_id, "signature": signature,
    }, as_person=approver, command_id=command_id)


async def test_request_approve_verify_and_balance(system, department):
    applicant = STAFF[0]
    # 09/01 (Fri) to 13/01 (Tue): the weekend and the 12/01 holiday are not counted.
    reply = await request(system, applicant, "2037-01-09", "2037-01-13")
    assert reply.ok, reply.error
    assert reply.result["working_dates"] == ["2037-01-09", "2037-01-13"]
    assert reply.result["days"] == 2.0
    app_id = reply.result["application_id"]

    approved = await sign_and_approve(system, HEAD, department[HEAD], app_id)
    assert approved.ok, approved.error
    verified = await system.send("leave", "VerifyLeaveApproval", {"application_id": app_id},
                                 as_person=DIRECTOR)
    assert verified.ok and verified.result["valid"] is True
    assert verified.result["approver_id"] == HEAD

    balance = await system.send("leave", "GetLeaveBalance", {"year": 2037}, as_person=applicant)
    assert balance.result == {"person_id": applicant, "year": 2037, "entitlement": 12.0,
                              "used": 2.0, "pending": 0.0, "left": 10.0}
    listed = await system.send("leave", "ListLeaveApplications",
                               {"status": "approved", "on_date": "2037-01-13"}, as_person=HEAD)
    assert [a["application_id"] for a in listed.result] == [app_id]


async def test_signature_by_someone_else_or_over_other_content_is_refused(system, department):
    app_id = (await request(system, STAFF[0], "2037-01-06", "2037-01-06")).result["application_id"]
    forged = signatures.sign(signatures.development_signing_key(TENANT, HEAD), {"other": "content"})
    reply = await system.send("leave", "ApproveLeave", {
        "application_id": app_id, "key_id": department[HEAD], "signature": forged,
    }, as_person=HEAD)
    assert not reply.ok and reply.error.code == "bad_signature"
    # The head cannot use someone else's registered key either.
    reply = await sign_and_approve(system, HEAD, department[OTHER_HEAD], app_id)
    assert not reply.ok and reply.error.code == "bad_signature"


async def test_only_the_division_head_or_acting_deputy_decides(system, department):
    app_id = (await request(system, STAFF[1], "2037-01-07", "2037-01-07")).result["application_id"]
    for outsider in (OTHER_HEAD, STAFF[2], DEPUTY, STAFF[1]):
        reply = await system.send("leave", "RejectLeave", {"application_id": app_id,
                                                            "reason": "Không"}, as_person=outsider)
        assert not reply.ok and reply.error.code == "forbidden", outsider
    # The head lets the deputy act for them for a period covering today.
    today = date.today().isoformat()
    assert (await system.send("roster", "DesignateActingHead", {
        "division_id": DIVISION, "person_id": DEPUTY, "valid_from": today, "valid_until": "2099-12-31",
    }, as_person=HEAD)).ok

    async def deputy_may_decide():
        reply = await system.send("leave", "RejectLeave", {
            "application_id": app_id, "reason": "Phòng đang thiếu người trực"}, as_person=DEPUTY)
        return reply if reply.ok else None

    rejected = await eventually(deputy_may_decide)
    assert rejected.result["status"] == "rejected"


async def test_head_leave_goes_to_a_leader_and_never_to_oneself(system, department):
    app_id = (await request(system, HEAD, "2037-01-08", "2037-01-08")).result["application_id"]
    own = await sign_and_approve(system, HEAD, department[HEAD], app_id)
    assert not own.ok and own.error.code == "forbidden"
    by_leader = await sign_and_approve(system, DIRECTOR, department[DIRECTOR], app_id)
    assert by_leader.ok, by_leader.error


async def test_rules_overlap_half_days_plan_and_entitlement(system, department):
    person = STAFF[2]
    assert (await request(system, person, "2037-01-19", "2037-01-20")).ok
    overlap = await request(system, person, "2037-01-20", "2037-01-21")
    assert overlap.error.code == "overlap" and "20/01/2037" in overlap.error.message
    half = await request(system, person, "2037-01-22", "2037-01-22", half_day="morning")
    assert half.ok and half.result["days"] == 0.5
    bad_half = await request(system, person, "2037-01-22", "2037-01-23", half_day="afternoon")
    assert bad_half.error.code == "invalid"
    backwards = await request(system, person, "2037-01-23", "2037-01-22")
    assert backwards.error.code == "invalid"
    outside = await request(system, person, "2037-02-26", "2037-03-02")
    assert outside.error.code == "outside_plan"
    weekend = await request(system, person, "2037-01-10", "2037-01-11")
    assert weekend.error.code == "no_working_days"
    # 2.5 days pending; 10 more working days exceed the 12-day entitlement by half a day.
    beyond = await request(system, person, "2037-02-02", "2037-02-13")
    assert beyond.error.code == "entitlement_exceeded"
    assert beyond.error.details == {"year": 2037, "entitlement": 12.0, "used": 0.0, "pending": 2.5,
                                    "left": 9.5, "requested": 10.0}
    assert "còn lại 9.5" in beyond.error.message
    # A bigger entitlement set by the Office makes room.
    chief = first("chief_of_office")
    assert (await system.send("leave", "SetLeaveEntitlement",
                              {"person_id": person, "days_per_year": 15}, as_person=chief)).ok
    assert (await request(system, person, "2037-02-02", "2037-02-13")).ok
    staff_sets = await system.send("leave", "SetLeaveEntitlement",
                                   {"person_id": person, "days_per_year": 30}, as_person=person)
    assert staff_sets.error.code == "forbidden"


async def test_cancel_frees_the_days_and_only_the_applicant_cancels(system, department):
    person = STAFF[0]
    app_id = (await request(system, person, "2037-02-16", "2037-02-20")).result["application_id"]
    assert (await sign_and_approve(system, HEAD, department[HEAD], app_id)).ok
    by_head = await system.send("leave", "CancelLeave", {"application_id": app_id}, as_person=HEAD)
    assert by_head.error.code == "forbidden"
    cancelled = await system.send("leave", "CancelLeave",
                                  {"application_id": app_id, "reason": "Hết việc riêng"}, as_person=person)
    assert cancelled.ok
    again = await request(system, person, "2037-02-16", "2037-02-16")
    assert again.ok
    twice = await system.send("leave", "CancelLeave", {"application_id": app_id}, as_person=person)
    assert twice.error.code == "invalid_state" and "đã hủy" in twice.error.message


async def test_duplicate_command_gives_same_reply_and_one_event(system, department):
    command_id = uuid.uuid4()
    payload = {"start_date": "2037-01-26", "end_date": "2037-01-26", "reason": "Khám bệnh"}
    first_reply = await system.send("leave", "RequestLeave", payload, as_person=STAFF[1],
                                    command_id=command_id)
    second_reply = await system.send("leave", "RequestLeave", payload, as_person=STAFF[1],
                                     command_id=command_id)
    assert first_reply == second_reply and first_reply.ok
    leave = system.runtimes["leave"]
    async with leave.pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'LeaveRequested'") == 1


async def test_staff_see_only_their_own_applications(system, department):
    await request(system, STAFF[0], "2037-02-23", "2037-02-23")
    await request(system, STAFF[1], "2037-02-24", "2037-02-24")
    mine = await system.send("leave", "ListLeaveApplications", {}, as_person=STAFF[0])
    assert {a["person_id"] for a in mine.result} == {STAFF[0]}
    theirs = await system.send("leave", "ListLeaveApplications", {"person_id": STAFF[1]},
                               as_person=STAFF[0])
    assert theirs.error.code == "forbidden"
    other_division = await system.send("leave", "ListLeaveApplications", {"division_id": "cntt"},
                                       as_person=OTHER_HEAD)
    assert other_division.error.code == "forbidden"
    everyone = await system.send("leave", "ListLeaveApplications", {}, as_person=DIRECTOR)
    assert {a["person_id"] for a in everyone.result} >= {STAFF[0], STAFF[1]}
