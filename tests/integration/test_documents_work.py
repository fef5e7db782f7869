"""Tasks, overdue detection on working days and meeting invitations, over AMQP."""

import json
import uuid
from datetime import datetime

import pytest

from services.documents.handlers import detect_overdue_for_every_tenant
from tests.integration.documents_helpers import (  # noqa: F401  (documents is a fixture)
    CHIEF, DEPUTY, DIRECTOR, DIVISION, HEAD, OTHER_HEAD, STAFF, documents, ok, register_incoming,
)

pytestmark = pytest.mark.integration

# The 2037 plan: 09/01 is a Friday, 12/01 (Monday) a holiday, 13/01 the next working day.
FRIDAY, SATURDAY_NOON = "2037-01-09", "2037-01-10T12:00:00+07:00"
HOLIDAY_EVENING = "2037-01-12T20:00:00+07:00"
TUESDAY_MORNING, WEDNESDAY = "2037-01-13T08:00:00+07:00", "2037-01-14T15:00:00+07:00"


async def assign(system, by, assignee, due=FRIDAY, **extra):
    return await system.send("documents", "AssignTask", {
        "title": "Tổng hợp báo cáo chuyển đổi số", "assignee_id": assignee, "due_date": due, **extra,
    }, as_person=by)


async def detect(system, as_of, by=None):
    return await system.send("documents", "DetectOverdue", {"as_of": as_of}, as_person=by)


async def count(runtime, event_type: str) -> int:
    async with runtime.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM events WHERE event_type = $1", event_type)


async def test_tasks_progress_completion_and_overdue_once_on_working_days(system, documents):
    runtime = system.runtimes["documents"]
    incoming = await ok(register_incoming(system, division_id=DIVISION, due_date=FRIDAY))
    task = (await ok(assign(system, HEAD, STAFF[0], document_id=incoming["document_id"],
                            description="Theo văn bản đến số 1")))["task_id"]
    other = (await ok(assign(system, DEPUTY, STAFF[1], due="2037-01-08")))["task_id"]
    for outsider, assignee in ((OTHER_HEAD, STAFF[0]), (STAFF[2], STAFF[0]), (HEAD, OTHER_HEAD)):
        assert (await assign(system, outsider, assignee)).error.code == "forbidden"
    past = await assign(system, HEAD, STAFF[0], due="2020-01-01")
    assert past.error.code == "invalid"

    progress = await ok(system.send("documents", "ReportTaskProgress",
                                    {"task_id": task, "percent": 40, "note": "Đã có số liệu 3 phòng"},
                                    as_person=STAFF[0]))
    assert progress == {"task_id": task, "status": "open", "percent": 40}
    not_mine = await system.send("documents", "ReportTaskProgress", {"task_id": task, "percent": 90},
                                 as_person=STAFF[1])
    assert not_mine.error.code == "forbidden"
    await ok(system.send("documents", "CompleteTask", {"task_id": other, "note": "Xong"}, as_person=STAFF[1]))
    again = await system.send("documents", "CompleteTask", {"task_id": other}, as_person=STAFF[1])
    assert again.error.code == "invalid_transition" and "đã hoàn thành" in again.error.message

    listed = await ok(system.send("documents", "ListTasks", {"assignee_id": STAFF[0], "status": "open"},
                                  as_person=HEAD))
    assert [(t["task_id"], t["percent"], t["last_note"]) for t in listed] == [
        (task, 40, "Đã có số liệu 3 phòng")]
    mine = await ok(system.send("documents", "ListTasks", {}, as_person=STAFF[1]))
    assert [t["task_id"] for t in mine] == [other]
    assert await ok(system.send("documents", "ListTasks", {}, as_person=OTHER_HEAD)) == []

    # Due Friday: the weekend and Monday's holiday are no working days, so nothing is late yet.
    assert (await detect(system, SATURDAY_NOON, by=STAFF[0])).error.code == "forbidden"
    for as_of in (SATURDAY_NOON, HOLIDAY_EVENING):
        nothing = await ok(detect(system, as_of))
        assert nothing["tasks"] == [] and nothing["documents"] == []
    raised = await ok(detect(system, TUESDAY_MORNING, by=CHIEF))
    assert raised["tasks"] == [task] and raised["documents"] == [incoming["document_id"]]
    assert (await ok(detect(system, WEDNESDAY))) == {"as_of": "2037-01-14T15:00:00+07:00",
                                                     "tasks": [], "documents": []}
    assert await count(runtime, "TaskOverdue") == 1 and await count(runtime, "DocumentOverdue") == 1
    async with runtime.pool.acquire() as conn:
        payload = json.loads(await conn.fetchval(
            "SELECT payload FROM events WHERE event_type = 'TaskOverdue'"))
    assert payload["working_days_late"] == 1 and payload["due_date"] == FRIDAY

    overdue = await ok(system.send("documents", "ListOverdue", {"as_of": WEDNESDAY}, as_person=HEAD))
    assert {(i["kind"], i["id"], i["working_days_late"], i["overdue_raised"]) for i in overdue["items"]} == {
        ("task", task, 2, True), ("document", incoming["document_id"], 2, True)}
    assert overdue["items"][0]["due_date_vi"] == "09/01/2037"

    # The background loop does the same for every department, and only for what is new.
    later = (await ok(assign(system, HEAD, STAFF[2], due="2037-01-13")))["task_id"]
    results = await detect_overdue_for_every_tenant(runtime, datetime.fromisoformat("2037-01-15T09:00:00+07:00"))
    assert results == {"so-tttt-thanhhoa": {"tasks": [uuid.UUID(later)], "documents": []}}
    assert await count(runtime, "TaskOverdue") == 2

    # Completing late work is still possible; the overdue mark stays on record.
    await ok(system.send("documents", "CompleteTask", {"task_id": task}, as_person=STAFF[0]))
    assert (await ok(system.send("documents", "ListOverdue", {"as_of": WEDNESDAY}, as_person=DIRECTOR)))[
        "items"][0]["kind"] == "document"


async def test_meeting_invitations_join_early_and_invitees_confirm(system, documents):
    runtime = system.runtimes["documents"]
    meeting = {"title": "Họp giao ban trực tuyến Phòng CNTT", "starts_at": "2037-01-14T09:00:00+07:00",
               "ends_at": "2037-01-14T10:30:00+07:00", "link": "https://meet.thanhhoa.gov.vn/cntt-giao-ban",
               "chair_id": HEAD, "invitees": [STAFF[0], STAFF[1], STAFF[1]]}
    assert (await system.send("documents", "ScheduleMeeting", meeting, as_person=STAFF[0])).error.code == "forbidden"
    insecure = await system.send("documents", "ScheduleMeeting", {**meeting, "link": "http://meet.example/x"},
                                 as_person=HEAD)
    assert insecure.error.code == "invalid"
    scheduled = await ok(system.send("documents", "ScheduleMeeting", meeting, as_person=HEAD))
    meeting_id = scheduled["meeting_id"]
    assert scheduled["join_at"] == "2037-01-14T08:45:00+07:00"
    async with runtime.pool.acquire() as conn:
        payload = json.loads(await conn.fetchval(
            "SELECT payload FROM events WHERE event_type = 'MeetingScheduled'"))
    assert datetime.fromisoformat(payload["join_at"]) == datetime.fromisoformat("2037-01-14T08:45:00+07:00")
    assert payload["invitees"] == [STAFF[0], STAFF[1]] and payload["chair_id"] == HEAD

    confirm = {"meeting_id": meeting_id}
    assert (await system.send("documents", "ConfirmMeetingAttendance", confirm, as_person=STAFF[2])
            ).error.code == "forbidden"
    await ok(system.send("documents", "ConfirmMeetingAttendance", confirm, as_person=STAFF[0]))
    twice = await system.send("documents", "ConfirmMeetingAttendance", confirm, as_person=STAFF[0])
    assert twice.error.code == "already_confirmed"

    listed = await ok(system.send("documents", "ListMeetings", {"date_from": "2037-01-14"}, as_person=STAFF[0]))
    assert len(listed) == 1 and listed[0]["join_local"] == "08:45 14/01/2037"
    confirmed = {i["person_id"]: i["confirmed_at"] is not None for i in listed[0]["invitees"]}
    assert confirmed == {HEAD: False, STAFF[0]: True, STAFF[1]: False}
    assert await ok(system.send("documents", "ListMeetings", {}, as_person=STAFF[2])) == []

    cancel = {"meeting_id": meeting_id, "reason": "Lãnh đạo phòng đi công tác"}
    assert (await system.send("documents", "CancelMeeting", cancel, as_person=STAFF[0])).error.code == "forbidden"
    await ok(system.send("documents", "CancelMeeting", cancel, as_person=HEAD))
    late = await system.send("documents", "ConfirmMeetingAttendance", confirm, as_person=STAFF[1])
    assert late.error.code == "invalid_transition"
