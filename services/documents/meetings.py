"""Online meeting invitations (2020 plan §II.2.4): invitees confirm and join 15 minutes early. No I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.commands import Forbidden, NotFound
from shared.contracts import Event
from shared.contracts import documents as ev
from shared.directory import Person
from services.documents.domain import Actor, Aggregate, invalid

JOIN_EARLY = timedelta(minutes=15)  # join early to test the connection, camera and microphone


@dataclass
class Meeting(Aggregate):
    meeting_id: uuid.UUID
    scheduled: ev.MeetingScheduled | None = None
    confirmed: set[str] = field(default_factory=set)
    cancelled: bool = False

    def apply(self, e: Event) -> None:
        match e:
            case ev.MeetingScheduled():
                self.scheduled = e
            case ev.MeetingAttendanceConfirmed():
                self.confirmed.add(e.person_id)
            case ev.MeetingCancelled():
                self.cancelled = True

    def _require_current(self, now: datetime) -> ev.MeetingScheduled:
        if self.scheduled is None:
            raise NotFound(f"Không tìm thấy cuộc họp {self.meeting_id}.", f"No meeting {self.meeting_id}.")
        if self.cancelled:
            raise invalid("Cuộc họp đã bị hủy.", "The meeting was cancelled.", code="invalid_transition")
        if now >= self.scheduled.ends_at:
            raise invalid("Cuộc họp đã kết thúc.", "The meeting is over.", code="invalid_transition")
        return self.scheduled

    def schedule(
        self, actor: Actor, *, title: str, starts_at: datetime, ends_at: datetime, link: str,
        chair: Person, invitees: list[Person], now: datetime,
    ) -> list[Event]:
        if self.scheduled is not None:
            raise invalid("Mã cuộc họp đã tồn tại.", "This meeting id already exists.", code="already_exists")
        if not (actor.is_leader or actor.in_office or actor.leads(actor.person.division_id)):
            raise Forbidden(
                "Chỉ lãnh đạo Sở, lãnh đạo phòng hoặc Văn phòng Sở được mời họp.",
                "Only leaders, division leadership or the Office schedule meetings.",
            )
        if starts_at <= now:
            raise invalid("Thời gian họp đã qua.", "The meeting would start in the past.")
        if not starts_at < ends_at <= starts_at + timedelta(hours=12):
            raise invalid(
                "Giờ kết thúc phải sau giờ bắt đầu và trong vòng 12 giờ.",
                "The end must follow the start, within 12 hours.",
            )
        if not link.startswith("https://"):
            raise invalid("Đường dẫn họp phải bắt đầu bằng https://.", "The meeting link must be https.")
        inactive = [p.person_id for p in [chair, *invitees] if not p.active]
        if inactive:
            raise invalid("Có người được mời không còn công tác tại Sở.", "An invitee has left.",
                          code="inactive", people=inactive)
        ids = tuple(dict.fromkeys(p.person_id for p in invitees))
        return self._record(ev.MeetingScheduled(
            meeting_id=self.meeting_id, title=title, starts_at=starts_at,
            join_at=starts_at - JOIN_EARLY, ends_at=ends_at, link=link, chair_id=chair.person_id,
            invitees=ids, organiser_id=actor.id,
        ))

    def confirm(self, actor: Actor, now: datetime) -> list[Event]:
        m = self._require_current(now)
        if actor.id not in m.invitees and actor.id != m.chair_id:
            raise Forbidden("Bạn không có trong danh sách mời họp.", "You are not invited.")
        if actor.id in self.confirmed:
            raise invalid("Bạn đã xác nhận tham dự rồi.", "You already confirmed.", code="already_confirmed")
        return self._record(ev.MeetingAttendanceConfirmed(meeting_id=self.meeting_id, person_id=actor.id))

    def cancel(self, actor: Actor, reason: str, now: datetime) -> list[Event]:
        m = self._require_current(now)
        if actor.id not in (m.organiser_id, m.chair_id) and not actor.is_leader:
            raise Forbidden(
                "Chỉ người mời họp, chủ trì hoặc lãnh đạo Sở được hủy cuộc họp.",
                "Only the organiser, the chair or a leader cancels the meeting.",
            )
        if now >= m.starts_at:
            raise invalid("Cuộc họp đã bắt đầu.", "The meeting has started.", code="invalid_transition")
        return self._record(ev.MeetingCancelled(meeting_id=self.meeting_id, reason=reason))
