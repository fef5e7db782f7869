"""The documents service's queries, each answering within what the asker may see.

Leaders, the Office, format checkers and the IT team see every document; a division's
leadership sees its division's; everyone sees what they wrote or were assigned, and every
issued document. A secret
document's register entry (it has nothing more) is seen by leaders, the Chief of Office, the
secret-document handler, the leader it was routed to, and whoever it was assigned to and their head.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import signatures
from shared.commands import CommandRouter, NotFound, UnitOfWork
from shared.contracts import decode
from shared.contracts import documents as ev
from shared.directory import Directory
from shared.localtime import LOCAL_TZ, vn_date
from services.documents import commands as c
from services.documents.domain import FileUpload, local_date, signing_content, working_days_late
from services.documents.handlers import actor_of, load_document
from services.documents.signing import Signed, signature_holds

router = CommandRouter()

STEP_VI = {
    "DocumentReceived": "Vào sổ văn bản đến",
    "IncomingFileAttached": "Đính kèm tệp văn bản đến",
    "SecretDocumentRouted": "Văn phòng chuyển văn bản mật đến lãnh đạo Sở",
    "DocumentAssigned": "Giao xử lý",
    "SecretDocumentSummons": "Triệu tập cán bộ vào cơ quan xử lý văn bản mật",
    "DocumentHandled": "Đã xử lý xong",
    "DocumentOverdue": "Quá hạn xử lý",
    "DraftSubmitted": "Trình dự thảo",
    "DraftApproved": "Trưởng phòng duyệt nội dung",
    "DraftReturned": "Trả lại dự thảo",
    "FormatChecked": "Thẩm định thể thức",
    "DraftReadyForSigning": "Sẵn sàng trình ký",
    "DocumentSigned": "Lãnh đạo Sở ký số",
    "DocumentIssued": "Phát hành",
}


@dataclass(frozen=True)
class Viewer:
    person_id: str
    sees_all: bool
    sees_secrets: bool
    led_divisions: tuple[str, ...] = ()  # divisions whose leadership the viewer is in
    headed_divisions: tuple[str, ...] = ()

    def document_filter(self, first: int) -> tuple[str, list]:
        """A WHERE clause over doc_documents (parameters from `$first`) and its parameters."""
        p = [f"${first + i}" for i in range(5)]
        return (
            f"({p[0]}::bool OR division_id = ANY({p[1]}::text[]) OR author_id = {p[2]} "
            f"OR person_id = {p[2]} OR status = 'issued') AND (secrecy = 'none' OR {p[3]}::bool OR person_id = {p[2]} "
            f"OR leader_id = {p[2]} OR division_id = ANY({p[4]}::text[]))",
            [self.sees_all, list(self.led_divisions), self.person_id, self.sees_secrets,
             list(self.headed_divisions)],
        )

    def task_filter(self, first: int) -> tuple[str, list]:
        p = [f"${first + i}" for i in range(3)]
        return (
            f"({p[0]}::bool OR division_id = ANY({p[1]}::text[]) OR assignee_id = {p[2]} "
            f"OR assigned_by = {p[2]})",
            [self.sees_all, list(self.led_divisions), self.person_id],
        )


async def viewer_of(uow: UnitOfWork) -> Viewer:
    if uow.identity.is_admin:
        return Viewer(uow.identity.person_id, sees_all=True, sees_secrets=True)
    actor = await actor_of(uow)
    divisions = {actor.person.division_id, *actor.acting_head_of}
    return Viewer(
        actor.id,
        sees_all=actor.is_leader or actor.in_office or "format_checker" in actor.roles,
        sees_secrets=actor.is_leader or actor.handles_secrets,
        led_divisions=tuple(sorted(d for d in divisions if actor.leads(d))),
        headed_divisions=tuple(sorted(d for d in divisions if actor.heads(d))),
    )


def _not_found(document_id) -> NotFound:
    return NotFound(f"Không tìm thấy văn bản {document_id}.", f"No document {document_id}.")


async def visible_document(uow: UnitOfWork, document_id: uuid.UUID) -> dict:
    """The document's row, if the asker may see it (else NotFound: not even that it exists)."""
    where, params = (await viewer_of(uow)).document_filter(3)
    row = await uow.conn.fetchrow(
        f"SELECT * FROM doc_documents WHERE tenant = $1 AND document_id = $2 AND {where}",
        uow.tenant, document_id, *params,
    )
    if row is None:
        raise _not_found(document_id)
    return _document_view(row)


def _document_view(row) -> dict:
    out = dict(row)
    name, _ = ev.DOC_TYPES.get(row["doc_type"], (None, None))
    out["doc_type_name"] = name
    out["urgency_vi"] = ev.URGENCY_VI[row["urgency"]]
    out["secrecy_vi"] = ev.SECRECY_VI[row["secrecy"]]
    for column in ("document_date", "received_on", "issued_on", "due_date"):
        if row[column] is not None:
            out[f"{column}_vi"] = vn_date(row[column])
    return out


@router.query(c.ListDocuments)
async def list_documents(q: c.ListDocuments, uow: UnitOfWork) -> list[dict]:
    """Documents by register, status, division, year and date (received, issued, else created)."""
    where, params = (await viewer_of(uow)).document_filter(9)
    rows = await uow.conn.fetch(
        "SELECT * FROM doc_documents WHERE tenant = $1 "
        "AND ($2::text IS NULL OR register = $2) AND ($3::text IS NULL OR status = $3) "
        "AND ($4::text IS NULL OR division_id = $4) AND ($5::int IS NULL OR year = $5) "
        "AND ($6::date IS NULL OR coalesce(issued_on, received_on, "
        "     (created_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date) >= $6) "
        "AND ($7::date IS NULL OR coalesce(issued_on, received_on, "
        "     (created_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date) <= $7) "
        f"AND {where} ORDER BY created_at, document_id LIMIT $8",
        uow.tenant, q.register_name, q.status, q.division_id, q.year, q.date_from, q.date_to,
        q.limit, *params,
    )
    return [_document_view(r) for r in rows]


@router.query(c.GetDocument)
async def get_document(q: c.GetDocument, uow: UnitOfWork) -> dict:
    return await visible_document(uow, q.document_id)


@router.query(c.GetDocumentHistory)
async def get_history(q: c.GetDocumentHistory, uow: UnitOfWork) -> dict:
    """Every step of a document, in order: what happened, who did it, when (UTC and local)."""
    document = await visible_document(uow, q.document_id)
    envelopes = await uow.store.read_stream(uow.conn, ev.document_stream(uow.tenant, q.document_id))
    directory = Directory(uow.conn, uow.tenant)
    names: dict[str, str] = {}
    steps = []
    for env in envelopes:
        if env.actor not in names:
            person = await directory.person(env.actor)
            names[env.actor] = person.full_name if person else env.actor
        local = env.occurred_at.astimezone(LOCAL_TZ)
        steps.append({
            "step": env.stream_version, "event": env.event_type, "label": STEP_VI[env.event_type],
            "actor_id": env.actor, "actor_name": names[env.actor], "at": env.occurred_at,
            "at_local": local.strftime("%d/%m/%Y %H:%M"), "details": decode(env).model_dump(mode="json"),
        })
    return {"document_id": q.document_id, "status": document["status"], "steps": steps}


@router.query(c.GetDocumentFile)
async def get_file(q: c.GetDocumentFile, uow: UnitOfWork) -> dict:
    document = await visible_document(uow, q.document_id)
    if document["file_sha256"] is None:
        raise NotFound("Văn bản này không có tệp.", "This document has no file.")
    data = await uow.conn.fetchval("SELECT bytes FROM blobs WHERE sha256 = $1", document["file_sha256"])
    return {"document_id": q.document_id, "file_name": document["file_name"],
            "file_sha256": document["file_sha256"], "file_base64": base64.b64encode(data).decode()}


@router.query(c.GetSigningContent)
async def get_signing_content(q: c.GetSigningContent, uow: UnitOfWork) -> dict:
    """What the asking leader signs on their side (canonical JSON, UTF-8) and its SHA-256."""
    await visible_document(uow, q.document_id)
    doc, _ = await load_document(uow, q.document_id)
    content = signing_content(uow.tenant, doc, uow.identity.person_id)
    data = signatures.canonical_bytes(content)
    return {"content": content, "canonical": data.decode(), "sha256": signatures.sha256_hex(data)}


@router.query(c.VerifyDocumentSignature)
async def verify_signature(q: c.VerifyDocumentSignature, uow: UnitOfWork) -> dict:
    """Re-check a signature on record: over the content as submitted, by the signer's key or
    certificate, and the file (the one given, else the one stored) is the file signed."""
    await visible_document(uow, q.document_id)
    doc, _ = await load_document(uow, q.document_id)
    signed = doc.signed
    if signed is None:
        raise NotFound("Văn bản này chưa được ký.", "This document has not been signed.")
    if q.file_base64 is not None:
        data = FileUpload.from_base64("file", q.file_base64).data
    else:
        data = await uow.conn.fetchval("SELECT bytes FROM blobs WHERE sha256 = $1", signed.file_sha256)
    directory = Directory(uow.conn, uow.tenant)
    signer = await directory.person(signed.signer_id)
    events = await uow.store.read_stream(uow.conn, ev.document_stream(uow.tenant, q.document_id))
    signed_at = next(e.occurred_at for e in events if e.event_type == "DocumentSigned")
    signature_valid = signer is not None and await signature_holds(directory, signer, Signed(
        signed.algorithm, signed.key_id, signed.signature, signed.signed_content,
        signed.certificate_pem, signed_at,
    ))
    content_matches = signed.signed_content == signing_content(uow.tenant, doc, signed.signer_id)
    file_matches = data is not None and signatures.sha256_hex(bytes(data)) == signed.file_sha256
    return {
        "document_id": q.document_id, "valid": signature_valid and content_matches and file_matches,
        "signature_valid": signature_valid, "content_matches": content_matches,
        "file_matches": file_matches, "signer_id": signed.signer_id, "algorithm": signed.algorithm,
        "key_id": signed.key_id, "file_sha256": signed.file_sha256,
        "content_sha256": signed.content_sha256,
    }


# --- tasks, overdue items, meetings ------------------------------------------------------


@router.query(c.ListTasks)
async def list_tasks(q: c.ListTasks, uow: UnitOfWork) -> list[dict]:
    """Tasks by assignee, status, division and document, within what the asker may see."""
    where, params = (await viewer_of(uow)).task_filter(7)
    rows = await uow.conn.fetch(
        "SELECT * FROM doc_tasks WHERE tenant = $1 AND ($2::text IS NULL OR assignee_id = $2) "
        "AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR division_id = $4) "
        f"AND ($5::uuid IS NULL OR document_id = $5) AND {where} "
        "ORDER BY due_date, assigned_at, task_id LIMIT $6",
        uow.tenant, q.assignee_id, q.status, q.division_id, q.document_id, q.limit, *params,
    )
    return [{**dict(r), "due_date_vi": vn_date(r["due_date"])} for r in rows]


@router.query(c.ListOverdue)
async def list_overdue(q: c.ListOverdue, uow: UnitOfWork) -> dict:
    """Open tasks and assigned incoming documents at least one working day past due."""
    as_of = q.as_of or datetime.now(UTC)
    today = local_date(as_of)
    viewer = await viewer_of(uow)
    plans = await Directory(uow.conn, uow.tenant).plans()
    task_where, task_params = viewer.task_filter(4)
    doc_where, doc_params = viewer.document_filter(4)
    tasks = await uow.conn.fetch(
        "SELECT * FROM doc_tasks WHERE tenant = $1 AND status = 'open' AND due_date < $2 "
        f"AND ($3::text IS NULL OR division_id = $3) AND {task_where} ORDER BY due_date, task_id",
        uow.tenant, today, q.division_id, *task_params,
    )
    documents = await uow.conn.fetch(
        "SELECT * FROM doc_documents WHERE tenant = $1 AND status = 'assigned' AND due_date < $2 "
        f"AND ($3::text IS NULL OR division_id = $3) AND {doc_where} ORDER BY due_date, document_id",
        uow.tenant, today, q.division_id, *doc_params,
    )
    items = []
    for r in tasks:
        items.append({"kind": "task", "id": r["task_id"], "title": r["title"],
                      "person_id": r["assignee_id"], "division_id": r["division_id"],
                      "due_date": r["due_date"], "overdue_raised": r["overdue_at"] is not None})
    for r in documents:
        title = r["summary"] or f"Văn bản {ev.SECRECY_VI[r['secrecy']].lower()} số đến {r['number']}"
        items.append({"kind": "document", "id": r["document_id"], "title": title,
                      "person_id": r["person_id"], "division_id": r["division_id"],
                      "due_date": r["due_date"], "overdue_raised": r["overdue_at"] is not None})
    for item in items:
        item["working_days_late"] = working_days_late(item["due_date"], today, plans)
        item["due_date_vi"] = vn_date(item["due_date"])
    items = [i for i in items if i["working_days_late"] >= 1]
    return {"as_of": as_of, "items": sorted(items, key=lambda i: (i["due_date"], str(i["id"])))}


@router.query(c.ListMeetings)
async def list_meetings(q: c.ListMeetings, uow: UnitOfWork) -> list[dict]:
    """Meetings the asker is invited to, chairs or organised (all of them for leaders and the Office)."""
    viewer = await viewer_of(uow)
    rows = await uow.conn.fetch(
        "SELECT m.*, coalesce(json_agg(json_build_object('person_id', i.person_id, "
        "'confirmed_at', i.confirmed_at) ORDER BY i.person_id) "
        "FILTER (WHERE i.person_id IS NOT NULL), '[]') AS invitees "
        "FROM doc_meetings m LEFT JOIN doc_meeting_invitees i "
        "ON i.tenant = m.tenant AND i.meeting_id = m.meeting_id WHERE m.tenant = $1 "
        "AND ($2::date IS NULL OR (m.starts_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date >= $2) "
        "AND ($3::date IS NULL OR (m.starts_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date <= $3) "
        "AND ($4::bool OR m.organiser_id = $5 OR EXISTS (SELECT 1 FROM doc_meeting_invitees x "
        "WHERE x.tenant = m.tenant AND x.meeting_id = m.meeting_id AND x.person_id = $5)) "
        "GROUP BY m.tenant, m.meeting_id ORDER BY m.starts_at, m.meeting_id LIMIT $6",
        uow.tenant, q.date_from, q.date_to, viewer.sees_all, viewer.person_id, q.limit,
    )
    out = []
    for r in rows:
        local = r["starts_at"].astimezone(LOCAL_TZ)
        out.append({**dict(r), "invitees": json.loads(r["invitees"]),
                    "starts_local": local.strftime("%H:%M %d/%m/%Y"),
                    "join_local": r["join_at"].astimezone(LOCAL_TZ).strftime("%H:%M %d/%m/%Y")})
    return out


__all__ = ["router"]
