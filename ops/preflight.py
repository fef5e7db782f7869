"""Checks that RabbitMQ and PostgreSQL answer, and says how to start them when they do not."""

from __future__ import annotations

import asyncio
import os
import sys

import aio_pika
import asyncpg

AMQP_URL = os.environ.get("WFH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("WFH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

HOW_TO_START = """
How to start them:
  on this kind of machine (Debian packages):
    rabbitmq-server -detached
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
  on a laptop with Docker:
    docker compose -f deploy/docker-compose.yml up -d rabbitmq postgres
"""


async def problems() -> list[str]:
    found = []
    try:
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL), 5)
        await connection.close()
    except Exception as exc:
        found.append(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({type(exc).__name__}: {exc})")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 5)
        await conn.close()
    except Exception as exc:
        found.append(f"PostgreSQL does not answer at {PG_URL.split('@')[-1]} ({type(exc).__name__}: {exc})")
    return found


def main() -> int:
    found = asyncio.run(problems())
    if not found:
        return 0
    for problem in found:
        print(f"✗ {problem}", file=sys.stderr)
    print(HOW_TO_START, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
