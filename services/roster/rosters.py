"""The department's daily rosters: division lists, the Office's compilation, the Director's
decision and the coverage gaps leave opens. Pure decisions, no I/O.

The handlers read the roster tables (under the department's roster lock) into the plain
values below and append the events these functions return.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from shared.commands import DomainError, Forbidden
from shared.contracts import roster as ev
from shared.directory import Person, Plan
from shared.localtime import vn_date
from services.roster import rules
from services.roster.rules import DaySheet, DivisionInfo, Organisation

COMPILED, APPROVED, RETURNED, SUPERSEDED = "compiled", "approved", "returned", "superseded"
STATUS_VI = {
    COMPILED: "chờ Giám đốc phê duyệt",
    APPROVED: "đã phê duyệt",
    RETURNED: "bị trả lại",
    SUPERSEDED: "đã được tổng hợp lại",
}
MAX_DAYS = 31
GAP_NAMESPACE = uuid.UUID("6f1c9a52-3d0e-4b8e-9a51-2f6b1c7d8e90")


def plan_on(plans: Sequence[Plan], day: date) -> Plan | None:
    """The plan in force on a day (the latest to start, when several cover it)."""
    covering = [p for p in plans if p.covers(day)]
    return max(covering, key=lambda p: p.effective_from) if covering else None


def working_days(start: date, end: date, plans: Sequence[Plan]) -> list[date]:
    days, day = [], start
    while day <= end:
        plan = plan_on(plans, day)
        if plan is not None and plan.is_working_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def rules_on(plans: Sequence[Plan], day: date) -> tuple[ev.OnsiteRule, ...]:
    plan = plan_on(plans, day)
    return ev.parse_onsite_rules(plan.onsite_rules) if plan else ()


# --- who may do what ----------------------------------------------------------------------


def check_may_submit(actor: Person, division: DivisionInfo, acting_for_head: bool) -> None:
    """A division's head or deputy (or whoever acts for the head) submits its lists; the
    leadership's lists come from a leader or the Chief of Office, who keeps their schedule."""
    if division.kind == "leadership":
        allowed = actor.is_leader or "chief_of_office" in actor.roles
    else:
        allowed = actor.division_id == division.division_id and (
            acting_for_head
            or bool(actor.roles & {"division_head", "deputy_division_head", "chief_of_office"})
        )
    if not allowed:
        raise Forbidden(
            f"Chỉ trưởng phòng hoặc phó trưởng phòng của {division.name} được đăng ký danh sách của phòng.",
            f"Only the head or a deputy head of {division.division_id} may submit its lists.",
        )


def check_may_compile(actor: Person, acting_for_office_head: bool) -> None:
    if "chief_of_office" not in actor.roles and not acting_for_office_head:
        raise Forbidden(
            "Chỉ Chánh Văn phòng (hoặc người được giao quyền) được tổng hợp danh sách trình Giám đốc.",
            "Only the Chief of Office (or whoever acts for them) may compile the roster.",
        )


@dataclass(frozen=True)
class Delegation:
    person_id: str
    delegated_by: str
    valid_from: date
    valid_until: date


def check_may_decide(actor: Person, delegations: Sequence[Delegation], today: date) -> str | None:
    """The Director decides; a deputy director only within a delegation covering today.
    Returns who delegated, when the actor decides by delegation."""
    if actor.is_director:
        return None
    if "deputy_director" in actor.roles:
        for d in delegations:
            if d.person_id == actor.person_id and d.valid_from <= today <= d.valid_until:
                return d.delegated_by
    raise Forbidden(
        "Chỉ Giám đốc Sở (hoặc Phó Giám đốc được Giám đốc ủy quyền trong thời hạn ủy quyền) "
        "được phê duyệt hoặc trả lại danh sách.",
        "Only the Director (or a deputy director within a delegation from the Director) may "
        "approve or return the roster.",
    )


def delegate_approval(director: Person, deputy: Person | None, valid_from: date, valid_until: date) -> ev.RosterApprovalDelegated:
    if not director.is_director:
        raise Forbidden("Chỉ Giám đốc Sở được ủy quyền phê duyệt danh sách.",
                        "Only the Director may delegate roster approval.")
    if deputy is None or "deputy_director" not in deputy.roles:
        raise DomainError("Chỉ ủy quyền cho Phó Giám đốc Sở.", "Only a deputy director can be delegated to.",
                          code="invalid")
    if valid_until < valid_from or (valid_until - valid_from).days > 366:
        raise DomainError(
            "Thời hạn ủy quyền không hợp lệ (ngày kết thúc trước ngày bắt đầu hoặc quá một năm).",
            "The delegation period is invalid (ends before it starts or longer than a year).",
            code="invalid",
        )
    return ev.RosterApprovalDelegated(
        person_id=deputy.person_id, delegated_by=director.person_id, valid_from=valid_from,
        valid_until=valid_until,
    )


# --- division lists -----------------------------------------------------------------------


def submit_lists(
    submission_id: uuid.UUID,
    submitted_by: str,
    division: DivisionInfo,
    days: Sequence[ev.DayList],
    org: Organisation,
    plans: Sequence[Plan],
    approved_days: frozenset[date],
    on_leave: Mapping[date, frozenset[str]],
) -> ev.RosterSubmitted:
    """A division's lists for some working days: everyone in the division exactly once per day
    (those on approved leave may be left out), home workers with a work place."""
    if len({d.day for d in days}) != len(days):
        raise DomainError("Mỗi ngày chỉ đăng ký một danh sách.", "One list per day.", code="invalid")
    if len(days) > MAX_DAYS:
        raise DomainError(f"Mỗi lần đăng ký tối đa {MAX_DAYS} ngày.", f"At most {MAX_DAYS} days at once.",
                          code="invalid")
    members = {p.person_id: p for p in org.members(division.division_id)}
    lists = []
    for day_list in sorted(days, key=lambda d: d.day):
        day = day_list.day
        _check_working_day(day, plans)
        if day in approved_days:
            raise DomainError(
                f"Danh sách ngày {vn_date(day)} đã được Giám đốc phê duyệt, không thể đăng ký lại.",
                f"The roster of {day} is already approved; it cannot be resubmitted.",
                code="already_approved", day=day.isoformat(),
            )
        entries = [_checked_entry(e, day, division, members) for e in day_list.entries]
        listed = [e.person_id for e in entries]
        twice = next((p for p in listed if listed.count(p) > 1), None)
        if twice:
            raise DomainError(
                f"Ngày {vn_date(day)}: {members[twice].full_name} có tên hai lần trong danh sách.",
                f"{day}: {twice} is listed twice.", code="listed_twice", day=day.isoformat(),
                person_id=twice,
            )
        left_out = [
            p for pid, p in members.items()
            if pid not in listed and pid not in on_leave.get(day, frozenset())
        ]
        if left_out:
            raise DomainError(
                f"Ngày {vn_date(day)}: chưa có tên {', '.join(p.full_name for p in left_out)} "
                "trong danh sách (mỗi cán bộ phải có tên trong đúng một danh sách mỗi ngày làm việc).",
                f"{day}: {', '.join(p.person_id for p in left_out)} not on the list (everyone must be "
                "on exactly one list per working day).",
                code="member_missing", day=day.isoformat(), people=[p.person_id for p in left_out],
            )
        lists.append(ev.DayList(day=day, entries=tuple(entries)))
    return ev.RosterSubmitted(
        submission_id=submission_id, division_id=division.division_id, submitted_by=submitted_by,
        days=tuple(lists),
    )


def _check_working_day(day: date, plans: Sequence[Plan]) -> None:
    plan = plan_on(plans, day)
    if plan is None:
        raise DomainError(
            f"Ngày {vn_date(day)} không thuộc thời gian hiệu lực của kế hoạch làm việc.",
            f"{day} is outside every plan's period.", code="outside_plan", day=day.isoformat(),
        )
    if not plan.is_working_day(day):
        raise DomainError(
            f"Ngày {vn_date(day)} không phải ngày làm việc (cuối tuần hoặc ngày nghỉ).",
            f"{day} is not a working day (weekend or holiday).", code="not_working_day",
            day=day.isoformat(),
        )


def _checked_entry(
    entry: ev.RosterEntry, day: date, division: DivisionInfo, members: Mapping[str, Person]
) -> ev.RosterEntry:
    person = members.get(entry.person_id)
    if person is None:
        raise DomainError(
            f"Ngày {vn_date(day)}: {entry.person_id} không phải cán bộ của {division.name}.",
            f"{day}: {entry.person_id} is not a member of {division.division_id}.",
            code="not_a_member", person_id=entry.person_id,
        )
    place = (entry.work_place or "").strip() or None
    if entry.location == "home":
        if place is None:
            raise DomainError(
                f"Ngày {vn_date(day)}: {person.full_name} làm việc tại nhà cần có nơi đăng ký làm việc.",
                f"{day}: {entry.person_id} works from home and needs a registered work place.",
                code="work_place_required", person_id=entry.person_id,
            )
        if entry.duty is not None:
            raise DomainError(
                f"Ngày {vn_date(day)}: {person.full_name} làm việc tại nhà không nhận nhiệm vụ trực.",
                f"{day}: {entry.person_id} works from home and cannot hold an on-site duty.",
                code="duty_at_home", person_id=entry.person_id,
            )
        return entry.model_copy(update={"work_place": place})
    if entry.duty == "leader_on_duty" and not person.is_leader:
        raise DomainError(
            f"{person.full_name} không phải lãnh đạo Sở, không thể trực lãnh đạo.",
            f"{entry.person_id} is not a department leader and cannot be the leader on duty.",
            code="duty_not_allowed", person_id=entry.person_id,
        )
    if entry.duty == "secret_documents" and "secret_document_handler" not in person.roles:
        raise DomainError(
            f"{person.full_name} không được giao xử lý tài liệu mật.",
            f"{entry.person_id} is not a secret-document handler.",
            code="duty_not_allowed", person_id=entry.person_id,
        )
    return entry.model_copy(update={"work_place": None})


# --- the Office's compilation ---------------------------------------------------------------


@dataclass(frozen=True)
class DayState:
    """Where a day stands: the latest roster compiled for it and that roster's status."""

    roster_id: uuid.UUID
    status: str


def needs_list(org: Organisation, division_id: str, on_leave: frozenset[str]) -> bool:
    return any(p.person_id not in on_leave for p in org.members(division_id))


def compile_roster(
    roster_id: uuid.UUID,
    compiled_by: str,
    start: date,
    end: date,
    org: Organisation,
    plans: Sequence[Plan],
    sheets: Mapping[date, DaySheet],
    submissions: Mapping[tuple[date, str], uuid.UUID],
    day_states: Mapping[date, DayState],
) -> ev.RosterCompiled:
    """The department roster for [start, end]: every division's current list, the lists still
    missing and every rule violation; rosters of the same days still awaiting a decision are
    superseded."""
    if end < start:
        raise DomainError(
            f"Ngày kết thúc {vn_date(end)} trước ngày bắt đầu {vn_date(start)}.",
            f"End date {end} precedes start date {start}.", code="invalid",
        )
    if (end - start).days >= MAX_DAYS:
        raise DomainError(f"Mỗi lần tổng hợp tối đa {MAX_DAYS} ngày.", f"At most {MAX_DAYS} days at once.",
                          code="invalid")
    days = working_days(start, end, plans)
    if not days:
        raise DomainError(
            "Khoảng thời gian này không có ngày làm việc nào thuộc kế hoạch.",
            "The period holds no working day of a plan.", code="no_working_days",
        )
    approved = [d for d in days if d in day_states and day_states[d].status == APPROVED]
    if approved:
        raise DomainError(
            f"Danh sách ngày {', '.join(vn_date(d) for d in approved)} đã được phê duyệt.",
            f"Already approved: {', '.join(d.isoformat() for d in approved)}.",
            code="already_approved", days=[d.isoformat() for d in approved],
        )
    lists, missing, violations = [], [], []
    for day in days:
        sheet = sheets[day]
        for division_id in sorted(org.divisions):
            leave = frozenset(p.person_id for p in org.members(division_id) if p.person_id in sheet.on_leave)
            submission = submissions.get((day, division_id))
            if submission is None:
                if needs_list(org, division_id, sheet.on_leave):
                    missing.append(ev.MissingList(day=day, division_id=division_id))
                continue
            present = [e for e in sheet.lists.get(division_id, ()) if e.person_id not in sheet.on_leave]
            lists.append(ev.CompiledList(
                day=day, division_id=division_id, submission_id=submission,
                on_site=tuple(e.person_id for e in present if e.location == "on_site"),
                at_home=tuple(e.person_id for e in present if e.location == "home"),
                on_leave=tuple(sorted(leave)),
            ))
        violations += rules.evaluate(rules_on(plans, day), org, sheet)
    supersedes = sorted(
        {s.roster_id for d, s in day_states.items() if d in days and s.status == COMPILED}, key=str
    )
    return ev.RosterCompiled(
        roster_id=roster_id, start=start, end=end, days=tuple(days), compiled_by=compiled_by,
        lists=tuple(lists), missing=tuple(missing), violations=tuple(violations),
        supersedes=tuple(supersedes),
    )


# --- the Director's decision -------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRoster:
    roster_id: uuid.UUID
    status: str
    days: tuple[date, ...]
    submissions: Mapping[tuple[date, str], uuid.UUID]
    missing: tuple[ev.MissingList, ...]


def _require_pending(roster: CompiledRoster) -> None:
    if roster.status != COMPILED:
        raise DomainError(
            f"Danh sách này đang ở trạng thái “{STATUS_VI[roster.status]}”, không thể quyết định.",
            f"The roster is {roster.status}; it cannot be decided on.", code="invalid_state",
            status=roster.status,
        )


def approve_roster(
    roster: CompiledRoster,
    approved_by: str,
    delegated_by: str | None,
    override_reason: str | None,
    org: Organisation,
    plans: Sequence[Plan],
    sheets: Mapping[date, DaySheet],
    submissions: Mapping[tuple[date, str], uuid.UUID],
) -> ev.RosterApproved:
    """Approve the roster as compiled: refused when a list changed since, when lists are
    missing, or when rules are broken (as of now, with leave) and no override reason is given."""
    _require_pending(roster)
    current = {k: v for k, v in submissions.items() if k[0] in roster.days}
    if current != dict(roster.submissions):
        day, division_id = min(
            k for k in set(current) | set(roster.submissions) if current.get(k) != roster.submissions.get(k)
        )
        raise DomainError(
            f"Danh sách của {org.division_name(division_id)} ngày {vn_date(day)} đã thay đổi sau khi "
            "Văn phòng tổng hợp; cần tổng hợp lại trước khi phê duyệt.",
            f"The list of {division_id} for {day} changed after compilation; compile again.",
            code="stale", day=day.isoformat(), division_id=division_id,
        )
    if roster.missing:
        names = sorted({f"{org.division_name(m.division_id)} ({vn_date(m.day)})" for m in roster.missing})
        raise DomainError(
            f"Còn thiếu danh sách: {', '.join(names)}. Trả lại để các phòng đăng ký bổ sung.",
            f"Lists are missing: {', '.join(f'{m.division_id} {m.day}' for m in roster.missing)}.",
            code="lists_missing", missing=len(roster.missing),
        )
    violations = [v for day in roster.days for v in rules.evaluate(rules_on(plans, day), org, sheets[day])]
    reason = (override_reason or "").strip() or None
    if violations and reason is None:
        raise DomainError(
            f"Danh sách vi phạm {len(violations)} quy định về trực tại cơ quan: "
            f"{' '.join(v.message for v in violations[:3])}"
            f"{' …' if len(violations) > 3 else ''} Chỉ phê duyệt khi ghi rõ lý do chấp thuận.",
            f"The roster breaks {len(violations)} on-site rule(s); approving needs an override reason.",
            code="violations_need_override",
            violations=[v.model_dump(mode="json") for v in violations[:20]],
        )
    return ev.RosterApproved(
        roster_id=roster.roster_id, approved_by=approved_by, delegated_by=delegated_by,
        overridden=tuple(violations), override_reason=reason if violations else None,
    )


def return_roster(roster: CompiledRoster, returned_by: str, reason: str) -> ev.RosterReturned:
    _require_pending(roster)
    return ev.RosterReturned(roster_id=roster.roster_id, returned_by=returned_by, reason=reason)


# --- leave against an approved roster -------------------------------------------------------


@dataclass(frozen=True)
class OpenGap:
    gap_id: uuid.UUID
    roster_id: uuid.UUID
    day: date
    division_id: str
    rule: str


def gap_id(tenant: str, application_id: uuid.UUID, day: date, division_id: str, rule: str) -> uuid.UUID:
    """Deterministic: the same leave breaking the same rule on the same day is one gap."""
    return uuid.uuid5(GAP_NAMESPACE, f"{tenant}|{application_id}|{day.isoformat()}|{division_id}|{rule}")


def coverage_gaps(
    tenant: str,
    roster_id: uuid.UUID,
    rule_set: Sequence[ev.OnsiteRule],
    org: Organisation,
    sheet: DaySheet,
    person_id: str,
    application_id: uuid.UUID,
) -> list[ev.CoverageGapRecorded]:
    """The rules that leave taking `person_id` off an approved day's lists breaks and that held
    before (breaches the Director already overrode are not gaps)."""
    placed = sheet.entry_of(person_id)
    if placed is None:
        return []
    division_of_person = placed[0]
    before = {rules.key(v) for v in rules.evaluate(rule_set, org, sheet)}
    out = []
    for v in rules.evaluate(rule_set, org, sheet.with_leave(person_id)):
        if rules.key(v) in before:
            continue
        division_id = v.division_id or division_of_person
        out.append(ev.CoverageGapRecorded(
            gap_id=gap_id(tenant, application_id, sheet.day, division_id, v.rule),
            roster_id=roster_id, day=sheet.day, division_id=division_id, rule=v.rule,
            person_id=person_id, application_id=application_id,
            message=f"{org.name_of(person_id)} nghỉ phép. {v.message}",
        ))
    return out


def closed_gaps(
    gaps: Sequence[OpenGap],
    rule_set: Sequence[ev.OnsiteRule],
    org: Organisation,
    sheet: DaySheet,
    person_id: str,
    application_id: uuid.UUID,
) -> list[ev.CoverageGapClosed]:
    """The open gaps of a cancelled leave whose rule holds again with the person back."""
    back = sheet.without_leave(person_id)
    placed = back.entry_of(person_id)
    own_division = placed[0] if placed else None
    still = {(v.rule, v.division_id or own_division) for v in rules.evaluate(rule_set, org, back)}
    return [
        ev.CoverageGapClosed(
            gap_id=g.gap_id, roster_id=g.roster_id, day=g.day, division_id=g.division_id,
            rule=g.rule, application_id=application_id,
        )
        for g in gaps
        if (g.rule, g.division_id) not in still
    ]
