"""Audiences that need more than the event itself: everyone on an approved roster (each told
their own days), a draft's author on its approval, a missed check-in told to the person and
then, unless they check in, to the head."""

import uuid
from datetime import timedelta

import pytest

from tests.conftest import TENANT, eventually
from tests.integration.notify_support import (
    CHIEF, DIRECTOR, DIVISION, HEAD, PEOPLE, STAFF, Clock, envelope, notifications, notify_config,
    publish, start_notify,
)

pytestmark = pytest.mark.integration

ROSTERS = f"rosters-{TENANT}"


async def _count(runtime, count: int, **where):
    rows = await notifications(runtime, **where)
    return rows if len(rows) >= count else None


async def test_approved_roster_tells_everyone_on_it_their_own_days(system):
    await start_notify(system, notify_config(Clock()))
    runtime = system.runtimes["notify"]
    roster_id = str(uuid.uuid4())
    lists = [
        {"day": "2037-01-08", "division_id": DIVISION, "submission_id": str(uuid.uuid4()),
         "on_site": [STAFF[0]], "at_home": [STAFF[1], HEAD], "on_leave": [STAFF[2]]},
        {"day": "2037-01-09", "division_id": DIVISION, "submission_id": str(uuid.uuid4()),
         "on_site": [STAFF[1]], "at_home": [STAFF[0], HEAD], "on_leave": []},
    ]
    compiled = envelope("RosterCompiled", {
        "roster_id": roster_id, "start": "2037-01-08", "end": "2037-01-09",
        "days": ["2037-01-08", "2037-01-09"], "compiled_by": CHIEF, "lists": lists},
        source="roster", stream=ROSTERS, version=1)
    approved = envelope("RosterApproved", {"roster_id": roster_id, "approved_by": DIRECTOR},
                        source="roster", stream=ROSTERS, version=2)
    await publish(system, compiled, approved)

    (to_director,) = await eventually(lambda: _count(runtime, 1, kind="RosterCompiled"))
    assert to_director["recipient_id"] == DIRECTOR
    assert to_director["title"] == "Lịch trực từ ngày 08/01/2037 đến ngày 09/01/2037 chờ đồng chí phê duyệt"
    told = {r["recipient_id"]: r for r in await eventually(lambda: _count(runtime, 3, kind="RosterApproved"))}
    assert set(told) == {STAFF[0], STAFF[1], HEAD}  # not the one on leave
    director = PEOPLE[DIRECTOR]["full_name"]
    assert told[STAFF[0]]["body"] == (
        f"Lịch trực của Sở đã được đồng chí {director} phê duyệt. Lịch của đồng chí: "
        "08/01/2037: trực tại cơ quan; 09/01/2037: làm việc tại nhà.")
    assert told[STAFF[1]]["body"].endswith("08/01/2037: làm việc tại nhà; 09/01/2037: trực tại cơ quan.")


async def test_draft_approval_reaches_the_author_remembered_from_the_submission(system):
    await start_notify(system, notify_config(Clock()))
    runtime = system.runtimes["notify"]
    document_id = str(uuid.uuid4())
    stream = f"document-{TENANT}-{document_id}"
    submitted = envelope("DraftSubmitted", {
        "document_id": document_id, "version": 1, "author_id": STAFF[0], "division_id": DIVISION,
        "doc_type": "KH", "summary": "Kế hoạch chuyển đổi số năm 2037", "recipients": ["UBND tỉnh"],
        "urgency": "normal", "file_sha256": "ab" * 32, "file_name": "ke-hoach.pdf", "file_size": 1024},
        source="documents", stream=stream, version=1)
    approved = envelope("DraftApproved", {"document_id": document_id, "version": 1, "approver_id": HEAD},
                        source="documents", stream=stream, version=2)
    await publish(system, submitted, approved)
    (to_head,) = await eventually(lambda: _count(runtime, 1, kind="DraftSubmitted"))
    assert to_head["recipient_id"] == HEAD and "Kế hoạch chuyển đổi số năm 2037" in to_head["body"]
    told = await eventually(lambda: _count(runtime, 2, kind="DraftApproved"))
    checker = next(p for p, v in PEOPLE.items() if "format_checker" in v["roles"])
    assert {r["recipient_id"] for r in told} == {STAFF[0], checker}


def _missed(clock: Clock, person: str, session: int) -> tuple:
    deadline = clock() - timedelta(minutes=1)
    return envelope("CheckInMissed", {
        "person_id": person, "division_id": DIVISION, "day": "2037-01-06", "session": session,
        "session_starts": (deadline - timedelta(minutes=30)).isoformat(), "deadline": deadline.isoformat()},
        source="roster", stream=f"presence-{TENANT}-{person}-2037-01-06")


async def test_missed_check_in_tells_the_person_then_the_head_unless_they_check_in(system):
    clock = Clock()
    await start_notify(system, notify_config(clock))
    runtime = system.runtimes["notify"]
    silent, late = _missed(clock, STAFF[0], 0), _missed(clock, STAFF[1], 0)
    checked_in = envelope("CheckedIn", {
        "person_id": STAFF[1], "division_id": DIVISION, "day": "2037-01-06", "session": 0,
        "at": clock().isoformat(), "place": "Nhà riêng", "at_registered_place": True, "late": True},
        source="roster", stream=late.stream_id, version=2)
    await publish(system, silent, late, checked_in)
    told = await eventually(lambda: _count(runtime, 2, kind="CheckInMissed"))
    assert {r["recipient_id"] for r in told} == {STAFF[0], STAFF[1]}
    assert told[0]["title"] == "Đồng chí chưa điểm danh buổi làm việc"

    async def one_called_off():
        async with runtime.pool.acquire() as conn:
            rows = await conn.fetch("SELECT status FROM reminders ORDER BY status")
        return [r["status"] for r in rows] == ["dropped", "pending"]

    await eventually(one_called_off)
    assert await notifications(runtime, kind="CheckInStillMissing") == []
    clock.set(clock() + timedelta(minutes=15))  # 15 minutes after the deadline
    (to_head,) = await eventually(lambda: _count(runtime, 1, kind="CheckInStillMissing"))
    assert to_head["recipient_id"] == HEAD
    assert to_head["title"] == f"{PEOPLE[STAFF[0]]['full_name']} chưa điểm danh"
