"""How events become reporting's tables: every consumed event a row of `report_events`, with
the days it is about; its own `ReportPublished` a row of `report_publications`."""

from __future__ import annotations

import json
from datetime import date

from shared.contracts import Envelope, Event
from shared.contracts.reporting import ReportPublished
from shared.localtime import LOCAL_TZ
from shared.projection import Projection

ABOUT_ONE_DAY = frozenset({"CheckedIn", "HealthDeclared", "CheckInMissed", "CoverageGapRecorded",
                           "CoverageGapClosed"})
ABOUT_SEVERAL_DAYS = frozenset({"RosterSubmitted", "RosterCompiled"})
DELIVERIES = ("NotificationSent", "NotificationFailed")


def days_of(envelope: Envelope, payload: dict) -> tuple[date | None, date | None]:
    """The days an event is about, so a report loads only its window of day-bound facts."""
    if envelope.event_type in ABOUT_ONE_DAY:
        day = date.fromisoformat(payload["day"])
        return day, day
    if envelope.event_type in ABOUT_SEVERAL_DAYS:
        days = [date.fromisoformat(d if isinstance(d, str) else d["day"]) for d in payload["days"]]
        return min(days), max(days)
    if envelope.event_type in DELIVERIES:
        day = envelope.occurred_at.astimezone(LOCAL_TZ).date()
        return day, day
    return None, None


class EventFacts(Projection):
    """Every consumed event, whatever its type: reporting's own copy of the stream."""

    def __init__(self) -> None:
        super().__init__("report_events", ("report_events",), source="events")

    async def apply(self, conn, envelope: Envelope, event: Event) -> None:
        payload = event.model_dump(mode="json")  # upcast to the current schema once, here
        day_from, day_to = days_of(envelope, payload)
        await conn.execute(
            "INSERT INTO report_events (event_id, tenant, occurred_at, source, stream_id, stream_version, "
            "event_type, day_from, day_to, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT (event_id) DO NOTHING",
            envelope.event_id, envelope.tenant, envelope.occurred_at, envelope.source, envelope.stream_id,
            envelope.stream_version, envelope.event_type, day_from, day_to,
            json.dumps(payload, ensure_ascii=False),
        )


publications = Projection("report_publications", ("report_publications",))


@publications.on(ReportPublished)
async def _published(conn, env: Envelope, e: ReportPublished) -> None:
    await conn.execute(
        "INSERT INTO report_publications (tenant, kind, day, report_id, title, html_path, pdf_path, "
        "pdf_sha256, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (tenant, kind, day) DO NOTHING",
        env.tenant, e.kind, e.day, e.report_id, e.title, e.html_path, e.pdf_path, e.pdf_sha256,
        env.occurred_at,
    )
