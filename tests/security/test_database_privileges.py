"""PostgreSQL least privilege, proven by running deploy/postgres/init.sql itself.

The file's statements run with every `wfh_<service>` name given a test-specific prefix (roles
and databases are cluster-wide, other engineers share the server); its psql variables become a
test password (trust auth locally: privileges are tested, not passwords). Two services are then
migrated as their own roles, and each role is refused the other's database and any change to
stored events.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.leave.app import definition as leave_definition
from services.roster.app import definition as roster_definition
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from tests.conftest import PG_URL

pytestmark = pytest.mark.integration

INIT_SQL = Path(__file__).parents[2] / "deploy" / "postgres" / "init.sql"
SERVICES = ("roster", "leave", "documents", "notify", "reporting")
NAME = re.compile(r"\bwfh_(roster|leave|documents|notify|reporting)\b")


def init_statements(prefix: str, password: str) -> list[str]:
    """init.sql's SQL statements, psql meta-commands dropped, names prefixed."""
    sql = "\n".join(
        line for line in INIT_SQL.read_text().splitlines()
        if not line.lstrip().startswith("\\") and not line.lstrip().startswith("--")
    )
    sql = re.sub(r":'\w+'", "'" + password + "'", sql)
    sql = NAME.sub(lambda m: f"{prefix}wfh_{m.group(1)}", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


@pytest.fixture(scope="module")
async def cluster():
    prefix = f"sec{uuid.uuid4().hex[:8]}_"
    statements = init_statements(prefix, uuid.uuid4().hex)
    roles = {s: f"{prefix}wfh_{s}" for s in SERVICES}
    # The prefixing must have reached every name the file creates.
    assert sum(1 for s in statements if s.startswith("CREATE ROLE")) == len(SERVICES)
    assert all(prefix in s for s in statements), statements
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        for statement in statements:
            await admin.execute(statement)
        yield roles
    finally:
        for role in roles.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
        for role in roles.values():
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


def url(role: str, database: str) -> str:
    return PG_URL.replace("postgresql://postgres@", f"postgresql://{role}@") + f"/{database}"


@pytest.fixture(scope="module")
async def migrated(cluster):
    """Roster and leave migrated by their own roles, as the runtime does at start."""
    for definition in (roster_definition(), leave_definition()):
        role = cluster[definition.name]
        runtime = ServiceRuntime(definition, Settings(service=definition.name, database_url=url(role, role)))
        assert await runtime.migrate()
    # One stored event in roster's store, appended by roster's role.
    conn = await asyncpg.connect(url(cluster["roster"], cluster["roster"]))
    try:
        from shared.contracts import roster as ev
        from shared.eventstore import AppendContext, EventStore

        async with conn.transaction():
            await EventStore("roster").append(
                conn, "department-sec", 0,
                [ev.DepartmentRegistered(name="Sở thử", symbol="ST")],
                AppendContext(tenant="sec", actor="sec-test", correlation_id=uuid.uuid4(),
                              causation_id=uuid.uuid4()),
            )
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await conn.close()
    return cluster


async def test_service_roles_have_no_special_attributes(cluster):
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[])", list(cluster.values()))
        assert len(rows) == len(SERVICES)
        for r in rows:
            assert r["rolcanlogin"]
            assert not any(r[k] for k in ("rolsuper", "rolcreatedb", "rolcreaterole",
                                          "rolreplication", "rolbypassrls")), dict(r)
        # Each database is its role's, and PUBLIC has neither CONNECT nor TEMPORARY on it.
        for role in cluster.values():
            owner = await admin.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", role)
            assert owner == role
            acl = await admin.fetchval(
                "SELECT datacl::text[] FROM pg_database WHERE datname = $1", role)
            assert acl is not None and not any(a.startswith("=") for a in acl), acl
    finally:
        await admin.close()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("other", SERVICES)
async def test_a_role_connects_only_to_its_own_database(cluster, service, other):
    target = url(cluster[service], cluster[other])
    if service == other:
        conn = await asyncpg.connect(target)
        await conn.close()
        return
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
        await asyncpg.connect(target)


@pytest.mark.parametrize("service", ["roster", "leave"])
async def test_another_service_cannot_read_the_events(migrated, service):
    other = "leave" if service == "roster" else "roster"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
        await asyncpg.connect(url(migrated[service], migrated[other]))


@pytest.mark.parametrize("statement", [
    "UPDATE events SET tenant = 'x'",
    "DELETE FROM events",
    "TRUNCATE events",
    "TRUNCATE events CASCADE",
])
async def test_the_owner_role_cannot_change_stored_events(migrated, statement):
    role = migrated["roster"]
    conn = await asyncpg.connect(url(role, role))
    try:
        assert await conn.fetchval("SELECT current_user") == role
        with pytest.raises(asyncpg.PostgresError, match="stored events are immutable"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        # Replica mode skips ordinary triggers; the store's are ALWAYS, and a non-superuser
        # cannot switch replication roles anyway.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
    finally:
        await conn.close()
