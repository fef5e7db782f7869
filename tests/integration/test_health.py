"""Every service answers a health request over AMQP, without a token."""

import pytest

from services.leave.app import definition as leave_service
from services.roster.app import definition as roster_service

pytestmark = pytest.mark.integration


async def test_health_over_amqp_reports_database_relay_and_consumers(system):
    await system.start(roster_service())
    leave = await system.start(leave_service())
    assert (await system.send("roster", "GetPlans", {})).ok
    for service in ("roster", "leave"):
        reply = await system.send(service, "Health", token="")
        assert reply.ok, reply.error
        assert reply.result["healthy"] is True and reply.result["database"] == "up"
        assert reply.result["relay_lag"] == 0
        assert reply.result["commands"]["batches_given_up"] == 0
    reply = await system.send("leave", "Health", token="")
    assert f"{system.namespace}.leave.directory" in reply.result["consumers"]
    # With its database gone the service still answers, and says what is wrong.
    await leave.pool.close()
    reply = await system.send("leave", "Health", token="")
    assert reply.ok and reply.result["healthy"] is False
    assert reply.result["database"].startswith("down")
    leave.pool = None
