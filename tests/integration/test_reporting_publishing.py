"""The daily report published every working day at the configured time, once, remembered
across restarts, caught up after downtime; notify tells the Director and the Chief of Office."""

from __future__ import annotations

import importlib
from datetime import date

import pytest

from services.reporting import facts
from services.reporting.app import ReportingService
from services.reporting.config import ReportingConfig
from services.reporting.publishing import DailyPublisher
from tests.conftest import eventually
from tests.integration.reporting_scenario import WED, at, publish, stored_facts, week

pytestmark = pytest.mark.integration
THU, FRI, SAT = date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 7)


async def test_daily_report_published_once_per_working_day_and_sent_to_the_director(system, tmp_path, monkeypatch):
    monkeypatch.setenv("WFH_NOTIFY_HTTP_PORT", "0")
    notify = await system.start(importlib.import_module("services.notify.app").definition())
    now = [at(WED, "16:29")]
    service = ReportingService(ReportingConfig(reports_dir=tmp_path / "reports", clock=lambda: now[0]),
                               publish_daily=False)
    reporting = await system.start(service.definition())
    envelopes = week()
    await publish(system.namespace, envelopes, seed=None)  # notify checks each stream's order

    async def ready():
        async with notify.pool.acquire() as conn:
            people = await conn.fetchval("SELECT count(*) FROM dir_people")
        # At least the scenario: notify's own events (NotificationSent...) may already be there too.
        return people == 46 and await stored_facts(reporting) >= len(envelopes)

    await eventually(ready, timeout=30)
    folded = []  # departments whose calendar was folded from their directory events
    fold = facts.directory

    async def counted(conn, tenant, *args):
        folded.append(tenant)
        return await fold(conn, tenant, *args)

    monkeypatch.setattr(facts, "directory", counted)
    assert await service.publisher.tick(reporting) == []  # 16:29: not yet (publish_at 16:30)
    assert folded == []  # nor could anything be due: no calendar read
    now[0] = at(WED, "16:45")
    published = await service.publisher.tick(reporting)
    assert folded
    assert [(e.day, e.on_site, e.at_home, e.on_leave, e.check_in_percent, e.missing_lists, e.documents_overdue,
             e.tasks_overdue) for e in published] == [(WED, 7, 33, 0, 0.0, 1, 1, 1)]
    assert open(published[0].pdf_path, "rb").read().startswith(b"%PDF")
    assert published[0].title == "Báo cáo tình hình thực hiện làm việc trực tuyến ngày 04/03/2026"
    folded.clear()
    assert await service.publisher.tick(reporting) == []
    assert await DailyPublisher(service.config).tick(reporting) == []  # a restarted loop remembers

    now[0] = at(THU, "09:00")
    assert await service.publisher.tick(reporting) == []
    assert folded == []  # published up to today, or today's not due yet: no calendar read
    now[0] = at(SAT, "18:00")  # down Thursday and Friday afternoon: both published late, not Saturday
    assert [e.day for e in await service.publisher.tick(reporting)] == [THU, FRI]
    listed = await system.send("reporting", "ListPublishedReports", {}, as_person="nv-001")
    assert [r["day"] for r in listed.result] == ["2026-03-06", "2026-03-05", "2026-03-04"]

    async def told():
        async with notify.pool.acquire() as conn:
            rows = await conn.fetch("SELECT recipient_id, title FROM notifications WHERE kind = 'ReportPublished'")
        return sorted((r["recipient_id"], r["title"]) for r in rows) if len(rows) == 6 else None

    assert (await eventually(told, timeout=20))[:2] == [
        ("nv-001", "Báo cáo tình hình thực hiện làm việc trực tuyến ngày 04/03/2026"),
        ("nv-001", "Báo cáo tình hình thực hiện làm việc trực tuyến ngày 05/03/2026")]
    async with notify.pool.acquire() as conn:
        recipients = {r["recipient_id"] for r in await conn.fetch(
            "SELECT recipient_id FROM notifications WHERE kind = 'ReportPublished'")}
    assert recipients == {"nv-001", "nv-004"}  # the Director and the Chief of Office
