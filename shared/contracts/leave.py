"""Events owned by the leave service: entitlements and leave applications."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from pydantic import Field

from shared.contracts import Event, event, upcaster

OWNER = "leave"

HalfDay = Literal["morning", "afternoon"]


def ledger_stream(tenant: str, person_id: str) -> str:
    """A person's leave ledger is one stream: overlap and entitlement are checked within it."""
    return f"leave-{tenant}-{person_id}"


@event(OWNER, "LeaveEntitlementSet")
class LeaveEntitlementSet(Event):
    person_id: str
    days_per_year: float = Field(ge=0, le=60)


@event(OWNER, "LeaveRequested", version=2)
class LeaveRequested(Event):
    application_id: uuid.UUID
    person_id: str
    division_id: str
    start_date: date
    end_date: date
    half_day: HalfDay | None = None
    working_dates: tuple[date, ...] = Field(min_length=1)
    days: float = Field(gt=0)
    reason: str


@upcaster("LeaveRequested", from_version=1)
def _leave_requested_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 knew only whole days: `days` was the count of working dates."""
    return {**payload, "half_day": None, "days": float(len(payload["working_dates"]))}


@event(OWNER, "LeaveApproved")
class LeaveApproved(Event):
    application_id: uuid.UUID
    person_id: str
    division_id: str
    approver_id: str
    working_dates: tuple[date, ...]
    days: float
    content_sha256: str
    signature: str
    key_id: str


@event(OWNER, "LeaveRejected")
class LeaveRejected(Event):
    application_id: uuid.UUID
    person_id: str
    division_id: str
    approver_id: str
    reason: str = Field(min_length=1)


@event(OWNER, "LeaveCancelled")
class LeaveCancelled(Event):
    application_id: uuid.UUID
    person_id: str
    division_id: str
    working_dates: tuple[date, ...]
    cancelled_by: str
    reason: str = ""
