"""From reporting's store to files: load a window of facts, build the figures, render them
(JSON, HTML, PDF) and write them under the reports directory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import asyncpg

from services.reporting import facts
from services.reporting.render import html_document, pdf_document, summary_lines, title
from services.reporting.report import build
from shared.localtime import LOCAL_TZ


@dataclass(frozen=True)
class Generated:
    report: dict
    json_text: str
    html: str
    pdf: bytes
    paths: dict[str, str]
    title: str

    @property
    def pdf_sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()

    def summary(self, locale: str) -> list[str]:
        return summary_lines(self.report, locale)


def file_stem(kind: str, start: date, end: date, as_of: datetime | None) -> str:
    stem = f"bao-cao-ngay-{start.isoformat()}" if kind == "daily" else f"bao-cao-{start}-den-{end}"
    if as_of is not None:
        stem += f"-luc-{as_of.astimezone(LOCAL_TZ):%Y%m%dT%H%M%S}"
    return stem


def _write(path: Path, data: bytes) -> str:
    """Write beside, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(path)
    return str(path.resolve())


def report_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=1) + "\n"


async def generate(
    conn: asyncpg.Connection,
    tenant: str,
    kind: str,
    start: date,
    end: date,
    *,
    as_of: datetime | None,
    locale: str,
    reports_dir: Path,
) -> Generated:
    window, deliveries = await facts.load_window(conn, tenant, start, end, as_of)
    # The fold and the PDF are CPU work: off the event loop, so the service keeps answering.
    report = await asyncio.to_thread(
        build, tenant, window, start, end, kind=kind, as_of=as_of, deliveries=deliveries)
    html = html_document(report, locale)
    pdf = await asyncio.to_thread(pdf_document, html)
    text = report_json(report)
    stem = reports_dir / tenant / file_stem(kind, start, end, as_of)
    suffix = "" if locale == "vi" else f".{locale}"
    paths = {
        "json": _write(stem.with_name(stem.name + ".json"), text.encode()),
        "html": _write(stem.with_name(f"{stem.name}{suffix}.html"), html.encode()),
        "pdf": _write(stem.with_name(f"{stem.name}{suffix}.pdf"), pdf),
    }
    return Generated(report, text, html, pdf, paths, title(report, locale))
