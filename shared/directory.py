"""The organisation directory as every service sees it: a projection of roster's events.

Roster feeds it from its own event store; other services from their subscription to
roster's events. Reads go through `Directory`, which answers the organisational questions
authorisation needs (who heads a division, who acts for the head, who leads the department).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg

from shared.commands import NotFound, writes_one_person
from shared.contracts import roster as ev
from shared.projection import Projection

MIGRATIONS = Path(__file__).with_name("sql") / "directory"
TABLES = (
    "dir_departments", "dir_divisions", "dir_people", "dir_signing_keys", "dir_acting_heads",
    "dir_plans", "dir_holidays",
)


@dataclass(frozen=True)
class Person:
    person_id: str
    full_name: str
    email: str
    division_id: str
    roles: frozenset[str]
    locale: str
    active: bool

    @property
    def is_leader(self) -> bool:
        return bool(self.roles & ev.LEADER_ROLES)

    @property
    def is_director(self) -> bool:
        return "director" in self.roles

    @property
    def heads_division(self) -> bool:
        return bool(self.roles & {"division_head", "chief_of_office"})


@dataclass(frozen=True)
class Plan:
    plan_id: str
    title: str
    effective_from: date
    effective_until: date | None
    holidays: frozenset[date]  # the plan's own and the department calendar's
    sessions: tuple[ev.WorkingSession, ...] = ev.DEFAULT_SESSIONS
    onsite_rules: tuple[dict, ...] = ()
    check_in_grace_minutes: int = 30

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_until is None or day <= self.effective_until)

    def is_working_day(self, day: date) -> bool:
        return self.covers(day) and day.weekday() < 5 and day not in self.holidays


# The projection's writes of one person's row ($1 the tenant, $2 the person): a batch of
# commands that read its actors ahead forgets that person's row alone after one.
_ADD_PERSON = ("INSERT INTO dir_people (tenant, person_id, full_name, email, division_id, roles, locale) "
               "VALUES ($1, $2, $3, $4, $5, $6, $7)")
_CHANGE_ROLES = "UPDATE dir_people SET roles = $3 WHERE tenant = $1 AND person_id = $2"
_MOVE_PERSON = "UPDATE dir_people SET division_id = $3 WHERE tenant = $1 AND person_id = $2"
_REMOVE_PERSON = "UPDATE dir_people SET active = false WHERE tenant = $1 AND person_id = $2"
writes_one_person(_ADD_PERSON, _CHANGE_ROLES, _MOVE_PERSON, _REMOVE_PERSON)


def _person(row: asyncpg.Record) -> Person:
    return Person(
        row["person_id"], row["full_name"], row["email"], row["division_id"],
        frozenset(row["roles"]), row["locale"], row["active"],
    )


async def actor_of(uow) -> Person | None:
    """The person sending `uow`'s command as the directory knows them (None: not in it). In
    a batch of commands they were read with the batch's lock, all actors in one statement."""
    key = (uow.tenant, uow.identity.person_id)
    if uow.actors and key in uow.actors:
        row = uow.actors[key]
        return _person(row) if row is not None else None
    return await Directory(uow.conn, uow.tenant).person(uow.identity.person_id)


class Directory:
    def __init__(self, conn: asyncpg.Connection, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant

    async def department(self) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM dir_departments WHERE tenant = $1", self.tenant)

    async def person(self, person_id: str) -> Person | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM dir_people WHERE tenant = $1 AND person_id = $2", self.tenant, person_id
        )
        return _person(row) if row else None

    async def people(self, division_id: str | None = None) -> list[Person]:
        rows = await self.conn.fetch(
            "SELECT * FROM dir_people WHERE tenant = $1 AND active "
            "AND ($2::text IS NULL OR division_id = $2) ORDER BY person_id",
            self.tenant, division_id,
        )
        return [_person(r) for r in rows]

    async def divisions(self) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT * FROM dir_divisions WHERE tenant = $1 ORDER BY division_id", self.tenant
        )

    async def division(self, division_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT * FROM dir_divisions WHERE tenant = $1 AND division_id = $2",
            self.tenant, division_id,
        )

    async def acts_for_head(self, person_id: str, division_id: str, on: date) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT 1 FROM dir_acting_heads WHERE tenant = $1 AND division_id = $2 "
                "AND person_id = $3 AND valid_from <= $4 AND $4 <= valid_until",
                self.tenant, division_id, person_id, on,
            )
        )

    async def acting_heads(self, division_id: str, on: date) -> list[str]:
        """Who acts for the division's head on a day."""
        rows = await self.conn.fetch(
            "SELECT person_id FROM dir_acting_heads WHERE tenant = $1 AND division_id = $2 "
            "AND valid_from <= $3 AND $3 <= valid_until ORDER BY person_id",
            self.tenant, division_id, on,
        )
        return [r["person_id"] for r in rows]

    async def acting_head_of(self, person_id: str, on: date) -> frozenset[str]:
        """The divisions a person acts as head for on a day."""
        rows = await self.conn.fetch(
            "SELECT division_id FROM dir_acting_heads WHERE tenant = $1 AND person_id = $2 "
            "AND valid_from <= $3 AND $3 <= valid_until",
            self.tenant, person_id, on,
        )
        return frozenset(r["division_id"] for r in rows)

    async def active_person(self, person_id: str) -> Person:
        """The person, still on the staff, or NotFound (a refusal the caller reads)."""
        person = await self.person(person_id)
        if person is None or not person.active:
            raise NotFound(
                f"Không tìm thấy cán bộ {person_id} trong danh bạ của Sở.",
                f"No person {person_id} in the department's directory.",
            )
        return person

    async def public_key(self, key_id: str) -> tuple[str, str] | None:
        row = await self.conn.fetchrow(
            "SELECT person_id, public_key FROM dir_signing_keys WHERE tenant = $1 AND key_id = $2",
            self.tenant, key_id,
        )
        return (row["person_id"], row["public_key"]) if row else None

    async def plans(self) -> list[Plan]:
        rows = await self.conn.fetch(
            "SELECT * FROM dir_plans WHERE tenant = $1 ORDER BY effective_from", self.tenant
        )
        calendar = frozenset(h["day"] for h in await self.holidays())
        return [
            Plan(r["plan_id"], r["title"], r["effective_from"], r["effective_until"],
                 frozenset(r["holidays"]) | calendar,
                 tuple(ev.WorkingSession.model_validate(s) for s in json.loads(r["sessions"])),
                 tuple(json.loads(r["onsite_rules"])), r["check_in_grace_minutes"])
            for r in rows
        ]

    async def holidays(self) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT day, name FROM dir_holidays WHERE tenant = $1 ORDER BY day", self.tenant
        )


def directory_projection(source: str = "own") -> Projection:
    projection = Projection("directory", TABLES, source)

    @projection.on(ev.DepartmentRegistered)
    async def _department(conn, env, e: ev.DepartmentRegistered) -> None:
        await conn.execute(
            "INSERT INTO dir_departments (tenant, name, symbol) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant) DO UPDATE SET name = EXCLUDED.name, symbol = EXCLUDED.symbol",
            env.tenant, e.name, e.symbol,
        )

    @projection.on(ev.DivisionCreated)
    async def _division(conn, env, e: ev.DivisionCreated) -> None:
        await conn.execute(
            "INSERT INTO dir_divisions (tenant, division_id, name, kind) VALUES ($1, $2, $3, $4)",
            env.tenant, e.division_id, e.name, e.kind,
        )

    @projection.on(ev.DivisionRenamed)
    async def _renamed(conn, env, e: ev.DivisionRenamed) -> None:
        await conn.execute(
            "UPDATE dir_divisions SET name = $3 WHERE tenant = $1 AND division_id = $2",
            env.tenant, e.division_id, e.name,
        )

    @projection.on(ev.PersonAdded)
    async def _person_added(conn, env, e: ev.PersonAdded) -> None:
        await conn.execute(
            _ADD_PERSON,
            env.tenant, e.person_id, e.full_name, e.email, e.division_id, list(e.roles), e.locale,
        )

    @projection.on(ev.PersonRolesChanged)
    async def _roles(conn, env, e: ev.PersonRolesChanged) -> None:
        await conn.execute(
            _CHANGE_ROLES, env.tenant, e.person_id, list(e.roles),
        )

    @projection.on(ev.PersonMoved)
    async def _moved(conn, env, e: ev.PersonMoved) -> None:
        await conn.execute(
            _MOVE_PERSON, env.tenant, e.person_id, e.division_id,
        )

    @projection.on(ev.PersonRemoved)
    async def _removed(conn, env, e: ev.PersonRemoved) -> None:
        await conn.execute(
            _REMOVE_PERSON, env.tenant, e.person_id,
        )

    @projection.on(ev.SigningKeyRegistered)
    async def _key(conn, env, e: ev.SigningKeyRegistered) -> None:
        await conn.execute(
            "INSERT INTO dir_signing_keys (tenant, key_id, person_id, public_key) VALUES ($1, $2, $3, $4)",
            env.tenant, e.key_id, e.person_id, e.public_key,
        )

    @projection.on(ev.ActingHeadDesignated)
    async def _acting(conn, env, e: ev.ActingHeadDesignated) -> None:
        await conn.execute(
            "INSERT INTO dir_acting_heads (tenant, division_id, person_id, valid_from, valid_until) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            env.tenant, e.division_id, e.person_id, e.valid_from, e.valid_until,
        )

    @projection.on(ev.PlanActivated)
    async def _plan(conn, env, e: ev.PlanActivated) -> None:
        await conn.execute(
            "INSERT INTO dir_plans (tenant, plan_id, title, effective_from, effective_until, "
            "sessions, holidays, onsite_rules, check_in_grace_minutes) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            env.tenant, e.plan_id, e.title, e.effective_from, e.effective_until,
            json.dumps([s.model_dump(mode="json") for s in e.sessions]), list(e.holidays),
            json.dumps(list(e.onsite_rules), ensure_ascii=False), e.check_in_grace_minutes,
        )

    @projection.on(ev.PlanAmended)
    async def _plan_amended(conn, env, e: ev.PlanAmended) -> None:
        sessions = None if e.sessions is None else json.dumps([s.model_dump(mode="json") for s in e.sessions])
        rules = None if e.onsite_rules is None else json.dumps(list(e.onsite_rules), ensure_ascii=False)
        await conn.execute(
            "UPDATE dir_plans SET title = coalesce($3, title), sessions = coalesce($4::jsonb, sessions), "
            "holidays = coalesce($5, holidays), onsite_rules = coalesce($6::jsonb, onsite_rules), "
            "check_in_grace_minutes = coalesce($7, check_in_grace_minutes) "
            "WHERE tenant = $1 AND plan_id = $2",
            env.tenant, e.plan_id, e.title, sessions,
            None if e.holidays is None else list(e.holidays), rules, e.check_in_grace_minutes,
        )

    @projection.on(ev.HolidayAdded)
    async def _holiday_added(conn, env, e: ev.HolidayAdded) -> None:
        await conn.execute(
            "INSERT INTO dir_holidays (tenant, day, name) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant, day) DO UPDATE SET name = EXCLUDED.name",
            env.tenant, e.day, e.name,
        )

    @projection.on(ev.HolidayRemoved)
    async def _holiday_removed(conn, env, e: ev.HolidayRemoved) -> None:
        await conn.execute(
            "DELETE FROM dir_holidays WHERE tenant = $1 AND day = $2", env.tenant, e.day
        )

    @projection.on(ev.PlanEnded)
    async def _plan_ended(conn, env, e: ev.PlanEnded) -> None:
        await conn.execute(
            "UPDATE dir_plans SET effective_until = $3 WHERE tenant = $1 AND plan_id = $2",
            env.tenant, e.plan_id, e.effective_until,
        )

    return projection
