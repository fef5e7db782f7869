"""Events owned by the notify service: what each delivery came to, read receipts, preferences.

A delivery is one (source event, kind of notification, recipient, channel). Its outcome is
recorded once, in the stream `notification-<delivery_id>`, so a second outcome for the same
delivery cannot be written. No event here carries a notification's text: secret-document
summons must never leak through the event stream either.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from shared.contracts import Event, event

OWNER = "notify"

Channel = Literal["web", "bot", "email"]
# The kinds of notification a person sets channels for.
Category = Literal["leave", "roster", "presence", "documents", "tasks", "meetings", "summons", "reports"]


def delivery_stream(delivery_id: uuid.UUID) -> str:
    return f"notification-{delivery_id}"


def person_stream(tenant: str, person_id: str) -> str:
    """A person's own notification settings and read receipts."""
    return f"notify-{tenant}-{person_id}"


@event(OWNER, "NotificationSent")
class NotificationSent(Event):
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    source_event_id: uuid.UUID
    source_event_type: str
    kind: str = Field(description="The routing rule's kind, e.g. LeaveRequested or MeetingReminder")
    recipient_id: str
    channel: Channel
    attempts: int = Field(ge=1)


@event(OWNER, "NotificationFailed")
class NotificationFailed(Event):
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    source_event_id: uuid.UUID
    source_event_type: str
    kind: str
    recipient_id: str
    channel: Channel
    attempts: int = Field(ge=0)
    reason: str = Field(min_length=1)


@event(OWNER, "NotificationsRead")
class NotificationsRead(Event):
    person_id: str
    notification_ids: tuple[uuid.UUID, ...] = Field(min_length=1)


@event(OWNER, "NotificationPreferencesSet")
class NotificationPreferencesSet(Event):
    """A person's channels for one kind of notification; the web feed always keeps everything."""

    person_id: str
    category: Category
    channels: tuple[Channel, ...]
