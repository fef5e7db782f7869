"""Commands and queries the roster service accepts: directory, plans, rosters, presence."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.contracts.roster import (
    DEFAULT_SESSIONS, DayList, DivisionKind, HealthStatus, OnsiteRule, Role, WorkingSession,
)


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DivisionSpec(_Command):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    kind: DivisionKind = "division"


class PersonSpec(_Command):
    id: str = Field(min_length=1, max_length=64)
    full_name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=200)
    division_id: str
    roles: tuple[Role, ...] = Field(min_length=1)
    locale: Literal["vi", "en"] = "vi"
    leave_entitlement_days: float | None = None  # leave service's concern; carried by the file


class ImportDepartment(_Command):
    """The department file (divisions and staff): applied as the difference from what is known."""

    tenant: str | None = None
    name: str = Field(min_length=1, max_length=300)
    symbol: str = Field(min_length=1, max_length=30)
    divisions: tuple[DivisionSpec, ...] = Field(min_length=1, max_length=100)
    people: tuple[PersonSpec, ...] = Field(max_length=5000)

    @model_validator(mode="after")
    def _unique_ids(self) -> ImportDepartment:
        for label, ids in (("division", [d.id for d in self.divisions]), ("person", [p.id for p in self.people])):
            if len(ids) != len(set(ids)):
                raise ValueError(f"duplicate {label} ids")
        return self


class AddPerson(_Command):
    person_id: str = Field(min_length=1, max_length=64)
    full_name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=200)
    division_id: str
    roles: tuple[Role, ...] = Field(min_length=1)
    locale: Literal["vi", "en"] = "vi"


class ChangeRoles(_Command):
    person_id: str
    roles: tuple[Role, ...] = Field(min_length=1)


class MovePerson(_Command):
    person_id: str
    division_id: str


class RemovePerson(_Command):
    person_id: str


class RegisterSigningKey(_Command):
    person_id: str
    key_id: str = Field(min_length=1, max_length=100)
    public_key: str = Field(min_length=40, max_length=100, description="Ed25519 raw public key, base64")


class DesignateActingHead(_Command):
    division_id: str
    person_id: str
    valid_from: date
    valid_until: date


class ActivatePlan(_Command):
    """Switch the department into remote-work mode: period (open-ended allowed), working
    sessions, the plan's own days off, its on-site rules and the check-in grace."""

    plan_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    effective_from: date
    effective_until: date | None = None
    sessions: tuple[WorkingSession, ...] = DEFAULT_SESSIONS
    holidays: tuple[date, ...] = ()
    onsite_rules: tuple[OnsiteRule, ...] = ()
    check_in_grace_minutes: int = Field(default=30, ge=0, le=240)


class AmendPlan(_Command):
    """Change some of a plan's terms; each amendment is one event, fields left out keep their value."""

    plan_id: str
    title: str | None = Field(default=None, min_length=1, max_length=300)
    sessions: tuple[WorkingSession, ...] | None = None
    holidays: tuple[date, ...] | None = None
    onsite_rules: tuple[OnsiteRule, ...] | None = None
    check_in_grace_minutes: int | None = Field(default=None, ge=0, le=240)
    reason: str = Field(default="", max_length=1000)


class AddHoliday(_Command):
    """A day off in the department's holiday calendar (applies to every plan)."""

    day: date
    name: str = Field(min_length=1, max_length=200)


class RemoveHoliday(_Command):
    day: date


class EndPlan(_Command):
    plan_id: str
    effective_until: date


class GetDirectory(_Command):
    """The department's divisions and active staff with their roles."""

    division_id: str | None = None


class GetPlans(_Command):
    """The department's plans with their effective periods."""


class GetHolidays(_Command):
    """The department's holiday calendar."""


# --- rosters ---------------------------------------------------------------------------------


class SubmitRoster(_Command):
    """A division's lists for one or more working days (replaces earlier lists of those days)."""

    submission_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    division_id: str
    days: tuple[DayList, ...] = Field(min_length=1, max_length=31)


class CompileRoster(_Command):
    """The Office compiles every division's lists for a date range into the department roster."""

    roster_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    start: date
    end: date


class ApproveRoster(_Command):
    """The Director approves a compiled roster; violations need `override_reason`."""

    roster_id: uuid.UUID
    override_reason: str | None = Field(default=None, max_length=1000)


class ReturnRoster(_Command):
    roster_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=1000)


class DelegateRosterApproval(_Command):
    """The Director lets a deputy director decide on rosters from `valid_from` to `valid_until`."""

    person_id: str
    valid_from: date
    valid_until: date


class GetDayRoster(_Command):
    """Who is on site, at home and on leave on a day (optionally one division)."""

    day: date
    division_id: str | None = None


class GetDivisionLists(_Command):
    """A division's current lists for a date range, and which days have none."""

    division_id: str
    start: date
    end: date


class GetRosterStatus(_Command):
    """Per working day of a range: the roster's status, missing lists, violations, coverage gaps."""

    start: date
    end: date


class GetRoster(_Command):
    """One compiled roster with its lists, violations and decision."""

    roster_id: uuid.UUID


# --- presence --------------------------------------------------------------------------------


class CheckIn(_Command):
    """A home worker checks in for the session under way; `place` defaults to the registered one."""

    place: str | None = Field(default=None, max_length=300)


class DeclareHealth(_Command):
    """The actor's health declaration for today."""

    status: HealthStatus
    note: str = Field(default="", max_length=1000)


class DetectMissingCheckIns(_Command):
    """Record home workers who have not checked in by each session's deadline up to `at`
    (default: now). The service's scheduler sends it every minute; idempotent."""

    at: AwareDatetime | None = None


class ListMissingCheckIns(_Command):
    """Home workers of an approved day without a check-in, per session whose start has passed."""

    day: date
    session: int | None = Field(default=None, ge=0)
    division_id: str | None = None


class GetPresence(_Command):
    """Each home worker's check-ins (or misses) and everyone's health declaration for a day."""

    day: date
    division_id: str | None = None
