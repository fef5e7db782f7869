"""The hash chain on the real database: appends chain, checkpoints sign, tampering is found."""

import json

import asyncpg
import pytest

from ops import cli
from services.roster.app import definition as roster_service
from shared.eventstore import verify_store

pytestmark = pytest.mark.integration

DEMO = json.loads(open("services/roster/demo/department.json").read())
REENABLE = ("ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete, "
            "ENABLE ALWAYS TRIGGER events_no_truncate")


async def tamper(url: str, sql: str) -> None:
    """What a database superuser could do: switch the triggers off and rewrite history."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        await conn.execute(sql)
        await conn.execute(REENABLE)
    finally:
        await conn.close()


@pytest.fixture
async def roster(system, monkeypatch, tmp_path):
    monkeypatch.setenv("WFH_CHAIN_KEY_FILE", str(tmp_path / "chain.pem"))
    runtime = await system.start(roster_service(), chain_key_file=str(tmp_path / "chain.pem"))
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    assert await runtime.sign_chain() is not None
    monkeypatch.setenv("WFH_ROSTER_DATABASE_URL", runtime.settings.database_url)
    return runtime


async def verify(runtime, pinned=True):
    async with runtime.pool.acquire() as conn:
        return await verify_store(conn, runtime.chain_key().public_key() if pinned else None)


async def test_appends_are_chained_and_checkpoints_signed(roster, system, capsys):
    verdict = await verify(roster)
    assert verdict.intact and verdict.events == len(DEMO["people"]) + len(DEMO["divisions"]) + 1
    assert verdict.checkpoints == 1
    assert await roster.sign_chain() is None  # nothing new: no second checkpoint
    args = cli.parser().parse_args(["verify", "roster"])
    assert await args.run(args) == 0
    assert '"intact": true' in capsys.readouterr().out


@pytest.mark.parametrize("sql", [
    "UPDATE events SET payload = jsonb_set(payload, '{full_name}', '\"Kẻ Giả Mạo\"') "
    "WHERE global_position = 12",
    "DELETE FROM events WHERE global_position = 20",
    "UPDATE events SET occurred_at = occurred_at + interval '1 day' WHERE global_position = 3",
    "DELETE FROM events WHERE global_position = (SELECT max(global_position) FROM events)",
])
async def test_tampering_in_the_database_is_detected(roster, sql, capsys):
    await tamper(roster.settings.database_url, sql)
    verdict = await verify(roster)
    assert not verdict.intact and verdict.problems
    args = cli.parser().parse_args(["verify", "roster"])
    assert await args.run(args) == 1


async def test_rehashing_the_whole_chain_is_caught_by_the_pinned_checkpoint(roster):
    from shared import chain
    from shared.eventstore import chain_rows

    async with roster.pool.acquire() as conn:
        rows = await chain_rows(conn)
    rows[5]["payload"] = {**rows[5]["payload"], "full_name": "Kẻ Giả Mạo"}
    previous, statements = chain.GENESIS, []
    for row in rows:
        previous = chain.link(previous, row)
        statements.append((row["global_position"], json.dumps(row["payload"], ensure_ascii=False), previous))
    conn = await asyncpg.connect(roster.settings.database_url)
    try:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        await conn.executemany(
            "UPDATE events SET payload = $2::jsonb, chain_hash = $3 WHERE global_position = $1", statements)
        await conn.execute(REENABLE)
    finally:
        await conn.close()
    verdict = await verify(roster)
    assert not verdict.intact
    assert any("signed a different chain" in p for p in verdict.problems), verdict.problems
