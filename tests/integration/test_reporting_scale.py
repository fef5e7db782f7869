"""Reporting at the size the issue names: a 300-person department in 15 divisions over 90 days
(~68,000 facts: lists, check-ins, health declarations, documents, tasks, leave), loaded into
reporting's store directly, then a period report for all 90 days asked over AMQP."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import date, datetime, timedelta
from datetime import time as dtime
from types import SimpleNamespace

import pytest

from services.reporting.app import ReportingService
from services.reporting.config import ReportingConfig
from services.reporting.domain import Fact
from services.reporting.projection import days_of
from shared.localtime import LOCAL_TZ

pytestmark = pytest.mark.integration
TENANT = "so-tttt-thanhhoa"
START, DAYS = date(2026, 1, 5), 90


def at(day: date, h: int, m: int = 0) -> datetime:
    return datetime.combine(day, dtime(h, m % 60), LOCAL_TZ)


def department(people: int = 300, divisions: int = 15, seed: int = 1) -> list[Fact]:
    rnd = random.Random(seed)
    facts: list[Fact] = []
    versions: dict[str, int] = {}

    def add(stream, event_type, payload, when):
        versions[stream] = versions.get(stream, 0) + 1
        facts.append(Fact(when, stream, versions[stream], event_type, payload))

    setup = at(START - timedelta(days=3), 8)
    add("dir", "DepartmentRegistered", {"name": "Sở Lao động - Thương binh và Xã hội tỉnh Thanh Hóa",
                                        "symbol": "SLĐTBXH"}, setup)
    divs = [f"d{i:02d}" for i in range(divisions)]
    staff: dict[str, list[str]] = {d: [] for d in divs}
    for d in divs:
        add("dir", "DivisionCreated", {"division_id": d, "name": f"Phòng số {d[1:]}", "kind": "division"}, setup)
    for i in range(people):
        d, pid = divs[i % divisions], f"p{i:03d}"
        staff[d].append(pid)
        roles = ["director"] if i == 0 else ["division_head"] if len(staff[d]) == 1 else ["staff"]
        add("dir", "PersonAdded", {"person_id": pid, "full_name": f"Cán bộ {i}", "division_id": d,
                                   "roles": roles}, setup)
    add("dir", "PlanActivated", {"plan_id": "p", "title": "Kế hoạch làm việc tại nhà",
                                 "effective_from": START.isoformat(), "sessions": [{}, {}]}, setup)
    for k in range(DAYS):
        day = START + timedelta(days=k)
        if day.weekday() >= 5:
            continue
        eve, iso = at(day - timedelta(days=1), 15), day.isoformat()
        for d in divs:
            entries = [{"person_id": p, "location": "on_site" if j == 0 else "home"} for j, p in enumerate(staff[d])]
            add("rosters", "RosterSubmitted", {"division_id": d, "days": [{"day": iso, "entries": entries}]}, eve)
        roster = str(uuid.UUID(int=k))
        add("rosters", "RosterCompiled", {"roster_id": roster, "days": [iso]}, eve + timedelta(hours=1))
        add("rosters", "RosterApproved", {"roster_id": roster, "approved_by": "p000"}, eve + timedelta(hours=2))
        for d in divs:
            for p in staff[d][1:]:
                stream = f"presence-{p}-{iso}"
                add(stream, "HealthDeclared", {"person_id": p, "day": iso, "status": "well"}, at(day, 6, 50))
                for session, hour in ((0, 7), (1, 13)):
                    if rnd.random() < 0.03:
                        add(stream, "CheckInMissed", {"person_id": p, "day": iso, "session": session}, at(day, hour, 30))
                    else:
                        add(stream, "CheckedIn", {"person_id": p, "day": iso, "session": session,
                                                  "at_registered_place": True}, at(day, hour, 5))
        for j in range(30):
            doc = f"in-{k}-{j}"
            add(doc, "DocumentReceived", {"document_id": doc, "received_on": iso}, at(day, 8, j))
            add(doc, "DocumentAssigned", {"document_id": doc, "division_id": rnd.choice(divs)}, at(day, 9, j))
            if rnd.random() < 0.9:
                add(doc, "DocumentHandled", {"document_id": doc}, at(day, 16, j))
        for j in range(10):
            doc = f"out-{k}-{j}"
            add(doc, "DraftSubmitted", {"document_id": doc, "division_id": rnd.choice(divs)}, at(day, 9, j))
            add(doc, "DraftReadyForSigning", {"document_id": doc}, at(day, 11, j))
            add(doc, "DocumentIssued", {"document_id": doc, "issued_on": iso}, at(day, 15, j))
        for j in range(20):
            task = f"task-{k}-{j}"
            add(task, "TaskAssigned", {"task_id": task, "division_id": rnd.choice(divs)}, at(day, 9, j))
            if rnd.random() < 0.7:
                add(task, "TaskCompleted", {"task_id": task}, at(day, 16, j))
        for j in range(3):
            application, p = str(uuid.uuid4()), rnd.choice(staff[rnd.choice(divs)][1:])
            later = (day + timedelta(days=2)).isoformat()
            add(f"leave-{p}", "LeaveRequested", {"application_id": application, "person_id": p, "division_id": "d00",
                                                 "working_dates": [later]}, at(day, 9, j))
            add(f"leave-{p}", "LeaveApproved", {"application_id": application}, at(day, 10, j))
    return facts


async def test_a_90_day_period_of_a_300_person_department_is_reported_within_seconds(system, tmp_path):
    runtime = await system.start(ReportingService(
        ReportingConfig(reports_dir=tmp_path / "reports"), publish_daily=False).definition())
    facts = department()
    assert len(facts) > 60_000
    rows = []
    for f in facts:
        day_from, day_to = days_of(SimpleNamespace(event_type=f.event_type, occurred_at=f.occurred_at), f.payload)
        rows.append((uuid.uuid4(), TENANT, f.occurred_at, "synthetic", f.stream_id, f.stream_version, f.event_type,
                     day_from, day_to, json.dumps(f.payload, ensure_ascii=False)))
    async with runtime.pool.acquire() as conn:
        await conn.copy_records_to_table("report_events", records=rows)

    end = START + timedelta(days=DAYS - 1)
    started = time.monotonic()
    reply = await system.send("reporting", "GenerateReport", {
        "kind": "period", "start": START.isoformat(), "end": end.isoformat()}, timeout=60)
    period_seconds = time.monotonic() - started
    assert reply.ok, reply.error
    totals = reply.result["report"]["totals"]
    assert totals["working_days"] == 65 and totals["on_site_person_days"] == 65 * 15
    assert totals["at_home_person_days"] + totals["on_leave_person_days"] == 65 * 285 and totals["documents_received"] == 65 * 30
    assert 0.96 < totals["check_ins"] / totals["expected_check_ins"] < 0.98
    started = time.monotonic()
    daily = await system.send("reporting", "GenerateReport", {"day": (end - timedelta(days=1)).isoformat()}, timeout=60)  # a Friday
    daily_seconds = time.monotonic() - started
    roster = daily.result["report"]["day"]["roster"] if daily.ok else None
    assert roster and roster["at_home"] + roster["on_leave"] == 285
    print(f"\n{len(facts)} facts; 90-day period report (JSON, HTML, PDF) in {period_seconds:.1f} s, "
          f"daily report in {daily_seconds:.1f} s")
    assert period_seconds < 20 and daily_seconds < 10
