"""How leave events become the `leave_applications` and `leave_entitlements` read tables."""

from __future__ import annotations

from shared.contracts import leave as ev
from shared.projection import Projection

applications = Projection("leave_applications", ("leave_applications", "leave_entitlements"))


@applications.on(ev.LeaveEntitlementSet)
async def _entitlement(conn, env, e: ev.LeaveEntitlementSet) -> None:
    await conn.execute(
        "INSERT INTO leave_entitlements (tenant, person_id, days_per_year) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant, person_id) DO UPDATE SET days_per_year = EXCLUDED.days_per_year",
        env.tenant, e.person_id, e.days_per_year,
    )


@applications.on(ev.LeaveRequested)
async def _requested(conn, env, e: ev.LeaveRequested) -> None:
    await conn.execute(
        "INSERT INTO leave_applications (tenant, application_id, person_id, division_id, start_date, "
        "end_date, half_day, working_dates, days, reason, status, requested_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)",
        env.tenant, e.application_id, e.person_id, e.division_id, e.start_date, e.end_date,
        e.half_day, list(e.working_dates), e.days, e.reason, env.occurred_at,
    )


async def _decide(conn, env, application_id, status, **columns) -> None:
    await conn.execute(
        "UPDATE leave_applications SET status = $3, decided_by = $4, decided_at = $5, "
        "decision_reason = $6, content_sha256 = $7, signature = $8, key_id = $9 "
        "WHERE tenant = $1 AND application_id = $2",
        env.tenant, application_id, status, env.actor, env.occurred_at,
        columns.get("reason"), columns.get("content_sha256"), columns.get("signature"),
        columns.get("key_id"),
    )


@applications.on(ev.LeaveApproved)
async def _approved(conn, env, e: ev.LeaveApproved) -> None:
    await _decide(
        conn, env, e.application_id, "approved", content_sha256=e.content_sha256,
        signature=e.signature, key_id=e.key_id,
    )


@applications.on(ev.LeaveRejected)
async def _rejected(conn, env, e: ev.LeaveRejected) -> None:
    await _decide(conn, env, e.application_id, "rejected", reason=e.reason)


@applications.on(ev.LeaveCancelled)
async def _cancelled(conn, env, e: ev.LeaveCancelled) -> None:
    # The earlier decision (and its signature) stays on record beside the cancellation.
    await conn.execute(
        "UPDATE leave_applications SET status = 'cancelled', cancelled_at = $3, cancel_reason = $4 "
        "WHERE tenant = $1 AND application_id = $2",
        env.tenant, e.application_id, env.occurred_at, e.reason,
    )
