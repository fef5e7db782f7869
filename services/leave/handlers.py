"""One function per leave command or query: load the ledger, authorise, decide, append."""

from __future__ import annotations

import uuid

from shared import signatures
from shared.commands import CommandRouter, DomainError, Forbidden, NotFound, UnitOfWork
from shared.contracts import leave as ev
from shared.directory import Directory, Person
from shared.localtime import local_today
from services.leave import commands as c
from services.leave.domain import LeaveLedger, approval_content, check_may_decide

router = CommandRouter()


async def _person(directory: Directory, person_id: str) -> Person:
    return await directory.active_person(person_id)


async def _ledger(uow: UnitOfWork, person_id: str) -> tuple[LeaveLedger, int]:
    events, version = await uow.load(ev.ledger_stream(uow.tenant, person_id))
    return LeaveLedger.from_events(person_id, events), version


async def _applicant_of(uow: UnitOfWork, application_id: uuid.UUID) -> str:
    person_id = await uow.conn.fetchval(
        "SELECT person_id FROM leave_applications WHERE tenant = $1 AND application_id = $2",
        uow.tenant, application_id,
    )
    if person_id is None:
        raise NotFound(
            f"Không tìm thấy đơn nghỉ phép {application_id}.", f"No leave application {application_id}."
        )
    return person_id


async def _save(uow: UnitOfWork, person_id: str, version: int, events) -> None:
    await uow.append(ev.ledger_stream(uow.tenant, person_id), version, events)


@router.command(c.RequestLeave)
async def request_leave(cmd: c.RequestLeave, uow: UnitOfWork) -> dict:
    """The actor files their own leave application."""
    directory = Directory(uow.conn, uow.tenant)
    applicant = await _person(directory, uow.identity.person_id)
    ledger, version = await _ledger(uow, applicant.person_id)
    events = ledger.request(
        cmd.application_id, applicant, cmd.start_date, cmd.end_date, cmd.half_day, cmd.reason,
        await directory.plans(),
    )
    await _save(uow, applicant.person_id, version, events)
    requested = events[0]
    balance = ledger.balance(cmd.start_date.year)
    return {
        "application_id": requested.application_id,
        "working_dates": requested.working_dates,
        "days": requested.days,
        "status": "pending",
        "balance": {"entitlement": balance.entitlement, "used": balance.used,
                    "pending": balance.pending + requested.days,
                    "left": balance.left - requested.days},
    }


async def _authorise_decision(uow: UnitOfWork, application_id: uuid.UUID):
    directory = Directory(uow.conn, uow.tenant)
    applicant = await _person(directory, await _applicant_of(uow, application_id))
    approver = await _person(directory, uow.identity.person_id)
    acting = await directory.acts_for_head(approver.person_id, applicant.division_id, local_today())
    check_may_decide(approver, applicant, acting)
    ledger, version = await _ledger(uow, applicant.person_id)
    return directory, applicant, approver, ledger, version


@router.command(c.ApproveLeave)
async def approve_leave(cmd: c.ApproveLeave, uow: UnitOfWork) -> dict:
    """The head approves with an electronic signature over the application's canonical content."""
    directory, applicant, approver, ledger, version = await _authorise_decision(uow, cmd.application_id)
    app = ledger.application(cmd.application_id)
    key = await directory.public_key(cmd.key_id)
    if key is None or key[0] != approver.person_id:
        raise Forbidden(
            "Khóa ký số không thuộc về người duyệt.",
            "The signing key is not registered to the approver.", code="bad_signature",
        )
    content = approval_content(uow.tenant, app.requested)
    if not signatures.verify(key[1], content, cmd.signature):
        raise DomainError(
            "Chữ ký số không hợp lệ với nội dung đơn.",
            "The signature does not match the application's content.", code="bad_signature",
        )
    digest = signatures.sha256_hex(signatures.canonical_bytes(content))
    events = ledger.approve(cmd.application_id, approver.person_id, digest, cmd.signature, cmd.key_id)
    await _save(uow, applicant.person_id, version, events)
    return {"application_id": cmd.application_id, "status": "approved", "content_sha256": digest}


@router.command(c.RejectLeave)
async def reject_leave(cmd: c.RejectLeave, uow: UnitOfWork) -> dict:
    _, applicant, approver, ledger, version = await _authorise_decision(uow, cmd.application_id)
    events = ledger.reject(cmd.application_id, approver.person_id, cmd.reason)
    await _save(uow, applicant.person_id, version, events)
    return {"application_id": cmd.application_id, "status": "rejected"}


@router.command(c.CancelLeave)
async def cancel_leave(cmd: c.CancelLeave, uow: UnitOfWork) -> dict:
    person_id = await _applicant_of(uow, cmd.application_id)
    ledger, version = await _ledger(uow, person_id)
    events = ledger.cancel(cmd.application_id, uow.identity.person_id, cmd.reason, local_today())
    await _save(uow, person_id, version, events)
    return {"application_id": cmd.application_id, "status": "cancelled"}


@router.command(c.SetLeaveEntitlement)
async def set_entitlement(cmd: c.SetLeaveEntitlement, uow: UnitOfWork) -> dict:
    """The Office (Chief of Office) or the IT team sets a person's annual entitlement."""
    directory = Directory(uow.conn, uow.tenant)
    if not uow.identity.is_admin:
        actor = await _person(directory, uow.identity.person_id)
        if "chief_of_office" not in actor.roles:
            raise Forbidden(
                "Chỉ Chánh Văn phòng được điều chỉnh số ngày phép.",
                "Only the Chief of Office may set leave entitlements.",
            )
    await _person(directory, cmd.person_id)
    ledger, version = await _ledger(uow, cmd.person_id)
    await _save(uow, cmd.person_id, version, ledger.set_entitlement(cmd.days_per_year))
    return {"person_id": cmd.person_id, "days_per_year": cmd.days_per_year}


# --- queries -----------------------------------------------------------------------------


async def _visible_scope(uow: UnitOfWork) -> tuple[str, Person | None]:
    """'all' for leaders, the Chief of Office and the IT team; 'division' for heads; else 'self'."""
    if uow.identity.is_admin:
        return "all", None
    actor = await _person(Directory(uow.conn, uow.tenant), uow.identity.person_id)
    if actor.is_leader or "chief_of_office" in actor.roles:
        return "all", actor
    if actor.heads_division or "deputy_division_head" in actor.roles:
        return "division", actor
    return "self", actor


def _forbidden_view() -> Forbidden:
    return Forbidden(
        "Bạn không có quyền xem đơn nghỉ phép của người khác ngoài phạm vi của mình.",
        "You may not view leave outside your own scope.",
    )


async def _load_application_row(uow: UnitOfWork, application_id: uuid.UUID):
    row = await uow.conn.fetchrow(
        "SELECT * FROM leave_applications WHERE tenant = $1 AND application_id = $2",
        uow.tenant, application_id,
    )
    if row is None:
        raise NotFound(
            f"Không tìm thấy đơn nghỉ phép {application_id}.", f"No leave application {application_id}."
        )
    return row


@router.query(c.ListLeaveApplications)
async def list_applications(q: c.ListLeaveApplications, uow: UnitOfWork) -> list[dict]:
    """Applications by person, division, date and status, within what the actor may see."""
    scope, actor = await _visible_scope(uow)
    person_id, division_id = q.person_id, q.division_id
    if scope == "self":
        if person_id not in (None, actor.person_id) or division_id is not None:
            raise _forbidden_view()
        person_id = actor.person_id
    elif scope == "division":
        if division_id not in (None, actor.division_id):
            raise _forbidden_view()
        division_id = actor.division_id
    rows = await uow.conn.fetch(
        "SELECT * FROM leave_applications WHERE tenant = $1 "
        "AND ($2::text IS NULL OR person_id = $2) AND ($3::text IS NULL OR division_id = $3) "
        "AND ($4::date IS NULL OR $4 = ANY(working_dates)) AND ($5::text IS NULL OR status = $5) "
        "ORDER BY start_date, requested_at LIMIT $6",
        uow.tenant, person_id, division_id, q.on_date, q.status, q.limit,
    )
    return [{**dict(r), "days": float(r["days"])} for r in rows]


@router.query(c.GetLeaveBalance)
async def get_balance(q: c.GetLeaveBalance, uow: UnitOfWork) -> dict:
    """A person's entitlement, used, pending and left days for a year."""
    scope, actor = await _visible_scope(uow)
    person_id = q.person_id or (actor.person_id if actor else None)
    if person_id is None:
        raise DomainError("Cần chỉ rõ cán bộ.", "Name the person.", code="invalid")
    person = await _person(Directory(uow.conn, uow.tenant), person_id)
    if scope == "self" and person_id != actor.person_id:
        raise _forbidden_view()
    if scope == "division" and person.division_id != actor.division_id:
        raise _forbidden_view()
    ledger, _ = await _ledger(uow, person_id)
    balance = ledger.balance(q.year or local_today().year)
    return {
        "person_id": person_id, "year": balance.year, "entitlement": balance.entitlement,
        "used": balance.used, "pending": balance.pending, "left": balance.left,
    }


async def _requested_event(uow: UnitOfWork, application_id: uuid.UUID) -> ev.LeaveRequested:
    person_id = await _applicant_of(uow, application_id)
    ledger, _ = await _ledger(uow, person_id)
    return ledger.application(application_id).requested


@router.query(c.GetApprovalContent)
async def get_approval_content(q: c.GetApprovalContent, uow: UnitOfWork) -> dict:
    """What the approver's client signs (canonical JSON, UTF-8) and its SHA-256."""
    content = approval_content(uow.tenant, await _requested_event(uow, q.application_id))
    data = signatures.canonical_bytes(content)
    return {"content": content, "canonical": data.decode(), "sha256": signatures.sha256_hex(data)}


@router.query(c.VerifyLeaveApproval)
async def verify_approval(q: c.VerifyLeaveApproval, uow: UnitOfWork) -> dict:
    """Re-check a stored approval: the signature over the content as filed, by the key on record."""
    person_id = await _applicant_of(uow, q.application_id)
    events, _ = await uow.load(ev.ledger_stream(uow.tenant, person_id))
    approval = next(
        (e for e in events if isinstance(e, ev.LeaveApproved) and e.application_id == q.application_id),
        None,
    )
    if approval is None:
        raise NotFound("Đơn này chưa được duyệt.", "This application has not been approved.")
    requested = next(
        e for e in events if isinstance(e, ev.LeaveRequested) and e.application_id == q.application_id
    )
    key = await Directory(uow.conn, uow.tenant).public_key(approval.key_id)
    content = approval_content(uow.tenant, requested)
    valid = (
        key is not None
        and key[0] == approval.approver_id
        and signatures.verify(key[1], content, approval.signature)
        and signatures.sha256_hex(signatures.canonical_bytes(content)) == approval.content_sha256
    )
    return {
        "application_id": q.application_id, "valid": valid, "approver_id": approval.approver_id,
        "key_id": approval.key_id, "content_sha256": approval.content_sha256,
    }


__all__ = ["router"]
