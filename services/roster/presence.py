"""Presence: home workers check in during each working session from their registered place,
declare their health daily, and a check-in still missing at a session's deadline is recorded.
Pure decisions over one person's working day (its own stream), no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from shared.commands import DomainError
from shared.contracts import Event
from shared.contracts import roster as ev
from shared.localtime import LOCAL_TZ, vn_date

# A home worker may check in a little before the session starts (opening the laptop at 06:50).
EARLY = timedelta(minutes=15)
# How far back a detection run looks for deadlines it has not yet handled (service downtime).
CATCH_UP_DAYS = 7
HEALTH_VI = {
    "well": "bình thường",
    "symptoms": "có triệu chứng (sốt, ho, khó thở…)",
    "close_contact": "tiếp xúc gần với ca bệnh",
    "positive": "dương tính",
}


@dataclass(frozen=True)
class SessionWindow:
    index: int
    starts: datetime
    ends: datetime
    deadline: datetime  # starts + the plan's check-in grace

    @property
    def label(self) -> str:
        return f"{self.starts:%H:%M}-{self.ends:%H:%M}"


def session_windows(day: date, sessions: Sequence[ev.WorkingSession], grace_minutes: int) -> list[SessionWindow]:
    """A working day's sessions as local times."""
    out = []
    for i, s in enumerate(sessions):
        starts = datetime.combine(day, s.starts, LOCAL_TZ)
        out.append(SessionWindow(i, starts, datetime.combine(day, s.ends, LOCAL_TZ),
                                 starts + timedelta(minutes=grace_minutes)))
    return out


def window_at(windows: Sequence[SessionWindow], at: datetime) -> SessionWindow | None:
    return next((w for w in windows if w.starts - EARLY <= at <= w.ends), None)


def due_windows(windows: Sequence[SessionWindow], at: datetime) -> list[SessionWindow]:
    """The sessions whose check-in deadline has passed at `at`."""
    return [w for w in windows if w.deadline <= at]


def detection_days(at: datetime, checked_until: datetime | None) -> list[date]:
    """The days a detection run at `at` looks at: today, and back to where the last run got to
    (at most CATCH_UP_DAYS), so deadlines passed while the service was down are still handled."""
    today = at.astimezone(LOCAL_TZ).date()
    first = today
    if checked_until is not None and checked_until < at:
        first = max(checked_until.astimezone(LOCAL_TZ).date(), today - timedelta(days=CATCH_UP_DAYS))
    return [first + timedelta(days=i) for i in range((today - first).days + 1)]


def same_place(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def check_home_worker(full_name: str, day: date, entry: ev.RosterEntry | None, on_leave: bool) -> ev.RosterEntry:
    """Only someone listed as working from home that day (and not on leave) checks in."""
    if on_leave:
        raise DomainError(
            f"{full_name} đang nghỉ phép ngày {vn_date(day)}, không cần điểm danh.",
            f"{full_name} is on leave on {day}.", code="on_leave",
        )
    if entry is None:
        raise DomainError(
            f"{full_name} chưa có tên trong danh sách làm việc ngày {vn_date(day)}.",
            f"{full_name} is on no list for {day}.", code="not_on_roster",
        )
    if entry.location != "home":
        raise DomainError(
            f"{full_name} trực tại cơ quan ngày {vn_date(day)}; chỉ người làm việc tại nhà điểm danh.",
            f"{full_name} is on site on {day}; only home workers check in.", code="not_home_worker",
        )
    return entry


@dataclass
class PresenceDay:
    """One person's working day."""

    person_id: str
    day: date
    checked: dict[int, ev.CheckedIn] = field(default_factory=dict)
    missed: dict[int, ev.CheckInMissed] = field(default_factory=dict)
    health: ev.HealthDeclared | None = None

    @classmethod
    def from_events(cls, person_id: str, day: date, events: Sequence[Event]) -> PresenceDay:
        state = cls(person_id, day)
        for e in events:
            match e:
                case ev.CheckedIn():
                    state.checked[e.session] = e
                case ev.CheckInMissed():
                    state.missed[e.session] = e
                case ev.HealthDeclared():
                    state.health = e
        return state

    def check_in(
        self, division_id: str, at: datetime, windows: Sequence[SessionWindow], place: str | None,
        registered_place: str,
    ) -> list[Event]:
        """A check-in for the session under way; a second one in the same session adds nothing.
        A place other than the registered one is recorded as such, not refused: the Office
        needs to know where people are."""
        window = window_at(windows, at)
        if window is None:
            raise DomainError(
                f"Ngoài giờ làm việc: chỉ điểm danh trong các buổi "
                f"{', '.join(w.label for w in windows)} ngày {vn_date(self.day)}.",
                f"Outside working hours: check in during {', '.join(w.label for w in windows)}.",
                code="outside_session",
            )
        if window.index in self.checked:
            return []
        place = (place or "").strip() or registered_place
        return [ev.CheckedIn(
            person_id=self.person_id, division_id=division_id, day=self.day, session=window.index,
            at=at, place=place, at_registered_place=same_place(place, registered_place),
            late=at > window.deadline,
        )]

    def declare_health(self, status: str, note: str) -> list[Event]:
        return [ev.HealthDeclared(person_id=self.person_id, day=self.day, status=status, note=note.strip())]

    def record_missed(self, division_id: str, window: SessionWindow) -> list[Event]:
        if window.index in self.checked or window.index in self.missed:
            return []
        return [ev.CheckInMissed(
            person_id=self.person_id, division_id=division_id, day=self.day, session=window.index,
            session_starts=window.starts, deadline=window.deadline,
        )]
