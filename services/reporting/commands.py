"""Commands and queries the reporting service accepts."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts.reporting import ReportKind


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateReport(_Message):
    """A daily report (`day`, today by default) or a period report (`start`..`end`, the active
    plan up to today by default), as the stream stands now or as it stood at `as_of`.
    Answers the report as JSON, the paths of the files written (JSON, HTML, PDF) and, with
    `include_files`, the HTML and PDF themselves (base64)."""

    kind: ReportKind = "daily"
    day: date | None = None
    start: date | None = None
    end: date | None = None
    as_of: AwareDatetime | None = None
    locale: Literal["vi", "en"] = "vi"
    include_files: bool = False


class ListPublishedReports(_Message):
    """The reports published so far (newest first): day, title, file paths."""

    limit: int = Field(default=30, ge=1, le=366)
