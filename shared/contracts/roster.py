"""Events owned by the roster service: the directory, plans, daily rosters and presence."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.contracts import Event, event

OWNER = "roster"

Role = Literal[
    "director",
    "deputy_director",
    "chief_of_office",
    "division_head",
    "deputy_division_head",
    "format_checker",
    "secret_document_handler",
    "staff",
]
LEADER_ROLES: frozenset[str] = frozenset({"director", "deputy_director"})
DivisionKind = Literal["leadership", "office", "division"]


def directory_stream(tenant: str) -> str:
    """One stream per department keeps the directory's changes in a single total order."""
    return f"directory-{tenant}"


@event(OWNER, "DepartmentRegistered")
class DepartmentRegistered(Event):
    name: str = Field(min_length=1)
    symbol: str = Field(min_length=1, description="Used in document symbols, e.g. STTTT")


@event(OWNER, "DivisionCreated")
class DivisionCreated(Event):
    division_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kind: DivisionKind


@event(OWNER, "DivisionRenamed")
class DivisionRenamed(Event):
    division_id: str
    name: str = Field(min_length=1)


@event(OWNER, "PersonAdded")
class PersonAdded(Event):
    person_id: str = Field(min_length=1)
    full_name: str = Field(min_length=1)
    email: str
    division_id: str
    roles: tuple[Role, ...] = Field(min_length=1)
    locale: Literal["vi", "en"] = "vi"


@event(OWNER, "PersonRolesChanged")
class PersonRolesChanged(Event):
    person_id: str
    roles: tuple[Role, ...] = Field(min_length=1)


@event(OWNER, "PersonMoved")
class PersonMoved(Event):
    person_id: str
    division_id: str


@event(OWNER, "PersonRemoved")
class PersonRemoved(Event):
    person_id: str


@event(OWNER, "SigningKeyRegistered")
class SigningKeyRegistered(Event):
    """A person's public key for electronic signatures (Ed25519, raw bytes, base64)."""

    person_id: str
    key_id: str
    public_key: str


@event(OWNER, "ActingHeadDesignated")
class ActingHeadDesignated(Event):
    """A deputy acts for the division head for a bounded period."""

    division_id: str
    person_id: str
    valid_from: date
    valid_until: date


class WorkingSession(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    starts: time
    ends: time


DEFAULT_SESSIONS = (
    WorkingSession(starts=time(7, 0), ends=time(11, 30)),
    WorkingSession(starts=time(13, 30), ends=time(17, 0)),
)


@event(OWNER, "PlanActivated")
class PlanActivated(Event):
    plan_id: str
    title: str
    effective_from: date
    effective_until: date | None = None
    sessions: tuple[WorkingSession, ...] = DEFAULT_SESSIONS
    holidays: tuple[date, ...] = ()
    onsite_rules: tuple[dict, ...] = ()  # see OnsiteRule for the shapes
    check_in_grace_minutes: int = Field(default=30, ge=0, le=240)


@event(OWNER, "PlanEnded")
class PlanEnded(Event):
    plan_id: str
    effective_until: date


# --- amendments and the holiday calendar -------------------------------------------------
# PlanActivated.onsite_rules stays a tuple of plain dicts on the wire (schema v1); the shapes
# a rule may take are the models below, checked when a plan is activated or amended.

Duty = Literal["leader_on_duty", "covid_duty", "office_duty", "secret_documents", "assigned_task"]
DESIGNATED_DUTIES: tuple[str, ...] = ("leader_on_duty", "covid_duty", "office_duty", "secret_documents")


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MinLeadersOnSite(_Rule):
    """At least `count` department leaders on site every working day (2020 plan: 1)."""

    rule: Literal["min_leaders_on_site"] = "min_leaders_on_site"
    count: int = Field(ge=1, le=20)


class MinStaffPerDivisionOnSite(_Rule):
    """At least `count` people of every division (and the Office) on site (2020 plan: 1)."""

    rule: Literal["min_staff_per_division_on_site"] = "min_staff_per_division_on_site"
    count: int = Field(ge=1, le=50)


class OnlyDesignatedOnSite(_Rule):
    """Only people assigned one of `duties` come in; everyone else works from home (2021 plan)."""

    rule: Literal["only_designated_on_site"] = "only_designated_on_site"
    duties: tuple[Duty, ...] = Field(default=DESIGNATED_DUTIES, min_length=1)


class MinOnDuty(_Rule):
    """At least `count` people on site with `duty` every working day (e.g. one leader on duty)."""

    rule: Literal["min_on_duty"] = "min_on_duty"
    duty: Duty
    count: int = Field(default=1, ge=1, le=20)


OnsiteRule = Annotated[
    MinLeadersOnSite | MinStaffPerDivisionOnSite | OnlyDesignatedOnSite | MinOnDuty,
    Field(discriminator="rule"),
]
_RULES = TypeAdapter(tuple[OnsiteRule, ...])


def parse_onsite_rules(rules: tuple[dict, ...] | list[dict]) -> tuple[OnsiteRule, ...]:
    """The typed rules of a plan's `onsite_rules` (raises pydantic.ValidationError when malformed)."""
    return _RULES.validate_python(tuple(rules))


@event(OWNER, "PlanAmended")
class PlanAmended(Event):
    """One change to an active plan; fields left None keep their value."""

    plan_id: str
    title: str | None = None
    sessions: tuple[WorkingSession, ...] | None = None
    holidays: tuple[date, ...] | None = None
    onsite_rules: tuple[dict, ...] | None = None
    check_in_grace_minutes: int | None = Field(default=None, ge=0, le=240)
    reason: str = ""


@event(OWNER, "HolidayAdded")
class HolidayAdded(Event):
    """A day off in the department's holiday calendar: no plan counts it as a working day."""

    day: date
    name: str = Field(min_length=1)


@event(OWNER, "HolidayRemoved")
class HolidayRemoved(Event):
    day: date


# --- rosters -------------------------------------------------------------------------------

Location = Literal["on_site", "home"]


def roster_stream(tenant: str) -> str:
    """The department's roster book: division lists, compilations, decisions and coverage gaps.

    One stream per department keeps them in one order; deciders read the roster tables
    (kept in the same transactions) under a per-department lock instead of replaying it."""
    return f"rosters-{tenant}"


def presence_stream(tenant: str, person_id: str, day: date) -> str:
    """A person's working day: check-ins, health declaration, missed check-ins."""
    return f"presence-{tenant}-{person_id}-{day.isoformat()}"


class RosterEntry(BaseModel):
    """One person on a division's list for a day: on site (with a duty when assigned one) or at
    home at a registered work place."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    person_id: str = Field(min_length=1, max_length=64)
    location: Location
    work_place: str | None = Field(default=None, max_length=300)
    duty: Duty | None = None


class DayList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    day: date
    entries: tuple[RosterEntry, ...]


class Violation(BaseModel):
    """A broken on-site rule: which day, which division (None: the department), which rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    day: date
    division_id: str | None
    rule: str
    message: str  # Vietnamese, for people
    person_id: str | None = None
    required: int | None = None
    actual: int | None = None


class CompiledList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    day: date
    division_id: str
    submission_id: uuid.UUID
    on_site: tuple[str, ...]
    at_home: tuple[str, ...]
    on_leave: tuple[str, ...] = ()


class MissingList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    day: date
    division_id: str


@event(OWNER, "RosterSubmitted")
class RosterSubmitted(Event):
    """A division's lists for one or more days; a later submission for a day replaces it."""

    submission_id: uuid.UUID
    division_id: str
    submitted_by: str
    days: tuple[DayList, ...] = Field(min_length=1)


@event(OWNER, "RosterCompiled")
class RosterCompiled(Event):
    """The Office's department roster for a date range, with every violation and missing list."""

    roster_id: uuid.UUID
    start: date
    end: date
    days: tuple[date, ...] = Field(min_length=1)
    compiled_by: str
    lists: tuple[CompiledList, ...]
    missing: tuple[MissingList, ...] = ()
    violations: tuple[Violation, ...] = ()
    supersedes: tuple[uuid.UUID, ...] = ()


@event(OWNER, "RosterApproved")
class RosterApproved(Event):
    roster_id: uuid.UUID
    approved_by: str
    delegated_by: str | None = None  # the Director, when a deputy approves by delegation
    overridden: tuple[Violation, ...] = ()
    override_reason: str | None = None


@event(OWNER, "RosterReturned")
class RosterReturned(Event):
    roster_id: uuid.UUID
    returned_by: str
    reason: str = Field(min_length=1)


@event(OWNER, "RosterApprovalDelegated")
class RosterApprovalDelegated(Event):
    """The Director lets a deputy director decide on rosters for a bounded period."""

    person_id: str
    delegated_by: str
    valid_from: date
    valid_until: date


@event(OWNER, "CoverageGapRecorded")
class CoverageGapRecorded(Event):
    """Approved leave took someone off an approved roster and broke an on-site rule."""

    gap_id: uuid.UUID
    roster_id: uuid.UUID
    day: date
    division_id: str
    rule: str
    person_id: str
    application_id: uuid.UUID
    message: str


@event(OWNER, "CoverageGapClosed")
class CoverageGapClosed(Event):
    """The leave behind a gap was cancelled and the rule holds again."""

    gap_id: uuid.UUID
    roster_id: uuid.UUID
    day: date
    division_id: str
    rule: str
    application_id: uuid.UUID


# --- presence ------------------------------------------------------------------------------

HealthStatus = Literal["well", "symptoms", "close_contact", "positive"]


@event(OWNER, "CheckedIn")
class CheckedIn(Event):
    person_id: str
    division_id: str
    day: date
    session: int = Field(ge=0)
    at: datetime
    place: str
    at_registered_place: bool
    late: bool = False


@event(OWNER, "HealthDeclared")
class HealthDeclared(Event):
    person_id: str
    day: date
    status: HealthStatus
    note: str = ""


@event(OWNER, "CheckInMissed")
class CheckInMissed(Event):
    """A home worker had not checked in by the session's deadline (its start plus the grace)."""

    person_id: str
    division_id: str
    day: date
    session: int = Field(ge=0)
    session_starts: datetime
    deadline: datetime
