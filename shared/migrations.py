"""Creates a service's database if needed, applies its SQL migrations in order, once each, and
grants the service's runtime role what it needs of the tables when a separate role owns them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg

from shared.settings import Settings

BACKBONE = Path(__file__).with_name("sql") / "backbone"
MIGRATION_LOCK = 4242  # advisory lock key: one migrator at a time per database

# What a service's runtime role may do to each table its migration (owner) role created. Not
# owning them, it can neither alter nor drop a table or its triggers. The record is append-only:
# stored events, the signed checkpoints of their hash chain, the inbox (this service's only
# copy of other services' events, which consumed projections are rebuilt from) and the command
# replies. Every other table is a read or bookkeeping table the service rewrites, TRUNCATE
# included because a rebuild empties projections.
READ_WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
APPEND_ONLY = ("SELECT", "INSERT")
RUNTIME_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "events": APPEND_ONLY,
    "chain_checkpoints": APPEND_ONLY,
    "inbox": APPEND_ONLY,
    "command_replies": APPEND_ONLY,
    "schema_migrations": ("SELECT",),  # enough to see that nothing is pending
}


class MigrationRoleError(RuntimeError):
    """The roles do not fit: a migration is due that the connecting role may not apply, or
    the runtime role owns tables it must only be granted privileges on."""


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


async def migrate_service(settings: Settings, migrations_dirs: tuple[Path, ...]) -> list[str]:
    """Migrate a service's database as its settings say: as the migration role when one is
    configured (granting the runtime role its part), else as the runtime's own role."""
    if settings.migration_database_url:
        return await migrate(settings.migration_database_url, *migrations_dirs,
                             runtime_role=role_of(settings.database_url))
    return await migrate(settings.database_url, *migrations_dirs)


async def migrate(
    database_url: str, *migrations_dirs: Path | None, runtime_role: str | None = None
) -> list[str]:
    """Apply the backbone schema, then each folder's numbered `*.sql` files not yet applied.

    With `runtime_role`, the connecting role owns what it creates and grants `runtime_role`
    the privileges of `RUNTIME_PRIVILEGES` on every table, on every run (a changed policy
    takes effect without a new migration).
    """
    await ensure_database(database_url)
    files = sorted(BACKBONE.glob("*.sql"))
    for directory in migrations_dirs:
        if directory and directory.is_dir():
            files += sorted(directory.glob("*.sql"))
    conn = await asyncpg.connect(database_url)
    try:
        # One migrator at a time per database, whichever process starts first.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        if runtime_role is not None:
            await _check_owns_nothing(conn, runtime_role)
        try:
            applied = await _apply_pending(conn, files)
        except asyncpg.InsufficientPrivilegeError as exc:
            role = await conn.fetchval("SELECT current_user")
            raise MigrationRoleError(
                f"role {role} may not apply the pending migrations ({exc}): apply them as the "
                "database's migration role (WFH_<SERVICE>_MIGRATION_DATABASE_URL, or "
                "`wfh migrate SERVICE` with it set)"
            ) from exc
        if runtime_role is not None:
            await grant_runtime_privileges(conn, runtime_role)
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


async def _apply_pending(conn: asyncpg.Connection, files: list[Path]) -> list[str]:
    # Looked up before creating it, so that a role without CREATE (a runtime role whose
    # migration role migrated already) gets through when nothing is pending.
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        await conn.execute(
            "CREATE TABLE schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    applied: list[str] = []
    for path in files:
        # Names carry their folder: several folders (shared ones, the service's) share the table.
        name = f"{path.parent.name}/{path.name}"
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied


async def _check_owns_nothing(conn: asyncpg.Connection, runtime_role: str) -> None:
    """Owning a table would give the runtime role what its grants withhold (ALTER, DROP,
    DISABLE TRIGGER); tables created before the migration role existed are its own."""
    owned = await conn.fetch(
        "SELECT relname FROM pg_class "
        "WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1) "
        "AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
        "ORDER BY relname",
        runtime_role,
    )
    if owned:
        raise MigrationRoleError(
            f"role {runtime_role} owns {', '.join(r['relname'] for r in owned)}: run "
            f"REASSIGN OWNED BY {_identifier(runtime_role)} TO <the migration role> once in this "
            "database (deploy/README.md, upgrading)"
        )


async def grant_runtime_privileges(conn: asyncpg.Connection, runtime_role: str) -> None:
    """Give `runtime_role` exactly its `RUNTIME_PRIVILEGES` on every table of the schema."""
    role = _identifier(runtime_role)
    schema = _identifier(await conn.fetchval("SELECT current_schema()"))
    tables = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    )]
    async with conn.transaction():
        # From nothing, so that whatever the policy no longer grants is taken back.
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}")
        for table in tables:
            privileges = ", ".join(RUNTIME_PRIVILEGES.get(table, READ_WRITE))
            await conn.execute(f"GRANT {privileges} ON TABLE {_identifier(table)} TO {role}")
        # nextval() for serial columns (the inbox's and notifications' sequence numbers).
        await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"GRANT CONNECT ON DATABASE {_identifier(database)} TO {role}")


def role_of(database_url: str) -> str:
    """The role a database URL connects as (`postgresql://ROLE:password@host/db` or `?user=`)."""
    parts = urlsplit(database_url)
    role = unquote(parts.username or "") or parse_qs(parts.query).get("user", [""])[0]
    if not role:
        raise ValueError(
            "a database URL with a migration URL beside it must name its role "
            "(postgresql://ROLE:PASSWORD@HOST/DATABASE): that role is granted the runtime privileges"
        )
    return role


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
