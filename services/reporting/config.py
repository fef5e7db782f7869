"""Reporting's own settings (where reports are written, when the daily one is published), from
the environment, with a clock to inject."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

from shared.localtime import local_now


@dataclass(frozen=True)
class ReportingConfig:
    reports_dir: Path = Path(".run/reports")
    # Every working day at this local time the day's report is published (ReportPublished).
    publish_at: time = time(16, 30)
    poll_seconds: float = 60.0
    locale: str = "vi"
    # After downtime, missed working days are published late, at most this many days back.
    catch_up_days: int = 7
    clock: Callable[[], datetime] = local_now

    @classmethod
    def from_env(cls) -> ReportingConfig:
        env = os.environ.get
        return cls(
            reports_dir=Path(env("WFH_REPORTING_DIR", str(cls.reports_dir))),
            publish_at=time.fromisoformat(env("WFH_REPORTING_PUBLISH_AT", cls.publish_at.isoformat("minutes"))),
            poll_seconds=float(env("WFH_REPORTING_POLL_SECONDS", str(cls.poll_seconds))),
            locale=env("WFH_REPORTING_LOCALE", cls.locale),
        )
