"""Reading reporting's store: the facts a report needs, and nothing of anyone else's database."""

from __future__ import annotations

import json
from datetime import date, datetime

import asyncpg

from services.reporting.domain import FOLDED_TYPES, Department, Fact, cutoff, fold
from services.reporting.projection import DELIVERIES
from services.reporting.report import Deliveries

DIRECTORY_TYPES = ("DepartmentRegistered", "DivisionCreated", "DivisionRenamed", "PersonAdded",
                   "PersonRolesChanged", "PersonMoved", "PersonRemoved", "PlanActivated",
                   "PlanAmended", "PlanEnded", "HolidayAdded", "HolidayRemoved")


def _facts(rows) -> list[Fact]:
    return [Fact(r["occurred_at"], r["stream_id"], r["stream_version"], r["event_type"],
                 json.loads(r["payload"])) for r in rows]


async def load_window(
    conn: asyncpg.Connection, tenant: str, start: date, end: date, as_of: datetime | None
) -> tuple[list[Fact], Deliveries]:
    """Every fact up to the end of the window (or `as_of`) that is either lasting state or about
    a day inside it; deliveries counted per day and channel by the database."""
    limit = cutoff(end, as_of)
    rows = await conn.fetch(
        "SELECT occurred_at, stream_id, stream_version, event_type, payload::text AS payload "
        "FROM report_events WHERE tenant = $1 AND event_type = ANY($2::text[]) AND occurred_at <= $3 "
        "AND (day_to IS NULL OR (day_to >= $4 AND day_from <= $5))",
        tenant, sorted(FOLDED_TYPES), limit, start, end,
    )
    counted = await conn.fetch(
        "SELECT day_from, event_type, payload->>'channel' AS channel, count(*) AS n FROM report_events "
        "WHERE tenant = $1 AND event_type = ANY($2::text[]) AND day_from BETWEEN $3 AND $4 "
        "AND occurred_at <= $5 GROUP BY 1, 2, 3",
        tenant, list(DELIVERIES), start, end, limit,
    )
    return _facts(rows), {(r["day_from"], r["event_type"], r["channel"]): r["n"] for r in counted}


async def directory(conn: asyncpg.Connection, tenant: str, as_of: datetime | None = None) -> Department:
    """The department's divisions, people and plans (as of a moment, or now)."""
    rows = await conn.fetch(
        "SELECT occurred_at, stream_id, stream_version, event_type, payload::text AS payload "
        "FROM report_events WHERE tenant = $1 AND event_type = ANY($2::text[]) "
        "AND ($3::timestamptz IS NULL OR occurred_at <= $3)",
        tenant, list(DIRECTORY_TYPES), as_of,
    )
    return fold(tenant, _facts(rows))


async def tenants(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT tenant FROM report_events WHERE event_type = 'DepartmentRegistered' ORDER BY tenant"
    )
    return [r["tenant"] for r in rows]
