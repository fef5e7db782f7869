"""The broker topology: one durable topic exchange for events, one dead-letter exchange,
and every consumer's own durable queue with its bindings.

All subscriptions are listed here, and every service declares all of them at start-up, so
a queue exists before the first event it wants is published, whichever service starts first.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika

from shared.contracts import registered_events

# A message redelivered this many times (crash loops) is dead-lettered by RabbitMQ itself;
# Debian's RabbitMQ 3.10 sets no default delivery limit on quorum queues.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Subscription:
    service: str
    name: str
    routing_keys: tuple[str, ...]
    # Per stream, an event older than the last one applied is dead-lettered as out of order.
    # A projection that does not depend on arrival order (reporting's, which orders events by
    # their own time) turns this off, so replayed history may arrive after newer live events.
    ordered: bool = True

    def queue(self, namespace: str) -> str:
        return f"{namespace}.{self.service}.{self.name}"


def _keys(source: str, *event_types: str) -> tuple[str, ...]:
    return tuple(f"{source}.{t}" for t in event_types)


DIRECTORY_KEYS = _keys(
    "roster",
    "DepartmentRegistered",
    "DivisionCreated",
    "DivisionRenamed",
    "PersonAdded",
    "PersonRolesChanged",
    "PersonMoved",
    "PersonRemoved",
    "SigningKeyRegistered",
    "ActingHeadDesignated",
    "PlanActivated",
    "PlanAmended",
    "PlanEnded",
    "HolidayAdded",
    "HolidayRemoved",
)

# The events notify tells people about (its routing rules, services/notify/rules.py, name
# the same ones: a unit test keeps the two lists equal).
NOTIFY_KEYS = (
    _keys("leave", "LeaveRequested", "LeaveApproved", "LeaveRejected", "LeaveCancelled")
    + _keys("roster", "RosterSubmitted", "RosterCompiled", "RosterApproved", "RosterReturned",
            "CoverageGapRecorded", "CoverageGapClosed", "CheckInMissed", "CheckedIn")
    + _keys("documents", "DraftSubmitted", "DraftApproved", "DraftReturned", "DraftReadyForSigning",
            "DocumentSigned", "DocumentIssued", "SecretDocumentSummons", "TaskAssigned",
            "TaskOverdue", "MeetingScheduled", "MeetingCancelled")
    + _keys("reporting", "ReportPublished")
)

# Replayed history (the `RepublishEvents` command every service answers) is published to
# `replay.<target>.<source>.<EventType>`: only the target's queue binds it, so no other
# consumer sees an event twice.
REPLAY_PREFIX = "replay"


def replay_routing_key(target: str, routing_key: str) -> str:
    return f"{REPLAY_PREFIX}.{target}.{routing_key}"


def every_event_key(except_owner: str) -> tuple[str, ...]:
    """The routing key of every registered event type but those `except_owner` publishes."""
    return tuple(sorted(
        f"{cls.owner}.{name}" for name, cls in registered_events().items() if cls.owner != except_owner
    ))


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("leave", "directory", DIRECTORY_KEYS),
    # Approved leave takes people off the roster's lists (and may open coverage gaps).
    Subscription("roster", "leave", _keys("leave", "LeaveApproved", "LeaveCancelled")),
    Subscription("notify", "directory", DIRECTORY_KEYS),
    Subscription("notify", "events", NOTIFY_KEYS),
    Subscription("documents", "directory", DIRECTORY_KEYS),
    # Reporting keeps its own copy of the whole stream, live and replayed.
    Subscription("reporting", "events",
                 every_event_key("reporting") + (f"{REPLAY_PREFIX}.reporting.#",), ordered=False),
)

COMMAND_SERVICES = ("roster", "leave", "notify", "documents", "reporting")


def notifications_exchange(namespace: str) -> str:
    """Where notify publishes to chat bots: a durable topic exchange whose routing keys are
    `<tenant>.person.<person_id>` (each message also carries `<tenant>.division.<division_id>`
    as a CC key), so a bot binds its own queue to one person, one division or `<tenant>.#`."""
    return f"{namespace}.notifications"


def subscriptions_of(service: str) -> tuple[Subscription, ...]:
    return tuple(s for s in SUBSCRIPTIONS if s.service == service)


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def queue_arguments(namespace: str, queue: str) -> dict:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": f"{namespace}.dead-letters",
        "x-dead-letter-routing-key": queue,
        "x-delivery-limit": DELIVERY_LIMIT,
        # One consumer at a time keeps each stream's events in order; replicas stand by.
        "x-single-active-consumer": True,
    }


def all_queues(namespace: str) -> list[str]:
    queues = [s.queue(namespace) for s in SUBSCRIPTIONS]
    queues += [f"{namespace}.{svc}.commands" for svc in COMMAND_SERVICES]
    return queues


async def declare(channel: aio_pika.abc.AbstractChannel, namespace: str) -> None:
    events = await channel.declare_exchange(
        f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead = await channel.declare_exchange(
        f"{namespace}.dead-letters", aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        notifications_exchange(namespace), aio_pika.ExchangeType.TOPIC, durable=True
    )
    for queue_name in all_queues(namespace):
        dlq = await channel.declare_queue(
            dead_letter_queue(queue_name), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(dead, routing_key=queue_name)
        await channel.declare_queue(
            queue_name, durable=True, arguments=queue_arguments(namespace, queue_name)
        )
    for sub in SUBSCRIPTIONS:
        queue = await channel.get_queue(sub.queue(namespace), ensure=False)
        for key in sub.routing_keys:
            await queue.bind(events, routing_key=key)


async def delete(channel: aio_pika.abc.AbstractChannel, namespace: str) -> None:
    """Remove a namespace's queues and exchanges (test runs clean up after themselves)."""
    for queue_name in all_queues(namespace):
        for name in (queue_name, dead_letter_queue(queue_name)):
            await channel.queue_delete(name)
    for exchange in (f"{namespace}.events", f"{namespace}.dead-letters",
                     notifications_exchange(namespace)):
        await channel.exchange_delete(exchange)
