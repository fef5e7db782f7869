"""Composition root of the roster service."""

from __future__ import annotations

from pathlib import Path

from shared.directory import MIGRATIONS as DIRECTORY_MIGRATIONS
from shared.directory import directory_projection
from shared.eventstore import EventStore
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.roster import presence_handlers, roster_handlers  # noqa: F401  (they add their routes)
from services.roster.handlers import router
from services.roster.leave_conflicts import leave_conflicts
from services.roster.projection import presence, rosters
from services.roster.scheduler import missing_check_in_schedule


def definition(check_in_tick_seconds: float = 60.0) -> ServiceDefinition:
    own = (directory_projection("own"), rosters, presence)
    return ServiceDefinition(
        name="roster",
        router=router,
        own_projections=own,
        consumed_projections={"leave": leave_conflicts(own, EventStore("roster"))},
        migrations=(DIRECTORY_MIGRATIONS, Path(__file__).with_name("migrations")),
        background=(missing_check_in_schedule(check_in_tick_seconds),),
    )


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
