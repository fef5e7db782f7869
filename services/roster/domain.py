"""The department's directory as an aggregate: decisions about divisions, people, keys, plans
and the holiday calendar.

Pure: it is built from the directory stream's events and returns the new events a command
produces, or raises a DomainError. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from shared.commands import DomainError, NotFound
from shared.contracts import Event
from shared.contracts import roster as ev
from shared.localtime import vn_date


@dataclass
class PersonState:
    division_id: str
    roles: tuple[str, ...]
    full_name: str
    email: str
    locale: str
    active: bool = True


@dataclass
class DepartmentDirectory:
    registered: bool = False
    name: str = ""
    symbol: str = ""
    divisions: dict[str, ev.DivisionCreated] = field(default_factory=dict)
    people: dict[str, PersonState] = field(default_factory=dict)
    key_ids: set[str] = field(default_factory=set)
    plans: dict[str, ev.PlanActivated] = field(default_factory=dict)
    ended_plans: dict[str, date] = field(default_factory=dict)
    holidays: dict[date, str] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: list[Event]) -> DepartmentDirectory:
        state = cls()
        for e in events:
            state.apply(e)
        return state

    def apply(self, e: Event) -> None:
        match e:
            case ev.DepartmentRegistered():
                self.registered, self.name, self.symbol = True, e.name, e.symbol
            case ev.DivisionCreated():
                self.divisions[e.division_id] = e
            case ev.DivisionRenamed():
                self.divisions[e.division_id] = self.divisions[e.division_id].model_copy(
                    update={"name": e.name}
                )
            case ev.PersonAdded():
                self.people[e.person_id] = PersonState(
                    e.division_id, e.roles, e.full_name, e.email, e.locale
                )
            case ev.PersonRolesChanged():
                self.people[e.person_id].roles = e.roles
            case ev.PersonMoved():
                self.people[e.person_id].division_id = e.division_id
            case ev.PersonRemoved():
                self.people[e.person_id].active = False
            case ev.SigningKeyRegistered():
                self.key_ids.add(e.key_id)
            case ev.PlanActivated():
                self.plans[e.plan_id] = e
            case ev.PlanAmended():
                changes = {k: v for k, v in e.model_dump(exclude={"plan_id", "reason"}).items() if v is not None}
                self.plans[e.plan_id] = ev.PlanActivated.model_validate(
                    {**self.plans[e.plan_id].model_dump(), **changes}
                )
            case ev.PlanEnded():
                self.ended_plans[e.plan_id] = e.effective_until
            case ev.HolidayAdded():
                self.holidays[e.day] = e.name
            case ev.HolidayRemoved():
                self.holidays.pop(e.day, None)

    # --- decisions -----------------------------------------------------------------------

    def import_department(self, spec) -> list[Event]:
        """Events that bring the directory to `spec`; importing the same file twice adds nothing."""
        out: list[Event] = []
        if not self.registered or (self.name, self.symbol) != (spec.name, spec.symbol):
            out.append(ev.DepartmentRegistered(name=spec.name, symbol=spec.symbol))
        for d in spec.divisions:
            known = self.divisions.get(d.id)
            if known is None:
                out.append(ev.DivisionCreated(division_id=d.id, name=d.name, kind=d.kind))
            elif known.name != d.name:
                out.append(ev.DivisionRenamed(division_id=d.id, name=d.name))
        division_ids = set(self.divisions) | {d.id for d in spec.divisions}
        for p in spec.people:
            if p.division_id not in division_ids:
                raise DomainError(
                    f"Cán bộ {p.id} thuộc phòng “{p.division_id}” không có trong danh sách phòng.",
                    f"Person {p.id} belongs to unknown division {p.division_id!r}.",
                    code="invalid", person_id=p.id, division_id=p.division_id,
                )
            known = self.people.get(p.id)
            if known is None:
                out.append(
                    ev.PersonAdded(
                        person_id=p.id, full_name=p.full_name, email=p.email,
                        division_id=p.division_id, roles=tuple(p.roles), locale=p.locale,
                    )
                )
                continue
            if not known.active:
                continue  # a removed person stays removed; the file cannot silently revive them
            if known.division_id != p.division_id:
                out.append(ev.PersonMoved(person_id=p.id, division_id=p.division_id))
            if tuple(known.roles) != tuple(p.roles):
                out.append(ev.PersonRolesChanged(person_id=p.id, roles=tuple(p.roles)))
        return out

    def add_person(self, e: ev.PersonAdded) -> list[Event]:
        if e.person_id in self.people:
            raise DomainError(
                f"Mã cán bộ {e.person_id} đã tồn tại.", f"Person {e.person_id} already exists.",
                code="already_exists",
            )
        self._require_division(e.division_id)
        return [e]

    def change_roles(self, person_id: str, roles: tuple[str, ...]) -> list[Event]:
        self._require_person(person_id)
        return [ev.PersonRolesChanged(person_id=person_id, roles=roles)]

    def move_person(self, person_id: str, division_id: str) -> list[Event]:
        self._require_person(person_id)
        self._require_division(division_id)
        return [ev.PersonMoved(person_id=person_id, division_id=division_id)]

    def remove_person(self, person_id: str) -> list[Event]:
        self._require_person(person_id)
        return [ev.PersonRemoved(person_id=person_id)]

    def register_signing_key(self, person_id: str, key_id: str, public_key: str) -> list[Event]:
        self._require_person(person_id)
        if key_id in self.key_ids:
            raise DomainError(
                f"Khóa {key_id} đã được đăng ký.", f"Key {key_id} is already registered.",
                code="already_exists",
            )
        return [ev.SigningKeyRegistered(person_id=person_id, key_id=key_id, public_key=public_key)]

    def designate_acting_head(
        self, division_id: str, person_id: str, valid_from: date, valid_until: date
    ) -> list[Event]:
        person = self._require_person(person_id)
        self._require_division(division_id)
        if person.division_id != division_id or "deputy_division_head" not in person.roles:
            raise DomainError(
                "Chỉ phó trưởng phòng của chính phòng đó mới được giao quyền trưởng phòng.",
                "Only a deputy head of the same division can act for its head.",
            )
        if valid_until < valid_from:
            raise DomainError(
                "Ngày kết thúc phải sau ngày bắt đầu.", "The end date precedes the start date.",
                code="invalid",
            )
        return [
            ev.ActingHeadDesignated(
                division_id=division_id, person_id=person_id, valid_from=valid_from,
                valid_until=valid_until,
            )
        ]

    def activate_plan(self, e: ev.PlanActivated) -> list[Event]:
        if e.plan_id in self.plans:
            raise DomainError(
                f"Kế hoạch {e.plan_id} đã được kích hoạt.", f"Plan {e.plan_id} is already active.",
                code="already_exists",
            )
        if e.effective_until is not None and e.effective_until < e.effective_from:
            raise DomainError(
                "Ngày kết thúc phải sau ngày bắt đầu.", "The end date precedes the start date.",
                code="invalid",
            )
        check_sessions(e.sessions)
        return [e]

    def amend_plan(self, e: ev.PlanAmended) -> list[Event]:
        """A change to a plan's title, sessions, own holidays, on-site rules or check-in grace."""
        plan = self.plans.get(e.plan_id)
        if plan is None:
            raise NotFound(f"Không có kế hoạch {e.plan_id}.", f"No plan {e.plan_id}.")
        if e.sessions is not None:
            check_sessions(e.sessions)
        current = plan.model_dump(mode="json")  # as stored: compares lists with lists
        changed = {
            k for k, v in e.model_dump(mode="json", exclude={"plan_id", "reason"}).items()
            if v is not None and v != current[k]
        }
        if not changed:
            raise DomainError(
                "Nội dung điều chỉnh không thay đổi gì trong kế hoạch.",
                "The amendment changes nothing in the plan.", code="no_change",
            )
        return [e]

    def add_holiday(self, day: date, name: str) -> list[Event]:
        if self.holidays.get(day) == name:
            raise DomainError(
                f"Ngày {vn_date(day)} đã là ngày nghỉ “{name}”.", f"{day} is already the holiday {name!r}.",
                code="already_exists",
            )
        return [ev.HolidayAdded(day=day, name=name)]

    def remove_holiday(self, day: date) -> list[Event]:
        if day not in self.holidays:
            raise NotFound(
                f"Ngày {vn_date(day)} không có trong lịch nghỉ của Sở.",
                f"{day} is not in the department's holiday calendar.",
            )
        return [ev.HolidayRemoved(day=day)]

    def end_plan(self, plan_id: str, effective_until: date) -> list[Event]:
        plan = self.plans.get(plan_id)
        if plan is None:
            raise NotFound(f"Không có kế hoạch {plan_id}.", f"No plan {plan_id}.")
        if effective_until < plan.effective_from:
            raise DomainError(
                "Kế hoạch không thể kết thúc trước ngày bắt đầu.",
                "A plan cannot end before it starts.", code="invalid",
            )
        return [ev.PlanEnded(plan_id=plan_id, effective_until=effective_until)]

    def _require_person(self, person_id: str) -> PersonState:
        person = self.people.get(person_id)
        if person is None or not person.active:
            raise NotFound(f"Không có cán bộ {person_id}.", f"No person {person_id}.")
        return person

    def _require_division(self, division_id: str) -> None:
        if division_id not in self.divisions:
            raise NotFound(f"Không có phòng {division_id}.", f"No division {division_id}.")


def check_sessions(sessions: tuple[ev.WorkingSession, ...]) -> None:
    """Working sessions start before they end, in order, without overlapping."""
    if not sessions:
        raise DomainError("Kế hoạch cần ít nhất một buổi làm việc.", "A plan needs a working session.",
                          code="invalid")
    previous_end = None
    for s in sessions:
        if s.ends <= s.starts or (previous_end is not None and s.starts < previous_end):
            raise DomainError(
                f"Buổi làm việc {s.starts:%H:%M}-{s.ends:%H:%M} không hợp lệ: các buổi phải theo thứ tự "
                "và không chồng lên nhau.",
                f"Working session {s.starts:%H:%M}-{s.ends:%H:%M} is invalid: sessions must be in order "
                "and not overlap.", code="invalid",
            )
        previous_end = s.ends
