"""Commands and queries the roster service accepts (directory and plans)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts.roster import DivisionKind, Role, WorkingSession, DEFAULT_SESSIONS


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
    plan_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    effective_from: date
    effective_until: date | None = None
    sessions: tuple[WorkingSession, ...] = DEFAULT_SESSIONS
    holidays: tuple[date, ...] = ()
    onsite_rules: tuple[dict, ...] = ()


class EndPlan(_Command):
    plan_id: str
    effective_until: date


class GetDirectory(_Command):
    """The department's divisions and active staff with their roles."""

    division_id: str | None = None


class GetPlans(_Command):
    """The department's plans with their effective periods."""
