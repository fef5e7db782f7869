"""A known week of the demo department, as the services would have published it.

Thu 26/02/2026 the directory and the plan (2020 rules: a leader and one person of every
division on site); Fri 27/02 every division lists Mon 02/03 and Tue 03/03 (first member of each
division on site, the rest at home; on Tue the inspectorate, ttra, keeps everyone at home), the
Office compiles (one violation: ttra on Tue) and the Director approves, overriding it; Mon to
Wed check-ins, health declarations, leave, documents, tasks and notifications; Tue the lists of
Wed 04/03 come from every division but khtc, and the Director returns that roster.
The expected figures are written out by hand in tests/integration/test_reporting.py.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import date, datetime, time
from pathlib import Path

from shared.contracts import Envelope, Event
from shared.contracts import documents as doc
from shared.contracts import leave as lv
from shared.contracts import notify as nt
from shared.contracts import roster as ro
from shared.localtime import LOCAL_TZ

TENANT = "so-tttt-thanhhoa"
DEPARTMENT = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
MON, TUE, WED = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
THU_BEFORE, FRI_BEFORE = date(2026, 2, 26), date(2026, 2, 27)


def at(day: date, hhmm: str, second: int = 0) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime.combine(day, time(h, m, second), LOCAL_TZ)


def members(division_id: str) -> list[str]:
    return sorted(p["id"] for p in DEPARTMENT["people"] if p["division_id"] == division_id)


DIVISIONS = [d["id"] for d in DEPARTMENT["divisions"]]


class Stream:
    """Envelopes in the order the scenario writes them, each stream numbered from 1."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._versions: Counter = Counter()

    def add(self, stream_id: str, event: Event, when: datetime, actor: str = "system") -> Envelope:
        self._versions[stream_id] += 1
        envelope = Envelope(
            event_id=uuid.uuid4(), event_type=event.event_type, schema_version=event.schema_version,
            source=event.owner, stream_id=stream_id, stream_version=self._versions[stream_id],
            tenant=TENANT, occurred_at=when, actor=actor, correlation_id=uuid.uuid4(),
            payload=event.model_dump(mode="json"),
        )
        self.envelopes.append(envelope)
        return envelope


def _day_list(day: date, division_id: str, everyone_home: bool = False) -> ro.DayList:
    entries = [
        ro.RosterEntry(person_id=pid, location="on_site") if i == 0 and not everyone_home else
        ro.RosterEntry(person_id=pid, location="home", work_place="Nhà riêng, TP Thanh Hóa")
        for i, pid in enumerate(members(division_id))
    ]
    return ro.DayList(day=day, entries=tuple(entries))


def _compiled(day_lists: dict[tuple[date, str], ro.DayList], days: tuple[date, ...]) -> tuple[ro.CompiledList, ...]:
    return tuple(
        ro.CompiledList(
            day=d, division_id=div, submission_id=uuid.uuid4(),
            on_site=tuple(e.person_id for e in lst.entries if e.location == "on_site"),
            at_home=tuple(e.person_id for e in lst.entries if e.location == "home"))
        for (d, div), lst in day_lists.items() if d in days
    )


def _directory(s: Stream) -> None:
    stream = ro.directory_stream(TENANT)
    when = at(THU_BEFORE, "08:00")
    s.add(stream, ro.DepartmentRegistered(name=DEPARTMENT["name"], symbol=DEPARTMENT["symbol"]), when, "it-admin")
    for d in DEPARTMENT["divisions"]:
        s.add(stream, ro.DivisionCreated(division_id=d["id"], name=d["name"], kind=d["kind"]), when, "it-admin")
    for p in DEPARTMENT["people"]:
        s.add(stream, ro.PersonAdded(person_id=p["id"], full_name=p["full_name"], email=p["email"],
                                     division_id=p["division_id"], roles=tuple(p["roles"])), when, "it-admin")
    s.add(stream, ro.PlanActivated(
        plan_id="kh-truc-tuyen", title="Kế hoạch triển khai làm việc trực tuyến trong thời gian phòng, chống dịch COVID-19",
        effective_from=MON, onsite_rules=({"rule": "min_leaders_on_site", "count": 1},
                                          {"rule": "min_staff_per_division_on_site", "count": 1})),
        at(THU_BEFORE, "09:00"), "nv-001")


def _rosters(s: Stream) -> None:
    stream = ro.roster_stream(TENANT)
    lists: dict[tuple[date, str], ro.DayList] = {}
    for i, div in enumerate(DIVISIONS):
        days = (_day_list(MON, div), _day_list(TUE, div, everyone_home=(div == "ttra")))
        lists.update({(d.day, div): d for d in days})
        s.add(stream, ro.RosterSubmitted(submission_id=uuid.uuid4(), division_id=div, submitted_by=members(div)[0],
                                         days=days), at(FRI_BEFORE, "15:00", i), members(div)[0])
    violation = ro.Violation(day=TUE, division_id="ttra", rule="min_staff_per_division_on_site",
                             message="Thanh tra Sở không có ai trực tại cơ quan (cần ít nhất 1).",
                             required=1, actual=0)
    first = uuid.uuid4()
    s.add(stream, ro.RosterCompiled(roster_id=first, start=MON, end=TUE, days=(MON, TUE), compiled_by="nv-004",
                                    lists=_compiled(lists, (MON, TUE)), violations=(violation,)),
          at(FRI_BEFORE, "16:00"), "nv-004")
    s.add(stream, ro.RosterApproved(roster_id=first, approved_by="nv-001", overridden=(violation,),
                                    override_reason="Thanh tra Sở làm việc với đoàn kiểm tra bên ngoài"),
          at(FRI_BEFORE, "17:00"), "nv-001")
    # Mon 14:00 the head of ttcntt (on site Tue) gets leave approved: roster records the gap.
    s.add(stream, ro.CoverageGapRecorded(
        gap_id=uuid.uuid4(), roster_id=first, day=TUE, division_id="ttcntt", rule="min_staff_per_division_on_site",
        person_id="nv-040", application_id=LEAVE_HEAD,
        message="Trung tâm Công nghệ thông tin và Truyền thông không còn ai trực tại cơ quan."),
        at(MON, "14:00", 5), "nv-002")
    for i, div in enumerate(d for d in DIVISIONS if d != "khtc"):
        day_list = _day_list(WED, div)
        lists[(WED, div)] = day_list
        s.add(stream, ro.RosterSubmitted(submission_id=uuid.uuid4(), division_id=div, submitted_by=members(div)[0],
                                         days=(day_list,)), at(TUE, "15:00", i), members(div)[0])
    second = uuid.uuid4()
    s.add(stream, ro.RosterCompiled(roster_id=second, start=WED, end=WED, days=(WED,), compiled_by="nv-004",
                                    lists=_compiled(lists, (WED,)),
                                    missing=(ro.MissingList(day=WED, division_id="khtc"),)),
          at(TUE, "16:00"), "nv-004")
    s.add(stream, ro.RosterReturned(roster_id=second, returned_by="nv-001",
                                    reason="Phòng Kế hoạch - Tài chính chưa đăng ký danh sách."),
          at(TUE, "17:00"), "nv-001")


def _home(day: date) -> list[tuple[str, str]]:
    """(person, division) of everyone listed at home and not on leave that day."""
    out = []
    for div in DIVISIONS:
        for i, pid in enumerate(members(div)):
            home = i > 0 or (day == TUE and div == "ttra")
            if day == WED and div == "khtc":
                home = False
            if home and not (day == TUE and pid == "nv-030"):
                out.append((pid, div))
    return out


def _presence(s: Stream) -> None:
    for k, (pid, div) in enumerate(_home(MON)):
        stream = ro.presence_stream(TENANT, pid, MON)
        s.add(stream, ro.HealthDeclared(person_id=pid, day=MON, status="symptoms" if pid == "nv-009" else "well"),
              at(MON, "06:50", k), pid)
        if pid == "nv-010":  # missed the morning, checked in late
            s.add(stream, ro.CheckInMissed(person_id=pid, division_id=div, day=MON, session=0,
                                           session_starts=at(MON, "07:00"), deadline=at(MON, "07:30")),
                  at(MON, "07:30"))
            s.add(stream, ro.CheckedIn(person_id=pid, division_id=div, day=MON, session=0, at=at(MON, "08:10"),
                                       place="Nhà riêng", at_registered_place=True, late=True), at(MON, "08:10"), pid)
        else:
            s.add(stream, ro.CheckedIn(person_id=pid, division_id=div, day=MON, session=0, at=at(MON, "07:05", k),
                                       place="Quán cà phê" if pid == "nv-008" else "Nhà riêng",
                                       at_registered_place=pid != "nv-008"), at(MON, "07:05", k), pid)
        if pid == "nv-033":  # missed the afternoon
            s.add(stream, ro.CheckInMissed(person_id=pid, division_id=div, day=MON, session=1,
                                           session_starts=at(MON, "13:30"), deadline=at(MON, "14:00")),
                  at(MON, "14:00"))
        else:
            s.add(stream, ro.CheckedIn(person_id=pid, division_id=div, day=MON, session=1, at=at(MON, "13:35", k),
                                       place="Nhà riêng", at_registered_place=True), at(MON, "13:35", k), pid)
    for k, (pid, div) in enumerate(_home(TUE)):
        stream = ro.presence_stream(TENANT, pid, TUE)
        for session, hhmm in ((0, "07:05"), (1, "13:35")):
            s.add(stream, ro.CheckedIn(person_id=pid, division_id=div, day=TUE, session=session,
                                       at=at(TUE, hhmm, k), place="Nhà riêng", at_registered_place=True),
                  at(TUE, hhmm, k), pid)


LEAVE_STAFF, LEAVE_HEAD, LEAVE_REJECTED, LEAVE_PENDING = (uuid.UUID(int=i) for i in range(1, 5))


def _leave(s: Stream) -> None:
    def request(app, pid, div, dates, when):
        s.add(lv.ledger_stream(TENANT, pid), lv.LeaveRequested(
            application_id=app, person_id=pid, division_id=div, start_date=dates[0], end_date=dates[-1],
            working_dates=tuple(dates), days=float(len(dates)), reason="Việc gia đình"), when, pid)

    def approve(app, pid, div, dates, approver, when):
        s.add(lv.ledger_stream(TENANT, pid), lv.LeaveApproved(
            application_id=app, person_id=pid, division_id=div, approver_id=approver, working_dates=tuple(dates),
            days=float(len(dates)), content_sha256="0" * 64, signature="c2lnbmF0dXJl", key_id=f"{approver}-dev"),
            when, approver)

    request(LEAVE_STAFF, "nv-030", "cntt", [TUE], at(MON, "09:00"))
    approve(LEAVE_STAFF, "nv-030", "cntt", [TUE], "nv-027", at(MON, "10:00"))
    request(LEAVE_HEAD, "nv-040", "ttcntt", [TUE], at(MON, "13:00"))
    approve(LEAVE_HEAD, "nv-040", "ttcntt", [TUE], "nv-002", at(MON, "14:00"))
    request(LEAVE_REJECTED, "nv-031", "cntt", [WED], at(TUE, "09:00"))
    s.add(lv.ledger_stream(TENANT, "nv-031"), lv.LeaveRejected(
        application_id=LEAVE_REJECTED, person_id="nv-031", division_id="cntt", approver_id="nv-027",
        reason="Phòng đang thiếu người"), at(TUE, "11:00"), "nv-027")
    request(LEAVE_PENDING, "nv-032", "cntt", [date(2026, 3, 5), date(2026, 3, 6)], at(WED, "08:30"))


def _documents(s: Stream) -> None:
    d1, d2, o1, o2, o3, o4 = (uuid.UUID(int=100 + i) for i in range(6))
    stream = lambda d: doc.document_stream(TENANT, d)  # noqa: E731
    s.add(doc.register_stream(TENANT, "incoming", 2026), doc.RegisterNumberAssigned(
        register_name="incoming", year=2026, number=1, document_id=d1), at(MON, "08:30"), "nv-008")
    s.add(stream(d1), doc.DocumentReceived(
        document_id=d1, year=2026, number=1, original_number="2345/UBND-VX", issuing_body="UBND tỉnh Thanh Hóa",
        summary="V/v phòng, chống dịch", document_date=FRI_BEFORE, received_on=MON, urgency="urgent",
        secrecy="none"), at(MON, "08:30"), "nv-008")
    s.add(stream(d1), doc.IncomingFileAttached(document_id=d1, file_sha256="a" * 64, file_name="2345.pdf",
                                               file_size=1000), at(MON, "08:31"), "nv-008")
    s.add(stream(d1), doc.DocumentAssigned(document_id=d1, division_id="cntt", person_id="nv-029", due_date=TUE),
          at(MON, "08:35"), "nv-004")
    s.add(stream(d2), doc.DocumentReceived(
        document_id=d2, year=2026, number=2, original_number="12/M-CA", issuing_body="Công an tỉnh",
        document_date=FRI_BEFORE, received_on=MON, urgency="normal", secrecy="secret"), at(MON, "08:40"), "nv-007")
    s.add(stream(d2), doc.SecretDocumentRouted(document_id=d2, leader_id="nv-001"), at(MON, "08:41"), "nv-007")
    s.add(stream(d2), doc.DocumentAssigned(document_id=d2, division_id="vp", person_id="nv-007"),
          at(MON, "08:45"), "nv-001")
    s.add(stream(d2), doc.DocumentHandled(document_id=d2, person_id="nv-007"), at(TUE, "09:00"), "nv-007")
    s.add(stream(d1), doc.DocumentOverdue(document_id=d1, division_id="cntt", person_id="nv-029", due_date=TUE,
                                          as_of=at(WED, "07:05"), working_days_late=1), at(WED, "07:05"))

    def draft(d, version, author, division, when):
        s.add(stream(d), doc.DraftSubmitted(
            document_id=d, version=version, author_id=author, division_id=division, doc_type="KH",
            summary="Kế hoạch công tác", recipients=("Các phòng",), urgency="normal", file_sha256="b" * 64,
            file_name="kh.docx", file_size=2000), when, author)

    def through_signing(d, version, days_times):
        (approved, checked, signed) = days_times
        s.add(stream(d), doc.DraftApproved(document_id=d, version=version, approver_id="head"), approved)
        s.add(stream(d), doc.FormatChecked(document_id=d, version=version, checker_id="nv-006"), checked)
        s.add(stream(d), doc.DraftReadyForSigning(document_id=d, version=version, file_sha256="b" * 64),
              checked.replace(second=1))
        if signed is not None:
            s.add(stream(d), doc.DocumentSigned(
                document_id=d, version=version, signer_id="nv-001", algorithm="ed25519", key_id="nv-001-dev",
                signature="c2ln", signed_content={}, content_sha256="c" * 64, file_sha256="b" * 64), signed, "nv-001")

    def issue(d, number, when):
        s.add(stream(d), doc.DocumentIssued(
            document_id=d, version=1, year=2026, number=number, symbol=f"{number}/KH-STTTT", doc_type="KH",
            summary="Kế hoạch công tác", recipients=("Các phòng",), signer_id="nv-001",
            issued_on=when.date(), file_sha256="b" * 64), when, "nv-008")

    draft(o1, 1, "nv-029", "cntt", at(MON, "09:00"))
    through_signing(o1, 1, (at(MON, "10:00"), at(MON, "11:00"), at(MON, "15:00")))
    issue(o1, 1, at(MON, "16:00"))  # 7 hours after submission
    draft(o2, 1, "nv-018", "khtc", at(MON, "14:00"))
    through_signing(o2, 1, (at(TUE, "08:00"), at(TUE, "09:00"), at(TUE, "10:00")))
    issue(o2, 2, at(WED, "08:00"))  # 42 hours after submission
    draft(o3, 1, "nv-024", "bcvt", at(TUE, "10:00"))
    s.add(stream(o3), doc.DraftReturned(document_id=o3, version=1, stage="content", reviewer_id="nv-022",
                                        comments="Bổ sung số liệu"), at(TUE, "15:00"), "nv-022")
    draft(o3, 2, "nv-024", "bcvt", at(WED, "09:00"))
    through_signing(o3, 2, (at(WED, "10:00"), at(WED, "11:00"), None))  # awaiting signature
    draft(o4, 1, "nv-009", "vp", at(WED, "13:00"))


def _tasks(s: Stream) -> None:
    t1, t2, t3 = (uuid.UUID(int=200 + i) for i in range(3))
    stream = lambda t: doc.task_stream(TENANT, t)  # noqa: E731
    s.add(stream(t1), doc.TaskAssigned(task_id=t1, title="Rà soát hệ thống", assignee_id="nv-029",
                                       division_id="cntt", assigned_by="nv-027", due_date=TUE), at(MON, "09:00"))
    s.add(stream(t2), doc.TaskAssigned(task_id=t2, title="Báo cáo số liệu", assignee_id="nv-024",
                                       division_id="bcvt", assigned_by="nv-022", due_date=TUE), at(MON, "09:30"))
    s.add(stream(t3), doc.TaskAssigned(task_id=t3, title="Chuẩn bị họp", assignee_id="nv-008",
                                       division_id="vp", assigned_by="nv-004", due_date=date(2026, 3, 10)),
          at(TUE, "10:00"))
    s.add(stream(t1), doc.TaskCompleted(task_id=t1, assignee_id="nv-029"), at(TUE, "16:00"), "nv-029")
    s.add(stream(t2), doc.TaskOverdue(task_id=t2, assignee_id="nv-024", division_id="bcvt", due_date=TUE,
                                      as_of=at(WED, "07:05"), working_days_late=1), at(WED, "07:05"))
    s.add(stream(t3), doc.TaskProgressReported(task_id=t3, assignee_id="nv-008", percent=50), at(WED, "10:00"))
    meeting = uuid.UUID(int=300)
    s.add(doc.meeting_stream(TENANT, meeting), doc.MeetingScheduled(
        meeting_id=meeting, title="Giao ban tuần", starts_at=at(WED, "08:00"), join_at=at(WED, "07:45"),
        ends_at=at(WED, "09:00"), link="https://meet.example/giao-ban", chair_id="nv-001",
        invitees=("nv-004", "nv-027"), organiser_id="nv-004"), at(TUE, "08:00"), "nv-004")


def _notifications(s: Stream) -> None:
    def outcome(channel: str, when: datetime, failed: bool = False) -> None:
        delivery = uuid.uuid4()
        facts = dict(delivery_id=delivery, notification_id=uuid.uuid4(), source_event_id=uuid.uuid4(),
                     source_event_type="LeaveRequested", kind="LeaveRequested", recipient_id="nv-027",
                     channel=channel, attempts=1)
        event = nt.NotificationFailed(**facts, reason="550 mailbox unavailable") if failed else nt.NotificationSent(**facts)
        s.add(nt.delivery_stream(delivery), event, when)

    for hhmm in ("09:00", "09:01", "15:00"):
        outcome("web", at(MON, hhmm, 30))
    outcome("email", at(MON, "16:00", 30))
    outcome("email", at(MON, "16:01"))
    outcome("email", at(MON, "16:02"), failed=True)
    outcome("bot", at(TUE, "08:00"))
    outcome("bot", at(TUE, "08:01"))
    s.add(nt.person_stream(TENANT, "nv-027"), nt.NotificationsRead(person_id="nv-027",
                                                                    notification_ids=(uuid.uuid4(),)), at(TUE, "08:05"))


def week() -> list[Envelope]:
    s = Stream()
    _directory(s)
    _rosters(s)
    _presence(s)
    _leave(s)
    _documents(s)
    _tasks(s)
    _notifications(s)
    return s.envelopes


# --- getting the week to reporting -------------------------------------------------------


async def publish(namespace: str, envelopes: list[Envelope], seed: int | None = 6) -> None:
    """Straight to the events exchange, as the services' relays would, shuffled unless `seed`
    is None: reporting's figures must not depend on the order events arrive in (other
    consumers, which check each stream's order, need `seed=None`)."""
    import asyncio
    import random

    import aio_pika

    from shared.relay import envelope_message
    from tests.conftest import AMQP_URL

    shuffled = list(envelopes)
    if seed is not None:
        random.Random(seed).shuffle(shuffled)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{namespace}.events", ensure=False)
        if seed is None:  # one at a time: confirms gathered may be published out of order
            for e in shuffled:
                await exchange.publish(envelope_message(e, {}), routing_key=e.routing_key)
        else:
            await asyncio.gather(*(exchange.publish(envelope_message(e, {}), routing_key=e.routing_key)
                                   for e in shuffled))


async def stored_facts(runtime) -> int:
    async with runtime.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM report_events")


async def store_as_published(runtime, envelopes: list[Envelope]) -> None:
    """Put envelopes into a service's event store as if it had appended them at their times
    (`EventStore.append` stamps the present): its relay then publishes them as usual."""
    from shared.eventstore import APPEND_LOCK, NOTIFY_CHANNEL

    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        position = await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
        await conn.executemany(
            "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, "
            "schema_version, tenant, occurred_at, actor, correlation_id, trace_context, payload) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '{}', $11)",
            [(position + i, e.stream_id, e.stream_version, e.event_id, e.event_type, e.schema_version, e.tenant,
              e.occurred_at, e.actor, e.correlation_id, json.dumps(e.payload, ensure_ascii=False))
             for i, e in enumerate(envelopes, 1)],
        )
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
