"""Events owned by the reporting service: the Office's reports, once published."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import Field

from shared.contracts import Event, event

OWNER = "reporting"

ReportKind = Literal["daily", "period"]


def publication_stream(tenant: str, kind: str, day: date) -> str:
    """One stream per department, kind and day: its version 0 means "not published yet", so
    two publishers racing for the same day cannot both append (the store's version check)."""
    return f"report-{tenant}-{kind}-{day.isoformat()}"


@event(OWNER, "ReportPublished")
class ReportPublished(Event):
    """A status report the Office sends to the Director (2020 plan §III.4, 2021 plan §III.2).

    The figures are the report's headline numbers; the full report is in the files (HTML and
    PDF, Vietnamese) and is regenerated from the event stream at any time (`GenerateReport`)."""

    report_id: uuid.UUID
    kind: ReportKind
    day: date = Field(description="The day reported on (a period report: its last day)")
    start: date
    end: date
    title: str = Field(min_length=1)
    html_path: str
    pdf_path: str
    pdf_sha256: str
    on_site: int = Field(ge=0)
    at_home: int = Field(ge=0)
    on_leave: int = Field(ge=0)
    check_in_percent: float | None = Field(default=None, ge=0, le=100)
    missing_lists: int = Field(ge=0)
    violations: int = Field(ge=0)
    documents_overdue: int = Field(ge=0)
    tasks_overdue: int = Field(ge=0)
