"""Composition root of the documents service."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from shared.commands import CommandRouter
from shared.directory import MIGRATIONS as DIRECTORY_MIGRATIONS
from shared.directory import directory_projection
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.documents import handlers, queries
from services.documents.projection import documents, meetings, tasks

# How often the service looks for work and documents that fell overdue (seconds).
OVERDUE_INTERVAL_SECONDS = float(os.environ.get("WFH_DOCUMENTS_OVERDUE_INTERVAL_SECONDS", "300"))


async def detect_overdue_periodically(runtime: ServiceRuntime) -> None:
    """Every few minutes, raise overdue events (each once) for every department."""
    while True:
        await asyncio.sleep(OVERDUE_INTERVAL_SECONDS)
        await handlers.detect_overdue_for_every_tenant(runtime, datetime.now(UTC))


def definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="documents",
        router=CommandRouter.combine(handlers.router, queries.router),
        own_projections=(documents, tasks, meetings),
        consumed_projections={"directory": directory_projection("directory")},
        migrations=(DIRECTORY_MIGRATIONS, Path(__file__).with_name("migrations")),
        background=(detect_overdue_periodically,),
    )


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
