"""On-site rules: a plan's rules (data) checked against one day's lists. Pure, no I/O.

A plan lists its rules as data (`shared.contracts.roster.OnsiteRule`); each kind of rule is
checked here. Besides the plan's rules one check always applies: everyone in a division that
has a list is on it (`everyone_listed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

from shared.contracts import roster as ev
from shared.directory import Person
from shared.localtime import vn_date

EVERYONE_LISTED = "everyone_listed"
# Divisions whose staff the "N staff of every division" rule counts: the Office and the
# professional divisions, not the leadership (its members count as leaders).
STAFFED_KINDS = frozenset({"office", "division"})

DUTY_VI = {
    "leader_on_duty": "trực lãnh đạo",
    "covid_duty": "phòng, chống dịch COVID-19",
    "office_duty": "trực cơ quan",
    "secret_documents": "xử lý tài liệu mật",
    "assigned_task": "nhiệm vụ cần thiết khác theo yêu cầu",
}
RULE_VI = {
    "min_leaders_on_site": "số lãnh đạo Sở trực tại cơ quan",
    "min_staff_per_division_on_site": "số cán bộ mỗi phòng trực tại cơ quan",
    "only_designated_on_site": "chỉ người được phân công mới đến cơ quan",
    "min_on_duty": "số người trực theo nhiệm vụ",
    EVERYONE_LISTED: "mọi cán bộ có tên trong danh sách",
}


@dataclass(frozen=True)
class DivisionInfo:
    division_id: str
    name: str
    kind: str


@dataclass(frozen=True)
class Organisation:
    """The divisions and active people of a department, as the directory knows them."""

    divisions: Mapping[str, DivisionInfo]
    people: Mapping[str, Person]

    @classmethod
    def of(cls, divisions: Iterable[DivisionInfo], people: Iterable[Person]) -> Organisation:
        return cls({d.division_id: d for d in divisions}, {p.person_id: p for p in people if p.active})

    def members(self, division_id: str) -> list[Person]:
        return sorted((p for p in self.people.values() if p.division_id == division_id),
                      key=lambda p: p.person_id)

    def name_of(self, person_id: str) -> str:
        person = self.people.get(person_id)
        return person.full_name if person else person_id

    def division_name(self, division_id: str | None) -> str:
        if division_id is None:
            return "Sở"
        division = self.divisions.get(division_id)
        return division.name if division else division_id

    @property
    def leadership(self) -> str | None:
        """The leadership division (Ban Giám đốc): where leader rules are attributed."""
        return next((d.division_id for d in self.divisions.values() if d.kind == "leadership"), None)


@dataclass(frozen=True)
class DaySheet:
    """One working day as the lists have it: each division's entries, and who is on leave."""

    day: date
    lists: Mapping[str, tuple[ev.RosterEntry, ...]]
    on_leave: frozenset[str] = field(default_factory=frozenset)

    def present(self) -> Iterator[tuple[str, ev.RosterEntry]]:
        """(division, entry) of everyone listed and not on leave."""
        for division_id in sorted(self.lists):
            for entry in self.lists[division_id]:
                if entry.person_id not in self.on_leave:
                    yield division_id, entry

    def on_site(self) -> list[tuple[str, ev.RosterEntry]]:
        return [(d, e) for d, e in self.present() if e.location == "on_site"]

    def entry_of(self, person_id: str) -> tuple[str, ev.RosterEntry] | None:
        return next(((d, e) for d, e in self.present() if e.person_id == person_id), None)

    def with_leave(self, person_id: str) -> DaySheet:
        return replace(self, on_leave=self.on_leave | {person_id})

    def without_leave(self, person_id: str) -> DaySheet:
        return replace(self, on_leave=self.on_leave - {person_id})


def evaluate(rules: Iterable[ev.OnsiteRule], org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    """Every violation of the day: the plan's rules, then everyone-listed."""
    out: list[ev.Violation] = []
    for rule in rules:
        out += _CHECKS[type(rule)](rule, org, sheet)
    return out + _unlisted(org, sheet)


def key(v: ev.Violation) -> tuple[str, str | None, str | None]:
    """What makes two violations the same breach (their counts may differ)."""
    return (v.rule, v.division_id, v.person_id)


def _min_leaders(rule: ev.MinLeadersOnSite, org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    actual = sum(1 for _, e in sheet.on_site() if _is_leader(org, e.person_id))
    if actual >= rule.count:
        return []
    return [ev.Violation(
        day=sheet.day, division_id=org.leadership, rule=rule.rule, required=rule.count, actual=actual,
        message=f"Ngày {vn_date(sheet.day)}: {actual} lãnh đạo Sở trực tại cơ quan, "
                f"cần tối thiểu {rule.count}.",
    )]


def _min_staff(rule: ev.MinStaffPerDivisionOnSite, org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    out = []
    on_site = sheet.on_site()
    for division_id in sorted(sheet.lists):
        division = org.divisions.get(division_id)
        if division is None or division.kind not in STAFFED_KINDS:
            continue
        actual = sum(1 for d, _ in on_site if d == division_id)
        if actual < rule.count:
            out.append(ev.Violation(
                day=sheet.day, division_id=division_id, rule=rule.rule, required=rule.count,
                actual=actual,
                message=f"Ngày {vn_date(sheet.day)}, {division.name}: {actual} cán bộ trực tại "
                        f"cơ quan, cần tối thiểu {rule.count}.",
            ))
    return out


def _only_designated(rule: ev.OnlyDesignatedOnSite, org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    allowed = ", ".join(DUTY_VI[d] for d in rule.duties)
    return [
        ev.Violation(
            day=sheet.day, division_id=division_id, rule=rule.rule, person_id=e.person_id,
            message=f"Ngày {vn_date(sheet.day)}, {org.division_name(division_id)}: "
                    f"{org.name_of(e.person_id)} đến cơ quan nhưng không được phân công "
                    f"nhiệm vụ nào trong số: {allowed}.",
        )
        for division_id, e in sheet.on_site()
        if e.duty not in rule.duties
    ]


def _min_on_duty(rule: ev.MinOnDuty, org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    actual = sum(1 for _, e in sheet.on_site() if e.duty == rule.duty)
    if actual >= rule.count:
        return []
    division_id = org.leadership if rule.duty == "leader_on_duty" else None
    return [ev.Violation(
        day=sheet.day, division_id=division_id, rule=rule.rule, required=rule.count, actual=actual,
        message=f"Ngày {vn_date(sheet.day)}: {actual} người {DUTY_VI[rule.duty]} tại cơ quan, "
                f"cần tối thiểu {rule.count}.",
    )]


def _unlisted(org: Organisation, sheet: DaySheet) -> list[ev.Violation]:
    listed = {e.person_id for entries in sheet.lists.values() for e in entries}
    return [
        ev.Violation(
            day=sheet.day, division_id=division_id, rule=EVERYONE_LISTED, person_id=p.person_id,
            message=f"Ngày {vn_date(sheet.day)}, {org.division_name(division_id)}: "
                    f"{p.full_name} không có tên trong danh sách trực tại cơ quan hay làm việc tại nhà.",
        )
        for division_id in sorted(sheet.lists)
        for p in org.members(division_id)
        if p.person_id not in listed and p.person_id not in sheet.on_leave
    ]


def _is_leader(org: Organisation, person_id: str) -> bool:
    person = org.people.get(person_id)
    return person is not None and person.is_leader


_CHECKS = {
    ev.MinLeadersOnSite: _min_leaders,
    ev.MinStaffPerDivisionOnSite: _min_staff,
    ev.OnlyDesignatedOnSite: _only_designated,
    ev.MinOnDuty: _min_on_duty,
}
