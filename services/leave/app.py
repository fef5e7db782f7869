"""Composition root of the leave service."""

from __future__ import annotations

from pathlib import Path

from shared.directory import MIGRATIONS as DIRECTORY_MIGRATIONS
from shared.directory import directory_projection
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.leave.handlers import router
from services.leave.projection import applications


def definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="leave",
        router=router,
        own_projections=(applications,),
        consumed_projections={"directory": directory_projection("directory")},
        migrations=(DIRECTORY_MIGRATIONS, Path(__file__).with_name("migrations")),
    )


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
