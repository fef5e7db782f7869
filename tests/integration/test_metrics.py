"""Metrics beside the traces: appended, published, consumed, lags, dead letters, command latency."""

import json
from pathlib import Path

import aio_pika
import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service
from tests.conftest import AMQP_URL, METRICS, eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())


def points(runtime, name: str, **attributes) -> list:
    """Data points of one runtime's metric whose attributes include `attributes` (runtimes of
    earlier tests in this process still report under the same names)."""
    data = METRICS.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            if (scope.scope.attributes or {}).get("wfh.instance") != runtime.metrics.instance:
                continue
            for metric in scope.metrics:
                if metric.name == name:
                    found += [p for p in metric.data.data_points
                              if all(p.attributes.get(k) == v for k, v in attributes.items())]
    return found


async def test_services_report_their_flow_lags_dead_letters_and_command_latency(system):
    roster = await system.start(roster_service())
    leave = await system.start(leave_service())
    reply = await system.send("roster", "ImportDepartment", DEMO)
    assert reply.ok
    appended = len(reply.result["events"])
    queue = f"{system.namespace}.leave.directory"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"poison"), routing_key=queue)

        async def flowed():
            await roster.sample_metrics()
            await leave.sample_metrics()
            appended_points = points(roster, "wfh.events.appended", service="roster")
            published = points(roster, "wfh.events.published", service="roster")
            consumed = points(leave, "wfh.events.consumed", service="leave", queue=queue)
            dead = points(leave, "wfh.dead_letters", service="leave", queue=queue)
            # The lags are sampled from the databases and queues, the counters read live: a
            # sample taken before the relay wrote its checkpoint still shows the lag.
            lag = points(roster, "wfh.outbox.lag", service="roster")
            waiting = points(leave, "wfh.consumer.lag", service="leave", queue=queue)
            return (appended_points and appended_points[-1].value == appended
                    and published and published[-1].value == appended
                    and consumed and consumed[-1].value == appended
                    and dead and dead[-1].value == 1
                    and lag and lag[-1].value == 0
                    and waiting and waiting[-1].value == 0)

        await eventually(flowed, timeout=30)
    durations = points(roster, "wfh.command.duration", service="roster", command="ImportDepartment", ok=True)
    assert durations and durations[-1].count == 1 and durations[-1].sum > 0
