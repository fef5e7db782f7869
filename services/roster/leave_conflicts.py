"""When leave is approved, the person is off that day's lists; where that breaks an on-site rule
on an approved roster, a coverage gap is recorded. Cancelled leave puts them back and closes
the gaps it opened.

Fed by roster's `leave` subscription through the inbox. The rows of `roster_leave_days` are a
plain projection: rebuilt from the inbox, identical. Recording gaps is a decision, made once:
`roster_leave_checks` (not a projection table, so a rebuild never empties it) remembers each
leave event whose check ran, and a rebuild of this projection skips the check. The gap events
are appended to the roster stream in the inbox transaction, and roster's own projections are
applied to them there, so the read tables never lag the events.
"""

from __future__ import annotations

from shared.auth import Identity
from shared.commands import UnitOfWork
from shared.contracts import Envelope, Event
from shared.contracts import leave as lv
from shared.directory import Directory
from shared.eventstore import EventStore
from shared.projection import Projection
from services.roster import book
from services.roster.rosters import APPROVED, closed_gaps, coverage_gaps, rules_on

SYSTEM_ACTOR = "roster"


def leave_conflicts(own_projections: tuple[Projection, ...], store: EventStore) -> Projection:
    projection = Projection("leave", ("roster_leave_days",), source="leave")

    async def first_check(conn, env: Envelope) -> bool:
        return bool(await conn.fetchval(
            "INSERT INTO roster_leave_checks (event_id, tenant) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            env.event_id, env.tenant,
        ))

    async def record(conn, env: Envelope, events: list[Event]) -> None:
        # Caused by the leave event: its id is the causation (and correlation) of what follows.
        uow = UnitOfWork(conn, store, own_projections, Identity(SYSTEM_ACTOR, env.tenant), env.tenant,
                         env.event_id)
        await book.append(uow, events)

    @projection.on(lv.LeaveApproved)
    async def _approved(conn, env: Envelope, e: lv.LeaveApproved) -> None:
        if await first_check(conn, env):
            await book.lock(conn, env.tenant)
            states = await book.day_states(conn, env.tenant, e.working_dates)
            approved = sorted(d for d, s in states.items() if s.status == APPROVED)
            if approved:
                directory = Directory(conn, env.tenant)
                org, plans = await book.organisation(directory), await directory.plans()
                sheets = await book.sheets(conn, env.tenant, approved)
                await record(conn, env, [
                    gap
                    for day in approved
                    for gap in coverage_gaps(env.tenant, states[day].roster_id, rules_on(plans, day), org,
                                             sheets[day], e.person_id, e.application_id)
                ])
        await conn.executemany(
            "INSERT INTO roster_leave_days (tenant, application_id, person_id, day) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING",
            [(env.tenant, e.application_id, e.person_id, day) for day in e.working_dates],
        )

    @projection.on(lv.LeaveCancelled)
    async def _cancelled(conn, env: Envelope, e: lv.LeaveCancelled) -> None:
        await conn.execute(
            "DELETE FROM roster_leave_days WHERE tenant = $1 AND application_id = $2",
            env.tenant, e.application_id,
        )
        if not await first_check(conn, env):
            return
        await book.lock(conn, env.tenant)
        # With the leave rows gone the sheets show the person back on their lists.
        gaps = await book.open_gaps(conn, env.tenant, e.application_id)
        if not gaps:
            return
        directory = Directory(conn, env.tenant)
        org, plans = await book.organisation(directory), await directory.plans()
        sheets = await book.sheets(conn, env.tenant, gaps)
        closed = [
            c
            for day, open_ in sorted(gaps.items())
            for c in closed_gaps(open_, rules_on(plans, day), org, sheets[day], e.person_id, e.application_id)
        ]
        await record(conn, env, closed)

    return projection
