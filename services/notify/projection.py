"""Notify's read tables: a person's read receipts and channel preferences (from its own
events), and the routing projection that turns consumed events into notifications."""

from __future__ import annotations

from shared.contracts import event_class
from shared.contracts import notify as ev
from shared.eventstore import EventStore
from shared.projection import Projection
from services.notify.routing import Notifier
from services.notify.rules import routed_event_types

person_settings = Projection("notify_person", ("notification_reads", "notify_preferences"))


@person_settings.on(ev.NotificationsRead)
async def _read(conn, env, e: ev.NotificationsRead) -> None:
    await conn.executemany(
        "INSERT INTO notification_reads (tenant, notification_id, person_id, read_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [(env.tenant, nid, e.person_id, env.occurred_at) for nid in e.notification_ids],
    )


@person_settings.on(ev.NotificationPreferencesSet)
async def _preferences(conn, env, e: ev.NotificationPreferencesSet) -> None:
    await conn.execute(
        "INSERT INTO notify_preferences (tenant, person_id, category, channels) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant, person_id, category) DO UPDATE SET channels = EXCLUDED.channels",
        env.tenant, e.person_id, e.category, list(e.channels),
    )


class RoutingProjection(Projection):
    """Consumed events become notifications and deliveries, in the inbox's transaction.

    Not replayed by a rebuild: who was told what was decided once, when the event arrived,
    against the directory of that moment; replaying would tell everyone again.
    """

    def __init__(self, notifier: Notifier, source: str = "events") -> None:
        super().__init__("notify_routing", (), source)
        for event_type in routed_event_types(notifier.config.rules):
            self.on(event_class(event_type))(notifier.on_event)

    async def rebuild(self, conn, store: EventStore, batch: int = 5000) -> int:
        return 0
