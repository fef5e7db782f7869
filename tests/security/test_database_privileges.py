"""PostgreSQL least privilege, proven by running deploy/postgres/init.sql itself.

The file's statements run with every `wfh_<service>` name (the runtime role `wfh_<service>`,
the owner role `wfh_<service>_owner` and the database `wfh_<service>`) given a test-specific
prefix (roles and databases are cluster-wide, other engineers share the server); its psql
variables become a test password (trust auth locally: privileges are tested, not passwords).
Services are migrated as their owner roles and run as their runtime roles. A runtime role is
refused other services' databases, any change to stored events and any change to the schema,
the events' triggers included; and a whole service still runs as it.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from ops.cli import parser as cli_parser
from ops.replay import rebuild
from services.documents.app import definition as documents_definition
from services.leave.app import definition as leave_definition
from services.roster.app import definition as roster_definition
from shared.migrations import READ_WRITE, RUNTIME_PRIVILEGES, MigrationRoleError, migrate
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from tests.conftest import PG_URL, eventually
from tests.integration.roster_helpers import HEADS, MONDAY, leave_knows_directory, ok, roster_department
from tests.integration.test_leave import _key, request, sign_and_approve

pytestmark = pytest.mark.integration

INIT_SQL = Path(__file__).parents[2] / "deploy" / "postgres" / "init.sql"
SERVICES = ("roster", "leave", "documents", "notify", "reporting")
NAME = re.compile(r"\bwfh_(roster|leave|documents|notify|reporting)(_owner)?\b")


def init_statements(prefix: str, password: str) -> list[str]:
    """init.sql's SQL statements, psql meta-commands dropped, names prefixed."""
    sql = "\n".join(
        line for line in INIT_SQL.read_text().splitlines()
        if not line.lstrip().startswith("\\") and not line.lstrip().startswith("--")
    )
    sql = re.sub(r":'\w+'", "'" + password + "'", sql)
    sql = NAME.sub(lambda m: prefix + m.group(0), sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The roles and databases init.sql made, under one test prefix."""

    prefix: str

    def database(self, service: str) -> str:
        return f"{self.prefix}wfh_{service}"

    def runtime_role(self, service: str) -> str:
        return self.database(service)

    def owner_role(self, service: str) -> str:
        return f"{self.database(service)}_owner"

    def roles(self) -> list[str]:
        return [r for s in SERVICES for r in (self.runtime_role(s), self.owner_role(s))]

    def url(self, role: str, service: str) -> str:
        return PG_URL.replace("postgresql://postgres@", f"postgresql://{role}@") + f"/{self.database(service)}"

    def runtime_url(self, service: str) -> str:
        return self.url(self.runtime_role(service), service)

    def owner_url(self, service: str) -> str:
        return self.url(self.owner_role(service), service)

    def settings(self, service: str, base: Settings | None = None) -> Settings:
        """A service's settings as deployed: it runs as its runtime role, migrates as its owner."""
        return dataclasses.replace(
            base or Settings(service=service), database_url=self.runtime_url(service),
            migration_database_url=self.owner_url(service),
        )


@asynccontextmanager
async def provisioned() -> AsyncIterator[Cluster]:
    """init.sql run under a fresh prefix; its databases and roles are dropped afterwards."""
    cluster = Cluster(f"sec{uuid.uuid4().hex[:8]}_")
    statements = init_statements(cluster.prefix, uuid.uuid4().hex)
    # The prefixing must have reached every name the file creates.
    assert sum(1 for s in statements if s.startswith("CREATE ROLE")) == 2 * len(SERVICES)
    assert all(cluster.prefix in s for s in statements), statements
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        for statement in statements:
            await admin.execute(statement)
        yield cluster
    finally:
        for service in SERVICES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{cluster.database(service)}" WITH (FORCE)')
        for role in cluster.roles():
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


@pytest.fixture(scope="module")
async def cluster():
    """Shared by the tests that only look or are refused (each refusal is rolled back)."""
    async with provisioned() as made:
        yield made


@pytest.fixture
async def own_cluster():
    """For a test that changes what it finds."""
    async with provisioned() as made:
        yield made


@pytest.fixture(scope="module")
async def migrated(cluster):
    """Roster and leave migrated by their owner roles, as the runtime does at start."""
    for definition in (roster_definition(), leave_definition()):
        assert await ServiceRuntime(definition, cluster.settings(definition.name)).migrate()
    # One stored event in roster's store, appended by roster's runtime role.
    conn = await asyncpg.connect(cluster.runtime_url("roster"))
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
            "rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[])", cluster.roles())
        assert len(rows) == 2 * len(SERVICES)
        for r in rows:
            assert r["rolcanlogin"]  # the owner roles only for the migration step
            assert not any(r[k] for k in ("rolsuper", "rolcreatedb", "rolcreaterole",
                                          "rolreplication", "rolbypassrls")), dict(r)
        # Each database is its owner role's; PUBLIC has neither CONNECT nor TEMPORARY on it,
        # and the runtime role CONNECT alone.
        for service in SERVICES:
            row = await admin.fetchrow(
                "SELECT pg_get_userbyid(datdba) AS owner, datacl::text[] AS acl "
                "FROM pg_database WHERE datname = $1", cluster.database(service))
            assert row["owner"] == cluster.owner_role(service)
            assert not any(a.startswith("=") for a in row["acl"]), row["acl"]
            assert f"{cluster.runtime_role(service)}=c/{cluster.owner_role(service)}" in row["acl"]
    finally:
        await admin.close()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("other", SERVICES)
async def test_a_role_connects_only_to_its_own_database(cluster, service, other):
    for role in (cluster.runtime_role(service), cluster.owner_role(service)):
        target = cluster.url(role, other)
        if service == other:
            await (await asyncpg.connect(target)).close()
            continue
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await asyncpg.connect(target)


@pytest.mark.parametrize("service", ["roster", "leave"])
async def test_after_migrating_another_service_still_cannot_read_the_events(migrated, service):
    """The migration step grants its own runtime role CONNECT, nobody else."""
    other = "leave" if service == "roster" else "roster"
    for role in (migrated.runtime_role(service), migrated.owner_role(service)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await asyncpg.connect(migrated.url(role, other))


@pytest.mark.parametrize("service", ["roster", "leave"])
async def test_the_runtime_role_owns_nothing_the_owner_role_owns_every_table(migrated, service):
    conn = await asyncpg.connect(migrated.owner_url(service))
    try:
        owners = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace")
        assert [r["owner"] for r in owners] == [migrated.owner_role(service)]
        functions = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(proowner) AS owner FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace")
        assert [r["owner"] for r in functions] == [migrated.owner_role(service)]
    finally:
        await conn.close()


@pytest.mark.parametrize("service", ["roster", "leave"])
async def test_the_runtime_role_has_exactly_the_declared_privileges(migrated, service):
    conn = await asyncpg.connect(migrated.owner_url(service))
    try:
        rows = await conn.fetch(
            "SELECT c.relname AS table_name, array_agg(a.privilege_type ORDER BY a.privilege_type) AS granted "
            "FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a "
            "ON a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1) "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' GROUP BY c.relname",
            migrated.runtime_role(service))
    finally:
        await conn.close()
    granted = {r["table_name"]: sorted(p for p in r["granted"] if p) for r in rows}
    assert {"events", "inbox", "projection_checkpoints", "relay_checkpoint"} <= set(granted)
    assert granted == {t: sorted(RUNTIME_PRIVILEGES.get(t, READ_WRITE)) for t in granted}
    assert granted["events"] == ["INSERT", "SELECT"]


@pytest.mark.parametrize("statement", [
    "UPDATE events SET tenant = 'x'",
    "DELETE FROM events",
    "TRUNCATE events",
    "TRUNCATE events CASCADE",
    # The triggers that refuse the three above: the runtime role can neither switch them off
    # nor remove them, nor the function they call, nor the table itself.
    "ALTER TABLE events DISABLE TRIGGER events_no_update_delete",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "ALTER TABLE events ENABLE REPLICA TRIGGER events_no_truncate",
    "DROP TRIGGER events_no_truncate ON events",
    "CREATE OR REPLACE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN OLD; END $$",
    "DROP FUNCTION events_are_immutable() CASCADE",
    "DROP TABLE events",
    "ALTER TABLE events RENAME TO events_before",
    "ALTER TABLE events OWNER TO CURRENT_USER",
    # The rest of the record is append-only too, and the schema is not the runtime's to change.
    "UPDATE chain_checkpoints SET signature = 'x'",
    "DELETE FROM chain_checkpoints",
    "DELETE FROM inbox",
    "UPDATE command_replies SET reply = '{}'",
    "DELETE FROM schema_migrations",
    "CREATE TABLE events_shadow (global_position bigint)",
    "CREATE TEMP TABLE events (global_position bigint)",
    # Replica mode skips ordinary triggers (the store's are ALWAYS anyway).
    "SET session_replication_role = replica",
])
async def test_the_runtime_role_cannot_change_stored_events_or_what_guards_them(migrated, statement):
    conn = await asyncpg.connect(migrated.runtime_url("roster"))
    try:
        assert await conn.fetchval("SELECT current_user") == migrated.runtime_role("roster")
        attempt = conn.transaction()
        await attempt.start()
        try:
            # Refused by privileges, before any trigger could be asked.
            with pytest.raises(asyncpg.InsufficientPrivilegeError,
                               match="permission denied|must be owner"):
                await conn.execute(statement)
        finally:
            await attempt.rollback()  # whatever happened, the next test finds the same store
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        triggers = await conn.fetch(
            "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = 'events'::regclass "
            "AND NOT tgisinternal ORDER BY tgname")
        assert [(t["tgname"], t["tgenabled"]) for t in triggers] == [
            ("events_no_truncate", "A"), ("events_no_update_delete", "A")]
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", [
    "UPDATE events SET tenant = 'x'", "DELETE FROM events", "TRUNCATE events",
])
async def test_even_the_owner_role_is_refused_by_the_triggers(migrated, statement):
    """The second line: the owner could drop the triggers on purpose, not change events by mistake."""
    conn = await asyncpg.connect(migrated.owner_url("roster"))
    try:
        with pytest.raises(asyncpg.PostgresError, match="stored events are immutable"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
    finally:
        await conn.close()


async def test_a_service_runs_as_its_runtime_role(own_cluster, system):
    """Roster and leave migrated by their owners at start, then everything they do as runtime
    roles: commands append events and apply projections and store replies, relays publish and
    move their checkpoints, consumers write inboxes and consumed projections, chain heads are
    signed, and every projection is rebuilt (TRUNCATE) identical to what it was."""
    for definition in (roster_definition(), leave_definition()):
        await start_as_deployed(system, own_cluster, definition)

    await roster_department(system)
    head = HEADS["khtc"]
    key_id = await _key(system, head)
    await leave_knows_directory(system, keys=1)
    applicant = "nv-019"
    application = ok(await request(system, applicant, str(MONDAY), str(MONDAY)))["application_id"]
    ok(await sign_and_approve(system, head, key_id, application))

    roster, leave = system.runtimes["roster"], system.runtimes["leave"]

    async def roster_consumed_the_approval():
        async with roster.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE envelope->>'event_type' = 'LeaveApproved'")

    await eventually(roster_consumed_the_approval)
    for service, runtime in (("roster", roster), ("leave", leave)):
        async with runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == own_cluster.runtime_role(service)
            assert await conn.fetchval("SELECT count(*) FROM events") > 0
            assert await conn.fetchval("SELECT count(*) FROM command_replies") > 0
            assert await conn.fetchval("SELECT count(*) FROM inbox") > 0

            async def relay_caught_up(conn=conn, runtime=runtime):
                return await runtime.relay.lag(conn) == 0

            await eventually(relay_caught_up)
        assert await runtime.sign_chain() is not None
        assert (await runtime.health())["healthy"]
        results = await rebuild(service, runtime.settings)
        assert results and all(identical for _, identical in results.values()), results
        assert sum(count for count, _ in results.values()) > 0


async def start_as_deployed(system, cluster: Cluster, definition: ServiceDefinition) -> ServiceRuntime:
    """`system.start`, with the service's runtime and migration roles for its database."""
    settings = cluster.settings(definition.name, base=system.settings(definition.name))
    runtime = ServiceRuntime(definition, settings)
    system.runtimes[definition.name] = runtime  # registered first: a failed start is still stopped
    await runtime.start()
    return runtime


async def test_a_runtime_role_alone_starts_once_the_migration_step_ran(own_cluster, monkeypatch):
    """Deployed, the services hold only their runtime roles' passwords: `wfh migrate` runs
    first as the owners. Before it, the runtime role is refused the migrations, and says why."""
    runtime_only = dataclasses.replace(own_cluster.settings("documents"), migration_database_url="")
    with pytest.raises(MigrationRoleError, match="may not apply the pending migrations"):
        await ServiceRuntime(documents_definition(), runtime_only).migrate()

    monkeypatch.setenv("WFH_DOCUMENTS_DATABASE_URL", own_cluster.runtime_url("documents"))
    monkeypatch.setenv("WFH_DOCUMENTS_MIGRATION_DATABASE_URL", own_cluster.owner_url("documents"))
    args = cli_parser().parse_args(["migrate", "documents"])
    assert await args.run(args) == 0

    assert await ServiceRuntime(documents_definition(), runtime_only).migrate() == []


async def test_a_database_from_before_the_owner_roles_is_upgraded_as_deploy_readme_says(own_cluster):
    """Before the owner roles, the runtime role owned its database and migrated it: the
    migration step refuses that database until deploy/README.md's upgrade has run."""
    runtime_role, owner_role = own_cluster.runtime_role("leave"), own_cluster.owner_role("leave")
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{own_cluster.database("leave")}" OWNER TO "{runtime_role}"')
    finally:
        await admin.close()
    await migrate(own_cluster.runtime_url("leave"))  # as it was: the runtime role owns the tables

    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{own_cluster.database("leave")}" OWNER TO "{owner_role}"')
    finally:
        await admin.close()
    with pytest.raises(MigrationRoleError, match="owns .*events.*REASSIGN OWNED"):
        await ServiceRuntime(leave_definition(), own_cluster.settings("leave")).migrate()

    admin = await asyncpg.connect(f"{PG_URL}/{own_cluster.database('leave')}")
    try:
        await admin.execute(f'REASSIGN OWNED BY "{runtime_role}" TO "{owner_role}"')
    finally:
        await admin.close()
    assert await ServiceRuntime(leave_definition(), own_cluster.settings("leave")).migrate()

    conn = await asyncpg.connect(own_cluster.runtime_url("leave"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("DELETE FROM events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await conn.execute("DROP TRIGGER events_no_truncate ON events")
    finally:
        await conn.close()
