"""The lookups a service makes while it decides stay lookups by key as its tables grow: a
table that was tiny when a statement was first prepared (a service's first minutes, the
morning's burst) must not keep it scanning the whole table, under the append lock, once
thousands of rows came in."""

from datetime import datetime, time

import asyncpg
import pytest

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


async def test_the_stored_replies_are_read_by_key_after_the_table_grew_fast(system, monkeypatch):
    FixedClock(monkeypatch, datetime.combine(MONDAY, time(7, 5), LOCAL_TZ))
    runtime = await system.start(definition())
    await roster_department(system)
    early, late = STAFF[:8], STAFF[8:13]
    for person in early:  # the statements prepared, and used often enough to be planned once for all
        await declare(system, person)

    conn = await asyncpg.connect(runtime.settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO command_replies (command_id, tenant, command_type, actor, reply) "
            "SELECT gen_random_uuid(), 'other', 'DeclareHealth', 'someone', '{\"ok\": true}' "
            "FROM generate_series(1, $1)", GROWN_BY)
        seq_before, idx_before = await scans(conn, "command_replies")
        for person in late:
            await declare(system, person)

        async def flushed():  # a backend reports its counts once idle
            seq, idx = await scans(conn, "command_replies")
            return (seq, idx) if seq > seq_before or idx >= idx_before + len(late) else None

        seq_after, idx_after = await eventually(flushed, timeout=15)
        assert (seq_after - seq_before, idx_after - idx_before >= len(late)) == (0, True)
    finally:
        await conn.close()
