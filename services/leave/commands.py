"""Commands and queries the leave service accepts."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.leave import HalfDay


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestLeave(_Message):
    """File a leave application for full days or one half day, within the active plan."""

    application_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    start_date: date
    end_date: date
    half_day: HalfDay | None = None
    reason: str = Field(min_length=1, max_length=1000)


class ApproveLeave(_Message):
    """The head approves, signing the application's canonical content (see GetApprovalContent)."""

    application_id: uuid.UUID
    key_id: str = Field(min_length=1, max_length=100)
    signature: str = Field(min_length=10, max_length=200, description="Ed25519 signature, base64")


class RejectLeave(_Message):
    application_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=1000)


class CancelLeave(_Message):
    application_id: uuid.UUID
    reason: str = Field(default="", max_length=1000)


class SetLeaveEntitlement(_Message):
    """Annual entitlement of one person (12 days unless set)."""

    person_id: str
    days_per_year: float = Field(ge=0, le=60)


class GetApprovalContent(_Message):
    """The exact content an approver signs, canonical JSON as a string."""

    application_id: uuid.UUID


class VerifyLeaveApproval(_Message):
    """Check an approval's signature against the approver's registered public key."""

    application_id: uuid.UUID


class ListLeaveApplications(_Message):
    person_id: str | None = None
    division_id: str | None = None
    on_date: date | None = None
    status: str | None = Field(default=None, pattern="^(pending|approved|rejected|cancelled)$")
    limit: int = Field(default=200, ge=1, le=1000)


class GetLeaveBalance(_Message):
    person_id: str | None = None
    year: int | None = Field(default=None, ge=2000, le=2100)
