"""From a source event to notifications and deliveries, in the transaction of its inbox row.

For each rule of the event: resolve the audience against notify's copy of the directory,
render the text in each recipient's locale, record one notification per recipient (the web
feed) and one pending delivery per further channel (the outbox the delivery loop drains).
Unique keys make a second pass over the same event write nothing. Reminder rules instead
record the moment they fire; the delivery loop fires them through the same path.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta

import asyncpg

from shared.contracts import Envelope, Event, decode
from shared.directory import Directory, Person
from shared.localtime import LOCAL_TZ, vn_date
from shared.observability import get_logger
from services.notify.config import NotifyConfig
from services.notify.domain import WorkCalendar, channels_for, release_at, reminder_due
from services.notify.rules import REMEMBER, Rule, rule_named, rules_for
from services.notify.templates import context, locale_of, render, words

log = get_logger("wfh.notify")

NOTIFIED_CHANNEL = "notifications_added"  # PostgreSQL NOTIFY channel waking the web streams
_IDS = uuid.UUID("4d1b8a57-3f0e-4f59-9a52-6f2f5c1f7a10")
# A reminder may still fire this long after it fell due (a short outage): a meeting's join
# reminder (15 minutes before the start) then still comes before the start.
_GRACE = timedelta(minutes=15)


class DirectoryLagging(LookupError):
    """The event names a person notify's directory copy does not know yet: retried, then
    dead-lettered (to be re-driven) rather than telling nobody."""


def notification_id(source_event_id: uuid.UUID, kind: str, recipient_id: str) -> uuid.UUID:
    return uuid.uuid5(_IDS, f"{source_event_id}/{kind}/{recipient_id}")


def delivery_id(notification: uuid.UUID, channel: str) -> uuid.UUID:
    return uuid.uuid5(notification, channel)


def person_key(tenant: str, person_id: str) -> str:
    return f"{tenant}.person.{person_id}"


def division_key(tenant: str, division_id: str) -> str:
    return f"{tenant}.division.{division_id}"


def payload_values(payload: dict, path: str) -> list:
    """The values at a dotted path of a payload, lists flattened: `assignments.person_id`."""
    values = [payload]
    for part in path.split("."):
        found = []
        for v in values:
            item = v.get(part) if isinstance(v, dict) else None
            if isinstance(item, (list, tuple)):
                found.extend(item)
            elif item is not None:
                found.append(item)
        values = found
    return values


class Audience:
    """Resolves a rule's audience strings (see services/notify/rules.py) to people."""

    def __init__(self, directory: Directory, payload: dict, today: date) -> None:
        self.directory = directory
        self.payload = payload
        self.today = today
        self._everyone: list[Person] | None = None

    async def everyone(self) -> list[Person]:
        if self._everyone is None:
            self._everyone = await self.directory.people()
        return self._everyone

    async def known(self, person_id: str) -> Person:
        person = await self.directory.person(person_id)
        if person is None:
            raise DirectoryLagging(f"person {person_id!r} is not in notify's directory copy yet")
        return person

    async def heads(self, division_id: str) -> list[Person]:
        heads = [p for p in await self.directory.people(division_id) if p.heads_division]
        for acting in await self.directory.acting_heads(division_id, self.today):
            heads.append(await self.known(acting))
        return heads

    async def superiors(self, person: Person) -> list[Person]:
        everyone = await self.everyone()
        if person.is_director:
            return []
        if person.is_leader:
            return [p for p in everyone if p.is_director]
        if person.heads_division:
            return [p for p in everyone if p.is_leader]
        return [p for p in await self.heads(person.division_id) if p.person_id != person.person_id]

    async def values(self, path: str) -> list:
        """A payload path's values; `@Type.path` reads the remembered event this one refers to."""
        if not path.startswith("@"):
            return payload_values(self.payload, path)
        event_type, _, rest = path[1:].partition(".")
        earlier = await remembered(self.directory.conn, self.directory.tenant, event_type, self.payload)
        return payload_values(earlier, rest) if earlier else []

    async def resolve(self, specs: tuple[str, ...]) -> list[Person]:
        found: dict[str, Person] = {}
        for spec in specs:
            kind, _, arg = spec.partition(":")
            values = await self.values(arg) if arg else []
            match kind:
                case "person" | "people":
                    people = [await self.known(v) for v in values]
                case "superior":
                    people = [s for v in values for s in await self.superiors(await self.known(v))]
                case "head":
                    people = [h for v in values for h in await self.heads(v)]
                case "division":
                    people = [p for v in values for p in await self.directory.people(v)]
                case "role":
                    people = [p for p in await self.everyone() if arg in p.roles]
                case "leaders":
                    people = [p for p in await self.everyone() if p.is_leader]
                case "everyone":
                    people = await self.everyone()
                case _:
                    raise ValueError(f"unknown audience {spec!r}")
            for p in people:
                if p.active:
                    found.setdefault(p.person_id, p)
        return list(found.values())


async def remember(conn: asyncpg.Connection, envelope: Envelope, payload: dict) -> None:
    await conn.execute(
        "INSERT INTO remembered_events (tenant, event_type, key, payload) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant, event_type, key) DO UPDATE SET payload = EXCLUDED.payload",
        envelope.tenant, envelope.event_type, str(payload[REMEMBER[envelope.event_type]]),
        json.dumps(payload, ensure_ascii=False),
    )


async def remembered(conn: asyncpg.Connection, tenant: str, event_type: str, payload: dict) -> dict | None:
    """The remembered `event_type` sharing its id field with `payload`."""
    key = payload.get(REMEMBER[event_type])
    found = await conn.fetchval(
        "SELECT payload FROM remembered_events WHERE tenant = $1 AND event_type = $2 AND key = $3",
        tenant, event_type, str(key),
    )
    return json.loads(found) if found else None


def roster_assignment(lists: list[dict], person_id: str, locale: str) -> str:
    """A person's own days on a roster, e.g. "09/01/2037: trực tại cơ quan; 10/01/2037: làm việc tại nhà"."""
    w = words(locale)
    days = []
    for day in sorted(lists, key=lambda d: d["day"]):
        where = "on_site" if person_id in day["on_site"] else "home" if person_id in day["at_home"] else None
        if where:
            days.append(f"{vn_date(date.fromisoformat(day['day']))}: {w[where]}")
    return "; ".join(days) or w["none"]


class Notifier:
    def __init__(self, config: NotifyConfig) -> None:
        self.config = config

    async def on_event(self, conn: asyncpg.Connection, envelope: Envelope, event: Event) -> None:
        """The routing projection's handler: runs inside the inbox transaction."""
        now = self.config.clock()
        if envelope.event_type in REMEMBER:
            await remember(conn, envelope, event.model_dump(mode="json"))
        for rule in self.config.rules:
            if rule.unless is not None and rule.unless.event_type == envelope.event_type:
                await self._call_off(conn, envelope, event, rule)
        for rule in rules_for(self.config.rules, envelope.event_type):
            if rule.is_reminder:
                await self._schedule(conn, envelope, event, rule)
            else:
                await self.notify(conn, envelope, event, rule, now)

    async def _schedule(self, conn, envelope: Envelope, event: Event, rule: Rule) -> None:
        moment = getattr(event, rule.at)
        if moment is None:
            return
        due = reminder_due(rule, moment, WorkCalendar(tuple(await Directory(conn, envelope.tenant).plans())))
        await conn.execute(
            "INSERT INTO reminders (reminder_id, tenant, source_event_id, kind, due_at, envelope) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            uuid.uuid5(envelope.event_id, rule.name), envelope.tenant, envelope.event_id, rule.name,
            due, envelope.model_dump_json(exclude={"global_position"}),
        )

    async def _call_off(self, conn, envelope: Envelope, event: Event, rule: Rule) -> None:
        payload = event.model_dump(mode="json")
        fields = rule.unless.match
        matches = " AND ".join(f"envelope->'payload'->>'{f}' = ${i}" for i, f in enumerate(fields, start=3))
        called_off = await conn.execute(
            f"UPDATE reminders SET status = 'dropped' WHERE status = 'pending' AND tenant = $1 "
            f"AND kind = $2 AND {matches}",
            envelope.tenant, rule.name, *(str(payload[f]) for f in fields),
        )
        log.debug("reminders called off", kind=rule.name, by=envelope.event_type, result=called_off)

    async def fire_due_reminders(self, conn: asyncpg.Connection, now: datetime, limit: int = 50) -> int:
        """Fire the reminders whose time has come (in the caller's transaction); one more than
        a grace period late (the service was down for long) is dropped, not sent pointlessly late."""
        rows = await conn.fetch(
            "SELECT reminder_id, kind, due_at, envelope FROM reminders "
            "WHERE status = 'pending' AND due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now, limit,
        )
        for row in rows:
            rule = rule_named(self.config.rules, row["kind"])
            status = "dropped"
            if rule is not None and now < row["due_at"] + _GRACE:
                envelope = Envelope.model_validate_json(row["envelope"])
                await self.notify(conn, envelope, decode(envelope), rule, now)
                status = "fired"
            await conn.execute(
                "UPDATE reminders SET status = $2, fired_at = $3 WHERE reminder_id = $1",
                row["reminder_id"], status, now,
            )
            log.info("reminder " + status, kind=row["kind"], reminder_id=str(row["reminder_id"]))
        return len(rows)

    async def notify(
        self, conn: asyncpg.Connection, envelope: Envelope, event: Event, rule: Rule, now: datetime
    ) -> int:
        tenant = envelope.tenant
        directory = Directory(conn, tenant)
        today = now.astimezone(LOCAL_TZ).date()
        recipients = await Audience(directory, event.model_dump(mode="json"), today).resolve(rule.to)
        if not recipients:
            log.info("nobody to tell", event_type=envelope.event_type, kind=rule.name)
            return 0
        calendar = WorkCalendar(tuple(await directory.plans()))
        department = await directory.department()
        department_name = department["name"] if department else tenant
        people = {r["person_id"]: r["full_name"] for r in await conn.fetch(
            "SELECT person_id, full_name FROM dir_people WHERE tenant = $1", tenant)}
        divisions = {r["division_id"]: r["name"] for r in await directory.divisions()}
        chosen = {r["person_id"]: tuple(r["channels"]) for r in await conn.fetch(
            "SELECT person_id, channels FROM notify_preferences WHERE tenant = $1 AND category = $2 "
            "AND person_id = ANY($3)", tenant, rule.category, [p.person_id for p in recipients])}
        compiled = None
        if rule.personal == "roster_assignment":
            compiled = await remembered(conn, tenant, "RosterCompiled", event.model_dump(mode="json"))
        written = []  # (notification id, person, locale, title, body), in the audience's order
        for person in recipients:
            locale = locale_of(person.locale)
            values = context(
                event, locale, recipient_name=person.full_name, department_name=department_name,
                people=people, divisions=divisions, secret=rule.secret,
            )
            if rule.personal == "roster_assignment":
                values["assignment"] = roster_assignment(compiled["lists"], person.person_id, locale)
            title, body = render(rule.name, locale, values)
            written.append((notification_id(envelope.event_id, rule.name, person.person_id), person, locale,
                            title, body))
        # Everyone told in three statements, however many (a roster's approval tells a whole
        # department): those told before (a redelivery, a second pass) are written nothing.
        nids, persons, locales, titles, bodies = (list(column) for column in zip(*written, strict=True))
        new = {r["notification_id"] for r in await conn.fetch(
            "INSERT INTO notifications (notification_id, tenant, recipient_id, division_id, "
            "source_event_id, source_event_type, correlation_id, kind, category, urgent, locale, "
            "title, body, created_at) "
            "SELECT n, $2, r, d, $5, $6, $7, $8, $9, $10, l, t, b, $14 FROM unnest("
            "$1::uuid[], $3::text[], $4::text[], $11::text[], $12::text[], $13::text[]) "
            "WITH ORDINALITY AS told (n, r, d, l, t, b, i) ORDER BY i "
            "ON CONFLICT DO NOTHING RETURNING notification_id",
            nids, tenant, [p.person_id for p in persons], [p.division_id for p in persons],
            envelope.event_id, envelope.event_type, envelope.correlation_id, rule.name, rule.category,
            rule.urgency == "urgent", locales, titles, bodies, now,
        )}
        told = [(nid, person) for nid, person in zip(nids, persons, strict=True) if nid in new]
        sends = [
            (delivery_id(nid, channel), nid, channel, address, release_at(rule, channel, now, calendar))
            for nid, person in told
            for channel in channels_for(person.roles, rule.category, chosen.get(person.person_id))
            if (address := self._address(channel, tenant, person)) is not None
        ]
        if sends:
            ids, nids, channels, addresses, due = (list(column) for column in zip(*sends, strict=True))
            await conn.execute(
                "INSERT INTO deliveries (delivery_id, notification_id, tenant, channel, address, due_at, "
                "created_at) SELECT d, n, $3, c, a, due, $7 FROM unnest($1::uuid[], $2::uuid[], "
                "$4::text[], $5::text[], $6::timestamptz[]) AS sends (d, n, c, a, due) ON CONFLICT DO NOTHING",
                ids, nids, tenant, channels, addresses, due, now,
            )
        if told:
            await conn.execute(
                "SELECT pg_notify($1, recipient) FROM unnest($2::text[]) AS recipient",
                NOTIFIED_CHANNEL, [f"{tenant}\n{person.person_id}" for _, person in told],
            )
        log.info("notified", event_type=envelope.event_type, kind=rule.name, recipients=len(told))
        return len(told)

    def _address(self, channel: str, tenant: str, person: Person) -> str | None:
        """Where a channel reaches a person; None when it cannot (no email, no mail server)."""
        if channel == "bot":
            return person_key(tenant, person.person_id)
        if channel == "email" and self.config.email_enabled and person.email:
            return person.email
        return None
