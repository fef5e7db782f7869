"""One function per notify command and query: a person's notifications, read receipts,
channel preferences, and the delivery status of an event's notifications."""

from __future__ import annotations

from typing import get_args

from shared.commands import CommandRouter, DomainError, Forbidden, NotFound, UnitOfWork
from shared.contracts import notify as ev
from shared.directory import Directory, Person, actor_of
from services.notify import commands as c
from services.notify.domain import channels_for

router = CommandRouter()

CATEGORIES: tuple[str, ...] = get_args(ev.Category)


async def _directory_person(uow: UnitOfWork, person_id: str) -> Person:
    person = await Directory(uow.conn, uow.tenant).person(person_id)
    if person is None or not person.active:
        raise NotFound(
            f"Không tìm thấy cán bộ {person_id} trong danh bạ của Sở.",
            f"No person {person_id} in the department's directory.",
        )
    return person


def _whose(uow: UnitOfWork, person_id: str | None) -> str:
    """The actor's own person id; the IT team (admin scope) may name someone else."""
    if person_id is None or person_id == uow.identity.person_id:
        return uow.identity.person_id
    if not uow.identity.is_admin:
        raise Forbidden(
            "Đồng chí chỉ xem và thay đổi thông báo của chính mình.",
            "You may only see and change your own notifications.",
        )
    return person_id


@router.query(c.ListNotifications)
async def list_notifications(q: c.ListNotifications, uow: UnitOfWork) -> dict:
    """Newest first, with read state; `unread` counts all unread ones."""
    person_id = _whose(uow, q.person_id)
    rows = await uow.conn.fetch(
        "SELECT n.seq, n.notification_id, n.kind, n.category, n.urgent, n.title, n.body, n.created_at, "
        "n.source_event_id, n.source_event_type, r.read_at FROM notifications n "
        "LEFT JOIN notification_reads r ON r.tenant = n.tenant AND r.notification_id = n.notification_id "
        "WHERE n.tenant = $1 AND n.recipient_id = $2 AND ($3::bigint IS NULL OR n.seq < $3) "
        "AND (NOT $4 OR r.read_at IS NULL) ORDER BY n.seq DESC LIMIT $5",
        uow.tenant, person_id, q.before_seq, q.unread_only, q.limit,
    )
    unread = await uow.conn.fetchval(
        "SELECT count(*) FROM notifications n WHERE n.tenant = $1 AND n.recipient_id = $2 AND NOT EXISTS "
        "(SELECT 1 FROM notification_reads r WHERE r.tenant = n.tenant AND r.notification_id = n.notification_id)",
        uow.tenant, person_id,
    )
    return {
        "person_id": person_id, "unread": unread,
        "notifications": [{**dict(r), "read": r["read_at"] is not None} for r in rows],
    }


@router.command(c.MarkRead)
async def mark_read(cmd: c.MarkRead, uow: UnitOfWork) -> dict:
    """Records `NotificationsRead` for those not read yet; someone else's ids are refused."""
    if not cmd.all and not cmd.notification_ids:
        raise DomainError("Cần chỉ rõ thông báo đã đọc.", "Name the notifications read, or all.",
                          code="invalid")
    person_id = uow.identity.person_id
    rows = await uow.conn.fetch(
        "SELECT n.notification_id, r.read_at IS NOT NULL AS read FROM notifications n "
        "LEFT JOIN notification_reads r ON r.tenant = n.tenant AND r.notification_id = n.notification_id "
        "WHERE n.tenant = $1 AND n.recipient_id = $2 AND ($3 OR n.notification_id = ANY($4::uuid[]))",
        uow.tenant, person_id, cmd.all, list(cmd.notification_ids),
    )
    unknown = set(cmd.notification_ids) - {r["notification_id"] for r in rows}
    if unknown:
        raise NotFound(
            "Có thông báo không thuộc về đồng chí hoặc không tồn tại.",
            "Some notifications are not yours or do not exist.",
            notification_ids=sorted(str(u) for u in unknown),
        )
    unread = tuple(r["notification_id"] for r in rows if not r["read"])
    if unread:
        stream = ev.person_stream(uow.tenant, person_id)
        version = await uow.stream_version(stream)
        await uow.append(stream, version, [ev.NotificationsRead(person_id=person_id, notification_ids=unread)])
    return {"marked": len(unread)}


async def _sees_every_delivery(uow: UnitOfWork) -> bool:
    if uow.identity.is_admin:
        return True
    actor = await actor_of(uow)
    return actor is not None and (actor.is_leader or "chief_of_office" in actor.roles)


@router.query(c.GetDeliveryStatus)
async def delivery_status(q: c.GetDeliveryStatus, uow: UnitOfWork) -> dict:
    """Per recipient: the web feed (read or not) and each channel's delivery; pending reminders.
    Leaders, the Chief of Office and the IT team see everyone's; others only their own."""
    only = None if await _sees_every_delivery(uow) else uow.identity.person_id
    rows = await uow.conn.fetch(
        "SELECT n.notification_id, n.recipient_id, n.kind, n.created_at, r.read_at, d.channel, "
        "d.status, d.attempts, d.due_at, d.last_error, d.finished_at FROM notifications n "
        "LEFT JOIN notification_reads r ON r.tenant = n.tenant AND r.notification_id = n.notification_id "
        "LEFT JOIN deliveries d ON d.notification_id = n.notification_id "
        "WHERE n.tenant = $1 AND n.source_event_id = $2 AND ($3::text IS NULL OR n.recipient_id = $3) "
        "ORDER BY n.kind, n.recipient_id, d.channel",
        uow.tenant, q.source_event_id, only,
    )
    notifications: dict = {}
    for r in rows:
        entry = notifications.setdefault(r["notification_id"], {
            "notification_id": r["notification_id"], "recipient_id": r["recipient_id"],
            "kind": r["kind"], "created_at": r["created_at"],
            "channels": [{"channel": "web", "status": "read" if r["read_at"] else "unread"}],
        })
        if r["channel"] is not None:
            entry["channels"].append({
                "channel": r["channel"], "status": r["status"], "attempts": r["attempts"],
                "due_at": r["due_at"], "finished_at": r["finished_at"], "last_error": r["last_error"],
            })
    reminders = await uow.conn.fetch(
        "SELECT kind, due_at, status FROM reminders WHERE tenant = $1 AND source_event_id = $2 ORDER BY kind",
        uow.tenant, q.source_event_id,
    )
    return {"source_event_id": q.source_event_id, "notifications": list(notifications.values()),
            "reminders": [dict(r) for r in reminders]}


async def _preferences(uow: UnitOfWork, person: Person) -> dict:
    chosen = {r["category"]: tuple(r["channels"]) for r in await uow.conn.fetch(
        "SELECT category, channels FROM notify_preferences WHERE tenant = $1 AND person_id = $2",
        uow.tenant, person.person_id)}
    return {
        "person_id": person.person_id,
        "channels": {k: channels_for(person.roles, k, chosen.get(k)) for k in CATEGORIES},
        "chosen": chosen,
    }


@router.command(c.SetNotificationPreferences)
async def set_preferences(cmd: c.SetNotificationPreferences, uow: UnitOfWork) -> dict:
    """Web is always on, and summons always reach every channel, whatever is chosen."""
    person = await _directory_person(uow, _whose(uow, cmd.person_id))
    stream = ev.person_stream(uow.tenant, person.person_id)
    version = await uow.stream_version(stream)
    await uow.append(stream, version, [ev.NotificationPreferencesSet(
        person_id=person.person_id, category=cmd.category, channels=tuple(dict.fromkeys(cmd.channels)))])
    return await _preferences(uow, person)


@router.query(c.GetNotificationPreferences)
async def get_preferences(q: c.GetNotificationPreferences, uow: UnitOfWork) -> dict:
    return await _preferences(uow, await _directory_person(uow, _whose(uow, q.person_id)))


__all__ = ["router"]
