"""The documents service's projections, dropped and replayed from its events, equal the live ones."""

import pytest

from ops.replay import rebuild, snapshot
from tests.integration.documents_helpers import (  # noqa: F401  (documents is a fixture)
    CLERK, DIRECTOR, DIVISION, HEAD, SECRET_HANDLER, STAFF, documents, draft_to_signed, ok,
    register_incoming, submit,
)

pytestmark = pytest.mark.integration


async def test_replayed_projections_are_identical_to_live(system, documents):
    issued = await draft_to_signed(system, documents)
    await ok(system.send("documents", "IssueDocument", {"document_id": issued}, as_person=CLERK))
    returned = (await ok(submit(system, STAFF[1])))["document_id"]
    await ok(system.send("documents", "ReturnDraft", {"document_id": returned, "comments": "Viết lại"},
                         as_person=HEAD))
    await ok(submit(system, STAFF[1], b"v2", document_id=returned))
    incoming = await ok(register_incoming(system, division_id=DIVISION, due_date="2037-01-09"))
    secret = await ok(register_incoming(system, SECRET_HANDLER, summary=None, secrecy="confidential",
                                        urgency="urgent", leader_id=DIRECTOR))
    await ok(system.send("documents", "AssignDocument", {"document_id": secret["document_id"],
                                                         "person_id": STAFF[2]}, as_person=DIRECTOR))
    task = (await ok(system.send("documents", "AssignTask", {
        "title": "Rà soát", "assignee_id": STAFF[0], "due_date": "2037-01-09",
        "document_id": incoming["document_id"]}, as_person=HEAD)))["task_id"]
    await ok(system.send("documents", "ReportTaskProgress", {"task_id": task, "percent": 30},
                         as_person=STAFF[0]))
    await ok(system.send("documents", "DetectOverdue", {"as_of": "2037-01-14T09:00:00+07:00"}))
    meeting = (await ok(system.send("documents", "ScheduleMeeting", {
        "title": "Giao ban", "starts_at": "2037-01-14T09:00:00+07:00", "ends_at": "2037-01-14T10:00:00+07:00",
        "link": "https://meet.example.vn/gb", "chair_id": HEAD, "invitees": [STAFF[0]]}, as_person=HEAD)))
    await ok(system.send("documents", "ConfirmMeetingAttendance", {"meeting_id": meeting["meeting_id"]},
                         as_person=STAFF[0]))

    runtime = system.runtimes["documents"]
    async with runtime.pool.acquire() as conn:
        live = {p.name: await snapshot(conn, p.tables) for p in runtime.projections}
        blobs = await conn.fetchval("SELECT count(*) FROM blobs")
    assert all(any(rows for rows in tables.values()) for tables in live.values()), live.keys()
    results = await rebuild("documents", runtime.settings)
    assert set(results) == {"documents", "tasks", "meetings", "directory"}
    assert all(identical and count > 0 for count, identical in results.values()), results
    async with runtime.pool.acquire() as conn:
        for projection in runtime.projections:
            await conn.execute(f"TRUNCATE {', '.join(projection.tables)}")
            assert await snapshot(conn, projection.tables) != live[projection.name]
            await projection.rebuild(conn, runtime.store)
            assert await snapshot(conn, projection.tables) == live[projection.name]
        # The blob store is not a projection: replay leaves the files where they are.
        assert await conn.fetchval("SELECT count(*) FROM blobs") == blobs == 2  # same file, one blob
