"""Reporting's queries: generate a report on request, list the published ones."""

from __future__ import annotations

import base64
from datetime import timedelta

from shared.commands import CommandRouter, DomainError, Forbidden, UnitOfWork
from shared.localtime import local_today
from services.reporting import commands as c
from services.reporting import facts
from services.reporting.config import ReportingConfig
from services.reporting.domain import LEADING_ROLES, Department
from services.reporting.generate import generate

MAX_PERIOD_DAYS = 366


async def _reader(uow: UnitOfWork) -> Department:
    """Leaders, division heads and the Office read reports (and the IT team)."""
    department = await facts.directory(uow.conn, uow.tenant)
    if uow.identity.is_admin:
        return department
    person = department.people.get(uow.identity.person_id)
    division = department.divisions.get(person.division_id) if person else None
    if person is None or not person.active or not (
        person.roles & LEADING_ROLES or (division is not None and division.kind == "office")
    ):
        raise Forbidden(
            "Chỉ lãnh đạo Sở, lãnh đạo các phòng và Văn phòng Sở được xem báo cáo.",
            "Only department leaders, division heads and the Office may read reports.",
        )
    return department


def _window(q: c.GenerateReport, department: Department):
    today = local_today()
    if q.kind == "daily":
        day = q.day or today
        return day, day
    plan = department.plan_for(q.end or today) or next(
        iter(sorted(department.plans.values(), key=lambda p: p.effective_from)), None)
    start = q.start or (plan.effective_from if plan else today)
    end = q.end or (min(today, plan.effective_until) if plan and plan.effective_until else today)
    if end < start:
        raise DomainError(
            f"Ngày kết thúc {end:%d/%m/%Y} trước ngày bắt đầu {start:%d/%m/%Y}.",
            f"The end {end} precedes the start {start}.", code="invalid",
        )
    if end - start >= timedelta(days=MAX_PERIOD_DAYS):
        raise DomainError(
            f"Một báo cáo không quá {MAX_PERIOD_DAYS} ngày.",
            f"A report covers at most {MAX_PERIOD_DAYS} days.", code="invalid",
        )
    return start, end


def router_for(config: ReportingConfig) -> CommandRouter:
    router = CommandRouter()

    @router.query(c.GenerateReport)
    async def generate_report(q: c.GenerateReport, uow: UnitOfWork) -> dict:
        """The report as JSON, where its files were written, and a few summary lines."""
        department = await _reader(uow)
        start, end = _window(q, department)
        made = await generate(uow.conn, uow.tenant, q.kind, start, end, as_of=q.as_of, locale=q.locale,
                              reports_dir=config.reports_dir)
        result = {"title": made.title, "report": made.report, "files": made.paths,
                  "pdf_sha256": made.pdf_sha256, "summary": made.summary(q.locale)}
        if q.include_files:
            result["html_base64"] = base64.b64encode(made.html.encode()).decode()
            result["pdf_base64"] = base64.b64encode(made.pdf).decode()
        return result

    @router.query(c.ListPublishedReports)
    async def list_published(q: c.ListPublishedReports, uow: UnitOfWork) -> list[dict]:
        """Published reports, newest first."""
        await _reader(uow)
        rows = await uow.conn.fetch(
            "SELECT kind, day, report_id, title, html_path, pdf_path, pdf_sha256, published_at "
            "FROM report_publications WHERE tenant = $1 ORDER BY day DESC, kind LIMIT $2",
            uow.tenant, q.limit,
        )
        return [dict(r) for r in rows]

    return router
