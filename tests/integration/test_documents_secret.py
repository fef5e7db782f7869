"""Secret documents (văn bản mật): only their register entry exists. Every attempt to put their
content, summary or file into the system is refused, and the secret text appears nowhere:
not in any message published, any log line, any reply, any table."""

import base64
import json
import logging

import pytest
import structlog
import structlog.testing

from shared.observability import get_logger
from tests.conftest import eventually
from tests.integration.documents_helpers import (  # noqa: F401  (documents is a fixture)
    CHIEF, CLERK, DIRECTOR, HEAD, SECRET_HANDLER, STAFF, EventCapture, b64, documents,
    ok, register_incoming, submit,
)

pytestmark = pytest.mark.integration

SECRET = "BÍ-MẬT-7731 phương án bảo vệ mục tiêu trọng yếu"
SECRET_FILE = f"Nội dung văn bản mật: {SECRET}".encode()
MARKER = "BÍ-MẬT-7731"
# The ways the text could travel: as is, JSON-escaped, as escaped UTF-8 bytes (a frame dump),
# inside base64.
TRACES = (
    SECRET, MARKER, json.dumps(SECRET)[1:-1], repr(MARKER.encode())[2:-1],
    base64.b64encode(SECRET_FILE).decode()[:40],
)


def leaks(text: str) -> list[str]:
    return [t for t in TRACES if t in text]


def client_sent_command(line: str) -> bool:
    """aiormq's DEBUG echo of a command frame on its way to a command queue."""
    return line.startswith("Prepare to send ChannelFrame") and '"command_id"' in line and '"token"' in line


@pytest.fixture
def structlog_events():
    """Every structlog event of the process, at every level, while the test runs."""
    saved = structlog.get_config()
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


async def test_secret_documents_are_refused_everywhere_and_leave_no_trace(
    system, documents, capsys, caplog, structlog_events,
):
    caplog.set_level(logging.DEBUG)
    replies = []

    async def refused(reply, code):
        replies.append(reply)
        assert not reply.ok and reply.error.code == code, reply.error
        return reply

    async with EventCapture(system) as capture:
        secret_entry = dict(secrecy="secret", urgency="flash", original_number="12/M-CAT",
                            issuing_body="Công an tỉnh Thanh Hóa")
        # Its summary, its file, its draft: refused, even from the people allowed to register it.
        await refused(await register_incoming(system, SECRET_HANDLER, summary=SECRET,
                                              leader_id=DIRECTOR, **secret_entry), "secret_content_refused")
        await refused(await register_incoming(system, SECRET_HANDLER, summary=None, leader_id=DIRECTOR,
                                              file_name="mat.docx", file_base64=b64(SECRET_FILE),
                                              **secret_entry), "secret_not_remote")
        await refused(await submit(system, STAFF[0], SECRET_FILE, summary=SECRET, secrecy="top_secret"),
                      "secret_not_remote")
        # The Office clerk is not the secret-document handler.
        await refused(await register_incoming(system, CLERK, summary=None, leader_id=DIRECTOR,
                                              **secret_entry), "forbidden")
        # The register entry alone, taken to the Director.
        entry = await ok(register_incoming(system, SECRET_HANDLER, summary=None, leader_id=DIRECTOR,
                                           **secret_entry))
        assert entry["status"] == "routed"
        doc = entry["document_id"]

        for command, payload, code in (
            ("SubmitDraft", {"document_id": doc, "doc_type": "CV", "summary": SECRET,
                             "recipients": [SECRET], "file_name": "mat.docx",
                             "file_base64": b64(SECRET_FILE)}, "secret_not_remote"),
            ("AttachIncomingFile", {"document_id": doc, "file_name": "mat.pdf",
                                    "file_base64": b64(SECRET_FILE)}, "secret_not_remote"),
            ("AssignTask", {"title": SECRET, "description": SECRET, "assignee_id": STAFF[0],
                            "due_date": "2037-01-09", "document_id": doc}, "secret_not_remote"),
            ("ReturnDraft", {"document_id": doc, "comments": SECRET}, "invalid_transition"),
        ):
            as_person = STAFF[0] if command == "SubmitDraft" else HEAD if command == "AssignTask" else SECRET_HANDLER
            await refused(await system.send("documents", command, payload, as_person=as_person), code)

        # Only a leader assigns it; being urgent, the person is summoned, the head told first.
        await refused(await system.send("documents", "AssignDocument",
                                        {"document_id": doc, "person_id": STAFF[0]}, as_person=CHIEF),
                      "forbidden")
        assigned = await ok(system.send("documents", "AssignDocument",
                                        {"document_id": doc, "person_id": STAFF[0]}, as_person=DIRECTOR))
        assert assigned["summoned"] is True

        history = await ok(system.send("documents", "GetDocumentHistory", {"document_id": doc},
                                       as_person=DIRECTOR))
        assert [s["event"] for s in history["steps"]] == [
            "DocumentReceived", "SecretDocumentRouted", "DocumentAssigned", "SecretDocumentSummons"]
        listed = await ok(system.send("documents", "ListDocuments", {}, as_person=STAFF[0]))
        assert [d["document_id"] for d in listed] == [doc] and listed[0]["summary"] is None
        hidden = await system.send("documents", "GetDocument", {"document_id": doc}, as_person=STAFF[1])
        assert hidden.error.code == "not_found"

        runtime = system.runtimes["documents"]

        async def all_published():
            async with runtime.pool.acquire() as conn:
                stored = await conn.fetchval("SELECT count(*) FROM events")
            return len(capture.of("documents")) == stored and stored

        await eventually(all_published)

    published = capture.of("documents")
    by_type = {m["event_type"]: m for m in published}
    assert by_type["DocumentReceived"]["payload"]["summary"] is None
    assert by_type["DocumentReceived"]["payload"]["secrecy"] == "secret"
    summons = by_type["SecretDocumentSummons"]["payload"]
    assert (summons["person_id"], summons["division_head_id"]) == (STAFF[0], HEAD)
    assert "DraftSubmitted" not in by_type and "IncomingFileAttached" not in by_type

    # Nowhere: every message on the events exchange, every reply, every log line, every table.
    for body in capture.bodies:
        assert not leaks(body.decode()), body
    for reply in replies + [history, listed]:
        assert not leaks(json.dumps(reply if isinstance(reply, (dict, list)) else reply.model_dump(mode="json"),
                                    ensure_ascii=False, default=str))
    # Log lines at DEBUG, from every logger. Client and services share this process, and the
    # AMQP library's DEBUG dump of an outgoing frame shows what the *test client* sent: the
    # refused attempt itself. That is the only place the text may appear.
    out, err = capsys.readouterr()
    lines = out.splitlines() + err.splitlines() + [r.getMessage() for r in caplog.records]
    get_logger("wfh.documents").info("capture works")  # the services' loggers land here too
    assert structlog_events[-1]["event"] == "capture works"
    lines += [json.dumps(e, ensure_ascii=False, default=str) for e in structlog_events]
    assert len(lines) > 100
    leaked = [line for line in lines if leaks(line)]
    assert all(client_sent_command(line) for line in leaked), [
        line[:300] for line in leaked if not client_sent_command(line)]
    assert not any(leaks(str(r.args)) for r in caplog.records if not client_sent_command(r.getMessage()))
    async with runtime.pool.acquire() as conn:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'blobs'")]
        for table in tables:
            rows = await conn.fetch(f"SELECT row_to_json(t)::text AS row FROM {table} t")
            assert not any(leaks(r["row"]) for r in rows), table
        assert await conn.fetchval(
            "SELECT count(*) FROM blobs WHERE position($1::bytea IN bytes) > 0", SECRET_FILE) == 0
        assert await conn.fetchval("SELECT count(*) FROM blobs") == 0
