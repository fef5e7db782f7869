"""Work a division's leadership assigns (2020 plan §II.2.5): progress, completion, overdue once. No I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from shared.commands import Forbidden, NotFound
from shared.contracts import Event
from shared.contracts import documents as ev
from shared.directory import Person, Plan
from services.documents.domain import (
    NEW, STATUS_VI, Actor, Aggregate, Document, check_due, invalid, late_at, secret_not_remote,
)

OPEN, COMPLETED = "open", "completed"


def check_may_assign_task(actor: Actor, assignee: Person) -> None:
    """Division leaders assign their division's work (2020 plan §II.2.5); department leaders anyone's."""
    if actor.is_leader or actor.leads(assignee.division_id):
        return
    raise Forbidden(
        "Chỉ lãnh đạo phòng của người được giao (hoặc lãnh đạo Sở) được giao việc.",
        "Only the assignee's division leadership (or a department leader) assigns work.",
    )


@dataclass
class Task(Aggregate):
    task_id: uuid.UUID
    assigned: ev.TaskAssigned | None = None
    status: str = NEW
    percent: int = 0
    overdue_raised: bool = False

    def apply(self, e: Event) -> None:
        match e:
            case ev.TaskAssigned():
                self.assigned, self.status = e, OPEN
            case ev.TaskProgressReported():
                self.percent = e.percent
            case ev.TaskCompleted():
                self.status, self.percent = COMPLETED, 100
            case ev.TaskOverdue():
                self.overdue_raised = True

    def _require_open(self, actor: Actor, action_vi: str, action_en: str) -> ev.TaskAssigned:
        if self.status == NEW:
            raise NotFound(f"Không tìm thấy công việc {self.task_id}.", f"No task {self.task_id}.")
        if self.status != OPEN:
            raise invalid(
                f"Không thể {action_vi}: công việc {STATUS_VI[self.status]}.",
                f"Cannot {action_en}: the task is {self.status}.",
                code="invalid_transition", status=self.status,
            )
        if actor.id != self.assigned.assignee_id:
            raise Forbidden(
                f"Chỉ người được giao việc được {action_vi}.", f"Only the assignee may {action_en}.",
            )
        return self.assigned

    def assign(
        self, actor: Actor, assignee: Person, *, title: str, description: str, due_date: date,
        today: date, document: Document | None = None,
    ) -> list[Event]:
        if self.status != NEW:
            raise invalid("Mã công việc đã tồn tại.", "This task id already exists.", code="already_exists")
        if document is not None and document.is_secret:
            raise secret_not_remote()
        if not assignee.active:
            raise invalid("Cán bộ này không còn công tác tại Sở.", "This person has left.", code="inactive")
        check_may_assign_task(actor, assignee)
        check_due(due_date, today)
        return self._record(ev.TaskAssigned(
            task_id=self.task_id, title=title, description=description,
            assignee_id=assignee.person_id, division_id=assignee.division_id, assigned_by=actor.id,
            due_date=due_date, document_id=document.document_id if document else None,
        ))

    def report_progress(self, actor: Actor, percent: int, note: str) -> list[Event]:
        a = self._require_open(actor, "báo cáo tiến độ", "report progress")
        return self._record(ev.TaskProgressReported(
            task_id=self.task_id, assignee_id=a.assignee_id, percent=percent, note=note
        ))

    def complete(self, actor: Actor, note: str) -> list[Event]:
        a = self._require_open(actor, "báo hoàn thành", "complete it")
        return self._record(ev.TaskCompleted(task_id=self.task_id, assignee_id=a.assignee_id, note=note))

    def detect_overdue(self, as_of: datetime, plans: list[Plan]) -> list[Event]:
        a = self.assigned
        late = late_at(a.due_date, as_of, plans) if self.status == OPEN and not self.overdue_raised else 0
        return self._record(ev.TaskOverdue(
            task_id=self.task_id, assignee_id=a.assignee_id, division_id=a.division_id,
            due_date=a.due_date, as_of=as_of, working_days_late=late,
        )) if late else []
