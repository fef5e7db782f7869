"""Reporting rebuilt from zero: its projection replayed from its inbox, and its whole database
lost and refilled by the services republishing their stores (RepublishEvents): the reports come
out byte-identical (JSON, HTML and PDF). Other consumers never see the replay."""

from __future__ import annotations

import base64
import json

import pytest

from ops.replay import rebuild
from services.reporting.app import ReportingService
from services.reporting.config import ReportingConfig
from shared import topology
from shared.commands import CommandRouter
from shared.migrations import drop_database
from shared.projection import Projection
from shared.republish import replay_all
from shared.runtime import ServiceDefinition
from tests.conftest import TENANT, eventually
from tests.integration.reporting_scenario import MON, TUE, WED, at, store_as_published, stored_facts, week

pytestmark = pytest.mark.integration

SOURCES = ("roster", "leave", "documents", "notify")
REQUESTS = {
    "tuesday": {"day": TUE.isoformat()},
    "monday at noon": {"day": MON.isoformat(), "as_of": at(MON, "12:00").isoformat()},
    "the week": {"kind": "period", "start": MON.isoformat(), "end": WED.isoformat()},
    "the week in English": {"kind": "period", "start": MON.isoformat(), "end": WED.isoformat(), "locale": "en"},
}


def source(service: str) -> ServiceDefinition:
    """A service reduced to its event store, relay, consumers and commands: the parts the
    recovery goes through. Its history is the scenario's events it owns."""
    return ServiceDefinition(
        name=service, router=CommandRouter(),
        consumed_projections={s.name: Projection(s.name, ()) for s in topology.subscriptions_of(service)})


async def reports(system) -> dict[str, tuple[dict, bytes, bytes]]:
    out = {}
    for name, payload in REQUESTS.items():
        # As the IT team: after the loss, reporting does not know the Chief of Office yet.
        reply = await system.send("reporting", "GenerateReport", {**payload, "include_files": True}, timeout=30)
        assert reply.ok, reply.error
        out[name] = (reply.result["report"], base64.b64decode(reply.result["html_base64"]),
                     base64.b64decode(reply.result["pdf_base64"]))
    return out


async def inbox_sizes(runtimes) -> dict[str, int]:
    sizes = {}
    for name, runtime in runtimes.items():
        async with runtime.pool.acquire() as conn:
            sizes[name] = await conn.fetchval("SELECT count(*) FROM inbox")
    return sizes


async def test_reporting_rebuilt_from_zero_gives_byte_identical_reports(system, tmp_path):
    envelopes = week()
    sources = {name: await system.start(source(name)) for name in SOURCES}
    config = ReportingConfig(reports_dir=tmp_path / "reports")
    reporting = await system.start(ReportingService(config, publish_daily=False).definition())
    for name, runtime in sources.items():
        await store_as_published(runtime, [e for e in envelopes if e.source == name])

    async def all_stored():
        return await stored_facts(system.runtimes["reporting"]) == len(envelopes)

    await eventually(all_stored, timeout=20)
    before = await reports(system)
    assert before["tuesday"][0]["day"]["roster"]["on_site"] == 6  # the scenario's figures, not an empty store

    # 1. The projection dropped and replayed from reporting's inbox.
    results = await rebuild("reporting", reporting.settings)
    assert results["report_events"] == (len(envelopes), True), results
    assert await reports(system) == before

    # 2. The database lost: reporting starts empty, then asks every service for its history.
    await system.runtimes.pop("reporting").stop()
    await drop_database(reporting.settings.database_url)
    reporting = await system.start(ReportingService(config, publish_daily=False).definition())
    assert await stored_facts(reporting) == 0
    empty = await reports(system)
    assert empty["tuesday"][0]["day"]["roster"]["state"] == "no_lists"

    others = {n: r for n, r in sources.items() if topology.subscriptions_of(n)}
    inboxes = await inbox_sizes(others)

    async def send(service, command, payload):
        return await system.send(service, command, payload)  # the IT team's admin token

    counts = {name: await replay_all(send, name, limit=100) for name in SOURCES}
    assert counts == {name: sum(1 for e in envelopes if e.source == name) for name in SOURCES}
    await eventually(all_stored, timeout=20)
    after = await reports(system)
    for name in REQUESTS:
        report, html, pdf = after[name]
        assert json.dumps(report, ensure_ascii=False).encode() == json.dumps(before[name][0], ensure_ascii=False).encode()
        assert html == before[name][1], name
        assert pdf == before[name][2], name
    # Replayed events went to reporting alone: the other consumers' inboxes did not grow.
    assert await inbox_sizes(others) == inboxes


async def test_real_services_republish_for_reporting_only_and_only_to_the_it_team(system, tmp_path):
    import importlib

    from ops.demo import DEPARTMENT_FILE

    roster = await system.start(importlib.import_module("services.roster.app").definition())
    leave = await system.start(importlib.import_module("services.leave.app").definition())
    reporting = await system.start(ReportingService(
        ReportingConfig(reports_dir=tmp_path / "reports"), publish_daily=False).definition())
    spec = json.loads(DEPARTMENT_FILE.read_text())
    assert (await system.send("roster", "ImportDepartment", spec)).ok
    async with roster.pool.acquire() as conn:
        head = await roster.store.head_position(conn)
    assert head > 50

    async def consumed():
        return await stored_facts(reporting) == head and await inbox_sizes({"leave": leave}) == {"leave": head}

    await eventually(consumed, timeout=20)
    refused = await system.send("roster", "RepublishEvents", {"from_position": 0}, as_person="nv-001")
    assert not refused.ok and refused.error.code == "forbidden"

    reply = await system.send("roster", "RepublishEvents", {"from_position": 0, "limit": 20})
    assert reply.ok and reply.result == {"source": "roster", "published": 20, "from_position": 0,
                                         "last_position": 20, "head_position": head, "done": False}
    reply = await system.send("roster", "RepublishEvents", {"from_position": 20, "limit": 20000})
    assert reply.ok and reply.result["published"] == head - 20 and reply.result["done"]
    consumer = next(c for c in reporting.consumers if c.subscription.name == "events")

    async def all_seen_again():
        return consumer.duplicates == head

    await eventually(all_seen_again, timeout=20)
    assert await stored_facts(reporting) == head  # the inbox kept each event once
    leave_consumer = next(c for c in leave.consumers if c.subscription.name == "directory")
    assert leave_consumer.duplicates == 0 and await inbox_sizes({"leave": leave}) == {"leave": head}
    # Every service answers it, reporting too (its own store holds only what it published).
    reply = await system.send("reporting", "RepublishEvents", {})
    assert reply.ok and reply.result["published"] == 0 and reply.result["done"]
