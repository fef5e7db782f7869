"""`python -m shared.healthcheck SERVICE`: is the service's database and broker reachable, how far
behind is its relay. Prints JSON; exits 0 when healthy (used by container health checks)."""

from __future__ import annotations

import asyncio
import json
import sys

import aio_pika
import asyncpg

from shared.settings import Settings


async def check(settings: Settings) -> dict:
    report: dict = {"service": settings.service, "database": "down", "broker": "down"}
    try:
        conn = await asyncio.wait_for(asyncpg.connect(settings.database_url), 5)
        try:
            report["database"] = "up"
            report["relay_lag"] = await conn.fetchval(
                "SELECT coalesce(max(global_position), 0) - coalesce("
                "(SELECT position FROM relay_checkpoint WHERE relay = 'events'), 0) FROM events"
            )
        finally:
            await conn.close()
    except Exception as exc:
        report["database_error"] = f"{type(exc).__name__}: {exc}"
    try:
        connection = await asyncio.wait_for(aio_pika.connect(settings.amqp_url), 5)
        await connection.close()
        report["broker"] = "up"
    except Exception as exc:
        report["broker_error"] = f"{type(exc).__name__}: {exc}"
    report["healthy"] = report["database"] == "up" and report["broker"] == "up"
    return report


def main() -> int:
    report = asyncio.run(check(Settings.from_env(sys.argv[1])))
    print(json.dumps(report, ensure_ascii=False))
    return 0 if report["healthy"] else 1


if __name__ == "__main__":
    sys.exit(main())
