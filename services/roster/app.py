"""Composition root of the roster service."""

from __future__ import annotations

from shared.directory import MIGRATIONS as DIRECTORY_MIGRATIONS
from shared.directory import directory_projection
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.roster.handlers import router


def definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="roster",
        router=router,
        own_projections=(directory_projection("own"),),
        migrations=(DIRECTORY_MIGRATIONS,),
    )


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
