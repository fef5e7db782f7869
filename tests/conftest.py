"""Fixtures shared by every test: an isolated namespace and databases per test, real services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from shared import topology
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.migrations import drop_database
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Every span of the test process, from every in-process service, lands here.
SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)

from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

# Every metric of the in-process services, read on demand by the tests.
METRICS = InMemoryMetricReader()
otel_metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))

from shared.observability import configure_logging

configure_logging("tests")  # JSON lines on stderr, as the services write them

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_URL = "postgresql://postgres@127.0.0.1:5432"
TENANT = "so-tttt-thanhhoa"


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def idp() -> DevIdentityProvider:
    return DevIdentityProvider.generate()


class System:
    """One test's private world: its own exchange/queue names and one database per service."""

    def __init__(self, run_id: str, idp: DevIdentityProvider) -> None:
        self.namespace = f"t{run_id}{uuid.uuid4().hex[:6]}"
        self.idp = idp
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.databases: list[str] = []
        self._client: CommandClient | None = None

    def settings(self, service: str, **overrides) -> Settings:
        url = f"{PG_URL}/{self.namespace}_{service}"
        if url not in self.databases:
            self.databases.append(url)
        return Settings(
            service=service,
            amqp_url=AMQP_URL,
            database_url=url,
            namespace=self.namespace,
            jwt_public_key_pem=self.idp.public_key_pem,
            jwt_issuer=self.idp.issuer,
            relay_poll_seconds=0.2,
            **overrides,
        )

    async def start(self, definition: ServiceDefinition, **overrides) -> ServiceRuntime:
        runtime = ServiceRuntime(definition, self.settings(definition.name, **overrides))
        self.runtimes[definition.name] = runtime  # registered first: a failed start is still stopped
        await runtime.start()
        return runtime

    async def client(self) -> CommandClient:
        if self._client is None:
            self._client = CommandClient(AMQP_URL, self.namespace)
            await self._client.__aenter__()
        return self._client

    def token(self, person_id: str, **kw) -> str:
        return self.idp.mint(person_id, TENANT, **kw)

    def admin_token(self) -> str:
        return self.idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,))

    async def send(self, service: str, command_type: str, payload: dict | None = None, *,
                   as_person: str | None = None, token: str | None = None, **kw):
        client = await self.client()
        if token is None:
            token = self.admin_token() if as_person is None else self.token(as_person)
        return await client.send(service, command_type, payload or {}, tenant=TENANT, token=token, **kw)

    async def close(self) -> None:
        """Stop everything and remove the namespace and databases, even if a step fails."""
        steps = []
        if self._client is not None:
            steps.append(self._client.__aexit__(None, None, None))
        steps += [runtime.stop() for runtime in self.runtimes.values()]
        steps.append(self._delete_topology())
        steps += [drop_database(url) for url in self.databases]
        await every_step(steps)

    async def _delete_topology(self) -> None:
        await delete_namespace(self.namespace)


async def every_step(steps) -> None:
    """Await every clean-up step even if some fail, then raise the first failure."""
    failures = []
    for step in steps:
        try:
            await step
        except Exception as exc:  # clean up the rest, then report
            failures.append(exc)
    if failures:
        raise failures[0]


async def delete_namespace(namespace: str) -> None:
    """Remove a test's exchanges and queues from the broker."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        await topology.delete(await connection.channel(), namespace)


@pytest.fixture
async def system(run_id, idp) -> AsyncIterator[System]:
    world = System(run_id, idp)
    try:
        yield world
    finally:
        await world.close()


@pytest.fixture
def make_system(run_id, idp) -> Callable[[], System]:
    return lambda: System(run_id, idp)


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Poll `check` (async, returns a truthy value when done) until it holds or time runs out."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture(autouse=True)
def _forget_earlier_spans():
    """Spans of earlier tests are of no use and would pile up in memory."""
    SPANS.clear()
