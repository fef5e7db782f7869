"""Commands and queries the notify service accepts."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.notify import Category, Channel


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListNotifications(_Message):
    """The actor's notifications, newest first (the IT team may name a person)."""

    person_id: str | None = None
    unread_only: bool = False
    before_seq: int | None = Field(default=None, ge=1, description="page back from this id")
    limit: int = Field(default=50, ge=1, le=500)


class MarkRead(_Message):
    """Mark some of the actor's notifications read, or all of them."""

    notification_ids: tuple[uuid.UUID, ...] = Field(default=(), max_length=1000)
    all: bool = False


class GetDeliveryStatus(_Message):
    """Who was told about an event, on which channel, and whether it arrived."""

    source_event_id: uuid.UUID


class SetNotificationPreferences(_Message):
    """The channels a person wants for one kind of notification (web is always on)."""

    category: Category
    channels: tuple[Channel, ...] = Field(max_length=3)
    person_id: str | None = None


class GetNotificationPreferences(_Message):
    """The channels in force per kind: the person's choices, else their roles' defaults."""

    person_id: str | None = None
