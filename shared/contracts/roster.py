"""Events owned by the roster service: the organisation directory and remote-work plans."""

from __future__ import annotations

from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    onsite_rules: tuple[dict, ...] = ()


@event(OWNER, "PlanEnded")
class PlanEnded(Event):
    plan_id: str
    effective_until: date
