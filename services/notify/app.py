"""Composition root of the notify service."""

from __future__ import annotations

from pathlib import Path

from shared.directory import MIGRATIONS as DIRECTORY_MIGRATIONS
from shared.directory import directory_projection
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.notify.config import NotifyConfig
from services.notify.delivery import DeliveryLoop
from services.notify.handlers import router
from services.notify.projection import RoutingProjection, person_settings
from services.notify.routing import Notifier
from services.notify.web import WebFeed


class NotifyService:
    """The parts a test reaches into: the web feed's port, the delivery loop's channels."""

    def __init__(self, config: NotifyConfig | None = None) -> None:
        self.config = config or NotifyConfig.from_env()
        self.notifier = Notifier(self.config)
        self.delivery = DeliveryLoop(self.config, self.notifier)
        self.web = WebFeed(self.config)

    def definition(self) -> ServiceDefinition:
        return ServiceDefinition(
            name="notify",
            router=router,
            own_projections=(person_settings,),
            consumed_projections={
                "directory": directory_projection("directory"),
                "events": RoutingProjection(self.notifier),
            },
            migrations=(DIRECTORY_MIGRATIONS, Path(__file__).with_name("migrations")),
            background=(self.delivery.deliveries, self.web.web_server),
        )


def definition(config: NotifyConfig | None = None) -> ServiceDefinition:
    return NotifyService(config).definition()


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
