"""Projection rebuild rate over at least 1,000,000 stored events.

A bench database with roster's schema is filled by COPY with a province's year of presence
events (two check-ins and a health declaration per person and working day), each row with a
valid hash chain, then `Projection.rebuild` of roster's `presence` projection is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg

from bench.common import Progress, database_url, say
from shared import chain
from shared.contracts import decode
from shared.eventstore import EventStore, chain_rows
from shared.migrations import drop_database, migrate

COLUMNS = (
    "global_position", "stream_id", "stream_version", "event_id", "event_type", "schema_version",
    "tenant", "occurred_at", "actor", "correlation_id", "causation_id", "trace_context", "payload",
    "chain_hash",
)
LOCAL_OFFSET = timedelta(hours=7)
CHUNK = 50_000
REPEATS = 3  # the rate reported is the median run's (this machine varies by +-15%)


def working_days(start: date, count: int) -> list[date]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _canonical(text: str) -> str:
    """A JSON string literal as `json.dumps(..., ensure_ascii=False)` writes it."""
    return json.dumps(text, ensure_ascii=False)


def presence_rows(people: list[tuple[str, str, str]], days: list[date]):
    """A province's presence events in position order: per working day, for each person, the
    morning and afternoon CheckedIn and a HealthDeclared (one stream per person and day).

    Yields (stream_id, stream_version, event_type, tenant, actor, occurred_at, payload_json) with
    the payload as canonical JSON (sorted keys, no spaces): the text stored and the text hashed.
    """
    for day in days:
        iso = day.isoformat()
        moments = []
        for hour, minute in ((7, 3), (13, 34), (7, 5)):
            at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - LOCAL_OFFSET
            moments.append((at, at.isoformat(), (at + LOCAL_OFFSET).strftime("%Y-%m-%dT%H:%M:00+07:00")))
        for tenant, person, division in people:
            stream = f"presence-{tenant}-{person}-{iso}"
            place = _canonical(f"Nhà riêng của {person}, {tenant}")
            for session in (0, 1):
                at, at_text, local = moments[session]
                payload = (f'{{"at":"{local}","at_registered_place":true,"day":"{iso}",'
                           f'"division_id":"{division}","late":false,"person_id":"{person}",'
                           f'"place":{place},"session":{session}}}')
                yield stream, session + 1, "CheckedIn", tenant, person, at, at_text, payload
            at, at_text, _ = moments[2]
            payload = f'{{"day":"{iso}","note":"","person_id":"{person}","status":"well"}}'
            yield stream, 3, "HealthDeclared", tenant, person, at, at_text, payload


def _hash_text(position, stream, version, event_id, event_type, tenant, at_text, actor, correlation, payload):
    """`chain.link`'s canonical content, written out directly (keys sorted, no spaces): the
    generator checks it against `chain.link` itself as it goes."""
    return (f'{{"actor":"{actor}","causation_id":"{correlation}","correlation_id":"{correlation}",'
            f'"event_id":"{event_id}","event_type":"{event_type}","global_position":{position},'
            f'"occurred_at":"{at_text}","payload":{payload},"schema_version":1,'
            f'"stream_id":"{stream}","stream_version":{version},"tenant":"{tenant}"}}')


async def fill(url: str, people: list[tuple[str, str, str]], minimum: int) -> int:
    """COPY at least `minimum` hash-chained presence events into `url`'s events table."""
    per_day = len(people) * 3
    days = working_days(date(2025, 1, 1), -(-minimum // per_day))
    total = len(days) * per_day
    base = uuid.uuid4().int & ~((1 << 64) - 1)  # random high half; the low half counts
    conn = await asyncpg.connect(url)
    progress = Progress("COPY events (hash-chained)", total)
    sha256 = hashlib.sha256
    try:
        previous, position, lines = chain.GENESIS, 0, []
        correlation = None
        async with conn.transaction():
            for stream, version, event_type, tenant, actor, at, at_text, payload in presence_rows(people, days):
                position += 1
                event_id = str(uuid.UUID(int=base | position))
                if version == 1:  # one command per person and day correlates its events
                    correlation = str(uuid.UUID(int=base | (1 << 62) | position))
                text = _hash_text(position, stream, version, event_id, event_type, tenant, at_text,
                                  actor, correlation, payload)
                if position % 9973 == 1:  # the shortcut must agree with the chain's own code
                    expected = chain.link(previous, {
                        "global_position": position, "stream_id": stream, "stream_version": version,
                        "event_id": event_id, "event_type": event_type, "schema_version": 1,
                        "tenant": tenant, "occurred_at": at, "actor": actor,
                        "correlation_id": correlation, "causation_id": correlation,
                        "payload": json.loads(payload),
                    })
                previous = sha256(previous.encode() + text.encode()).hexdigest()
                if position % 9973 == 1 and previous != expected:
                    raise AssertionError(f"generated chain differs from chain.link at {position}")
                lines.append(f"{position}\t{stream}\t{version}\t{event_id}\t{event_type}\t1\t{tenant}\t"
                             f"{at_text}\t{actor}\t{correlation}\t{correlation}\t{{}}\t{payload}\t{previous}\n")
                if len(lines) == CHUNK:
                    await _copy(conn, lines)
                    progress.advance(len(lines))
                    lines = []
            if lines:
                await _copy(conn, lines)
                progress.advance(len(lines))
        await conn.execute("ANALYZE events")
    finally:
        progress.close()
        await conn.close()
    return total


async def _copy(conn: asyncpg.Connection, lines: list[str]) -> None:
    await conn.copy_to_table("events", source=io.BytesIO("".join(lines).encode()), columns=COLUMNS,
                             format="text")


async def check_chain_prefix(url: str, count: int = 20_000) -> bool:
    """The stored chain verifies (its first `count` events: the whole would take minutes)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await chain_rows(conn, 0, count)
    finally:
        await conn.close()
    return chain.verify_chain(rows).intact and len(rows) == count


async def run(people: list[tuple[str, str, str]], minimum: int = 1_000_000, keep: bool = False) -> dict:
    from services.roster.app import definition
    from services.roster.projection import presence

    url = database_url("rebuild")
    for directory in definition().migrations:
        await migrate(url, directory)
    try:
        started = time.perf_counter()
        stored = await fill(url, people, minimum)
        setup_seconds = time.perf_counter() - started
        chain_ok = await check_chain_prefix(url)
        # A store that has been in use is vacuumed (autovacuum does it in the background): rows
        # freshly COPYed would have their hint bits written by the rebuild's first read,
        # rewriting the whole table and timing that instead of the rebuild.
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM (ANALYZE) events")
            # And the load's write-ahead log checkpointed now, not in the middle of the rebuild.
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()
        # A sample of the generated events must be what the contracts accept.
        conn = await asyncpg.connect(url)
        try:
            for env in await EventStore("roster").read_all(conn, 0, 10):
                decode(env)
            runs = []
            for attempt in range(1, REPEATS + 1):
                say(f"  rebuilding `presence` over {stored:,} events ({attempt}/{REPEATS})…")
                started = time.perf_counter()
                applied = await presence.rebuild(conn, EventStore("roster"))
                runs.append(time.perf_counter() - started)
            rows = await conn.fetchval("SELECT (SELECT count(*) FROM roster_presence) + "
                                       "(SELECT count(*) FROM roster_health)")
        finally:
            await conn.close()
        seconds = statistics.median(runs)
        return {
            "events": stored, "applied": applied, "seconds": round(seconds, 2),
            "events_per_second": round(applied / seconds), "rows_written": rows,
            "runs_events_per_second": [round(applied / r) for r in runs],
            "setup_seconds": round(setup_seconds, 1), "chain_prefix_verified": chain_ok,
            "projection": "roster/presence",
        }
    finally:
        if not keep:
            await drop_database(url)


if __name__ == "__main__":
    import sys

    from bench.province import province

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    spec = province(20)
    people = [(d["tenant"], p["id"], p["division_id"]) for d in spec for p in d["people"]]
    print(json.dumps(asyncio.run(run(people, count)), indent=2))
