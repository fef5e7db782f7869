"""Creates a service's database if needed and applies its SQL migrations in order, once each."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BACKBONE = Path(__file__).with_name("sql") / "backbone"


async def ensure_database(database_url: str) -> None:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # created concurrently by another process
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(database_url: str, migrations_dir: Path | None) -> list[str]:
    """Apply the backbone schema, then the service's numbered `*.sql` files not yet applied."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    applied: list[str] = []
    try:
        # One migrator at a time per database, whichever process starts first.
        await conn.execute("SELECT pg_advisory_lock(4242)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        files = sorted(BACKBONE.glob("*.sql"))
        if migrations_dir and migrations_dir.is_dir():
            files += sorted(migrations_dir.glob("*.sql"))
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in files:
            # Names carry their folder: several folders (shared ones, the service's) share the table.
            name = f"{path.parent.name}/{path.name}"
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        await conn.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await conn.close()
    return applied
