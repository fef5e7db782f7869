"""The roster book as the deciders see it: the read tables turned back into the plain values
`services.roster.rosters` decides on, the department's roster lock, and appending to the book.

Every decision about rosters (submit, compile, approve, return, coverage gaps) first takes the
department's roster lock, then reads these tables and appends in the same transaction. The
tables are updated in the transaction that appends, so under the lock they are exactly the
state the roster stream has reached.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

import asyncpg

from shared.commands import NotFound, UnitOfWork
from shared.contracts import Event
from shared.contracts import roster as ev
from shared.directory import Directory
from shared.eventstore import APPEND_LOCK
from services.roster.rosters import CompiledRoster, DayState, Delegation, OpenGap
from services.roster.rules import DaySheet, DivisionInfo, Organisation


async def lock(conn: asyncpg.Connection, tenant: str) -> None:
    """Serialises roster decisions of one department until the transaction ends.

    The event store's append lock is taken first (every decision appends, so it would be taken
    anyway): commands decided together hold it from their transaction's start, and with the two
    locks always taken in that order a batch and the leave consumer cannot deadlock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock(hashtextextended($2, 0))",
        APPEND_LOCK, ev.roster_stream(tenant),
    )


async def append(uow: UnitOfWork, events: list[Event]) -> None:
    """Append to the department's roster stream; under the lock its version cannot move."""
    await lock(uow.conn, uow.tenant)  # re-entrant: callers that decided under it hold it already
    stream = ev.roster_stream(uow.tenant)
    await uow.append(stream, await uow.stream_version(stream), events)


async def organisation(directory: Directory) -> Organisation:
    divisions = [DivisionInfo(r["division_id"], r["name"], r["kind"]) for r in await directory.divisions()]
    return Organisation.of(divisions, await directory.people())


async def on_leave(conn: asyncpg.Connection, tenant: str, days: Iterable[date]) -> dict[date, frozenset[str]]:
    rows = await conn.fetch(
        "SELECT day, person_id FROM roster_leave_days WHERE tenant = $1 AND day = ANY($2)",
        tenant, list(days),
    )
    out: dict[date, set[str]] = defaultdict(set)
    for r in rows:
        out[r["day"]].add(r["person_id"])
    return {d: frozenset(p) for d, p in out.items()}


async def sheets(conn: asyncpg.Connection, tenant: str, days: Iterable[date]) -> dict[date, DaySheet]:
    """Each day's current lists and who is on approved leave."""
    days = sorted(set(days))
    rows = await conn.fetch(
        "SELECT day, division_id, person_id, location, work_place, duty FROM roster_entries "
        "WHERE tenant = $1 AND day = ANY($2) ORDER BY day, division_id, person_id",
        tenant, days,
    )
    lists: dict[date, dict[str, list[ev.RosterEntry]]] = {d: defaultdict(list) for d in days}
    for r in rows:
        lists[r["day"]][r["division_id"]].append(ev.RosterEntry(
            person_id=r["person_id"], location=r["location"], work_place=r["work_place"], duty=r["duty"],
        ))
    leave = await on_leave(conn, tenant, days)
    return {
        d: DaySheet(d, {div: tuple(entries) for div, entries in lists[d].items()}, leave.get(d, frozenset()))
        for d in days
    }


async def submissions(conn: asyncpg.Connection, tenant: str, days: Iterable[date]) -> dict[tuple[date, str], uuid.UUID]:
    rows = await conn.fetch(
        "SELECT day, division_id, submission_id FROM roster_lists WHERE tenant = $1 AND day = ANY($2)",
        tenant, list(days),
    )
    return {(r["day"], r["division_id"]): r["submission_id"] for r in rows}


async def day_states(conn: asyncpg.Connection, tenant: str, days: Iterable[date]) -> dict[date, DayState]:
    rows = await conn.fetch(
        "SELECT day, roster_id, status FROM roster_days WHERE tenant = $1 AND day = ANY($2)",
        tenant, list(days),
    )
    return {r["day"]: DayState(r["roster_id"], r["status"]) for r in rows}


async def compiled_roster(conn: asyncpg.Connection, tenant: str, roster_id: uuid.UUID) -> CompiledRoster:
    row = await conn.fetchrow(
        "SELECT roster_id, status, days, lists, missing FROM roster_rosters WHERE tenant = $1 AND roster_id = $2",
        tenant, roster_id,
    )
    if row is None:
        raise NotFound(f"Không tìm thấy danh sách tổng hợp {roster_id}.", f"No compiled roster {roster_id}.")
    lists = [ev.CompiledList.model_validate(x) for x in json.loads(row["lists"])]
    return CompiledRoster(
        roster_id=row["roster_id"], status=row["status"], days=tuple(sorted(row["days"])),
        submissions={(x.day, x.division_id): x.submission_id for x in lists},
        missing=tuple(ev.MissingList.model_validate(x) for x in json.loads(row["missing"])),
    )


async def delegations(conn: asyncpg.Connection, tenant: str, person_id: str) -> list[Delegation]:
    rows = await conn.fetch(
        "SELECT person_id, delegated_by, valid_from, valid_until FROM roster_delegations "
        "WHERE tenant = $1 AND person_id = $2",
        tenant, person_id,
    )
    return [Delegation(r["person_id"], r["delegated_by"], r["valid_from"], r["valid_until"]) for r in rows]


async def open_gaps(conn: asyncpg.Connection, tenant: str, application_id: uuid.UUID) -> dict[date, list[OpenGap]]:
    rows = await conn.fetch(
        "SELECT gap_id, roster_id, day, division_id, rule FROM roster_coverage_gaps "
        "WHERE tenant = $1 AND application_id = $2 AND closed_at IS NULL ORDER BY day, division_id, rule",
        tenant, application_id,
    )
    out: dict[date, list[OpenGap]] = defaultdict(list)
    for r in rows:
        out[r["day"]].append(OpenGap(r["gap_id"], r["roster_id"], r["day"], r["division_id"], r["rule"]))
    return out
