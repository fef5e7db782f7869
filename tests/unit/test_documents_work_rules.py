"""Tasks, overdue detection on working days, and meeting invitations, without servers."""

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.documents.domain import Document, is_working_day, working_days_late
from services.documents.meetings import Meeting
from services.documents.tasks import Task
from shared.commands import DomainError, Forbidden, NotFound
from shared.directory import Plan
from tests.unit.test_documents_rules import (
    CHIEF, CLERK, DEPUTY, DIRECTOR, HEAD, OTHER_HEAD, STAFF, STAFF2, TODAY, incoming, person,
)

# 09/01/2037 is a Friday; the plan makes Monday 12/01 a holiday.
PLAN = Plan("p", "Kế hoạch", date(2037, 1, 5), date(2037, 2, 27), frozenset({date(2037, 1, 12)}))
FRIDAY = date(2037, 1, 9)


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+07:00")


def test_working_days_come_from_the_plan_and_default_to_weekdays_outside_it():
    assert not is_working_day(date(2037, 1, 12), [PLAN])  # the plan's holiday
    assert is_working_day(date(2037, 1, 13), [PLAN])
    assert not is_working_day(date(2037, 1, 10), [PLAN])
    assert is_working_day(date(2037, 3, 2), [PLAN]) and not is_working_day(date(2037, 3, 1), [PLAN])
    assert working_days_late(FRIDAY, date(2037, 1, 12), [PLAN]) == 0
    assert working_days_late(FRIDAY, date(2037, 1, 14), [PLAN]) == 2


def task(assignee=STAFF, due=FRIDAY) -> Task:
    t = Task(uuid.uuid4())
    t.assign(HEAD, assignee.person, title="Báo cáo", description="", due_date=due, today=TODAY)
    return t


def test_division_leadership_assigns_its_own_people_and_leaders_anyone():
    for actor in (HEAD, DEPUTY, DIRECTOR):
        assert Task(uuid.uuid4()).assign(actor, STAFF.person, title="x", description="", due_date=FRIDAY,
                                         today=TODAY)
    for actor, assignee in ((OTHER_HEAD, STAFF), (STAFF2, STAFF), (HEAD, OTHER_HEAD), (CLERK, STAFF)):
        with pytest.raises(Forbidden):
            Task(uuid.uuid4()).assign(actor, assignee.person, title="x", description="", due_date=FRIDAY,
                                      today=TODAY)
    assert Task(uuid.uuid4()).assign(CHIEF, CLERK.person, title="x", description="", due_date=FRIDAY,
                                     today=TODAY)
    with pytest.raises(DomainError):
        Task(uuid.uuid4()).assign(HEAD, STAFF.person, title="x", description="", due_date=date(2037, 1, 4),
                                  today=TODAY)
    with pytest.raises(DomainError) as err:
        task().assign(HEAD, STAFF.person, title="x", description="", due_date=FRIDAY, today=TODAY)
    assert err.value.code == "already_exists"


def test_a_task_from_an_ordinary_document_names_it():
    doc = incoming()
    (assigned,) = Task(uuid.uuid4()).assign(HEAD, STAFF.person, title="x", description="",
                                            due_date=FRIDAY, today=TODAY, document=doc)
    assert assigned.document_id == doc.document_id


def test_only_the_assignee_reports_and_completes_and_a_completed_task_is_closed():
    t = task()
    with pytest.raises(Forbidden):
        t.report_progress(HEAD, 50, "")
    (progress,) = t.report_progress(STAFF, 60, "Đang tổng hợp")
    assert (progress.percent, t.percent) == (60, 60)
    with pytest.raises(Forbidden):
        t.complete(STAFF2, "")
    t.complete(STAFF, "Xong")
    assert (t.status, t.percent) == ("completed", 100)
    for action in (lambda: t.report_progress(STAFF, 100, ""), lambda: t.complete(STAFF, "")):
        with pytest.raises(DomainError) as err:
            action()
        assert err.value.code == "invalid_transition" and "đã hoàn thành" in err.value.message
    with pytest.raises(NotFound):
        Task(uuid.uuid4()).complete(STAFF, "")


def test_overdue_is_raised_a_working_day_after_the_due_date_and_only_once():
    t = task()
    assert t.detect_overdue(at("2037-01-10"), [PLAN]) == []
    assert t.detect_overdue(at("2037-01-12", 23), [PLAN]) == []
    (late,) = t.detect_overdue(at("2037-01-13", 7), [PLAN])
    assert (late.working_days_late, late.due_date, late.assignee_id) == (1, FRIDAY, "s1")
    assert t.detect_overdue(at("2037-01-20"), [PLAN]) == []
    done = task()
    done.complete(STAFF, "")
    assert done.detect_overdue(at("2037-01-20"), [PLAN]) == []


def test_the_local_date_decides_not_the_utc_one():
    # 13/01 00:30 in Hà Nội is still 12/01 (the holiday) in UTC: already late locally.
    moment = datetime(2037, 1, 12, 17, 30, tzinfo=UTC)
    assert len(task().detect_overdue(moment, [PLAN])) == 1


def test_an_assigned_document_falls_overdue_once_and_reassigning_starts_again():
    doc = incoming()
    assert doc.detect_overdue(at("2037-01-20"), [PLAN]) == []  # not assigned: nobody to chase
    doc.assign(CLERK, "cntt", None, FRIDAY, TODAY)
    assert len(doc.detect_overdue(at("2037-01-13"), [PLAN])) == 1
    assert doc.detect_overdue(at("2037-01-14"), [PLAN]) == []
    doc.assign(HEAD, "cntt", STAFF.person, date(2037, 1, 15), TODAY)
    assert doc.detect_overdue(at("2037-01-14"), [PLAN]) == []
    assert len(doc.detect_overdue(at("2037-01-16"), [PLAN])) == 1
    handled = incoming()
    handled.assign(CLERK, "cntt", STAFF.person, FRIDAY, TODAY)
    handled.mark_handled(STAFF)
    assert handled.detect_overdue(at("2037-01-20"), [PLAN]) == []
    assert Document(uuid.uuid4()).detect_overdue(at("2037-01-20"), [PLAN]) == []


NOW = datetime(2037, 1, 5, 8, 0, tzinfo=UTC)
START = datetime(2037, 1, 14, 2, 0, tzinfo=UTC)  # 09:00 in Hà Nội


def meeting(**kw) -> Meeting:
    m = Meeting(uuid.uuid4())
    args = dict(title="Giao ban", starts_at=START, ends_at=START + timedelta(hours=1),
                link="https://meet.example.vn/x", chair=HEAD.person, invitees=[STAFF.person, STAFF2.person],
                now=NOW)
    args.update(kw)
    m.schedule(HEAD, **args)
    return m


def test_a_meeting_invites_joining_15_minutes_early():
    m = meeting(invitees=[STAFF.person, STAFF.person, STAFF2.person])
    assert m.scheduled.join_at == START - timedelta(minutes=15)
    assert m.scheduled.invitees == ("s1", "s2")


@pytest.mark.parametrize("change,code", [
    (dict(starts_at=NOW - timedelta(hours=1)), "invalid"),
    (dict(ends_at=START), "invalid"),
    (dict(ends_at=START + timedelta(hours=13)), "invalid"),
    (dict(link="http://meet.example.vn/x"), "invalid"),
    (dict(invitees=[replace(person("gone"), active=False)]), "inactive"),
])
def test_a_meeting_must_be_ahead_bounded_secure_and_among_staff(change, code):
    with pytest.raises(DomainError) as err:
        meeting(**change)
    assert err.value.code == code


def test_staff_do_not_call_meetings():
    with pytest.raises(Forbidden):
        Meeting(uuid.uuid4()).schedule(STAFF, title="x", starts_at=START, ends_at=START + timedelta(hours=1),
                                       link="https://x.vn/a", chair=HEAD.person, invitees=[STAFF2.person],
                                       now=NOW)


def test_invitees_confirm_once_and_nobody_confirms_a_cancelled_or_finished_meeting():
    m = meeting()
    with pytest.raises(Forbidden):
        m.confirm(OTHER_HEAD, NOW)
    m.confirm(STAFF, NOW)
    m.confirm(HEAD, NOW)  # the chair confirms too
    with pytest.raises(DomainError) as err:
        m.confirm(STAFF, NOW)
    assert err.value.code == "already_confirmed"
    with pytest.raises(DomainError):
        meeting().confirm(STAFF, START + timedelta(hours=2))
    with pytest.raises(Forbidden):
        m.cancel(STAFF, "x", NOW)
    m.cancel(DIRECTOR, "Trùng lịch họp UBND tỉnh", NOW)
    for action in (lambda: m.confirm(STAFF2, NOW), lambda: m.cancel(HEAD, "x", NOW)):
        with pytest.raises(DomainError) as err:
            action()
        assert err.value.code == "invalid_transition"
