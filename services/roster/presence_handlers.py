"""One function per presence command or query: check-ins, health declarations, and recording
who has not checked in (the service's scheduler runs DetectMissingCheckIns every minute)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from shared.auth import Identity
from shared.commands import DomainError, Forbidden, UnitOfWork
from shared.contracts import roster as ev
from shared.directory import Directory, Person, Plan
from shared.localtime import vn_date
from services.roster import book, clock
from services.roster import commands as c
from services.roster.handlers import current_person, router
from services.roster.presence import (
    HEALTH_VI, PresenceDay, check_home_worker, detection_days, due_windows, session_windows, window_at,
)
from services.roster.rosters import APPROVED, plan_on


def _working_plan(plans: list[Plan], day: date) -> Plan:
    plan = plan_on(plans, day)
    if plan is None or not plan.is_working_day(day):
        raise DomainError(
            f"Ngày {vn_date(day)} không phải ngày làm việc của kế hoạch nào.",
            f"{day} is not a working day of any plan.", code="not_working_day",
        )
    return plan


async def _presence_day(uow: UnitOfWork, person_id: str, day: date) -> tuple[PresenceDay, str, int]:
    stream = ev.presence_stream(uow.tenant, person_id, day)
    events, version = await uow.load(stream)
    return PresenceDay.from_events(person_id, day, events), stream, version


@router.command(c.CheckIn)
async def check_in(cmd: c.CheckIn, uow: UnitOfWork) -> dict:
    """A home worker checks in for the session under way, from their registered work place."""
    actor = await current_person(uow)
    now = clock.now()
    day = now.date()
    plan = _working_plan(await Directory(uow.conn, uow.tenant).plans(), day)
    placed = (await book.sheets(uow.conn, uow.tenant, [day]))[day]
    division_id, entry = next(
        ((d, e) for d, entries in placed.lists.items() for e in entries if e.person_id == actor.person_id),
        (actor.division_id, None),
    )
    entry = check_home_worker(actor.full_name, day, entry, actor.person_id in placed.on_leave)
    state, stream, version = await _presence_day(uow, actor.person_id, day)
    windows = session_windows(day, plan.sessions, plan.check_in_grace_minutes)
    events = state.check_in(division_id, now, windows, cmd.place, entry.work_place)
    await uow.append(stream, version, events)
    # A second check-in in the same session adds nothing: answer with the first one.
    checked = events[0] if events else state.checked[window_at(windows, now).index]
    return {"day": day, "session": checked.session, "at": checked.at, "place": checked.place,
            "at_registered_place": checked.at_registered_place, "late": checked.late,
            "already_checked_in": not events}


def _todays_presence(_cmd, tenant: str, identity: Identity) -> list[str]:
    return [ev.presence_stream(tenant, identity.person_id, clock.now().date())]


@router.command(c.DeclareHealth, streams=_todays_presence)
async def declare_health(cmd: c.DeclareHealth, uow: UnitOfWork) -> dict:
    """Anyone in the department declares their health for today (a later one replaces it)."""
    actor = await current_person(uow)
    day = clock.now().date()
    # Declaring does not depend on what the day holds: its version is all that is read (a
    # person declaring again and again would otherwise have the whole day read each time).
    stream = ev.presence_stream(uow.tenant, actor.person_id, day)
    version = await uow.stream_version(stream)
    await uow.append(stream, version, PresenceDay(actor.person_id, day).declare_health(cmd.status, cmd.note))
    return {"day": day, "status": cmd.status, "status_vi": HEALTH_VI[cmd.status]}


@router.command(c.DetectMissingCheckIns)
async def detect_missing_check_ins(cmd: c.DetectMissingCheckIns, uow: UnitOfWork) -> dict:
    """Record each home worker of an approved day without a check-in once a session's deadline
    (start + the plan's grace) has passed; runs again harmlessly, catches up after downtime."""
    if not uow.identity.is_admin:
        raise Forbidden("Chỉ hệ thống (Tổ CNTT) chạy việc rà soát điểm danh.",
                        "Only the system (IT team) runs the check-in detection.")
    at = cmd.at or clock.now()
    checked_until = await uow.conn.fetchval(
        "SELECT checked_until FROM roster_presence_schedule WHERE tenant = $1", uow.tenant)
    plans = await Directory(uow.conn, uow.tenant).plans()
    recorded = []
    for day in detection_days(at, checked_until):
        plan = plan_on(plans, day)
        state = (await book.day_states(uow.conn, uow.tenant, [day])).get(day)
        if plan is None or not plan.is_working_day(day) or state is None or state.status != APPROVED:
            continue
        windows = due_windows(session_windows(day, plan.sessions, plan.check_in_grace_minutes), at)
        done = {(r["person_id"], r["session"]) for r in await uow.conn.fetch(
            "SELECT person_id, session FROM roster_presence WHERE tenant = $1 AND day = $2 "
            "AND (checked_in_at IS NOT NULL OR missed_deadline IS NOT NULL)", uow.tenant, day)}
        sheet = (await book.sheets(uow.conn, uow.tenant, [day]))[day]
        for division_id, entry in sheet.present():
            due = [w for w in windows if (entry.person_id, w.index) not in done]
            if entry.location != "home" or not due:
                continue
            presence, stream, version = await _presence_day(uow, entry.person_id, day)
            events = [e for w in due for e in presence.record_missed(division_id, w)]
            await uow.append(stream, version, events)
            recorded += [{"person_id": e.person_id, "day": e.day, "session": e.session} for e in events]
    await uow.conn.execute(
        "INSERT INTO roster_presence_schedule (tenant, checked_until) VALUES ($1, $2) ON CONFLICT (tenant) "
        "DO UPDATE SET checked_until = greatest(roster_presence_schedule.checked_until, EXCLUDED.checked_until)",
        uow.tenant, at)
    return {"at": at, "recorded": recorded}


# --- queries: leaders and the Office see everyone; heads and deputies their division -----------


async def _visible_division(uow: UnitOfWork, wanted: str | None) -> str | None:
    """The division the actor may look at (None: all)."""
    if uow.identity.is_admin:
        return wanted
    actor: Person = await current_person(uow)
    if actor.is_leader or "chief_of_office" in actor.roles:
        return wanted
    if actor.roles & {"division_head", "deputy_division_head"} and wanted in (None, actor.division_id):
        return actor.division_id
    raise Forbidden("Bạn chỉ xem được điểm danh của phòng mình (trưởng, phó phòng) hoặc toàn Sở (lãnh đạo, Văn phòng).",
                    "Heads and deputies see their own division's presence; leaders and the Office see all.")


async def _home_workers(uow: UnitOfWork, day: date, division_id: str | None) -> list[tuple[str, ev.RosterEntry]]:
    sheet = (await book.sheets(uow.conn, uow.tenant, [day]))[day]
    return [(d, e) for d, e in sheet.present()
            if e.location == "home" and division_id in (None, d)]


async def _presence_rows(uow: UnitOfWork, day: date) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in await uow.conn.fetch("SELECT * FROM roster_presence WHERE tenant = $1 AND day = $2", uow.tenant, day):
        out[r["person_id"]][r["session"]] = dict(r)
    return out


@router.query(c.ListMissingCheckIns)
async def list_missing_check_ins(q: c.ListMissingCheckIns, uow: UnitOfWork) -> dict:
    division_id = await _visible_division(uow, q.division_id)
    directory = Directory(uow.conn, uow.tenant)
    plan = _working_plan(await directory.plans(), q.day)
    org = await book.organisation(directory)
    now = clock.now()
    state = (await book.day_states(uow.conn, uow.tenant, [q.day])).get(q.day)
    rows = await _presence_rows(uow, q.day)
    workers = await _home_workers(uow, q.day, division_id)
    sessions = []
    for w in session_windows(q.day, plan.sessions, plan.check_in_grace_minutes):
        if w.starts > now or q.session not in (None, w.index):
            continue
        missing = [
            {"person_id": e.person_id, "full_name": org.name_of(e.person_id), "division_id": d,
             "work_place": e.work_place,
             "missed_recorded": bool(rows[e.person_id].get(w.index, {}).get("missed_deadline"))}
            for d, e in workers if not rows[e.person_id].get(w.index, {}).get("checked_in_at")
        ]
        sessions.append({"session": w.index, "starts": w.starts, "deadline": w.deadline, "missing": missing})
    return {"day": q.day, "status": state.status if state else "not_compiled", "sessions": sessions}


@router.query(c.GetPresence)
async def get_presence(q: c.GetPresence, uow: UnitOfWork) -> dict:
    division_id = await _visible_division(uow, q.division_id)
    org = await book.organisation(Directory(uow.conn, uow.tenant))
    rows = await _presence_rows(uow, q.day)
    health = await uow.conn.fetch(
        "SELECT person_id, status, note, declared_at FROM roster_health WHERE tenant = $1 AND day = $2 "
        "ORDER BY person_id", uow.tenant, q.day)
    return {
        "day": q.day,
        "home_workers": [
            {"person_id": e.person_id, "full_name": org.name_of(e.person_id), "division_id": d,
             "work_place": e.work_place,
             "sessions": [{k: v for k, v in row.items() if k not in ("tenant", "day", "person_id")}
                          for _, row in sorted(rows[e.person_id].items())]}
            for d, e in await _home_workers(uow, q.day, division_id)
        ],
        "health": [
            {**dict(h), "full_name": org.name_of(h["person_id"]), "status_vi": HEALTH_VI[h["status"]]}
            for h in health
            if division_id is None or (h["person_id"] in org.people
                                       and org.people[h["person_id"]].division_id == division_id)
        ],
    }
