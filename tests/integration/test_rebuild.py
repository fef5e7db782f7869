"""Projections dropped and rebuilt from events come out identical to the live ones."""

import gc

import pytest

from ops.replay import rebuild, snapshot
from shared.contracts import registered_events
from shared.projection import FULL_COLLECTION_EVERY, Projection
from tests.conftest import eventually
from tests.integration.test_leave import (  # noqa: F401  (department is a fixture)
    HEAD, STAFF, department, request, sign_and_approve,
)

pytestmark = pytest.mark.integration

# Fed by tests/integration/test_roster_replay.py's scenario, empty in this one.
FED_ELSEWHERE = {("roster", "rosters"), ("roster", "presence")}


async def test_rebuild_of_every_projection_is_identical_to_live(system, department):
    approved = (await request(system, STAFF[0], "2037-01-06", "2037-01-07")).result["application_id"]
    assert (await sign_and_approve(system, HEAD, department[HEAD], approved)).ok
    rejected = (await request(system, STAFF[1], "2037-01-08", "2037-01-08")).result["application_id"]
    assert (await system.send("leave", "RejectLeave", {"application_id": rejected, "reason": "Trùng lịch trực"},
                              as_person=HEAD)).ok
    cancelled = (await request(system, STAFF[2], "2037-01-09", "2037-01-09", half_day="afternoon")).result
    assert (await system.send("leave", "CancelLeave", {"application_id": cancelled["application_id"]},
                              as_person=STAFF[2])).ok
    assert (await system.send("leave", "SetLeaveEntitlement", {"person_id": STAFF[3], "days_per_year": 14})).ok

    async def roster_consumed_approval_and_cancellation():
        async with system.runtimes["roster"].pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'leave'") == 2

    await eventually(roster_consumed_approval_and_cancellation)

    for service in ("roster", "leave"):
        runtime = system.runtimes[service]
        fed = [p for p in runtime.projections if (service, p.name) not in FED_ELSEWHERE]
        async with runtime.pool.acquire() as conn:
            live = {p.name: await snapshot(conn, p.tables) for p in runtime.projections}
        assert all(any(rows for rows in live[p.name].values()) for p in fed), live.keys()
        results = await rebuild(service, runtime.settings)
        assert results and all(identical for _, identical in results.values()), results
        assert all(results[p.name][0] > 0 for p in fed), results
        async with runtime.pool.acquire() as conn:
            # Emptied projections must not pass as identical: compare with what was there before.
            for projection in fed:
                assert await snapshot(conn, projection.tables) == live[projection.name]
                await conn.execute(f"TRUNCATE {', '.join(projection.tables)}")
                assert await snapshot(conn, projection.tables) != live[projection.name]
            for projection in runtime.projections:
                await projection.rebuild(conn, runtime.store)
                assert await snapshot(conn, projection.tables) == live[projection.name]


async def test_a_rebuild_holds_back_full_collections_and_restores_the_collector(system, department):
    """A replay keeps whole batches alive; full collections walking them again and again cost a
    third of a rebuild's time. The collector is as it was afterwards, even when it fails."""
    runtime = system.runtimes["roster"]
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    probe = Projection("gc_probe", ("gc_probe",))
    failing = Projection("gc_probe_failing", ("gc_probe",))

    async def record(conn, envelope, _event):
        seen.append(gc.get_threshold())
        await conn.execute("INSERT INTO gc_probe (position) VALUES ($1)", envelope.global_position)

    async def fail(_conn, _envelope, _event):
        raise RuntimeError("a handler's bug")

    for cls in registered_events().values():
        if cls.owner == "roster":
            probe.on(cls)(record)
            failing.on(cls)(fail)
    async with runtime.pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE gc_probe (position bigint)")
        applied = await probe.rebuild(conn, runtime.store)
        assert applied > 0 and await conn.fetchval("SELECT count(*) FROM gc_probe") == applied
        assert gc.get_threshold() == before
        assert seen and all(t[:2] == before[:2] and t[2] >= FULL_COLLECTION_EVERY > before[2] for t in seen)
        with pytest.raises(RuntimeError, match="a handler's bug"):
            await failing.rebuild(conn, runtime.store)
        assert gc.get_threshold() == before
