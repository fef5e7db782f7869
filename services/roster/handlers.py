"""One function per directory and plan command: load the directory stream, authorise, decide,
append. Owns the service's router; rosters and presence add their routes in their own modules."""

from __future__ import annotations

from shared.auth import Identity
from shared.commands import CommandRouter, Forbidden, UnitOfWork
from shared.contracts import roster as ev
from shared.directory import Directory, Person, actor_of
from services.roster import commands as c
from services.roster.domain import DepartmentDirectory

router = CommandRouter()


def _directory_stream(_cmd, tenant: str, _identity: Identity) -> list[str]:
    """What every directory command folds: its last event is read with the batch's lock."""
    return [ev.directory_stream(tenant)]


async def _load(uow: UnitOfWork) -> tuple[DepartmentDirectory, int]:
    return await uow.fold(ev.directory_stream(uow.tenant), DepartmentDirectory)


async def _save(uow: UnitOfWork, version: int, events: list) -> dict:
    await uow.append(ev.directory_stream(uow.tenant), version, events)
    return {"events": [e.event_type for e in events]}


async def _require(uow: UnitOfWork, may, message_vi: str, message_en: str) -> None:
    """The IT team (admin scope) may; anyone else only when `may(person)` holds."""
    if uow.identity.is_admin:
        return
    actor = await actor_of(uow)
    if actor is None or not actor.active or not may(actor):
        raise Forbidden(message_vi, message_en)


async def _require_directory_manager(uow: UnitOfWork) -> None:
    """The IT team and the Chief of Office keep the directory."""
    await _require(
        uow, lambda p: "chief_of_office" in p.roles,
        "Chỉ Chánh Văn phòng hoặc Tổ CNTT được thay đổi danh bạ tổ chức.",
        "Only the Chief of Office or the IT team may change the directory.",
    )


async def _require_calendar_keeper(uow: UnitOfWork) -> None:
    """The Office keeps the holiday calendar (the Director and the IT team may too)."""
    await _require(
        uow, lambda p: p.is_director or "chief_of_office" in p.roles,
        "Chỉ Chánh Văn phòng, Giám đốc Sở hoặc Tổ CNTT được sửa lịch nghỉ của Sở.",
        "Only the Chief of Office, the Director or the IT team may edit the holiday calendar.",
    )


async def _require_director(uow: UnitOfWork) -> None:
    await _require(
        uow, lambda p: p.is_director,
        "Chỉ Giám đốc Sở được ban hành, điều chỉnh hoặc kết thúc kế hoạch.",
        "Only the Director may activate, amend or end a plan.",
    )


async def current_person(uow: UnitOfWork) -> Person:
    """The actor as the directory knows them; rosters and presence are for people, not admins."""
    person = await actor_of(uow)
    if person is None or not person.active:
        raise Forbidden(
            "Bạn không có tên trong danh bạ của Sở.", "You are not in the department's directory.",
        )
    return person


@router.command(c.ImportDepartment, streams=_directory_stream)
async def import_department(cmd: c.ImportDepartment, uow: UnitOfWork) -> dict:
    """Bring the directory in line with a department file; unchanged entries add no events."""
    await _require_directory_manager(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.import_department(cmd))


@router.command(c.AddPerson, streams=_directory_stream)
async def add_person(cmd: c.AddPerson, uow: UnitOfWork) -> dict:
    await _require_directory_manager(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.add_person(ev.PersonAdded(**cmd.model_dump())))


@router.command(c.ChangeRoles, streams=_directory_stream)
async def change_roles(cmd: c.ChangeRoles, uow: UnitOfWork) -> dict:
    await _require_directory_manager(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.change_roles(cmd.person_id, cmd.roles))


@router.command(c.MovePerson, streams=_directory_stream)
async def move_person(cmd: c.MovePerson, uow: UnitOfWork) -> dict:
    await _require_directory_manager(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.move_person(cmd.person_id, cmd.division_id))


@router.command(c.RemovePerson, streams=_directory_stream)
async def remove_person(cmd: c.RemovePerson, uow: UnitOfWork) -> dict:
    await _require_directory_manager(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.remove_person(cmd.person_id))


@router.command(c.RegisterSigningKey, streams=_directory_stream)
async def register_signing_key(cmd: c.RegisterSigningKey, uow: UnitOfWork) -> dict:
    """A person registers their own public key (or the IT team does it for them)."""
    if not uow.identity.is_admin and uow.identity.person_id != cmd.person_id:
        raise Forbidden(
            "Chỉ chính người đó được đăng ký khóa ký số của mình.",
            "Only the person themselves may register their signing key.",
        )
    directory, version = await _load(uow)
    return await _save(
        uow, version, directory.register_signing_key(cmd.person_id, cmd.key_id, cmd.public_key)
    )


@router.command(c.DesignateActingHead, streams=_directory_stream)
async def designate_acting_head(cmd: c.DesignateActingHead, uow: UnitOfWork) -> dict:
    """The division head (or the Director) lets a deputy act for the head for a period."""
    if not uow.identity.is_admin:
        actor = await actor_of(uow)
        allowed = actor is not None and (
            actor.is_director or (actor.heads_division and actor.division_id == cmd.division_id)
        )
        if not allowed:
            raise Forbidden(
                "Chỉ trưởng phòng đó hoặc Giám đốc Sở được giao quyền trưởng phòng.",
                "Only that division's head or the Director may designate an acting head.",
            )
    directory, version = await _load(uow)
    return await _save(
        uow, version,
        directory.designate_acting_head(cmd.division_id, cmd.person_id, cmd.valid_from, cmd.valid_until),
    )


@router.command(c.ActivatePlan, streams=_directory_stream)
async def activate_plan(cmd: c.ActivatePlan, uow: UnitOfWork) -> dict:
    await _require_director(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.activate_plan(ev.PlanActivated(**cmd.model_dump())))


@router.command(c.AmendPlan, streams=_directory_stream)
async def amend_plan(cmd: c.AmendPlan, uow: UnitOfWork) -> dict:
    """The Director amends a plan: sessions, own days off, on-site rules, check-in grace, title."""
    await _require_director(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.amend_plan(ev.PlanAmended(**cmd.model_dump())))


@router.command(c.AddHoliday, streams=_directory_stream)
async def add_holiday(cmd: c.AddHoliday, uow: UnitOfWork) -> dict:
    await _require_calendar_keeper(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.add_holiday(cmd.day, cmd.name))


@router.command(c.RemoveHoliday, streams=_directory_stream)
async def remove_holiday(cmd: c.RemoveHoliday, uow: UnitOfWork) -> dict:
    await _require_calendar_keeper(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.remove_holiday(cmd.day))


@router.command(c.EndPlan, streams=_directory_stream)
async def end_plan(cmd: c.EndPlan, uow: UnitOfWork) -> dict:
    await _require_director(uow)
    directory, version = await _load(uow)
    return await _save(uow, version, directory.end_plan(cmd.plan_id, cmd.effective_until))


@router.query(c.GetDirectory)
async def get_directory(q: c.GetDirectory, uow: UnitOfWork) -> dict:
    """Anyone in the department may read its directory."""
    directory = Directory(uow.conn, uow.tenant)
    department = await directory.department()
    return {
        "department": dict(department) if department else None,
        "divisions": [dict(d) for d in await directory.divisions()],
        "people": [
            {**p.__dict__, "roles": sorted(p.roles)} for p in await directory.people(q.division_id)
        ],
    }


@router.query(c.GetPlans)
async def get_plans(q: c.GetPlans, uow: UnitOfWork) -> list[dict]:
    plans = await Directory(uow.conn, uow.tenant).plans()
    return [{**p.__dict__, "holidays": sorted(p.holidays)} for p in plans]


@router.query(c.GetHolidays)
async def get_holidays(q: c.GetHolidays, uow: UnitOfWork) -> list[dict]:
    return [dict(r) for r in await Directory(uow.conn, uow.tenant).holidays()]
