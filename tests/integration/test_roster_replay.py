"""Roster's projections dropped and rebuilt come out identical to the live ones, and a rebuild
of the consumed leave projection records no coverage gap a second time."""

from datetime import date, datetime

import pytest

from ops.replay import rebuild, snapshot
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually
from tests.integration.roster_helpers import (
    CHIEF, DEPUTY_DIRECTORS, DIRECTOR, MONDAY, TUESDAY, FixedClock, approved_days, compile_, members, ok,
    roster_events, submit_all,
)
from tests.integration.test_roster_leave import ON_SITE, approved_leave, with_leave  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


async def event_count(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM events")


async def test_rebuilt_roster_projections_equal_live_and_append_nothing(system, with_leave, monkeypatch):
    clock = FixedClock(monkeypatch, datetime(2037, 1, 5, 7, 10, tzinfo=LOCAL_TZ))
    ok(await system.send("roster", "AddHoliday", {"day": "2037-01-30", "name": "Nghỉ bù"}, as_person=CHIEF))
    ok(await system.send("roster", "DelegateRosterApproval", {
        "person_id": DEPUTY_DIRECTORS[0], "valid_from": "2037-01-01", "valid_until": "2037-01-31"},
        as_person=DIRECTOR))
    await approved_days(system, [MONDAY, TUESDAY], on_site={"khtc": [ON_SITE]})
    wednesday = date(2037, 1, 7)
    await submit_all(system, [wednesday])
    returned = ok(await compile_(system, wednesday, wednesday))["roster_id"]
    ok(await system.send("roster", "ReturnRoster", {"roster_id": returned, "reason": "Xem lại"}, as_person=DIRECTOR))

    home = members("cntt")[1:]
    for person in home[:3]:
        ok(await system.send("roster", "CheckIn", {}, as_person=person))
    ok(await system.send("roster", "DeclareHealth", {"status": "well"}, as_person=home[0]))
    ok(await system.send("roster", "DetectMissingCheckIns", {"at": clock.set(MONDAY, 7, 45).isoformat()}))

    kept = await approved_leave(system, with_leave, ON_SITE, MONDAY)
    cancelled = await approved_leave(system, with_leave, ON_SITE, TUESDAY)
    await eventually(lambda: _gaps_are(system, 2))
    ok(await system.send("leave", "CancelLeave", {"application_id": cancelled}, as_person=ON_SITE))
    await eventually(lambda: roster_events(system, "CoverageGapClosed"))
    assert kept

    runtime = system.runtimes["roster"]
    async with runtime.pool.acquire() as conn:
        live = {p.name: await snapshot(conn, p.tables) for p in runtime.projections}
        events_before = await event_count(conn)
    assert set(live) == {"directory", "rosters", "presence", "leave"}
    for name, tables in live.items():
        assert all(rows for table, rows in tables.items() if table not in ("dir_acting_heads",)), name

    results = await rebuild("roster", runtime.settings)
    assert all(identical for _, identical in results.values()), results
    assert all(count > 0 for count, _ in results.values()), results
    async with runtime.pool.acquire() as conn:
        assert await event_count(conn) == events_before
        for projection in runtime.projections:
            await conn.execute(f"TRUNCATE {', '.join(projection.tables)}")
            assert await snapshot(conn, projection.tables) != live[projection.name]
            await projection.rebuild(conn, runtime.store)
            assert await snapshot(conn, projection.tables) == live[projection.name], projection.name
        assert await event_count(conn) == events_before
    assert len(await roster_events(system, "CoverageGapRecorded")) == 2


async def _gaps_are(system, expected: int) -> bool:
    return len(await roster_events(system, "CoverageGapRecorded")) == expected
