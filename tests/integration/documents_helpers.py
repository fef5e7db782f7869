"""The demo department with roster and documents running, and the steps of the document flows."""

from __future__ import annotations

import base64

import pytest

from services.documents.app import definition as documents_service
from services.roster.app import definition as roster_service
from shared import signatures
from tests.conftest import TENANT, eventually
from tests.integration.test_leave import DEMO, PLAN, _key, first

DIVISION = "cntt"
HEAD = first("division_head", DIVISION)
DEPUTY = first("deputy_division_head", DIVISION)
STAFF = [p["id"] for p in DEMO["people"] if p["division_id"] == DIVISION and p["roles"] == ["staff"]]
OTHER_HEAD = first("division_head", "khtc")
OTHER_STAFF = next(p["id"] for p in DEMO["people"] if p["division_id"] == "khtc" and p["roles"] == ["staff"])
DIRECTOR = first("director")
DEPUTY_DIRECTOR = first("deputy_director")
CHIEF = first("chief_of_office")
CHECKER = first("format_checker")
SECRET_HANDLER = first("secret_document_handler")
CLERK = next(p["id"] for p in DEMO["people"] if p["division_id"] == "vp" and p["roles"] == ["staff"])
FILE = "Kế hoạch chuyển đổi số năm 2037 — bản dự thảo.".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def documents(system):
    """Roster and documents up; the demo department, the 2037 plan and the leaders' keys known."""
    await system.start(roster_service())
    runtime = await system.start(documents_service())
    assert (await system.send("roster", "ImportDepartment", DEMO)).ok
    assert (await system.send("roster", "ActivatePlan", PLAN, as_person=DIRECTOR)).ok
    keys = {p: await _key(system, p) for p in (DIRECTOR, DEPUTY_DIRECTOR, HEAD)}

    async def directory_arrived():
        async with runtime.pool.acquire() as conn:
            return (await conn.fetchval("SELECT count(*) FROM dir_signing_keys") == len(keys)
                    and await conn.fetchval("SELECT count(*) FROM dir_plans") == 1
                    and await conn.fetchval("SELECT count(*) FROM dir_departments") == 1)

    await eventually(directory_arrived)
    return keys


async def ok(reply_awaitable):
    reply = await reply_awaitable
    assert reply.ok, reply.error
    return reply.result


async def submit(system, author=None, data: bytes = FILE, **extra):
    return await system.send("documents", "SubmitDraft", {
        "doc_type": "KH", "summary": "Kế hoạch chuyển đổi số năm 2037",
        "recipients": ["UBND tỉnh Thanh Hóa", "Các phòng, đơn vị thuộc Sở"],
        "file_name": "ke-hoach.docx", "file_base64": b64(data), **extra,
    }, as_person=author or STAFF[0])


async def sign(system, leader: str, key_id: str | None, document_id: str, version: int = 1,
               content=None, signer: signatures.Signer | None = None):
    """The leader's client: fetch what to sign, sign it on the leader's side (the development
    key registered as `key_id`, unless another signer is given), send the signature."""
    if content is None:
        content = (await ok(system.send("documents", "GetSigningContent",
                                        {"document_id": document_id}, as_person=leader)))["content"]
    signer = signer or signatures.Ed25519Signer(signatures.development_signing_key(TENANT, leader), key_id)
    return await system.send("documents", "SignDocument", {
        "document_id": document_id, "version": version, "algorithm": signer.algorithm,
        "key_id": signer.key_id, "signature": signer.sign(content),
        "certificate_pem": signer.certificate_pem,
    }, as_person=leader)


async def draft_to_signed(system, keys, author=None, data: bytes = FILE, **extra) -> str:
    """Submit -> content approved by the head -> format checked -> signed by the Director."""
    document_id = (await ok(submit(system, author, data, **extra)))["document_id"]
    await ok(system.send("documents", "ApproveDraft", {"document_id": document_id}, as_person=HEAD))
    await ok(system.send("documents", "CheckFormat", {"document_id": document_id}, as_person=CHECKER))
    await ok(sign(system, DIRECTOR, keys[DIRECTOR], document_id))
    return document_id


async def register_incoming(system, as_person=CLERK, **extra):
    return await system.send("documents", "RegisterIncomingDocument", {
        "original_number": "125/UBND-VX", "issuing_body": "UBND tỉnh Thanh Hóa",
        "summary": "V/v tăng cường phòng, chống dịch COVID-19", "document_date": "2026-01-05",
        **extra,
    }, as_person=as_person)


class EventCapture:
    """Every message published to the namespace's events exchange, from the moment it is bound."""

    def __init__(self, system) -> None:
        self.system = system
        self.bodies: list[bytes] = []

    async def __aenter__(self) -> EventCapture:
        import aio_pika

        from tests.conftest import AMQP_URL

        self._connection = await aio_pika.connect(AMQP_URL)
        channel = await self._connection.channel()
        self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.bind(f"{self.system.namespace}.events", routing_key="#")
        self._tag = await self._queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message) -> None:
        self.bodies.append(message.body)

    async def __aexit__(self, *exc) -> None:
        await self._connection.close()

    def of(self, source: str) -> list[dict]:
        import json

        return [json.loads(b) for b in self.bodies if json.loads(b)["source"] == source]
