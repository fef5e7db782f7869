"""The missing check-in schedule: every minute, for each department with a plan, the service
runs DetectMissingCheckIns as the system.

Nothing is kept in memory between ticks: what was recorded is in the event store
(CheckInMissed, one per person and session) and how far detection got is in
`roster_presence_schedule`, so a restarted service catches up on deadlines it slept through.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from shared.auth import ADMIN_SCOPE, Identity
from shared.commands import UnitOfWork
from shared.observability import get_logger
from shared.runtime import ServiceRuntime
from services.roster import clock
from services.roster.commands import DetectMissingCheckIns
from services.roster.presence_handlers import detect_missing_check_ins

SYSTEM_ACTOR = "roster-scheduler"
log = get_logger("wfh.roster.scheduler")


async def detect_everywhere(runtime: ServiceRuntime, at: datetime) -> int:
    """One tick: detection for every department, each in its own transaction."""
    async with runtime.pool.acquire() as conn:
        tenants = [r["tenant"] for r in await conn.fetch("SELECT DISTINCT tenant FROM dir_plans ORDER BY 1")]
    recorded = 0
    for tenant in tenants:
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                uow = UnitOfWork(conn, runtime.store, runtime.definition.own_projections,
                                 Identity(SYSTEM_ACTOR, tenant, frozenset({ADMIN_SCOPE})), tenant, uuid.uuid4())
                result = await detect_missing_check_ins(DetectMissingCheckIns(at=at), uow)
            recorded += len(result["recorded"])
        except Exception:  # one department's failure must not stop the others; the next tick retries
            log.exception("missing check-in detection failed", tenant=tenant)
    if recorded:
        log.info("missing check-ins recorded", count=recorded)
    return recorded


def missing_check_in_schedule(interval_seconds: float = 60.0):
    async def missing_check_ins(runtime: ServiceRuntime) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            await detect_everywhere(runtime, clock.now())

    return missing_check_ins
