"""A person's leave ledger: applications, decisions and the annual entitlement. Pure rules, no I/O.

The ledger is one aggregate (one stream per person) so that "no overlap with one's own
leave" and "not beyond the entitlement" are checked against a consistent whole.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from shared.commands import DomainError, Forbidden, NotFound
from shared.contracts import Event
from shared.contracts import leave as ev
from shared.directory import Person, Plan
from shared.localtime import vn_date

DEFAULT_ENTITLEMENT_DAYS = 12.0
PENDING, APPROVED, REJECTED, CANCELLED = "pending", "approved", "rejected", "cancelled"


@dataclass
class Application:
    requested: ev.LeaveRequested
    status: str = PENDING

    @property
    def id(self) -> uuid.UUID:
        return self.requested.application_id

    @property
    def active(self) -> bool:
        return self.status in (PENDING, APPROVED)

    def days_in(self, year: int) -> float:
        per_day = self.requested.days / len(self.requested.working_dates)
        return sum(per_day for d in self.requested.working_dates if d.year == year)


@dataclass(frozen=True)
class Balance:
    year: int
    entitlement: float
    used: float
    pending: float

    @property
    def left(self) -> float:
        return self.entitlement - self.used - self.pending


def working_dates(start: date, end: date, plans: list[Plan]) -> tuple[list[date], list[date]]:
    """The working days of [start, end] and the days no active plan covers."""
    days, uncovered = [], []
    d = start
    while d <= end:
        covering = [p for p in plans if p.covers(d)]
        if not covering:
            uncovered.append(d)
        elif any(p.is_working_day(d) for p in covering):
            days.append(d)
        d += timedelta(days=1)
    return days, uncovered


def approval_content(tenant: str, requested: ev.LeaveRequested) -> dict:
    """What the head's signature covers: the application as the applicant filed it."""
    return {
        "tenant": tenant,
        "document": "leave-application",
        "decision": "approved",
        "application_id": str(requested.application_id),
        "person_id": requested.person_id,
        "division_id": requested.division_id,
        "start_date": requested.start_date.isoformat(),
        "end_date": requested.end_date.isoformat(),
        "half_day": requested.half_day,
        "working_dates": [d.isoformat() for d in requested.working_dates],
        "days": requested.days,
        "reason": requested.reason,
    }


def check_may_decide(approver: Person, applicant: Person, acting_for_head: bool) -> None:
    """Only the applicant's division head (or a deputy acting for the head) decides; a head's
    own leave goes to a department leader; the Director decides on the deputies'; never one's own."""
    if approver.person_id == applicant.person_id:
        raise Forbidden(
            "Không ai được tự duyệt đơn nghỉ phép của chính mình.",
            "Nobody may decide on their own leave application.",
        )
    if applicant.is_director:
        raise Forbidden(
            "Đơn nghỉ phép của Giám đốc Sở do cấp trên của Sở quyết định, không duyệt trong hệ thống này.",
            "The Director's leave is decided above the department, not in this system.",
        )
    if applicant.is_leader:
        allowed = approver.is_director
        who_vi, who_en = "Giám đốc Sở", "the Director"
    elif applicant.heads_division:
        allowed = approver.is_leader
        who_vi, who_en = "lãnh đạo Sở", "a department leader"
    else:
        same_division = approver.division_id == applicant.division_id
        allowed = same_division and (approver.heads_division or acting_for_head)
        who_vi, who_en = "trưởng phòng của người nộp đơn (hoặc cấp phó được giao quyền)", (
            "the applicant's division head (or a deputy acting for the head)"
        )
    if not allowed:
        raise Forbidden(
            f"Chỉ {who_vi} được duyệt đơn này.", f"Only {who_en} may decide on this application."
        )


@dataclass
class LeaveLedger:
    person_id: str
    entitlement: float = DEFAULT_ENTITLEMENT_DAYS
    applications: dict[uuid.UUID, Application] = field(default_factory=dict)

    @classmethod
    def from_events(cls, person_id: str, events: list[Event]) -> LeaveLedger:
        ledger = cls(person_id)
        for e in events:
            ledger.apply(e)
        return ledger

    def apply(self, e: Event) -> None:
        match e:
            case ev.LeaveEntitlementSet():
                self.entitlement = e.days_per_year
            case ev.LeaveRequested():
                self.applications[e.application_id] = Application(e)
            case ev.LeaveApproved():
                self.applications[e.application_id].status = APPROVED
            case ev.LeaveRejected():
                self.applications[e.application_id].status = REJECTED
            case ev.LeaveCancelled():
                self.applications[e.application_id].status = CANCELLED

    def balance(self, year: int) -> Balance:
        used = sum(a.days_in(year) for a in self.applications.values() if a.status == APPROVED)
        pending = sum(a.days_in(year) for a in self.applications.values() if a.status == PENDING)
        return Balance(year, self.entitlement, used, pending)

    def application(self, application_id: uuid.UUID) -> Application:
        app = self.applications.get(application_id)
        if app is None:
            raise NotFound(
                f"Không tìm thấy đơn nghỉ phép {application_id}.",
                f"No leave application {application_id}.",
            )
        return app

    # --- decisions -----------------------------------------------------------------------

    def set_entitlement(self, days: float) -> list[Event]:
        return [ev.LeaveEntitlementSet(person_id=self.person_id, days_per_year=days)]

    def request(
        self,
        application_id: uuid.UUID,
        applicant: Person,
        start: date,
        end: date,
        half_day: str | None,
        reason: str,
        plans: list[Plan],
    ) -> list[Event]:
        if application_id in self.applications:
            raise DomainError(
                "Mã đơn đã tồn tại.", "This application id already exists.", code="already_exists"
            )
        if end < start:
            raise DomainError(
                f"Ngày kết thúc {vn_date(end)} trước ngày bắt đầu {vn_date(start)}.",
                f"End date {end} precedes start date {start}.", code="invalid",
            )
        if half_day and start != end:
            raise DomainError(
                "Nghỉ nửa ngày chỉ áp dụng cho một ngày.", "A half day covers a single date.",
                code="invalid",
            )
        if (end - start).days > 366:
            raise DomainError(
                "Một đơn không quá một năm.", "One application covers at most a year.", code="invalid"
            )
        dates, uncovered = working_dates(start, end, plans)
        if uncovered:
            raise DomainError(
                f"Ngày {vn_date(uncovered[0])} không thuộc thời gian hiệu lực của kế hoạch làm việc.",
                f"{uncovered[0]} is outside the active plan's period.",
                code="outside_plan", dates=[d.isoformat() for d in uncovered[:10]],
            )
        if not dates:
            raise DomainError(
                "Khoảng thời gian này không có ngày làm việc nào.",
                "The period holds no working day.", code="no_working_days",
            )
        taken = {
            d: a for a in self.applications.values() if a.active for d in a.requested.working_dates
        }
        clash = next((d for d in dates if d in taken), None)
        if clash is not None:
            raise DomainError(
                f"Ngày {vn_date(clash)} trùng với đơn nghỉ phép khác của bạn.",
                f"{clash} overlaps another of your leave applications.",
                code="overlap", date=clash.isoformat(), application_id=str(taken[clash].id),
            )
        days = 0.5 if half_day else float(len(dates))
        per_year: dict[int, float] = defaultdict(float)
        for d in dates:
            per_year[d.year] += days / len(dates)
        for year, wanted in sorted(per_year.items()):
            balance = self.balance(year)
            if wanted > balance.left:
                raise DomainError(
                    f"Vượt số ngày phép năm {year}: được {balance.entitlement:g} ngày, "
                    f"đã dùng {balance.used:g}, đang chờ duyệt {balance.pending:g}, "
                    f"còn lại {balance.left:g}, xin thêm {wanted:g}.",
                    f"Beyond the {year} entitlement: {balance.entitlement:g} days, used "
                    f"{balance.used:g}, pending {balance.pending:g}, left {balance.left:g}, "
                    f"requested {wanted:g}.",
                    code="entitlement_exceeded", year=year, entitlement=balance.entitlement,
                    used=balance.used, pending=balance.pending, left=balance.left, requested=wanted,
                )
        return [
            ev.LeaveRequested(
                application_id=application_id, person_id=applicant.person_id,
                division_id=applicant.division_id, start_date=start, end_date=end,
                half_day=half_day, working_dates=tuple(dates), days=days, reason=reason,
            )
        ]

    def _require_pending(self, app: Application) -> None:
        if app.status != PENDING:
            raise DomainError(
                f"Đơn này đã ở trạng thái “{STATUS_VI[app.status]}”, không thể quyết định lại.",
                f"The application is already {app.status}.", code="invalid_state", status=app.status,
            )

    def approve(
        self, application_id: uuid.UUID, approver_id: str, content_sha256: str, signature: str,
        key_id: str,
    ) -> list[Event]:
        app = self.application(application_id)
        self._require_pending(app)
        r = app.requested
        return [
            ev.LeaveApproved(
                application_id=r.application_id, person_id=r.person_id, division_id=r.division_id,
                approver_id=approver_id, working_dates=r.working_dates, days=r.days,
                content_sha256=content_sha256, signature=signature, key_id=key_id,
            )
        ]

    def reject(self, application_id: uuid.UUID, approver_id: str, reason: str) -> list[Event]:
        app = self.application(application_id)
        self._require_pending(app)
        r = app.requested
        return [
            ev.LeaveRejected(
                application_id=r.application_id, person_id=r.person_id, division_id=r.division_id,
                approver_id=approver_id, reason=reason,
            )
        ]

    def cancel(
        self, application_id: uuid.UUID, actor_id: str, reason: str, today: date
    ) -> list[Event]:
        app = self.application(application_id)
        if actor_id != self.person_id:
            raise Forbidden(
                "Chỉ người nộp đơn được hủy đơn của mình.",
                "Only the applicant may cancel their application.",
            )
        if not app.active:
            raise DomainError(
                f"Đơn này đã ở trạng thái “{STATUS_VI[app.status]}”, không thể hủy.",
                f"The application is already {app.status}.", code="invalid_state", status=app.status,
            )
        r = app.requested
        if app.status == APPROVED and r.end_date < today:
            raise DomainError(
                "Kỳ nghỉ đã qua, không thể hủy.", "The leave is already over.", code="invalid_state"
            )
        return [
            ev.LeaveCancelled(
                application_id=r.application_id, person_id=r.person_id, division_id=r.division_id,
                working_dates=r.working_dates, cancelled_by=actor_id, reason=reason,
            )
        ]


STATUS_VI = {
    PENDING: "chờ duyệt",
    APPROVED: "đã duyệt",
    REJECTED: "bị từ chối",
    CANCELLED: "đã hủy",
}
