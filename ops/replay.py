"""`make replay SERVICE=leave`: drop a service's projections and rebuild them from events.

Prints how many events each projection replayed and whether the rebuilt tables equal what
they held before (they must: projections are pure functions of the events).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

import asyncpg

from shared.eventstore import EventStore
from shared.settings import Settings


async def snapshot(conn: asyncpg.Connection, tables: tuple[str, ...]) -> dict[str, list]:
    """Every row of `tables`, in a stable order, as comparable tuples."""
    out = {}
    for table in tables:
        rows = await conn.fetch(f"SELECT * FROM {table}")
        out[table] = sorted(tuple(str(v) for v in r.values()) for r in rows)
    return out


async def rebuild(service: str, settings: Settings | None = None) -> dict[str, tuple[int, bool]]:
    definition = importlib.import_module(f"services.{service}.app").definition()
    settings = settings or Settings.from_env(service)
    store = EventStore(definition.name)
    projections = definition.own_projections + tuple(definition.consumed_projections.values())
    results = {}
    conn = await asyncpg.connect(settings.database_url)
    try:
        for projection in projections:
            before = await snapshot(conn, projection.tables)
            count = await projection.rebuild(conn, store)
            results[projection.name] = (count, before == await snapshot(conn, projection.tables))
    finally:
        await conn.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", help="roster or leave")
    args = parser.parse_args()
    results = asyncio.run(rebuild(args.service))
    for name, (count, identical) in results.items():
        verdict = "identical to before" if identical else "DIFFERENT from before"
        print(f"{args.service}/{name}: replayed {count} events, rebuilt tables {verdict}")
    return 0 if all(identical for _, identical in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
