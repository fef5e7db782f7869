"""Composition root of the reporting service."""

from __future__ import annotations

from pathlib import Path

from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from services.reporting.config import ReportingConfig
from services.reporting.handlers import router_for
from services.reporting.projection import EventFacts, publications
from services.reporting.publishing import DailyPublisher


class ReportingService:
    """The parts a test reaches into: the daily publisher (its clock is the config's)."""

    def __init__(self, config: ReportingConfig | None = None, publish_daily: bool = True) -> None:
        self.config = config or ReportingConfig.from_env()
        self.publisher = DailyPublisher(self.config)
        self.publish_daily = publish_daily

    def definition(self) -> ServiceDefinition:
        return ServiceDefinition(
            name="reporting",
            router=router_for(self.config),
            own_projections=(publications,),
            consumed_projections={"events": EventFacts()},
            migrations=(Path(__file__).with_name("migrations"),),
            background=(self.publisher.loop,) if self.publish_daily else (),
        )


def definition(config: ReportingConfig | None = None, publish_daily: bool = True) -> ServiceDefinition:
    return ReportingService(config, publish_daily).definition()


def build(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(definition(), settings)
