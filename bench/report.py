"""Report generation time: a 90-day period report of a 300-person department.

The department is the one reporting's own scale test builds (tests/integration/
test_reporting_scale.py: 300 people in 15 divisions, 90 days of lists, approvals, check-ins,
misses, health declarations, documents, tasks and leave, ~67,000 facts). They are written into
the running reporting service's store (`report_events`, its projection of the stream) by COPY,
as that test does: feeding them through the commands would take longer than the whole
benchmark. Then `GenerateReport` for the period (and one daily report) is asked over AMQP and
timed until the reply (JSON, HTML and PDF written).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import asyncpg

from bench.common import say
from bench.driver import Driver


async def run(driver: Driver, reporting_url: str) -> dict:
    """Load the department's 90 days into the running reporting service and time the reports."""
    from services.reporting.projection import days_of
    from tests.integration import test_reporting_scale as scale  # the department reporting's test uses

    facts, tenant = scale.department(), "bench-report-300"
    people = sum(1 for f in facts if f.event_type == "PersonAdded")
    rows = [(uuid.uuid4(), tenant, f.occurred_at, "bench", f.stream_id, f.stream_version, f.event_type,
             *days_of(SimpleNamespace(event_type=f.event_type, occurred_at=f.occurred_at), f.payload),
             json.dumps(f.payload, ensure_ascii=False)) for f in facts]
    conn = await asyncpg.connect(reporting_url)
    try:
        await conn.copy_records_to_table("report_events", records=rows, columns=(
            "event_id", "tenant", "occurred_at", "source", "stream_id", "stream_version", "event_type",
            "day_from", "day_to", "payload"))
        await conn.execute("ANALYZE report_events")
    finally:
        await conn.close()
    start, end = scale.START, scale.START + timedelta(days=scale.DAYS - 1)
    say(f"  {len(rows):,} facts of a {people}-person department loaded; GenerateReport {start}..{end}…")
    started = time.perf_counter()
    reply, _ = await driver.send("reporting", "GenerateReport",
                                 {"kind": "period", "start": start.isoformat(), "end": end.isoformat()},
                                 tenant=tenant, admin=True, record=False, timeout=300)
    period_seconds = time.perf_counter() - started
    started = time.perf_counter()
    daily, _ = await driver.send("reporting", "GenerateReport", {"kind": "daily", "day": (end - timedelta(days=1)).isoformat()},
                                 tenant=tenant, admin=True, record=False, timeout=300)
    daily_seconds = time.perf_counter() - started
    out = {"people": people, "days": scale.DAYS, "facts": len(rows),
           "period_seconds": round(period_seconds, 2), "daily_seconds": round(daily_seconds, 2),
           "ok": reply.ok and daily.ok}
    if reply.ok:
        totals = reply.result["report"]["totals"]
        out["working_days"] = totals.get("working_days")
        out["check_ins"] = totals.get("check_ins")
    else:
        out["error"] = f"{reply.error.code}: {reply.error.message_en}"
    return out
