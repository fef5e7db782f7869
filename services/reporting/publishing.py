"""The daily report, published every working day at the configured local time.

What was published is persisted, never held in memory: each (department, day) has its own
stream `report-<tenant>-daily-<day>`, and publishing appends `ReportPublished` at version 0.
A restart, a second process or a retried tick finds the stream taken and publishes nothing;
`report_publications` (the own projection) answers "what is the last day published". After
downtime the loop catches up the working days it missed (at most `catch_up_days` back).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

from shared.auth import Identity
from shared.commands import UnitOfWork
from shared.contracts.reporting import ReportPublished, publication_stream
from shared.eventstore import ConcurrencyError
from shared.localtime import LOCAL_TZ
from shared.observability import get_logger
from services.reporting import facts
from services.reporting.config import ReportingConfig
from services.reporting.generate import generate

log = get_logger("wfh.reporting.publishing")
ACTOR = "reporting"


class DailyPublisher:
    def __init__(self, config: ReportingConfig) -> None:
        self.config = config

    async def loop(self, runtime) -> None:
        """Background loop of the service (ServiceDefinition.background)."""
        while True:
            await self.tick(runtime)
            await asyncio.sleep(self.config.poll_seconds)

    async def due_days(self, conn, tenant: str) -> list[date]:
        """Working days whose report is due and not yet published, oldest first."""
        now = self.config.clock().astimezone(LOCAL_TZ)
        today = now.date()
        last = await conn.fetchval(
            "SELECT max(day) FROM report_publications WHERE tenant = $1 AND kind = 'daily'", tenant)
        first = today if last is None else max(last + timedelta(days=1), today - timedelta(days=self.config.catch_up_days))
        if first > today or (first == today and now.time() < self.config.publish_at):
            # Nothing can be due: most ticks of a day. The calendar is not folded for them
            # (every directory event of the department, each minute, for every department).
            return []
        department = await facts.directory(conn, tenant)
        days, day = [], first
        while day <= today:
            if department.is_working_day(day) and (day < today or now.time() >= self.config.publish_at):
                days.append(day)
            day += timedelta(days=1)
        return days

    async def tick(self, runtime) -> list[ReportPublished]:
        """Publish every report that is due; returns what this call published."""
        published = []
        async with runtime.pool.acquire() as conn:
            for tenant in await facts.tenants(conn):
                for day in await self.due_days(conn, tenant):
                    event = await self.publish(runtime, conn, tenant, day)
                    if event is not None:
                        published.append(event)
        return published

    async def publish(self, runtime, conn, tenant: str, day: date) -> ReportPublished | None:
        made = await generate(conn, tenant, "daily", day, day, as_of=None, locale=self.config.locale,
                              reports_dir=self.config.reports_dir)
        figures = made.report["day"]
        event = ReportPublished(
            report_id=uuid.uuid5(uuid.NAMESPACE_URL, f"wfh:report:{tenant}:daily:{day.isoformat()}"),
            kind="daily", day=day, start=day, end=day, title=made.title,
            html_path=made.paths["html"], pdf_path=made.paths["pdf"], pdf_sha256=made.pdf_sha256,
            on_site=figures["roster"]["on_site"], at_home=figures["roster"]["at_home"],
            on_leave=figures["roster"]["on_leave"], check_in_percent=figures["presence"]["rate"],
            missing_lists=len(figures["roster"]["missing_divisions"]),
            violations=len(figures["roster"]["violations"]),
            documents_overdue=figures["documents"]["overdue"], tasks_overdue=figures["tasks"]["overdue"],
        )
        command_id = uuid.uuid4()
        try:
            async with conn.transaction():
                uow = UnitOfWork(conn, runtime.store, runtime.definition.own_projections,
                                 Identity(ACTOR, tenant), tenant, command_id)
                await uow.append(publication_stream(tenant, "daily", day), 0, [event])
        except ConcurrencyError:
            return None  # published already (another process, or an earlier try)
        log.info("report published", tenant=tenant, day=day.isoformat(), pdf=made.paths["pdf"])
        return event
