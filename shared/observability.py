"""structlog JSON logs stamped with trace/span ids, and OpenTelemetry tracing exported over OTLP.

Tracing exports only when the standard OTEL_* variables ask for it. Otherwise spans are not
recorded (unless OTEL_TRACES_SAMPLER asks for it), and SQL statements get no spans at all:
recording spans that go nowhere cost about a fifth of a service's CPU. Trace and span ids are
still made and propagated, so they still reach logs, event envelopes and the services
downstream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import structlog
from faststream import BaseMiddleware
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

_provider: TracerProvider | None = None
CONSUME_TRACER = "wfh.consume"


def _add_trace_ids(_, __, event_dict):
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def configure_logging(service: str, level: str | None = None) -> None:
    level_name = (level or os.environ.get("WFH_LOG_LEVEL", "INFO")).upper()
    stamped = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    rendered = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(ensure_ascii=False)]
    structlog.configure(
        processors=[*stamped, *rendered],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, 20)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # The libraries' own records (aio-pika, asyncpg, FastStream, WeasyPrint: the standard
    # library's logging) as the same JSON lines, with the service, their logger and the trace,
    # so that a log shipper reading one JSON object per line loses none of them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendered],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level_name)
    structlog.contextvars.bind_contextvars(service=service)


def tracer_provider(service: str) -> TracerProvider:
    """The process's tracer provider, created once; exports over OTLP/HTTP when configured."""
    global _provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # set up by the host (tests set an in-memory one)
        _instrument_asyncpg()
        return current
    if _provider is None:
        name = os.environ.get("OTEL_SERVICE_NAME", f"wfh-{service}")
        exporting = bool(
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ) and os.environ.get("OTEL_TRACES_EXPORTER", "otlp") != "none"
        # None: the SDK's default, which reads OTEL_TRACES_SAMPLER (parent-based, always on).
        sampler = None if exporting or os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF
        _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), sampler=sampler)
        if exporting:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
        if sampler is not ALWAYS_OFF:
            # A span per statement even when none is recorded cost a tenth of a service's CPU.
            _instrument_asyncpg()
    return _provider


def _instrument_asyncpg() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def get_logger(name: str = "wfh"):
    return structlog.get_logger(name)


@contextlib.contextmanager
def consume_span(tracer, message):
    """A consumed aio-pika message's span, current inside the block, in the trace its headers
    carry, named as FastStream names it: `<exchange>.<routing key> process`."""
    parent = propagate.extract(message.headers or {})  # the propagators OTEL_PROPAGATORS names
    with tracer.start_span(  # ended on exit, an exception recorded on it
        f"{message.exchange or 'default'}.{message.routing_key} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation": "process",
            "messaging.destination.name": message.exchange or "",
            "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
            "messaging.message.id": message.message_id or "",
            "messaging.message.conversation_id": message.correlation_id or "",
        },
    ) as span:
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield
        finally:
            otel_context.detach(token)


def consume_spans(provider: TracerProvider):
    """A FastStream middleware giving each consumed message its span (`consume_span`).

    In place of FastStream's own telemetry middleware, which also reads W3C baggage again,
    records metrics and computes a dozen attributes per message: it cost a consumer a quarter more
    CPU per message (about 250 against 200 microseconds: `python -m bench.consume`)."""
    tracer = provider.get_tracer(CONSUME_TRACER)

    class ConsumeSpan(BaseMiddleware):
        async def consume_scope(self, call_next, msg):
            with consume_span(tracer, msg.raw_message):
                return await call_next(msg)

    return ConsumeSpan
