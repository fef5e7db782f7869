"""How the documents service's events become its read tables (registers, documents, tasks, meetings)."""

from __future__ import annotations

from shared.contracts import documents as ev
from shared.projection import Projection

documents = Projection("documents", ("doc_documents", "doc_register_entries"))
tasks = Projection("tasks", ("doc_tasks",))
meetings = Projection("meetings", ("doc_meetings", "doc_meeting_invitees"))


async def _update(conn, table: str, key: str, env, key_value, **columns) -> None:
    """Set `columns` and `updated_at` (the event's time) on one row of `table`."""
    columns["updated_at"] = env.occurred_at
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=3))
    await conn.execute(
        f"UPDATE {table} SET {sets} WHERE tenant = $1 AND {key} = $2",
        env.tenant, key_value, *columns.values(),
    )


def _document(conn, env, document_id, **columns):
    return _update(conn, "doc_documents", "document_id", env, document_id, **columns)


# --- documents ---------------------------------------------------------------------------


@documents.on(ev.RegisterNumberAssigned)
async def _number(conn, env, e: ev.RegisterNumberAssigned) -> None:
    await conn.execute(
        "INSERT INTO doc_register_entries (tenant, register, year, number, document_id, taken_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        env.tenant, e.register_name, e.year, e.number, e.document_id, env.occurred_at,
    )


@documents.on(ev.DocumentReceived)
async def _received(conn, env, e: ev.DocumentReceived) -> None:
    await conn.execute(
        "INSERT INTO doc_documents (tenant, document_id, register, status, year, number, "
        "original_number, summary, issuing_body, document_date, received_on, urgency, secrecy, "
        "created_at, updated_at) "
        "VALUES ($1, $2, 'incoming', 'registered', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        env.tenant, e.document_id, e.year, e.number, e.original_number, e.summary, e.issuing_body,
        e.document_date, e.received_on, e.urgency, e.secrecy, env.occurred_at,
    )


@documents.on(ev.IncomingFileAttached)
async def _attached(conn, env, e: ev.IncomingFileAttached) -> None:
    await _document(conn, env, e.document_id, file_sha256=e.file_sha256, file_name=e.file_name)


@documents.on(ev.SecretDocumentRouted)
async def _routed(conn, env, e: ev.SecretDocumentRouted) -> None:
    await _document(conn, env, e.document_id, status="routed", leader_id=e.leader_id)


@documents.on(ev.DocumentAssigned)
async def _assigned(conn, env, e: ev.DocumentAssigned) -> None:
    await _document(
        conn, env, e.document_id, status="assigned", division_id=e.division_id,
        person_id=e.person_id, due_date=e.due_date, overdue_at=None,
    )


@documents.on(ev.DocumentHandled)
async def _handled(conn, env, e: ev.DocumentHandled) -> None:
    await _document(conn, env, e.document_id, status="handled")


@documents.on(ev.DocumentOverdue)
async def _document_overdue(conn, env, e: ev.DocumentOverdue) -> None:
    await _document(conn, env, e.document_id, overdue_at=e.as_of)


@documents.on(ev.DraftSubmitted)
async def _submitted(conn, env, e: ev.DraftSubmitted) -> None:
    await conn.execute(
        "INSERT INTO doc_documents (tenant, document_id, register, status, doc_type, summary, "
        "urgency, secrecy, author_id, division_id, version, file_sha256, file_name, recipients, "
        "created_at, updated_at) "
        "VALUES ($1, $2, 'outgoing', 'submitted', $3, $4, $5, 'none', $6, $7, $8, $9, $10, $11, $12, $12) "
        "ON CONFLICT (tenant, document_id) DO UPDATE SET status = 'submitted', "
        "doc_type = EXCLUDED.doc_type, summary = EXCLUDED.summary, urgency = EXCLUDED.urgency, "
        "version = EXCLUDED.version, file_sha256 = EXCLUDED.file_sha256, "
        "file_name = EXCLUDED.file_name, recipients = EXCLUDED.recipients, "
        "signer_id = NULL, signed_at = NULL, updated_at = EXCLUDED.updated_at",
        env.tenant, e.document_id, e.doc_type, e.summary, e.urgency, e.author_id, e.division_id,
        e.version, e.file_sha256, e.file_name, list(e.recipients), env.occurred_at,
    )


@documents.on(ev.DraftApproved)
async def _approved(conn, env, e: ev.DraftApproved) -> None:
    await _document(conn, env, e.document_id, status="content_approved")


@documents.on(ev.DraftReturned)
async def _returned(conn, env, e: ev.DraftReturned) -> None:
    await _document(conn, env, e.document_id, status="returned")


@documents.on(ev.DraftReadyForSigning)
async def _ready(conn, env, e: ev.DraftReadyForSigning) -> None:
    await _document(conn, env, e.document_id, status="ready_for_signing")


@documents.on(ev.DocumentSigned)
async def _signed(conn, env, e: ev.DocumentSigned) -> None:
    await _document(conn, env, e.document_id, status="signed", signer_id=e.signer_id,
                    signed_at=env.occurred_at)


@documents.on(ev.DocumentIssued)
async def _issued(conn, env, e: ev.DocumentIssued) -> None:
    await _document(conn, env, e.document_id, status="issued", year=e.year, number=e.number,
                    symbol=e.symbol, issued_on=e.issued_on)


# --- tasks -------------------------------------------------------------------------------


def _task(conn, env, task_id, **columns):
    return _update(conn, "doc_tasks", "task_id", env, task_id, **columns)


@tasks.on(ev.TaskAssigned)
async def _task_assigned(conn, env, e: ev.TaskAssigned) -> None:
    await conn.execute(
        "INSERT INTO doc_tasks (tenant, task_id, title, description, assignee_id, division_id, "
        "assigned_by, due_date, document_id, status, percent, assigned_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', 0, $10, $10)",
        env.tenant, e.task_id, e.title, e.description, e.assignee_id, e.division_id,
        e.assigned_by, e.due_date, e.document_id, env.occurred_at,
    )


@tasks.on(ev.TaskProgressReported)
async def _progress(conn, env, e: ev.TaskProgressReported) -> None:
    await _task(conn, env, e.task_id, percent=e.percent, last_note=e.note)


@tasks.on(ev.TaskCompleted)
async def _completed(conn, env, e: ev.TaskCompleted) -> None:
    await _task(conn, env, e.task_id, status="completed", percent=100, last_note=e.note,
                completed_at=env.occurred_at)


@tasks.on(ev.TaskOverdue)
async def _task_overdue(conn, env, e: ev.TaskOverdue) -> None:
    await _task(conn, env, e.task_id, overdue_at=e.as_of)


# --- meetings ----------------------------------------------------------------------------


@meetings.on(ev.MeetingScheduled)
async def _scheduled(conn, env, e: ev.MeetingScheduled) -> None:
    await conn.execute(
        "INSERT INTO doc_meetings (tenant, meeting_id, title, starts_at, join_at, ends_at, link, "
        "chair_id, organiser_id, status, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'scheduled', $10)",
        env.tenant, e.meeting_id, e.title, e.starts_at, e.join_at, e.ends_at, e.link, e.chair_id,
        e.organiser_id, env.occurred_at,
    )
    await conn.executemany(
        "INSERT INTO doc_meeting_invitees (tenant, meeting_id, person_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        [(env.tenant, e.meeting_id, p) for p in (e.chair_id, *e.invitees)],
    )


@meetings.on(ev.MeetingAttendanceConfirmed)
async def _confirmed(conn, env, e: ev.MeetingAttendanceConfirmed) -> None:
    await conn.execute(
        "UPDATE doc_meeting_invitees SET confirmed_at = $4 "
        "WHERE tenant = $1 AND meeting_id = $2 AND person_id = $3",
        env.tenant, e.meeting_id, e.person_id, env.occurred_at,
    )


@meetings.on(ev.MeetingCancelled)
async def _cancelled(conn, env, e: ev.MeetingCancelled) -> None:
    await _update(conn, "doc_meetings", "meeting_id", env, e.meeting_id, status="cancelled",
                  cancel_reason=e.reason)
