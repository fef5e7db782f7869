"""The report's figures, as plain JSON: per day (the daily report) and over a period (totals,
per-division totals and day-by-day trends). Pure: the folded department in, a dict out.

Each day's figures are taken from the state at the end of that day (or at `as_of`, when that
is earlier): a daily report of a past day reads as it did that evening, and later events do
not rewrite it (unless they are about that day and happened before its end).

Definitions (the README has them for readers):
- on site / at home: the division's current list for the day (its latest submission),
  without the people on approved leave that day; on leave: approved, not cancelled.
- check-in rate: check-ins of home workers over home workers x the plan's sessions.
- documents in progress: incoming not yet handled, plus outgoing drafts not issued and not
  awaiting signature; awaiting signature: ready for signing, not yet signed; overdue: an
  overdue notice for the current assignment and not handled.
- tasks open: assigned, not completed; overdue: past due (the documents service's notice).
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, datetime

from services.reporting.domain import (
    DEPARTMENT_LEADER_ROLES, LEADING_ROLES, Department, Fact, cutoff, days_between,
)

HEALTH_STATUSES = ("well", "symptoms", "close_contact", "positive")
CHANNELS = ("web", "bot", "email")
# (day, "NotificationSent" | "NotificationFailed", channel) -> count
Deliveries = dict[tuple[date, str, str], int]


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _median_hours(hours: list[float]) -> float | None:
    return round(statistics.median(hours), 1) if hours else None


def _person(department: Department, person_id: str) -> dict:
    return {"person_id": person_id, "name": department.name_of(person_id)}


def _roster_state(department: Department, day: date, has_lists: bool) -> tuple[str, object]:
    roster = department.rosters.get(department.day_roster.get(day, ""))
    if roster is None or roster.status == "superseded":
        return ("not_compiled" if has_lists else "no_lists"), None
    return {"awaiting": "awaiting_approval"}.get(roster.status, roster.status), roster


def _lead_hours(department: Department, day: date) -> list[float]:
    """Hours from a draft's first submission to its issue, for what was issued that day."""
    return [
        (d.issued_at - d.submitted_at).total_seconds() / 3600
        for d in department.issued.get(day, ()) if d.submitted_at is not None
    ]


def day_figures(department: Department, day: date, deliveries: Deliveries) -> dict:
    on_leave = {a.person_id: a.division_id for a in department.leave.values()
                if a.status == "approved" and day in a.working_dates}
    plan = department.plan_for(day)
    sessions = plan.sessions if plan else 0
    check_ins = department.check_ins.get(day, {})
    lists = {division_id: department.lists.get((day, division_id)) for division_id in department.divisions}
    state, roster = _roster_state(department, day, any(v is not None for v in lists.values()))
    violations = [v for v in (roster.violations if roster else ()) if v["day"] == day.isoformat()]
    gaps = [g for g in department.gaps.values() if g.day == day]

    rows, home_people, on_site_people = [], set(), []
    for division in department.divisions.values():
        entries = lists[division.division_id]
        here = [e for e in entries or () if e["person_id"] not in on_leave]
        on_site = [e["person_id"] for e in here if e["location"] == "on_site"]
        at_home = [e["person_id"] for e in here if e["location"] == "home"]
        home_people.update(at_home)
        on_site_people += on_site
        checked = sum(1 for (person, _) in check_ins if person in at_home)
        rows.append({
            "division_id": division.division_id,
            "name": division.name,
            "submitted": entries is not None,
            "on_site": len(on_site),
            "at_home": len(at_home),
            "on_leave": sum(1 for d in on_leave.values() if d == division.division_id),
            "leaders_on_site": [department.name_of(p) for p in on_site
                                if department.roles_of(p) & LEADING_ROLES],
            "violations": sum(1 for v in violations if v.get("division_id") == division.division_id),
            "coverage_gaps": sum(1 for g in gaps if g.open and g.division_id == division.division_id),
            "expected_check_ins": len(at_home) * sessions,
            "check_ins": checked,
        })
    working = department.is_working_day(day)

    expected = len(home_people) * sessions
    checked_in = {k: v for k, v in check_ins.items() if k[0] in home_people}
    missed = sorted(department.missed.get(day, ()),
                    key=lambda k: (department.people[k[0]].division_id if k[0] in department.people else "",
                                   department.name_of(k[0]), k[1]))
    health = Counter(department.health.get(day, {}).values())

    open_documents = [d for d in department.documents.values() if d.open]
    open_tasks = [t for t in department.tasks.values() if not t.done]
    flow = department.flows.get(day, Counter())

    def delivered(kind: str, channel: str | None = None) -> int:
        return sum(n for (d, k, c), n in deliveries.items()
                   if d == day and k == kind and channel in (None, c))

    return {
        "day": day.isoformat(),
        "working_day": working,
        "holiday": department.calendar.get(day),
        "roster": {
            "state": state,
            "roster_id": roster.roster_id if roster else None,
            "decided_by": _person(department, roster.decided_by) if roster and roster.decided_by else None,
            "decided_at": roster.decided_at.isoformat() if roster and roster.decided_at else None,
            "return_reason": roster.reason if roster else None,
            "overridden": sum(1 for v in roster.overridden if v["day"] == day.isoformat()) if roster else 0,
            "divisions": rows,
            "on_site": sum(r["on_site"] for r in rows),
            "at_home": sum(r["at_home"] for r in rows),
            "on_leave": len(on_leave),
            "department_leaders_on_site": [
                department.name_of(p) for p in on_site_people
                if department.roles_of(p) & DEPARTMENT_LEADER_ROLES],
            "missing_divisions": [{"division_id": r["division_id"], "name": r["name"]}
                                  for r in rows if not r["submitted"]] if working else [],
            "violations": [
                {"division_id": v.get("division_id"), "division": department.division_name(v.get("division_id")),
                 "rule": v["rule"], "message": v["message"]}
                for v in violations],
            "coverage_gaps": [
                {"division_id": g.division_id, "division": department.division_name(g.division_id),
                 "rule": g.rule, **_person(department, g.person_id), "message": g.message, "open": g.open}
                for g in gaps],
        },
        "presence": {
            "sessions": sessions,
            "expected": expected,
            "checked_in": len(checked_in),
            "rate": _percent(len(checked_in), expected),
            "late": sum(1 for v in checked_in.values() if v["late"]),
            "away_from_registered_place": sum(1 for v in checked_in.values() if not v["at_registered_place"]),
            "missed": [
                {**_person(department, person), "division": department.division_name(
                    department.people[person].division_id if person in department.people else None),
                 "session": session, "checked_in_later": (person, session) in check_ins}
                for person, session in missed],
            "health": {"declared": sum(health.values()), **{s: health.get(s, 0) for s in HEALTH_STATUSES}},
        },
        "leave": {
            "requested": flow["leave_requested"],
            "approved": flow["leave_approved"],
            "rejected": flow["leave_rejected"],
            "cancelled": flow["leave_cancelled"],
            "pending": sum(1 for a in department.leave.values() if a.status == "pending"),
            "on_leave": sorted(
                ({**_person(department, p), "division": department.division_name(d)} for p, d in on_leave.items()),
                key=lambda x: (x["division"], x["name"])),
        },
        "documents": {
            "received": flow["documents_received"],
            "drafts_submitted": flow["drafts_submitted"],
            "in_progress": sum(1 for d in open_documents if not d.awaiting_signature),
            "incoming_open": sum(1 for d in open_documents if d.register == "incoming"),
            "drafts_open": sum(1 for d in open_documents if d.register == "outgoing" and not d.awaiting_signature),
            "overdue": sum(1 for d in open_documents if d.overdue),
            "awaiting_signature": sum(1 for d in open_documents if d.awaiting_signature),
            "issued": len(department.issued.get(day, ())),
            "median_hours_to_issue": _median_hours(_lead_hours(department, day)),
        },
        "tasks": {
            "assigned": flow["tasks_assigned"],
            "done": flow["tasks_done"],
            "open": len(open_tasks),
            "overdue": sum(1 for t in open_tasks if t.overdue),
        },
        "work_by_division": [
            {"division_id": d.division_id, "name": d.name,
             "documents_open": sum(1 for x in open_documents if x.division_id == d.division_id),
             "documents_overdue": sum(1 for x in open_documents if x.division_id == d.division_id and x.overdue),
             "tasks_open": sum(1 for t in open_tasks if t.division_id == d.division_id),
             "tasks_overdue": sum(1 for t in open_tasks if t.division_id == d.division_id and t.overdue)}
            for d in department.divisions.values()],
        "notifications": {
            "delivered": delivered("NotificationSent"),
            "failed": delivered("NotificationFailed"),
            "by_channel": {c: {"delivered": delivered("NotificationSent", c),
                               "failed": delivered("NotificationFailed", c)} for c in CHANNELS},
        },
    }


def trend(day: dict) -> dict:
    """One day of a period report: the figures a trend needs."""
    r, p = day["roster"], day["presence"]
    return {
        "day": day["day"], "working_day": day["working_day"], "roster_state": r["state"],
        "on_site": r["on_site"], "at_home": r["at_home"], "on_leave": r["on_leave"],
        "missing_lists": len(r["missing_divisions"]), "violations": len(r["violations"]),
        "coverage_gaps": sum(1 for g in r["coverage_gaps"] if g["open"]),
        "expected_check_ins": p["expected"], "check_ins": p["checked_in"], "check_in_rate": p["rate"],
        "missed_check_ins": len(p["missed"]),
        "leave_requested": day["leave"]["requested"], "leave_approved": day["leave"]["approved"],
        "leave_rejected": day["leave"]["rejected"],
        "documents_received": day["documents"]["received"], "documents_issued": day["documents"]["issued"],
        "tasks_done": day["tasks"]["done"],
        "notifications_delivered": day["notifications"]["delivered"],
        "notifications_failed": day["notifications"]["failed"],
    }


def _period_totals(days: list[dict], lead_hours: list[float]) -> dict:
    working = [d for d in days if d["working_day"]]
    last = days[-1]

    def total(section: str, key: str, among: list[dict] = days) -> int:
        return sum(d[section][key] for d in among)

    expected, checked = total("presence", "expected"), total("presence", "checked_in")
    on_site, at_home = total("roster", "on_site", working), total("roster", "at_home", working)
    return {
        "days": len(days),
        "working_days": len(working),
        "days_approved": sum(1 for d in working if d["roster"]["state"] == "approved"),
        "on_site_person_days": on_site,
        "at_home_person_days": at_home,
        "on_leave_person_days": total("roster", "on_leave", working),
        "average_on_site": round(on_site / len(working), 1) if working else None,
        "average_at_home": round(at_home / len(working), 1) if working else None,
        "missing_lists": sum(len(d["roster"]["missing_divisions"]) for d in working),
        "violations": sum(len(d["roster"]["violations"]) for d in working),
        "coverage_gaps": sum(1 for d in days for g in d["roster"]["coverage_gaps"] if g["open"]),
        "expected_check_ins": expected,
        "check_ins": checked,
        "check_in_rate": _percent(checked, expected),
        "missed_check_ins": sum(len(d["presence"]["missed"]) for d in days),
        "late_check_ins": total("presence", "late"),
        "leave_requested": total("leave", "requested"),
        "leave_approved": total("leave", "approved"),
        "leave_rejected": total("leave", "rejected"),
        "leave_cancelled": total("leave", "cancelled"),
        "leave_pending": last["leave"]["pending"],
        "documents_received": total("documents", "received"),
        "drafts_submitted": total("documents", "drafts_submitted"),
        "documents_issued": total("documents", "issued"),
        "median_hours_to_issue": _median_hours(lead_hours),
        "documents_in_progress": last["documents"]["in_progress"],
        "documents_overdue": last["documents"]["overdue"],
        "awaiting_signature": last["documents"]["awaiting_signature"],
        "tasks_assigned": total("tasks", "assigned"),
        "tasks_done": total("tasks", "done"),
        "tasks_open": last["tasks"]["open"],
        "tasks_overdue": last["tasks"]["overdue"],
        "notifications_delivered": total("notifications", "delivered"),
        "notifications_failed": total("notifications", "failed"),
    }


def _division_totals(days: list[dict]) -> list[dict]:
    working = [d for d in days if d["working_day"]]
    if not days:
        return []
    out = []
    for row in days[-1]["roster"]["divisions"]:
        mine = [r for d in working for r in d["roster"]["divisions"] if r["division_id"] == row["division_id"]]
        expected = sum(r["expected_check_ins"] for r in mine)
        checked = sum(r["check_ins"] for r in mine)
        out.append({
            "division_id": row["division_id"], "name": row["name"],
            "on_site_person_days": sum(r["on_site"] for r in mine),
            "at_home_person_days": sum(r["at_home"] for r in mine),
            "on_leave_person_days": sum(r["on_leave"] for r in mine),
            "missing_lists": sum(1 for r in mine if not r["submitted"]),
            "violations": sum(r["violations"] for r in mine),
            "expected_check_ins": expected, "check_ins": checked, "check_in_rate": _percent(checked, expected),
        })
    return out


def build(
    tenant: str,
    facts: list[Fact],
    start: date,
    end: date,
    *,
    kind: str,
    as_of: datetime | None = None,
    deliveries: Deliveries | None = None,
) -> dict:
    """The report of `tenant` for [start, end] from its facts; `kind` "daily" keeps the day's
    whole detail, "period" the totals, per-division totals and the trend of each day."""
    facts = sorted(facts, key=lambda f: f.order)
    department = Department(tenant)
    deliveries = deliveries or {}
    position, days, lead_hours = 0, [], []
    for day in days_between(start, end):
        limit = cutoff(day, as_of)
        while position < len(facts) and facts[position].occurred_at <= limit:
            department.apply(facts[position])
            position += 1
        days.append(day_figures(department, day, deliveries))
        lead_hours += _lead_hours(department, day)
    plan = department.plan_for(end) or department.plan_for(start)
    chief = department.chief_of_office()
    report = {
        "kind": kind,
        "tenant": tenant,
        "department": {"name": department.name or tenant, "symbol": department.symbol},
        "start": start.isoformat(),
        "end": end.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "data_as_of": department.last_at.isoformat() if department.last_at else None,
        "plan": {"plan_id": plan.plan_id, "title": plan.title} if plan else None,
        "chief_of_office": chief.full_name if chief else None,
    }
    if kind == "daily":
        report["day"] = days[-1]
    else:
        report["totals"] = _period_totals(days, lead_hours)
        report["divisions"] = _division_totals(days)
        report["trend"] = [trend(d) for d in days]
    return report
