"""How roster's own events become its read tables: lists, compiled rosters, decisions,
coverage gaps (`rosters`) and check-ins and health declarations (`presence`)."""

from __future__ import annotations

import json

from shared.contracts import roster as ev
from shared.projection import Projection
from services.roster.rosters import APPROVED, COMPILED, RETURNED, SUPERSEDED

rosters = Projection(
    "rosters",
    ("roster_lists", "roster_entries", "roster_rosters", "roster_days", "roster_delegations",
     "roster_coverage_gaps"),
)
presence = Projection("presence", ("roster_presence", "roster_health"))


def _json(items) -> str:
    return json.dumps([i.model_dump(mode="json") for i in items], ensure_ascii=False)


@rosters.on(ev.RosterSubmitted)
async def _submitted(conn, env, e: ev.RosterSubmitted) -> None:
    for day_list in e.days:
        people = [x.person_id for x in day_list.entries]
        # The new list replaces the division's list for the day; someone who moved division
        # leaves their old division's list when the new one names them.
        await conn.execute(
            "DELETE FROM roster_entries WHERE tenant = $1 AND day = $2 "
            "AND (division_id = $3 OR person_id = ANY($4))",
            env.tenant, day_list.day, e.division_id, people,
        )
        await conn.executemany(
            "INSERT INTO roster_entries (tenant, day, person_id, division_id, location, work_place, "
            "duty, submission_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [(env.tenant, day_list.day, x.person_id, e.division_id, x.location, x.work_place, x.duty,
              e.submission_id) for x in day_list.entries],
        )
        await conn.execute(
            "INSERT INTO roster_lists (tenant, day, division_id, submission_id, revision, submitted_by, "
            "submitted_at) VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT (tenant, day, division_id) "
            "DO UPDATE SET submission_id = EXCLUDED.submission_id, revision = roster_lists.revision + 1, "
            "submitted_by = EXCLUDED.submitted_by, submitted_at = EXCLUDED.submitted_at",
            env.tenant, day_list.day, e.division_id, e.submission_id, e.submitted_by, env.occurred_at,
        )


@rosters.on(ev.RosterCompiled)
async def _compiled(conn, env, e: ev.RosterCompiled) -> None:
    await conn.execute(
        "INSERT INTO roster_rosters (tenant, roster_id, start_day, end_day, days, status, compiled_by, "
        "compiled_at, lists, missing, violations) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        env.tenant, e.roster_id, e.start, e.end, list(e.days), COMPILED, e.compiled_by, env.occurred_at,
        _json(e.lists), _json(e.missing), _json(e.violations),
    )
    await conn.execute(
        "UPDATE roster_rosters SET status = $3, superseded_by = $4 "
        "WHERE tenant = $1 AND roster_id = ANY($2) AND status = $5",
        env.tenant, list(e.supersedes), SUPERSEDED, e.roster_id, COMPILED,
    )
    await conn.executemany(
        "INSERT INTO roster_days (tenant, day, roster_id, status) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant, day) DO UPDATE SET roster_id = EXCLUDED.roster_id, status = EXCLUDED.status",
        [(env.tenant, day, e.roster_id, COMPILED) for day in e.days],
    )


async def _decided(conn, env, roster_id, status, reason, delegated_by=None, overridden=None) -> None:
    await conn.execute(
        "UPDATE roster_rosters SET status = $3, decided_by = $4, decided_at = $5, decision_reason = $6, "
        "delegated_by = $7, overridden = $8 WHERE tenant = $1 AND roster_id = $2",
        env.tenant, roster_id, status, env.actor, env.occurred_at, reason, delegated_by, overridden,
    )
    await conn.execute(
        "UPDATE roster_days SET status = $3 WHERE tenant = $1 AND roster_id = $2",
        env.tenant, roster_id, status,
    )


@rosters.on(ev.RosterApproved)
async def _approved(conn, env, e: ev.RosterApproved) -> None:
    await _decided(conn, env, e.roster_id, APPROVED, e.override_reason, e.delegated_by, _json(e.overridden))


@rosters.on(ev.RosterReturned)
async def _returned(conn, env, e: ev.RosterReturned) -> None:
    await _decided(conn, env, e.roster_id, RETURNED, e.reason)


@rosters.on(ev.RosterApprovalDelegated)
async def _delegated(conn, env, e: ev.RosterApprovalDelegated) -> None:
    await conn.execute(
        "INSERT INTO roster_delegations (tenant, person_id, valid_from, valid_until, delegated_by) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, person_id, valid_from) DO UPDATE SET "
        "valid_until = EXCLUDED.valid_until, delegated_by = EXCLUDED.delegated_by",
        env.tenant, e.person_id, e.valid_from, e.valid_until, e.delegated_by,
    )


@rosters.on(ev.CoverageGapRecorded)
async def _gap(conn, env, e: ev.CoverageGapRecorded) -> None:
    await conn.execute(
        "INSERT INTO roster_coverage_gaps (tenant, gap_id, roster_id, day, division_id, rule, person_id, "
        "application_id, message, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        env.tenant, e.gap_id, e.roster_id, e.day, e.division_id, e.rule, e.person_id, e.application_id,
        e.message, env.occurred_at,
    )


@rosters.on(ev.CoverageGapClosed)
async def _gap_closed(conn, env, e: ev.CoverageGapClosed) -> None:
    await conn.execute(
        "UPDATE roster_coverage_gaps SET closed_at = $3 WHERE tenant = $1 AND gap_id = $2",
        env.tenant, e.gap_id, env.occurred_at,
    )


@presence.on(ev.CheckedIn)
async def _checked_in(conn, env, e: ev.CheckedIn) -> None:
    await conn.execute(
        "INSERT INTO roster_presence (tenant, day, person_id, session, division_id, checked_in_at, place, "
        "at_registered_place, late) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (tenant, day, person_id, session) DO UPDATE SET checked_in_at = EXCLUDED.checked_in_at, "
        "place = EXCLUDED.place, at_registered_place = EXCLUDED.at_registered_place, late = EXCLUDED.late",
        env.tenant, e.day, e.person_id, e.session, e.division_id, e.at, e.place, e.at_registered_place,
        e.late,
    )


@presence.on(ev.CheckInMissed)
async def _missed(conn, env, e: ev.CheckInMissed) -> None:
    await conn.execute(
        "INSERT INTO roster_presence (tenant, day, person_id, session, division_id, missed_deadline) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, day, person_id, session) "
        "DO UPDATE SET missed_deadline = EXCLUDED.missed_deadline",
        env.tenant, e.day, e.person_id, e.session, e.division_id, e.deadline,
    )


@presence.on(ev.HealthDeclared)
async def _health(conn, env, e: ev.HealthDeclared) -> None:
    await conn.execute(
        "INSERT INTO roster_health (tenant, day, person_id, status, note, declared_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, day, person_id) DO UPDATE SET "
        "status = EXCLUDED.status, note = EXCLUDED.note, declared_at = EXCLUDED.declared_at",
        env.tenant, e.day, e.person_id, e.status, e.note, env.occurred_at,
    )
