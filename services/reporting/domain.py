"""The department as the event stream tells it, folded in memory. Pure: no I/O.

A report is a function of a set of events, not of the order they arrived in: facts are
folded in the order of their own time (occurred_at, then stream and version), so a store
rebuilt from replayed history, which arrives in another order, gives byte-identical reports.
"As of" a moment is the same fold stopped at that moment.

Handlers work on the stored payloads (plain JSON, already upcast to the current schema when
stored) rather than pydantic models: a 90-day period of a 300-person department is a few
hundred thousand facts, and validating each again would cost more than the report itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from shared.localtime import LOCAL_TZ

DEPARTMENT_LEADER_ROLES = frozenset({"director", "deputy_director"})
# Who leads on site in a division's row: the department's leaders and the divisions' heads.
LEADING_ROLES = DEPARTMENT_LEADER_ROLES | {"chief_of_office", "division_head", "deputy_division_head"}
DEFAULT_SESSIONS = 2


@dataclass(frozen=True)
class Fact:
    occurred_at: datetime
    stream_id: str
    stream_version: int
    event_type: str
    payload: dict

    @property
    def order(self) -> tuple:
        return (self.occurred_at, self.stream_id, self.stream_version)

    @property
    def local_day(self) -> date:
        return self.occurred_at.astimezone(LOCAL_TZ).date()


def end_of_day(day: date) -> datetime:
    """The last moment of a local day: what a daily figure is "as of" unless asked earlier."""
    return datetime.combine(day, time.max, LOCAL_TZ)


def cutoff(day: date, as_of: datetime | None) -> datetime:
    end = end_of_day(day)
    return end if as_of is None else min(end, as_of)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass
class Person:
    person_id: str
    full_name: str
    division_id: str
    roles: frozenset[str]
    active: bool = True


@dataclass
class Division:
    division_id: str
    name: str
    kind: str


@dataclass
class Plan:
    plan_id: str
    title: str
    effective_from: date
    effective_until: date | None
    sessions: int
    holidays: frozenset[date]

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_until is None or day <= self.effective_until)


@dataclass
class Roster:
    roster_id: str
    days: tuple[date, ...]
    violations: list[dict]
    status: str = "awaiting"  # approved, returned, superseded
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    overridden: list[dict] = field(default_factory=list)


@dataclass
class Leave:
    person_id: str
    division_id: str
    working_dates: frozenset[date]
    status: str = "pending"


@dataclass
class Document:
    register: str  # incoming, outgoing
    division_id: str | None
    state: str
    submitted_at: datetime | None = None
    overdue: bool = False
    issued_on: date | None = None
    issued_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state not in ("handled", "issued")

    @property
    def awaiting_signature(self) -> bool:
        return self.register == "outgoing" and self.state == "ready"


@dataclass
class Task:
    division_id: str
    done: bool = False
    overdue: bool = False


@dataclass
class Gap:
    day: date
    division_id: str
    rule: str
    person_id: str
    message: str
    open: bool = True


@dataclass
class Department:
    """One department's state after the facts applied so far."""

    tenant: str
    name: str = ""
    symbol: str = ""
    divisions: dict[str, Division] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    calendar: dict[date, str] = field(default_factory=dict)
    # rosters
    lists: dict[tuple[date, str], tuple[dict, ...]] = field(default_factory=dict)
    rosters: dict[str, Roster] = field(default_factory=dict)
    day_roster: dict[date, str] = field(default_factory=dict)
    gaps: dict[str, Gap] = field(default_factory=dict)
    # presence, by day
    check_ins: dict[date, dict[tuple[str, int], dict]] = field(default_factory=lambda: defaultdict(dict))
    missed: dict[date, set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))
    health: dict[date, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    # leave, documents, tasks, and what happened on each local day
    leave: dict[str, Leave] = field(default_factory=dict)
    documents: dict[str, Document] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    flows: dict[date, Counter] = field(default_factory=lambda: defaultdict(Counter))
    issued: dict[date, list[Document]] = field(default_factory=lambda: defaultdict(list))
    last_at: datetime | None = None

    # --- reading --------------------------------------------------------------------------

    def plan_for(self, day: date) -> Plan | None:
        covering = [p for p in self.plans.values() if p.covers(day)]
        return max(covering, key=lambda p: p.effective_from) if covering else None

    def is_working_day(self, day: date) -> bool:
        plan = self.plan_for(day)
        return (plan is not None and day.weekday() < 5 and day not in plan.holidays
                and day not in self.calendar)

    def name_of(self, person_id: str) -> str:
        person = self.people.get(person_id)
        return person.full_name if person else person_id

    def division_name(self, division_id: str | None) -> str:
        division = self.divisions.get(division_id or "")
        return division.name if division else (division_id or "")

    def roles_of(self, person_id: str) -> frozenset[str]:
        person = self.people.get(person_id)
        return person.roles if person else frozenset()

    def chief_of_office(self) -> Person | None:
        return next((p for p in self.people.values() if p.active and "chief_of_office" in p.roles), None)

    # --- folding --------------------------------------------------------------------------

    def apply(self, fact: Fact) -> None:
        handler = getattr(self, f"_on_{fact.event_type}", None)
        if handler is not None:
            handler(fact.payload, fact)
        self.last_at = fact.occurred_at

    def _on_DepartmentRegistered(self, p, f) -> None:
        self.name, self.symbol = p["name"], p["symbol"]

    def _on_DivisionCreated(self, p, f) -> None:
        self.divisions[p["division_id"]] = Division(p["division_id"], p["name"], p["kind"])

    def _on_DivisionRenamed(self, p, f) -> None:
        if p["division_id"] in self.divisions:
            self.divisions[p["division_id"]].name = p["name"]

    def _on_PersonAdded(self, p, f) -> None:
        self.people[p["person_id"]] = Person(p["person_id"], p["full_name"], p["division_id"],
                                             frozenset(p["roles"]))

    def _on_PersonRolesChanged(self, p, f) -> None:
        if p["person_id"] in self.people:
            self.people[p["person_id"]].roles = frozenset(p["roles"])

    def _on_PersonMoved(self, p, f) -> None:
        if p["person_id"] in self.people:
            self.people[p["person_id"]].division_id = p["division_id"]

    def _on_PersonRemoved(self, p, f) -> None:
        if p["person_id"] in self.people:
            self.people[p["person_id"]].active = False

    def _on_PlanActivated(self, p, f) -> None:
        self.plans[p["plan_id"]] = Plan(
            p["plan_id"], p["title"], date.fromisoformat(p["effective_from"]),
            _date(p.get("effective_until")), len(p.get("sessions") or ()) or DEFAULT_SESSIONS,
            frozenset(map(date.fromisoformat, p.get("holidays") or ())),
        )

    def _on_PlanAmended(self, p, f) -> None:
        plan = self.plans.get(p["plan_id"])
        if plan is None:
            return
        if p.get("title") is not None:
            plan.title = p["title"]
        if p.get("sessions") is not None:
            plan.sessions = len(p["sessions"]) or DEFAULT_SESSIONS
        if p.get("holidays") is not None:
            plan.holidays = frozenset(map(date.fromisoformat, p["holidays"]))

    def _on_PlanEnded(self, p, f) -> None:
        if p["plan_id"] in self.plans:
            self.plans[p["plan_id"]].effective_until = date.fromisoformat(p["effective_until"])

    def _on_HolidayAdded(self, p, f) -> None:
        self.calendar[date.fromisoformat(p["day"])] = p["name"]

    def _on_HolidayRemoved(self, p, f) -> None:
        self.calendar.pop(date.fromisoformat(p["day"]), None)

    def _on_RosterSubmitted(self, p, f) -> None:
        for day_list in p["days"]:
            self.lists[(date.fromisoformat(day_list["day"]), p["division_id"])] = tuple(day_list["entries"])

    def _on_RosterCompiled(self, p, f) -> None:
        for superseded in p.get("supersedes") or ():
            if superseded in self.rosters:
                self.rosters[superseded].status = "superseded"
        days = tuple(map(date.fromisoformat, p["days"]))
        self.rosters[p["roster_id"]] = Roster(p["roster_id"], days, list(p.get("violations") or ()))
        for day in days:
            self.day_roster[day] = p["roster_id"]

    def _on_RosterApproved(self, p, f) -> None:
        roster = self.rosters.get(p["roster_id"])
        if roster is not None:
            roster.status, roster.decided_by, roster.decided_at = "approved", p["approved_by"], f.occurred_at
            roster.overridden = list(p.get("overridden") or ())

    def _on_RosterReturned(self, p, f) -> None:
        roster = self.rosters.get(p["roster_id"])
        if roster is not None:
            roster.status, roster.decided_by, roster.decided_at = "returned", p["returned_by"], f.occurred_at
            roster.reason = p["reason"]

    def _on_CoverageGapRecorded(self, p, f) -> None:
        self.gaps[p["gap_id"]] = Gap(date.fromisoformat(p["day"]), p["division_id"], p["rule"],
                                     p["person_id"], p["message"])

    def _on_CoverageGapClosed(self, p, f) -> None:
        if p["gap_id"] in self.gaps:
            self.gaps[p["gap_id"]].open = False

    def _on_CheckedIn(self, p, f) -> None:
        self.check_ins[date.fromisoformat(p["day"])].setdefault(
            (p["person_id"], p["session"]),
            {"late": p.get("late", False), "at_registered_place": p["at_registered_place"]},
        )

    def _on_CheckInMissed(self, p, f) -> None:
        self.missed[date.fromisoformat(p["day"])].add((p["person_id"], p["session"]))

    def _on_HealthDeclared(self, p, f) -> None:
        self.health[date.fromisoformat(p["day"])][p["person_id"]] = p["status"]

    def _on_LeaveRequested(self, p, f) -> None:
        self.leave[p["application_id"]] = Leave(
            p["person_id"], p["division_id"], frozenset(map(date.fromisoformat, p["working_dates"])))
        self.flows[f.local_day]["leave_requested"] += 1

    def _leave_decided(self, p, f, status: str) -> None:
        if p["application_id"] in self.leave:
            self.leave[p["application_id"]].status = status
        self.flows[f.local_day][f"leave_{status}"] += 1

    def _on_LeaveApproved(self, p, f) -> None:
        self._leave_decided(p, f, "approved")

    def _on_LeaveRejected(self, p, f) -> None:
        self._leave_decided(p, f, "rejected")

    def _on_LeaveCancelled(self, p, f) -> None:
        self._leave_decided(p, f, "cancelled")

    def _on_DocumentReceived(self, p, f) -> None:
        self.documents[p["document_id"]] = Document("incoming", None, "received")
        self.flows[date.fromisoformat(p["received_on"])]["documents_received"] += 1

    def _on_DocumentAssigned(self, p, f) -> None:
        document = self.documents.get(p["document_id"])
        if document is not None:
            document.division_id, document.overdue = p["division_id"], False
            if document.state != "handled":
                document.state = "assigned"

    def _document_state(self, p, state: str) -> Document | None:
        document = self.documents.get(p["document_id"])
        if document is not None:
            document.state = state
        return document

    def _on_DocumentHandled(self, p, f) -> None:
        self._document_state(p, "handled")

    def _on_DocumentOverdue(self, p, f) -> None:
        document = self.documents.get(p["document_id"])
        if document is not None and document.open:
            document.overdue = True

    def _on_DraftSubmitted(self, p, f) -> None:
        document = self.documents.get(p["document_id"])
        if document is None:
            document = self.documents[p["document_id"]] = Document(
                "outgoing", p["division_id"], "submitted", submitted_at=f.occurred_at)
            self.flows[f.local_day]["drafts_submitted"] += 1
        document.state = "submitted"

    def _on_DraftApproved(self, p, f) -> None:
        self._document_state(p, "approved")

    def _on_DraftReturned(self, p, f) -> None:
        self._document_state(p, "returned")

    def _on_FormatChecked(self, p, f) -> None:
        self._document_state(p, "format_checked")

    def _on_DraftReadyForSigning(self, p, f) -> None:
        self._document_state(p, "ready")

    def _on_DocumentSigned(self, p, f) -> None:
        self._document_state(p, "signed")

    def _on_DocumentIssued(self, p, f) -> None:
        document = self._document_state(p, "issued")
        if document is not None:
            document.issued_on, document.issued_at = date.fromisoformat(p["issued_on"]), f.occurred_at
            self.issued[document.issued_on].append(document)

    def _on_TaskAssigned(self, p, f) -> None:
        self.tasks[p["task_id"]] = Task(p["division_id"])
        self.flows[f.local_day]["tasks_assigned"] += 1

    def _on_TaskCompleted(self, p, f) -> None:
        task = self.tasks.get(p["task_id"])
        if task is not None and not task.done:
            task.done = True
            self.flows[f.local_day]["tasks_done"] += 1

    def _on_TaskOverdue(self, p, f) -> None:
        task = self.tasks.get(p["task_id"])
        if task is not None and not task.done:
            task.overdue = True


FOLDED_TYPES: frozenset[str] = frozenset(
    name.removeprefix("_on_") for name in vars(Department) if name.startswith("_on_")
)


def fold(tenant: str, facts: list[Fact]) -> Department:
    department = Department(tenant)
    for fact in sorted(facts, key=lambda f: f.order):
        department.apply(fact)
    return department
