"""Register numbers under concurrency: sent all at once, they come out 1..N, no gap, no repeat.

Over AMQP a service decides the commands arriving together in one transaction that holds the
store's append lock from its start, so they never race; the second test decides commands
each alone, concurrently, as a batch given up falls back on (and a second process of the
service races with the first): the handlers do race, and the counter stream's expected version
is what keeps the numbers right, whatever runs them.
"""

import asyncio
import json
import uuid

import pytest

from shared.auth import TokenVerifier
from shared.commands import CommandDispatcher
from shared.eventstore import ConcurrencyError
from shared.localtime import local_today
from tests.conftest import TENANT
from tests.integration.documents_helpers import (  # noqa: F401  (documents is a fixture)
    CLERK, STAFF, documents, draft_to_signed, ok, register_incoming, submit,
)

pytestmark = pytest.mark.integration


async def numbers_in_store(runtime, register: str) -> list[int]:
    """The register's counter stream versions, its entries and its documents' numbers agree."""
    stream = f"register-{TENANT}-{register}-{local_today().year}"
    async with runtime.pool.acquire() as conn:
        versions = [r["stream_version"] for r in await conn.fetch(
            "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version", stream)]
        numbers = [r["number"] for r in await conn.fetch(
            "SELECT number FROM doc_register_entries WHERE register = $1 AND year = $2 ORDER BY number",
            register, local_today().year)]
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM doc_register_entries e JOIN doc_documents d USING (tenant, document_id) "
            "WHERE d.number IS DISTINCT FROM e.number OR d.year IS DISTINCT FROM e.year")
    assert versions == numbers and mismatched == 0
    return numbers


async def test_concurrent_registrations_and_issues_take_every_number_once(system, documents):
    year = local_today().year
    # Signed drafts waiting to be issued, and one still at the head's desk.
    signed = await asyncio.gather(*(
        draft_to_signed(system, documents, author=STAFF[i % len(STAFF)], data=f"văn bản {i}".encode())
        for i in range(12)
    ))
    unsigned = (await ok(submit(system)))["document_id"]

    async def issue(document_id):
        return await system.send("documents", "IssueDocument", {"document_id": document_id},
                                 as_person=CLERK)

    # Everything at once: 40 incoming registrations, 12 issues and one issue that is refused.
    replies = await asyncio.gather(
        *(register_incoming(system, original_number=f"{i}/UBND-VX") for i in range(40)),
        *(issue(d) for d in signed),
        issue(unsigned),
    )
    incoming, issued, refused = replies[:40], replies[40:52], replies[52]
    assert all(r.ok for r in incoming + issued), [r.error for r in incoming + issued if not r.ok]
    assert refused.error.code == "invalid_transition"

    assert sorted(r.result["number"] for r in incoming) == list(range(1, 41))
    assert sorted(r.result["number"] for r in issued) == list(range(1, 13))
    symbols = sorted(r.result["symbol"] for r in issued)
    assert symbols == [f"{n:02d}/KH-STTTT" for n in range(1, 13)]

    runtime = system.runtimes["documents"]
    assert await numbers_in_store(runtime, "incoming") == list(range(1, 41))
    assert await numbers_in_store(runtime, "outgoing") == list(range(1, 13))

    # The next one continues the sequence.
    after = await ok(register_incoming(system))
    assert after["number"] == 41


async def test_handlers_racing_on_one_register_neither_repeat_nor_skip(system, documents):
    runtime = system.runtimes["documents"]
    dispatcher = CommandDispatcher(
        runtime.definition.router, lambda: runtime.pool, runtime.store,
        TokenVerifier(runtime.settings.jwt_public_key_pem, runtime.settings.jwt_issuer),
        runtime.definition.own_projections,
    )
    conflicts = 0
    append = runtime.store.append

    async def counting_append(*args, **kwargs):
        nonlocal conflicts
        try:
            return await append(*args, **kwargs)
        except ConcurrencyError:
            conflicts += 1
            raise

    runtime.store.append = counting_append
    signed = [await draft_to_signed(system, documents, data=f"dự thảo {i}".encode()) for i in range(10)]

    def body(command_type: str, payload: dict) -> bytes:
        return json.dumps({"command_id": str(uuid.uuid4()), "type": command_type, "tenant": TENANT,
                           "token": system.token(CLERK), "payload": payload}, ensure_ascii=False).encode()

    # Each decided alone, concurrently (batches take the append lock first and never race).
    replies = await asyncio.gather(
        *(dispatcher.decide_alone(dispatcher.triage(body("RegisterIncomingDocument", {
            "original_number": f"{i}/SYT-NVY", "issuing_body": "Sở Y tế", "summary": f"Công văn {i}",
            "document_date": local_today().isoformat()}))) for i in range(30)),
        *(dispatcher.decide_alone(dispatcher.triage(body("IssueDocument", {"document_id": d}))) for d in signed),
    )
    assert all(r.ok for r in replies), [r.error for r in replies if not r.ok]
    assert conflicts > 0  # the handlers did race for the same numbers
    assert sorted(r.result["number"] for r in replies[:30]) == list(range(1, 31))
    assert sorted(r.result["number"] for r in replies[30:]) == list(range(1, 11))
    assert await numbers_in_store(runtime, "incoming") == list(range(1, 31))
    assert await numbers_in_store(runtime, "outgoing") == list(range(1, 11))
