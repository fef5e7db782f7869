"""The demo department with a 2020-style plan in 2037, and building blocks for roster scenarios."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

from services.roster import clock
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())
DIVISIONS = [d["id"] for d in DEMO["divisions"]]


def first(role: str, division: str | None = None, people=DEMO["people"]) -> str:
    return next(p["id"] for p in people
                if role in p["roles"] and (division is None or p["division_id"] == division))


def members(division: str, people=DEMO["people"]) -> list[str]:
    return sorted(p["id"] for p in people if p["division_id"] == division)


DIRECTOR = first("director")
DEPUTY_DIRECTORS = [p["id"] for p in DEMO["people"] if "deputy_director" in p["roles"]]
CHIEF = first("chief_of_office")
HEADS = {d: (DIRECTOR if d == "bgd" else first("division_head", d)) for d in DIVISIONS}

# Monday 05/01/2037 to Friday 27/02/2037; 12/01/2037 a holiday. The 2020 plan's rules.
MONDAY, TUESDAY = date(2037, 1, 5), date(2037, 1, 6)
RULES_2020 = [{"rule": "min_leaders_on_site", "count": 1}, {"rule": "min_staff_per_division_on_site", "count": 1}]
PLAN = {
    "plan_id": "kh-2037", "title": "Kế hoạch triển khai làm việc trực tuyến",
    "effective_from": "2037-01-05", "effective_until": "2037-02-27", "holidays": ["2037-01-12"],
    "onsite_rules": RULES_2020,
}


def place(person_id: str) -> str:
    return f"Nhà riêng của {person_id}, TP Thanh Hóa"


def entries(division: str, on_site=None, people=DEMO["people"], duties: dict | None = None) -> list[dict]:
    """A division's list: `on_site` (default: the division's first member) in, everyone else at home."""
    everyone = members(division, people)
    on_site = set(on_site if on_site is not None else everyone[:1])
    duties = duties or {}
    return [
        {"person_id": p, "location": "on_site", **({"duty": duties[p]} if p in duties else {})}
        if p in on_site else {"person_id": p, "location": "home", "work_place": place(p)}
        for p in everyone
    ]


def ok(reply):
    assert reply.ok, reply.error
    return reply.result


async def submit(system, division: str, days, on_site=None, as_person=None, people=DEMO["people"], duties=None):
    return await system.send("roster", "SubmitRoster", {
        "division_id": division,
        "days": [{"day": str(d), "entries": entries(division, on_site, people, duties)} for d in days],
    }, as_person=as_person or HEADS[division])


async def submit_all(system, days, on_site: dict | None = None, skip=()):
    for division in DIVISIONS:
        if division not in skip:
            ok(await submit(system, division, days, (on_site or {}).get(division)))


async def compile_(system, start, end, as_person=CHIEF):
    return await system.send("roster", "CompileRoster", {"start": str(start), "end": str(end)}, as_person=as_person)


async def roster_department(system, plan=PLAN):
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    ok(await system.send("roster", "ActivatePlan", plan, as_person=DIRECTOR))


async def approved_days(system, days, on_site=None) -> str:
    """Every division submits, the Office compiles, the Director approves: the roster id."""
    await submit_all(system, days, on_site)
    compiled = ok(await compile_(system, min(days), max(days)))
    assert compiled["violations"] == [] and compiled["missing"] == [], compiled
    ok(await system.send("roster", "ApproveRoster", {"roster_id": compiled["roster_id"]}, as_person=DIRECTOR))
    return compiled["roster_id"]


class FixedClock:
    """The roster service's clock, set by the test (the service runs in the test's process)."""

    def __init__(self, monkeypatch, moment: datetime) -> None:
        self.moment = moment
        monkeypatch.setattr(clock, "now", lambda: self.moment)

    def set(self, day: date, hh: int, mm: int = 0) -> datetime:
        self.moment = datetime(day.year, day.month, day.day, hh, mm, tzinfo=LOCAL_TZ)
        return self.moment


async def roster_events(system, *types: str) -> list[dict]:
    async with system.runtimes["roster"].pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type, payload FROM events WHERE event_type = ANY($1) ORDER BY global_position",
            list(types))
    return [{"type": r["event_type"], **json.loads(r["payload"])} for r in rows]


async def leave_knows_directory(system, keys: int, plans: int = 1) -> None:
    leave = system.runtimes["leave"]

    async def arrived():
        async with leave.pool.acquire() as conn:
            return (await conn.fetchval("SELECT count(*) FROM dir_signing_keys") == keys
                    and await conn.fetchval("SELECT count(*) FROM dir_plans") == plans)

    await eventually(arrived)
