"""One function per documents command: load, authorise and decide in the domain, append."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.auth import Identity
from shared.commands import CommandRouter, DomainError, Forbidden, NotFound, UnitOfWork
from shared.contracts import Event
from shared.contracts import documents as ev
from shared.directory import Directory, Person
from shared.eventstore import ConcurrencyError
from shared.localtime import local_today
from shared.observability import get_logger
from services.documents import commands as c
from services.documents.domain import (
    Actor, Aggregate, Document, FileUpload, RegisterCounter, local_date, secret_not_remote,
    signing_content,
)
from services.documents.meetings import Meeting
from services.documents.signing import Signed, signature_holds
from services.documents.tasks import Task

router = CommandRouter()
log = get_logger("wfh.documents")

# Each attempt that loses the race for a register's next number re-reads the counter: under
# the event store's append lock one contender wins per round, so this bounds the wait.
NUMBER_ATTEMPTS = 200
SCHEDULER = "documents-scheduler"  # the actor of what the service's own background loop records


# --- loading and saving ------------------------------------------------------------------


async def actor_of(uow: UnitOfWork, person_id: str | None = None) -> Actor:
    directory = Directory(uow.conn, uow.tenant)
    person = await directory.active_person(person_id or uow.identity.person_id)
    division = await directory.division(person.division_id)
    return Actor(
        person,
        in_office=division is not None and division["kind"] == "office",
        acting_head_of=await directory.acting_head_of(person.person_id, local_today()),
    )


async def load(uow: UnitOfWork, cls: type[Aggregate], stream: str, aggregate_id: uuid.UUID):
    events, version = await uow.load(stream)
    return cls.from_events(aggregate_id, events), version


async def load_document(uow: UnitOfWork, document_id: uuid.UUID) -> tuple[Document, int]:
    return await load(uow, Document, ev.document_stream(uow.tenant, document_id), document_id)


async def take_number(uow: UnitOfWork, register: str, year: int, document_id: uuid.UUID) -> int:
    """The register's next number for the year, appended to its counter stream in this
    transaction: if the transaction rolls back, the number was never taken."""
    stream = ev.register_stream(uow.tenant, register, year)
    for _ in range(NUMBER_ATTEMPTS):
        version = await uow.stream_version(stream)
        taken = RegisterCounter(register, year, version).take(document_id)
        try:
            async with uow.conn.transaction():  # a savepoint: losing the race undoes only this
                await uow.append(stream, version, [taken])
            return taken.number
        except ConcurrencyError:
            continue
    raise ConcurrencyError(stream, version, -1)  # the dispatcher retries the whole command


async def store_blob(uow: UnitOfWork, file: FileUpload) -> None:
    await uow.conn.execute(
        "INSERT INTO blobs (sha256, bytes, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        file.sha256, file.data, file.size,
    )


def _file(name: str | None, encoded: str | None) -> FileUpload | None:
    return FileUpload.from_base64(name, encoded) if encoded is not None else None


async def _division_head(directory: Directory, division_id: str) -> str | None:
    heads = [p.person_id for p in await directory.people(division_id) if p.heads_division]
    return (heads or await directory.acting_heads(division_id, local_today()) or [None])[0]


async def _assignee(directory: Directory, division_id: str | None, person_id: str | None):
    person = await directory.active_person(person_id) if person_id else None
    division_id = division_id or person.division_id
    if await directory.division(division_id) is None:
        raise NotFound(f"Không tìm thấy phòng {division_id}.", f"No division {division_id}.")
    return division_id, person


# --- incoming documents ------------------------------------------------------------------


@router.command(c.RegisterIncomingDocument)
async def register_incoming(cmd: c.RegisterIncomingDocument, uow: UnitOfWork) -> dict:
    """The Office enters an incoming document; a secret one goes to the named leader."""
    directory = Directory(uow.conn, uow.tenant)
    actor = await actor_of(uow)
    doc, version = await load_document(uow, cmd.document_id)
    received_on = local_today()
    file = _file(cmd.file_name, cmd.file_base64) if cmd.secrecy == "none" else None
    if cmd.secrecy != "none" and cmd.file_base64 is not None:
        raise secret_not_remote()  # a secret document's file is refused unread
    number = await take_number(uow, "incoming", received_on.year, cmd.document_id)
    events = doc.receive(
        actor, number=number, year=received_on.year, original_number=cmd.original_number,
        issuing_body=cmd.issuing_body, summary=cmd.summary, document_date=cmd.document_date,
        received_on=received_on, urgency=cmd.urgency, secrecy=cmd.secrecy, file=file,
    )
    if doc.is_secret or cmd.leader_id:
        if not cmd.leader_id:
            raise DomainError(
                "Văn bản mật phải được chuyển đến một lãnh đạo Sở: cần chọn lãnh đạo.",
                "A secret document is taken to a department leader: name the leader.",
                code="leader_required",
            )
        events += doc.route(actor, await directory.active_person(cmd.leader_id))
    if cmd.division_id or cmd.person_id:
        division_id, person = await _assignee(directory, cmd.division_id, cmd.person_id)
        events += doc.assign(actor, division_id, person, cmd.due_date, received_on)
    if file is not None:
        await store_blob(uow, file)
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "number": number, "year": received_on.year,
            "status": doc.status}


@router.command(c.AttachIncomingFile)
async def attach_incoming_file(cmd: c.AttachIncomingFile, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    file = FileUpload.from_base64(cmd.file_name, cmd.file_base64)
    events = doc.attach_file(await actor_of(uow), file)
    await store_blob(uow, file)
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "file_sha256": file.sha256}


@router.command(c.RouteSecretDocument)
async def route_secret(cmd: c.RouteSecretDocument, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    leader = await Directory(uow.conn, uow.tenant).active_person(cmd.leader_id)
    events = doc.route(await actor_of(uow), leader)
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "status": doc.status, "leader_id": leader.person_id}


@router.command(c.AssignDocument)
async def assign_document(cmd: c.AssignDocument, uow: UnitOfWork) -> dict:
    """Assign an incoming document; an urgent secret one summons the person (head told first)."""
    directory = Directory(uow.conn, uow.tenant)
    doc, version = await load_document(uow, cmd.document_id)
    division_id, person = await _assignee(directory, cmd.division_id, cmd.person_id)
    events = doc.assign(
        await actor_of(uow), division_id, person, cmd.due_date, local_today(),
        division_head_id=await _division_head(directory, division_id),
    )
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "status": doc.status,
            "summoned": any(isinstance(e, ev.SecretDocumentSummons) for e in events)}


@router.command(c.MarkDocumentHandled)
async def mark_handled(cmd: c.MarkDocumentHandled, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    events = doc.mark_handled(await actor_of(uow))
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "status": doc.status}


# --- outgoing drafts ---------------------------------------------------------------------


async def _save_document(uow: UnitOfWork, doc: Document, version: int, events: list[Event]) -> dict:
    await uow.append(ev.document_stream(uow.tenant, doc.document_id), version, events)
    return {"document_id": doc.document_id, "status": doc.status,
            "version": doc.draft.version if doc.draft else None}


async def _author(uow: UnitOfWork, doc: Document) -> Person | None:
    """The draft's author as the directory knows them (None without a draft: the rules refuse)."""
    if doc.draft is None:
        return None
    author = await Directory(uow.conn, uow.tenant).person(doc.draft.author_id)
    if author is None:
        raise NotFound(f"Không tìm thấy người soạn thảo {doc.draft.author_id}.",
                       f"No author {doc.draft.author_id}.")
    return author


@router.command(c.SubmitDraft)
async def submit_draft(cmd: c.SubmitDraft, uow: UnitOfWork) -> dict:
    """The author submits a draft, or a new version that restarts the approvals."""
    doc, version = await load_document(uow, cmd.document_id)
    actor = await actor_of(uow)
    doc.check_may_draft(cmd.secrecy)
    file = FileUpload.from_base64(cmd.file_name, cmd.file_base64)
    events = doc.submit_draft(
        actor, doc_type=cmd.doc_type, summary=cmd.summary, recipients=cmd.recipients,
        urgency=cmd.urgency, secrecy=cmd.secrecy, file=file,
    )
    await store_blob(uow, file)
    return {**await _save_document(uow, doc, version, events), "file_sha256": file.sha256}


@router.command(c.ApproveDraft)
async def approve_draft(cmd: c.ApproveDraft, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    events = doc.approve_content(await actor_of(uow), await _author(uow, doc))
    return await _save_document(uow, doc, version, events)


@router.command(c.CheckFormat)
async def check_format(cmd: c.CheckFormat, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    events = doc.check_format(await actor_of(uow))
    return await _save_document(uow, doc, version, events)


@router.command(c.ReturnDraft)
async def return_draft(cmd: c.ReturnDraft, uow: UnitOfWork) -> dict:
    doc, version = await load_document(uow, cmd.document_id)
    events = doc.return_draft(await actor_of(uow), await _author(uow, doc), cmd.comments)
    return await _save_document(uow, doc, version, events)


@router.command(c.SignDocument)
async def sign_document(cmd: c.SignDocument, uow: UnitOfWork) -> dict:
    """A leader's signature, made on their side over GetSigningContent, checked and recorded."""
    doc, version = await load_document(uow, cmd.document_id)
    actor = await actor_of(uow)
    content = signing_content(uow.tenant, doc, actor.id) if doc.draft else {}
    signed = Signed(cmd.algorithm, cmd.key_id, cmd.signature, content, cmd.certificate_pem,
                    datetime.now(UTC))
    valid = bool(content) and await signature_holds(Directory(uow.conn, uow.tenant), actor.person, signed)
    events = doc.sign(
        actor, version=cmd.version, algorithm=cmd.algorithm, key_id=cmd.key_id,
        signature=cmd.signature, signed_content=content, certificate_pem=cmd.certificate_pem,
        signature_valid=valid,
    )
    result = await _save_document(uow, doc, version, events)
    return {**result, "content_sha256": doc.signed.content_sha256}


@router.command(c.IssueDocument)
async def issue_document(cmd: c.IssueDocument, uow: UnitOfWork) -> dict:
    """The Office issues a signed document with the next number of the outgoing register."""
    directory = Directory(uow.conn, uow.tenant)
    doc, version = await load_document(uow, cmd.document_id)
    actor = await actor_of(uow)
    doc.check_issue(actor)  # refuse before taking a number
    department = await directory.department()
    if department is None:
        raise NotFound("Chưa có thông tin Sở (ký hiệu).", "The department is not known yet.")
    issued_on = local_today()
    number = await take_number(uow, "outgoing", issued_on.year, doc.document_id)
    events = doc.issue(actor, number=number, year=issued_on.year,
                       department_symbol=department["symbol"], issued_on=issued_on)
    result = await _save_document(uow, doc, version, events)
    return {**result, "number": number, "year": issued_on.year, "symbol": doc.issued.symbol}


# --- tasks -------------------------------------------------------------------------------


async def load_task(uow: UnitOfWork, task_id: uuid.UUID) -> tuple[Task, int]:
    return await load(uow, Task, ev.task_stream(uow.tenant, task_id), task_id)


async def _save_task(uow: UnitOfWork, task: Task, version: int, events: list[Event]) -> dict:
    await uow.append(ev.task_stream(uow.tenant, task.task_id), version, events)
    return {"task_id": task.task_id, "status": task.status, "percent": task.percent}


@router.command(c.AssignTask)
async def assign_task(cmd: c.AssignTask, uow: UnitOfWork) -> dict:
    """A division's leadership assigns work, from a document or standalone, with a due date."""
    task, version = await load_task(uow, cmd.task_id)
    assignee = await Directory(uow.conn, uow.tenant).active_person(cmd.assignee_id)
    document = None
    if cmd.document_id is not None:
        document, _ = await load_document(uow, cmd.document_id)
        if not document.exists:
            raise NotFound(f"Không tìm thấy văn bản {cmd.document_id}.", f"No document {cmd.document_id}.")
    events = task.assign(
        await actor_of(uow), assignee, title=cmd.title, description=cmd.description,
        due_date=cmd.due_date, today=local_today(), document=document,
    )
    return await _save_task(uow, task, version, events)


@router.command(c.ReportTaskProgress)
async def report_progress(cmd: c.ReportTaskProgress, uow: UnitOfWork) -> dict:
    task, version = await load_task(uow, cmd.task_id)
    events = task.report_progress(await actor_of(uow), cmd.percent, cmd.note)
    return await _save_task(uow, task, version, events)


@router.command(c.CompleteTask)
async def complete_task(cmd: c.CompleteTask, uow: UnitOfWork) -> dict:
    task, version = await load_task(uow, cmd.task_id)
    events = task.complete(await actor_of(uow), cmd.note)
    return await _save_task(uow, task, version, events)


async def detect_overdue(uow: UnitOfWork, as_of: datetime) -> dict:
    """Raise TaskOverdue / DocumentOverdue for whatever is a working day past due at `as_of`,
    each once: the aggregate remembers it raised the event. One item racing with another
    change is left for the next round rather than failing the others."""
    plans = await Directory(uow.conn, uow.tenant).plans()
    before = local_date(as_of)
    raised: dict[str, list[uuid.UUID]] = {"tasks": [], "documents": []}
    candidates = [
        ("tasks", Task, ev.task_stream, r["task_id"]) for r in await uow.conn.fetch(
            "SELECT task_id FROM doc_tasks WHERE tenant = $1 AND status = 'open' "
            "AND overdue_at IS NULL AND due_date < $2 ORDER BY due_date, task_id", uow.tenant, before)
    ] + [
        ("documents", Document, ev.document_stream, r["document_id"]) for r in await uow.conn.fetch(
            "SELECT document_id FROM doc_documents WHERE tenant = $1 AND status = 'assigned' "
            "AND overdue_at IS NULL AND due_date < $2 ORDER BY due_date, document_id", uow.tenant, before)
    ]
    for kind, cls, stream_of, aggregate_id in candidates:
        stream = stream_of(uow.tenant, aggregate_id)
        aggregate, version = await load(uow, cls, stream, aggregate_id)
        events = aggregate.detect_overdue(as_of, plans)
        if not events:
            continue
        try:
            async with uow.conn.transaction():
                await uow.append(stream, version, events)
            raised[kind].append(aggregate_id)
        except ConcurrencyError:
            continue
    return raised


@router.command(c.DetectOverdue)
async def detect_overdue_command(cmd: c.DetectOverdue, uow: UnitOfWork) -> dict:
    """The IT team, the Chief of Office or a leader (and the service's own loop) run detection."""
    if not uow.identity.is_admin:
        actor = await actor_of(uow)
        if not (actor.is_leader or "chief_of_office" in actor.roles):
            raise Forbidden(
                "Chỉ Tổ CNTT, Chánh Văn phòng hoặc lãnh đạo Sở chạy kiểm tra quá hạn.",
                "Only the IT team, the Chief of Office or a leader runs overdue detection.",
            )
    as_of = cmd.as_of or datetime.now(UTC)
    return {"as_of": as_of, **await detect_overdue(uow, as_of)}


async def detect_overdue_for_every_tenant(runtime, as_of: datetime) -> dict[str, dict]:
    """What the background loop does: detection for each department, one transaction each."""
    results = {}
    async with runtime.pool.acquire() as conn:
        tenants = [r["tenant"] for r in await conn.fetch("SELECT tenant FROM dir_departments")]
        for tenant in tenants:
            async with conn.transaction():
                uow = UnitOfWork(conn, runtime.store, runtime.definition.own_projections,
                                 Identity(SCHEDULER, tenant), tenant, uuid.uuid4())
                results[tenant] = await detect_overdue(uow, as_of)
            if any(results[tenant].values()):
                log.info("overdue raised", tenant=tenant, tasks=len(results[tenant]["tasks"]),
                         documents=len(results[tenant]["documents"]))
    return results


# --- meetings ----------------------------------------------------------------------------


async def load_meeting(uow: UnitOfWork, meeting_id: uuid.UUID) -> tuple[Meeting, int]:
    return await load(uow, Meeting, ev.meeting_stream(uow.tenant, meeting_id), meeting_id)


async def _save_meeting(uow: UnitOfWork, meeting: Meeting, version: int, events) -> dict:
    await uow.append(ev.meeting_stream(uow.tenant, meeting.meeting_id), version, events)
    return {"meeting_id": meeting.meeting_id, "cancelled": meeting.cancelled,
            "confirmed": sorted(meeting.confirmed)}


@router.command(c.ScheduleMeeting)
async def schedule_meeting(cmd: c.ScheduleMeeting, uow: UnitOfWork) -> dict:
    """Invite people to an online meeting; they are told to join 15 minutes early."""
    directory = Directory(uow.conn, uow.tenant)
    meeting, version = await load_meeting(uow, cmd.meeting_id)
    events = meeting.schedule(
        await actor_of(uow), title=cmd.title, starts_at=cmd.starts_at, ends_at=cmd.ends_at,
        link=cmd.link, chair=await directory.active_person(cmd.chair_id),
        invitees=[await directory.active_person(p) for p in cmd.invitees], now=datetime.now(UTC),
    )
    result = await _save_meeting(uow, meeting, version, events)
    return {**result, "join_at": meeting.scheduled.join_at}


@router.command(c.ConfirmMeetingAttendance)
async def confirm_attendance(cmd: c.ConfirmMeetingAttendance, uow: UnitOfWork) -> dict:
    meeting, version = await load_meeting(uow, cmd.meeting_id)
    events = meeting.confirm(await actor_of(uow), datetime.now(UTC))
    return await _save_meeting(uow, meeting, version, events)


@router.command(c.CancelMeeting)
async def cancel_meeting(cmd: c.CancelMeeting, uow: UnitOfWork) -> dict:
    meeting, version = await load_meeting(uow, cmd.meeting_id)
    events = meeting.cancel(await actor_of(uow), cmd.reason, datetime.now(UTC))
    return await _save_meeting(uow, meeting, version, events)


__all__ = ["router", "detect_overdue_for_every_tenant"]
