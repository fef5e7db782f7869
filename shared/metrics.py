"""Metrics beside the traces: events appended, published and consumed, outbox lag, consumer lag,
dead-letter depth and command latency, exported over OTLP when the standard OTEL_* variables
ask for it (Grafana's dashboard in deploy/ reads them).

What needs the database or the broker (lag, queue depths) is sampled by the service every few
seconds; OpenTelemetry's callbacks only read those samples, never block on I/O.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

_provider: MeterProvider | None = None


def meter_provider(service: str):
    """The process's meter provider: the host's (tests install an in-memory reader), or one
    exporting over OTLP/HTTP when configured, or the no-op default."""
    global _provider
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        return current
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    )
    if _provider is None and endpoint and os.environ.get("OTEL_METRICS_EXPORTER", "otlp") != "none":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        name = os.environ.get("OTEL_SERVICE_NAME", f"wfh-{service}")
        _provider = MeterProvider(
            resource=Resource.create({SERVICE_NAME: name}),
            metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
        )
        metrics.set_meter_provider(_provider)
    return metrics.get_meter_provider()


@dataclass
class Samples:
    """The latest readings of what lives in the database and the broker."""

    appended: int = 0
    outbox_lag: int = 0
    queue_depths: dict[str, int] = field(default_factory=dict)  # consumer queues
    dead_letters: dict[str, int] = field(default_factory=dict)  # their .dlq


class ServiceMetrics:
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.samples = Samples()
        service = runtime.settings.service
        # A meter of its own per runtime: several runtimes in one process (the tests) must not
        # share instruments, whose callbacks would then read the first runtime's samples.
        self.instance = uuid.uuid4().hex
        meter = meter_provider(service).get_meter(
            "wfh", attributes={"wfh.service": service, "wfh.instance": self.instance}
        )
        attributes = {"service": service}

        def observe(read):
            def callback(_options: CallbackOptions):
                return read()

            return callback

        meter.create_observable_counter(
            "wfh.events.appended", callbacks=[observe(lambda: [Observation(self.samples.appended, attributes)])],
            unit="{event}", description="Events stored in the service's event store",
        )
        meter.create_observable_counter(
            "wfh.events.published",
            callbacks=[observe(lambda: [Observation(runtime.relay.published if runtime.relay else 0, attributes)])],
            unit="{event}", description="Events the relay published (with confirms) since start",
        )
        meter.create_observable_counter(
            "wfh.events.consumed",
            callbacks=[observe(lambda: [
                Observation(c.applied, {**attributes, "queue": c.queue}) for c in runtime.consumers
            ])],
            unit="{event}", description="Events applied by the service's consumers since start",
        )
        meter.create_observable_gauge(
            "wfh.outbox.lag", callbacks=[observe(lambda: [Observation(self.samples.outbox_lag, attributes)])],
            unit="{event}", description="Stored events not yet published",
        )
        meter.create_observable_gauge(
            "wfh.consumer.lag",
            callbacks=[observe(lambda: [
                Observation(depth, {**attributes, "queue": q}) for q, depth in self.samples.queue_depths.items()
            ])],
            unit="{message}", description="Messages waiting in the service's consumer queues",
        )
        meter.create_observable_gauge(
            "wfh.dead_letters",
            callbacks=[observe(lambda: [
                Observation(depth, {**attributes, "queue": q}) for q, depth in self.samples.dead_letters.items()
            ])],
            unit="{message}", description="Messages in the service's dead-letter queues",
        )
        self.command_duration = meter.create_histogram(
            "wfh.command.duration", unit="s", description="Time to answer a command or query"
        )

    def record_command(self, command_type: str, ok: bool, seconds: float) -> None:
        self.command_duration.record(
            seconds, {"service": self.runtime.settings.service, "command": command_type, "ok": ok}
        )

    async def sample(self, channel) -> Samples:
        """Read what the callbacks report: the store's head, the relay's lag, queue depths."""
        from shared import topology

        async with self.runtime.pool.acquire() as conn:
            self.samples.appended = await self.runtime.store.head_position(conn)
            self.samples.outbox_lag = await self.runtime.relay.lag(conn) if self.runtime.relay else 0
        namespace = self.runtime.settings.namespace
        for sub in topology.subscriptions_of(self.runtime.settings.service):
            queue = sub.queue(namespace)
            declared = await channel.declare_queue(queue, passive=True)
            self.samples.queue_depths[queue] = declared.declaration_result.message_count
            dlq = await channel.declare_queue(topology.dead_letter_queue(queue), passive=True)
            self.samples.dead_letters[queue] = dlq.declaration_result.message_count
        return self.samples
