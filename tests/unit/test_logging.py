"""Every log line is one JSON object: structlog's and the libraries' own records alike (aio-pika,
asyncpg, FastStream and WeasyPrint log through the standard library), each with the service,
its level, its time and the trace it belongs to."""

import io
import json
import logging

import structlog
from opentelemetry.sdk.trace import TracerProvider

from shared.observability import configure_logging


def test_the_libraries_records_are_json_lines_with_the_service_and_the_trace():
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    written = io.StringIO()
    try:
        configure_logging("probe", "INFO")
        root.handlers[0].setStream(written)
        with TracerProvider().get_tracer("test").start_as_current_span("command") as span:
            logging.getLogger("aio_pika.robust_connection").warning(
                "Connection attempt to %s failed: %r", "amqp://broker", OSError("refused"))
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                logging.getLogger("asyncpg.pool").exception("connection lost")
        logging.getLogger("faststream").debug("below the level: not written")
    finally:
        root.handlers, root.level = handlers, level
        structlog.configure(**saved)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert [(l["logger"], l["level"], l["event"]) for l in lines] == [
        ("aio_pika.robust_connection", "warning", "Connection attempt to amqp://broker failed: OSError('refused')"),
        ("asyncpg.pool", "error", "connection lost"),
    ]
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert all(l["service"] == "probe" and l["trace_id"] == trace_id and l["timestamp"] for l in lines)
    assert "ZeroDivisionError: division by zero" in lines[1]["exception"]
