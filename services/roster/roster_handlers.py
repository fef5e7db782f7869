"""One function per roster command or query: authorise, take the roster lock, read the book,
decide (services.roster.rosters), append to the department's roster stream."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta

from shared.commands import DomainError, NotFound, UnitOfWork
from shared.directory import Directory
from services.roster import book, clock, rosters
from services.roster import commands as c
from services.roster.handlers import current_person, router
from services.roster.rosters import APPROVED, needs_list, working_days
from services.roster.rules import Organisation

QUERY_MAX_DAYS = 62


def _division(org: Organisation, division_id: str):
    division = org.divisions.get(division_id)
    if division is None:
        raise NotFound(f"Không có phòng {division_id}.", f"No division {division_id}.")
    return division


@router.command(c.SubmitRoster)
async def submit_roster(cmd: c.SubmitRoster, uow: UnitOfWork) -> dict:
    """The division head or a deputy registers who is on site and who works from home where."""
    directory = Directory(uow.conn, uow.tenant)
    actor = await current_person(uow)
    org = await book.organisation(directory)
    division = _division(org, cmd.division_id)
    acting = await directory.acts_for_head(actor.person_id, division.division_id, clock.now().date())
    rosters.check_may_submit(actor, division, acting)
    await book.lock(uow.conn, uow.tenant)
    days = [d.day for d in cmd.days]
    states = await book.day_states(uow.conn, uow.tenant, days)
    earlier = await book.submissions(uow.conn, uow.tenant, days)
    event = rosters.submit_lists(
        cmd.submission_id, actor.person_id, division, cmd.days, org, await directory.plans(),
        frozenset(d for d, s in states.items() if s.status == APPROVED),
        await book.on_leave(uow.conn, uow.tenant, days),
    )
    await book.append(uow, [event])
    return {
        "submission_id": event.submission_id, "division_id": division.division_id,
        "days": sorted(days), "replaced": sorted(d for d, div in earlier if div == division.division_id),
    }


@router.command(c.CompileRoster)
async def compile_roster(cmd: c.CompileRoster, uow: UnitOfWork) -> dict:
    """The Chief of Office compiles every division's lists for a range, violations and gaps shown."""
    directory = Directory(uow.conn, uow.tenant)
    actor = await current_person(uow)
    org = await book.organisation(directory)
    office = next((d.division_id for d in org.divisions.values() if d.kind == "office"), None)
    acting = office is not None and await directory.acts_for_head(actor.person_id, office, clock.now().date())
    rosters.check_may_compile(actor, acting)
    await book.lock(uow.conn, uow.tenant)
    plans = await directory.plans()
    days = working_days(cmd.start, min(cmd.end, cmd.start + timedelta(days=31)), plans)
    event = rosters.compile_roster(
        cmd.roster_id, actor.person_id, cmd.start, cmd.end, org, plans,
        await book.sheets(uow.conn, uow.tenant, days), await book.submissions(uow.conn, uow.tenant, days),
        await book.day_states(uow.conn, uow.tenant, days),
    )
    await book.append(uow, [event])
    return {
        "roster_id": event.roster_id, "days": event.days, "lists": len(event.lists),
        "missing": [m.model_dump(mode="json") for m in event.missing],
        "violations": [v.model_dump(mode="json") for v in event.violations],
        "supersedes": event.supersedes,
    }


async def _decider(uow: UnitOfWork) -> tuple[str, str | None]:
    actor = await current_person(uow)
    delegations = await book.delegations(uow.conn, uow.tenant, actor.person_id)
    return actor.person_id, rosters.check_may_decide(actor, delegations, clock.now().date())


@router.command(c.ApproveRoster)
async def approve_roster(cmd: c.ApproveRoster, uow: UnitOfWork) -> dict:
    """The Director (or a delegated deputy) approves; broken rules need an override reason."""
    approver, delegated_by = await _decider(uow)
    await book.lock(uow.conn, uow.tenant)
    roster = await book.compiled_roster(uow.conn, uow.tenant, cmd.roster_id)
    directory = Directory(uow.conn, uow.tenant)
    event = rosters.approve_roster(
        roster, approver, delegated_by, cmd.override_reason, await book.organisation(directory),
        await directory.plans(), await book.sheets(uow.conn, uow.tenant, roster.days),
        await book.submissions(uow.conn, uow.tenant, roster.days),
    )
    await book.append(uow, [event])
    return {"roster_id": cmd.roster_id, "status": APPROVED, "overridden": len(event.overridden),
            "delegated_by": delegated_by}


@router.command(c.ReturnRoster)
async def return_roster(cmd: c.ReturnRoster, uow: UnitOfWork) -> dict:
    """The Director (or a delegated deputy) sends the roster back with a reason."""
    decider, _ = await _decider(uow)
    await book.lock(uow.conn, uow.tenant)
    roster = await book.compiled_roster(uow.conn, uow.tenant, cmd.roster_id)
    await book.append(uow, [rosters.return_roster(roster, decider, cmd.reason)])
    return {"roster_id": cmd.roster_id, "status": "returned"}


@router.command(c.DelegateRosterApproval)
async def delegate_roster_approval(cmd: c.DelegateRosterApproval, uow: UnitOfWork) -> dict:
    director = await current_person(uow)
    deputy = await Directory(uow.conn, uow.tenant).person(cmd.person_id)
    event = rosters.delegate_approval(director, deputy if deputy and deputy.active else None,
                              cmd.valid_from, cmd.valid_until)
    await book.append(uow, [event])
    return event.model_dump(mode="json")


# --- queries: anyone in the department may read the rosters ----------------------------------


def _range(start: date, end: date) -> None:
    if end < start or (end - start).days >= QUERY_MAX_DAYS:
        raise DomainError(
            f"Khoảng ngày không hợp lệ (tối đa {QUERY_MAX_DAYS} ngày).",
            f"Invalid date range (at most {QUERY_MAX_DAYS} days).", code="invalid",
        )


@router.query(c.GetDayRoster)
async def get_day_roster(q: c.GetDayRoster, uow: UnitOfWork) -> dict:
    directory = Directory(uow.conn, uow.tenant)
    org = await book.organisation(directory)
    sheet = (await book.sheets(uow.conn, uow.tenant, [q.day]))[q.day]
    state = (await book.day_states(uow.conn, uow.tenant, [q.day])).get(q.day)
    wanted = [q.division_id] if q.division_id else sorted(org.divisions)

    def person(pid: str, division_id: str, **extra) -> dict:
        return {"person_id": pid, "full_name": org.name_of(pid), "division_id": division_id, **extra}

    present = [(d, e) for d, e in sheet.present() if d in wanted]
    listed = {e.person_id for entries in sheet.lists.values() for e in entries}
    members = [p for d in wanted for p in org.members(d)]
    return {
        "day": q.day,
        "working_day": bool(working_days(q.day, q.day, await directory.plans())),
        "status": state.status if state else "not_compiled",
        "roster_id": state.roster_id if state else None,
        "on_site": [person(e.person_id, d, duty=e.duty) for d, e in present if e.location == "on_site"],
        "at_home": [person(e.person_id, d, work_place=e.work_place) for d, e in present if e.location == "home"],
        "on_leave": [person(p.person_id, p.division_id) for p in members if p.person_id in sheet.on_leave],
        "unlisted": [person(p.person_id, p.division_id) for p in members
                     if p.person_id not in listed and p.person_id not in sheet.on_leave],
    }


@router.query(c.GetDivisionLists)
async def get_division_lists(q: c.GetDivisionLists, uow: UnitOfWork) -> dict:
    _range(q.start, q.end)
    directory = Directory(uow.conn, uow.tenant)
    _division(await book.organisation(directory), q.division_id)
    days = working_days(q.start, q.end, await directory.plans())
    meta = {
        r["day"]: r for r in await uow.conn.fetch(
            "SELECT day, submission_id, revision, submitted_by, submitted_at FROM roster_lists "
            "WHERE tenant = $1 AND division_id = $2 AND day = ANY($3)", uow.tenant, q.division_id, days)
    }
    sheets = await book.sheets(uow.conn, uow.tenant, days)
    def day_lists(d: date) -> dict:
        submitted = dict(meta[d]) if d in meta else {"day": d}
        return {**submitted, "submitted": d in meta, "entries": [
            {**e.model_dump(mode="json"), "on_leave": e.person_id in sheets[d].on_leave}
            for e in sheets[d].lists.get(q.division_id, ())
        ]}

    return {"division_id": q.division_id, "days": [day_lists(d) for d in days]}


@router.query(c.GetRosterStatus)
async def get_roster_status(q: c.GetRosterStatus, uow: UnitOfWork) -> dict:
    _range(q.start, q.end)
    directory = Directory(uow.conn, uow.tenant)
    org = await book.organisation(directory)
    days = working_days(q.start, q.end, await directory.plans())
    states = await book.day_states(uow.conn, uow.tenant, days)
    submitted = await book.submissions(uow.conn, uow.tenant, days)
    leave = await book.on_leave(uow.conn, uow.tenant, days)
    violations: dict[tuple, int] = defaultdict(int)
    for r in await uow.conn.fetch(
        "SELECT roster_id, violations FROM roster_rosters WHERE tenant = $1 AND roster_id = ANY($2)",
        uow.tenant, list({s.roster_id for s in states.values()}),
    ):
        for v in json.loads(r["violations"]):
            violations[(r["roster_id"], v["day"])] += 1
    gaps = await uow.conn.fetch(
        "SELECT day, count(*) AS n FROM roster_coverage_gaps WHERE tenant = $1 AND day = ANY($2) "
        "AND closed_at IS NULL GROUP BY day", uow.tenant, days)
    open_gaps = {r["day"]: r["n"] for r in gaps}
    out = []
    for d in days:
        state = states.get(d)
        out.append({
            "day": d,
            "status": state.status if state else "not_compiled",
            "roster_id": state.roster_id if state else None,
            "submitted": sorted(div for day, div in submitted if day == d),
            "missing": sorted(div for div in org.divisions if (d, div) not in submitted
                              and needs_list(org, div, leave.get(d, frozenset()))),
            "violations": violations[(state.roster_id, d.isoformat())] if state else 0,
            "open_gaps": open_gaps.get(d, 0),
        })
    return {"days": out}


@router.query(c.GetRoster)
async def get_roster(q: c.GetRoster, uow: UnitOfWork) -> dict:
    row = await uow.conn.fetchrow(
        "SELECT * FROM roster_rosters WHERE tenant = $1 AND roster_id = $2", uow.tenant, q.roster_id)
    if row is None:
        raise NotFound(f"Không tìm thấy danh sách tổng hợp {q.roster_id}.", f"No compiled roster {q.roster_id}.")
    result = dict(row)
    for column in ("lists", "missing", "violations", "overridden"):
        result[column] = json.loads(row[column]) if row[column] is not None else None
    result["days"] = sorted(row["days"])
    return result
