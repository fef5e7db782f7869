"""Notify's commands and queries over AMQP, fed by the real leave service: a person's
notifications (read/unread) and MarkRead, an event's delivery status, channel preferences."""

import pytest

from services.leave.app import definition as leave_service
from tests.conftest import eventually
from tests.integration.notify_support import (
    DIRECTOR, HEAD, STAFF, Clock, deliveries, holds, Mailbox, notify_config, start_notify,
)

pytestmark = pytest.mark.integration


async def request_leave(system, person: str, day: str):
    async def filed():
        reply = await system.send("leave", "RequestLeave", {
            "start_date": day, "end_date": day, "reason": "Khám sức khỏe định kỳ"}, as_person=person)
        # The directory and the plan reach leave a moment after they were published.
        return reply if reply.ok or reply.error.code not in ("not_found", "outside_plan") else None

    reply = await eventually(filed)
    assert reply.ok, reply.error
    return reply.result["application_id"]


async def test_notifications_read_state_delivery_status_and_preferences(system):
    with Mailbox() as mailbox:
        await start_notify(system, notify_config(Clock(), mailbox))
        await system.start(leave_service())
        await request_leave(system, STAFF[0], "2037-01-07")

        async def head_has_one():
            reply = await system.send("notify", "ListNotifications", {}, as_person=HEAD)
            return reply if reply.ok and reply.result["notifications"] else None

        listed = (await eventually(head_has_one)).result
        assert listed["unread"] == 1 and listed["person_id"] == HEAD
        (note,) = listed["notifications"]
        assert note["kind"] == "LeaveRequested" and note["read"] is False
        assert "07/01/2037" in note["body"]
        assert (await system.send("notify", "ListNotifications", {}, as_person=STAFF[0])).result["unread"] == 0
        nosy = await system.send("notify", "ListNotifications", {"person_id": HEAD}, as_person=STAFF[0])
        assert nosy.error.code == "forbidden"

        others = await system.send("notify", "MarkRead", {"notification_ids": [note["notification_id"]]},
                                   as_person=STAFF[0])
        assert others.error.code == "not_found"
        marked = await system.send("notify", "MarkRead", {"notification_ids": [note["notification_id"]]},
                                   as_person=HEAD)
        assert marked.ok and marked.result == {"marked": 1}
        again = await system.send("notify", "MarkRead", {"all": True}, as_person=HEAD)
        assert again.result == {"marked": 0}
        unread = await system.send("notify", "ListNotifications", {"unread_only": True}, as_person=HEAD)
        assert unread.result == {"person_id": HEAD, "unread": 0, "notifications": []}

        await eventually(lambda: holds(len(mailbox.messages) == 1))
        source = {"source_event_id": note["source_event_id"]}

        async def both_sent():
            reply = await system.send("notify", "GetDeliveryStatus", source, as_person=DIRECTOR)
            channels = reply.result["notifications"][0]["channels"]
            return reply if all(c["status"] in ("sent", "read") for c in channels) else None

        status = (await eventually(both_sent)).result
        (told,) = status["notifications"]
        assert told["recipient_id"] == HEAD
        assert [(c["channel"], c["status"]) for c in told["channels"]] == [
            ("web", "read"), ("bot", "sent"), ("email", "sent")]
        assert (await system.send("notify", "GetDeliveryStatus", source, as_person=HEAD)).result[
            "notifications"][0]["recipient_id"] == HEAD
        assert (await system.send("notify", "GetDeliveryStatus", source, as_person=STAFF[1])).result[
            "notifications"] == []

        # The head wants leave by email only (the web feed stays): the next request follows it.
        chosen = await system.send("notify", "SetNotificationPreferences",
                                   {"category": "leave", "channels": ["email"]}, as_person=HEAD)
        assert chosen.ok and chosen.result["channels"]["leave"] == ["web", "email"]
        assert chosen.result["channels"]["summons"] == ["web", "bot", "email"]
        await request_leave(system, STAFF[1], "2037-01-08")
        runtime = system.runtimes["notify"]

        async def second_routed():
            rows = await deliveries(runtime)
            return rows if len(rows) == 3 else None

        rows = await eventually(second_routed)
        assert sorted(d["channel"] for d in rows) == ["bot", "email", "email"]
        shown = await system.send("notify", "GetNotificationPreferences", {}, as_person=HEAD)
        assert shown.result["chosen"] == {"leave": ["email"]}

