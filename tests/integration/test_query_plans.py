"""The lookups a service makes while it decides or applies an event stay lookups by key as its
tables grow: a table that was tiny when a statement was first prepared (a service's first
minutes, the morning's burst) must not keep it scanning the whole table, under the append
lock or for every event consumed, once thousands of rows came in."""

from datetime import datetime, time

import asyncpg
import pytest

from services.reporting.app import ReportingService
from services.reporting.config import ReportingConfig
from services.roster.app import definition
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually
from tests.integration.roster_helpers import MONDAY, FixedClock, members, ok, roster_department

pytestmark = pytest.mark.integration

STAFF = members("cntt") + members("vp")
GROWN_BY = 20_000


async def scans(conn, table: str) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables WHERE relname = $1", table)
    return row["seq_scan"], row["idx_scan"]


async def declare(system, person: str) -> None:
    ok(await system.send("roster", "DeclareHealth", {"status": "well"}, as_person=person))


async def scans_after_growth(system, conn, table: str, grow: str, applied) -> tuple[int, bool]:
    """Declarations before and after `table` grows by `GROWN_BY` rows (`grow`): the sequential
    scans of it after, and whether each later declaration was looked up by key in it. Before,
    the table is analyzed while tiny, as autovacuum does to a small table after some fifty
    writes: the statements' plans made then see a table of one page, where a scan is cheapest."""
    early, late = STAFF[:8], STAFF[8:13]
    for i, person in enumerate(early):  # prepared, and used often enough to be planned once for all
        if i == 3:
            await eventually(lambda: applied(i), timeout=15)
            await conn.execute(f"ANALYZE {table}")
        await declare(system, person)
    await eventually(lambda: applied(len(early)), timeout=15)
    await conn.execute(grow, GROWN_BY)
    await conn.execute("SELECT pg_stat_force_next_flush()")  # this session's own counts, before the snapshot
    seq_before, idx_before = await scans(conn, table)
    for person in late:
        await declare(system, person)
    await eventually(lambda: applied(len(early) + len(late)), timeout=15)

    async def flushed():  # a backend reports its counts once idle
        seq, idx = await scans(conn, table)
        return (seq, idx) if seq > seq_before or idx >= idx_before + len(late) else None

    seq_after, idx_after = await eventually(flushed, timeout=15)
    return seq_after - seq_before, idx_after - idx_before >= len(late)


async def test_the_stored_replies_are_read_by_key_after_the_table_grew_fast(system, monkeypatch):
    FixedClock(monkeypatch, datetime.combine(MONDAY, time(7, 5), LOCAL_TZ))
    runtime = await system.start(definition())
    await roster_department(system)
    conn = await asyncpg.connect(runtime.settings.database_url)
    try:
        async def answered(count: int):  # read by key: a count of the replies would scan them
            return await conn.fetchval("SELECT count(*) FROM roster_health") >= count or None

        assert await scans_after_growth(
            system, conn, "command_replies",
            "INSERT INTO command_replies (command_id, tenant, command_type, actor, reply) "
            "SELECT gen_random_uuid(), 'other', 'DeclareHealth', 'someone', '{\"ok\": true}' "
            "FROM generate_series(1, $1)", answered) == (0, True)
    finally:
        await conn.close()


async def test_the_inbox_is_read_by_key_after_it_grew_fast(system, monkeypatch, tmp_path):
    FixedClock(monkeypatch, datetime.combine(MONDAY, time(7, 5), LOCAL_TZ))
    await system.start(definition())
    reporting = await system.start(ReportingService(ReportingConfig(reports_dir=tmp_path), publish_daily=False)
                                   .definition())
    await roster_department(system)
    conn = await asyncpg.connect(reporting.settings.database_url)
    try:
        async def applied(count: int):  # read from the projection: a count of the inbox would scan it
            return await conn.fetchval(
                "SELECT count(*) FROM report_events WHERE event_type = 'HealthDeclared'") >= count or None

        assert await scans_after_growth(
            system, conn, "inbox",
            "INSERT INTO inbox (consumer, event_id, stream_id, stream_version, envelope) "
            "SELECT 'events', gen_random_uuid(), 'roster-other-' || i, 1, '{}' "
            "FROM generate_series(1, $1) AS i", applied) == (0, True)
    finally:
        await conn.close()
