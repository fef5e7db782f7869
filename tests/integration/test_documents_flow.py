"""The draft-to-issue flow over AMQP: the right people in order, a verifiable signature, the history."""

from datetime import date

import pytest

from cryptography.hazmat.primitives.serialization import Encoding

from services.documents.signing import configured_checks
from shared import signatures
from shared.localtime import local_today
from tests.conftest import TENANT
from tests.integration.test_leave import PEOPLE
from tests.unit.test_signers import issue_certificate, make_ca
from tests.integration.documents_helpers import (  # noqa: F401  (documents is a fixture)
    CHECKER, CHIEF, CLERK, DEPUTY_DIRECTOR, DIRECTOR, DIVISION, FILE, HEAD, OTHER_HEAD, STAFF,
    b64, documents, draft_to_signed, ok, register_incoming, sign, submit,
)

pytestmark = pytest.mark.integration


async def send(system, command, document_id, person, **extra):
    return await system.send("documents", command, {"document_id": document_id, **extra},
                             as_person=person)


async def test_draft_goes_submit_approve_check_sign_issue_with_a_verifiable_signature(system, documents):
    submitted = await ok(submit(system))
    doc = submitted["document_id"]
    assert submitted["status"] == "submitted" and submitted["file_sha256"] == signatures.sha256_hex(FILE)

    # Out of order, or by the wrong people: refused with a clear code, nothing recorded.
    assert (await send(system, "CheckFormat", doc, CHECKER)).error.code == "invalid_transition"
    assert (await sign(system, DIRECTOR, documents[DIRECTOR], doc)).error.code == "invalid_transition"
    for outsider in (STAFF[1], OTHER_HEAD, CHECKER, STAFF[0]):
        reply = await send(system, "ApproveDraft", doc, outsider)
        assert reply.error.code == "forbidden", outsider
    assert (await ok(send(system, "ApproveDraft", doc, HEAD)))["status"] == "content_approved"

    for outsider in (HEAD, STAFF[0], DIRECTOR):
        assert (await send(system, "CheckFormat", doc, outsider)).error.code == "forbidden", outsider
    assert (await ok(send(system, "CheckFormat", doc, CHECKER)))["status"] == "ready_for_signing"

    assert (await send(system, "IssueDocument", doc, CLERK)).error.code == "invalid_transition"
    head_signs = await sign(system, HEAD, documents[HEAD], doc)
    assert head_signs.error.code == "forbidden"
    # A signature over other content, or with someone else's key, is not a signature on this.
    forged = await sign(system, DIRECTOR, documents[DIRECTOR], doc, content={"other": "content"})
    assert forged.error.code == "bad_signature"
    stolen = await sign(system, DEPUTY_DIRECTOR, documents[DIRECTOR], doc)
    assert stolen.error.code == "bad_signature"
    signed = await ok(sign(system, DIRECTOR, documents[DIRECTOR], doc))
    assert signed["status"] == "signed"

    assert (await send(system, "IssueDocument", doc, STAFF[0])).error.code == "forbidden"
    issued = await ok(send(system, "IssueDocument", doc, CLERK))
    year = local_today().year
    assert issued["number"] == 1 and issued["year"] == year and issued["symbol"] == "01/KH-STTTT"
    assert (await send(system, "IssueDocument", doc, CLERK)).error.code == "invalid_transition"

    verified = await ok(send(system, "VerifyDocumentSignature", doc, STAFF[3]))
    assert verified["valid"] and verified["signer_id"] == DIRECTOR
    tampered = FILE.replace("2037".encode(), "2038".encode())
    forged_file = await ok(send(system, "VerifyDocumentSignature", doc, STAFF[3], file_base64=b64(tampered)))
    assert forged_file["valid"] is False and forged_file["file_matches"] is False
    assert forged_file["signature_valid"] is True

    # Anyone with the public key checks it offline, from the history alone.
    history = await ok(send(system, "GetDocumentHistory", doc, DIRECTOR))
    steps = history["steps"]
    assert [s["event"] for s in steps] == [
        "DraftSubmitted", "DraftApproved", "FormatChecked", "DraftReadyForSigning",
        "DocumentSigned", "DocumentIssued",
    ]
    assert [s["actor_id"] for s in steps] == [STAFF[0], HEAD, CHECKER, CHECKER, DIRECTOR, CLERK]
    assert all(s["at"] and s["at_local"] and s["actor_name"] for s in steps)
    signed_step = steps[4]["details"]
    public_key = signatures.public_key_b64(signatures.development_signing_key(TENANT, DIRECTOR))
    assert signatures.verify(public_key, signed_step["signed_content"], signed_step["signature"])
    assert signed_step["signed_content"]["file_sha256"] == signatures.sha256_hex(FILE)
    assert signed_step["signed_content"]["file_sha256"] != signatures.sha256_hex(tampered)
    assert steps[5]["details"]["symbol"] == "01/KH-STTTT"

    file = await ok(send(system, "GetDocumentFile", doc, STAFF[0]))
    assert file["file_base64"] == b64(FILE)


async def test_returns_with_comments_and_a_new_version_restarts_the_approvals(system, documents):
    doc = (await ok(submit(system)))["document_id"]
    returned = await ok(send(system, "ReturnDraft", doc, HEAD, comments="Bổ sung mục tiêu năm 2037"))
    assert returned["status"] == "returned"
    assert (await send(system, "ApproveDraft", doc, HEAD)).error.code == "invalid_transition"
    assert (await submit(system, STAFF[1], b"v2", document_id=doc)).error.code == "forbidden"
    v2 = await ok(submit(system, STAFF[0], b"v2 of the plan", document_id=doc))
    assert v2["version"] == 2 and v2["status"] == "submitted"
    await ok(send(system, "ApproveDraft", doc, HEAD))
    await ok(send(system, "ReturnDraft", doc, CHECKER, comments="Sai thể thức: thiếu nơi nhận"))
    await ok(submit(system, STAFF[0], b"v3 of the plan", document_id=doc))
    await ok(send(system, "ApproveDraft", doc, HEAD))
    await ok(send(system, "CheckFormat", doc, CHECKER))
    # A new version while awaiting signature sends it back to the head.
    v4 = await ok(submit(system, STAFF[0], b"v4 of the plan", document_id=doc))
    assert v4["version"] == 4 and v4["status"] == "submitted"
    assert (await sign(system, DIRECTOR, documents[DIRECTOR], doc, version=4)).error.code == "invalid_transition"
    await ok(send(system, "ApproveDraft", doc, HEAD))
    await ok(send(system, "CheckFormat", doc, CHECKER))
    # The leader may send it back too; a stale version's signature is refused.
    await ok(send(system, "ReturnDraft", doc, DEPUTY_DIRECTOR, comments="Trình lại sau họp giao ban"))
    await ok(submit(system, STAFF[0], b"v5 of the plan", document_id=doc))
    await ok(send(system, "ApproveDraft", doc, HEAD))
    await ok(send(system, "CheckFormat", doc, CHECKER))
    stale = await sign(system, DIRECTOR, documents[DIRECTOR], doc, version=4)
    assert stale.error.code == "stale_version"
    await ok(sign(system, DIRECTOR, documents[DIRECTOR], doc, version=5))
    # Once signed, no new version.
    assert (await submit(system, STAFF[0], b"v6", document_id=doc)).error.code == "invalid_transition"

    history = await ok(send(system, "GetDocumentHistory", doc, STAFF[0]))
    returns = [s for s in history["steps"] if s["event"] == "DraftReturned"]
    assert [(r["details"]["stage"], r["actor_id"]) for r in returns] == [
        ("content", HEAD), ("format", CHECKER), ("signing", DEPUTY_DIRECTOR)]
    assert returns[0]["details"]["comments"] == "Bổ sung mục tiêu năm 2037"
    assert returns[0]["label"] == "Trả lại dự thảo"


async def test_a_heads_draft_is_approved_by_a_leader_and_cong_van_names_the_division(system, documents):
    doc = (await ok(submit(system, HEAD, doc_type="CV")))["document_id"]
    assert (await send(system, "ApproveDraft", doc, HEAD)).error.code == "forbidden"
    await ok(send(system, "ApproveDraft", doc, DEPUTY_DIRECTOR))
    await ok(send(system, "CheckFormat", doc, CHECKER))
    await ok(sign(system, DIRECTOR, documents[DIRECTOR], doc))
    issued = await ok(send(system, "IssueDocument", doc, CHIEF))
    assert issued["symbol"] == "01/STTTT-CNTT"


async def test_incoming_register_queries_and_assignment(system, documents):
    first = await ok(register_incoming(system, division_id=DIVISION, due_date="2037-01-09"))
    second = await ok(register_incoming(system, original_number="77/SYT-NVY", issuing_body="Sở Y tế"))
    assert (first["number"], second["number"]) == (1, 2)
    assert first["status"] == "assigned" and second["status"] == "registered"
    not_office = await register_incoming(system, as_person=STAFF[0])
    assert not_office.error.code == "forbidden"
    # The head passes it to one of the division's staff; another division's head may not.
    assert (await send(system, "AssignDocument", first["document_id"], OTHER_HEAD,
                       person_id=STAFF[2])).error.code == "forbidden"
    await ok(send(system, "AssignDocument", first["document_id"], HEAD, person_id=STAFF[2],
                  due_date="2037-01-09"))
    assert (await send(system, "MarkDocumentHandled", first["document_id"], STAFF[3])).error.code == "forbidden"
    await ok(send(system, "MarkDocumentHandled", first["document_id"], STAFF[2]))

    doc = await draft_to_signed(system, documents)
    incoming = await ok(system.send("documents", "ListDocuments", {"register_name": "incoming"},
                                    as_person=DIRECTOR))
    assert [d["number"] for d in incoming] == [1, 2]
    handled = await ok(system.send("documents", "ListDocuments",
                                   {"status": "handled", "division_id": DIVISION}, as_person=HEAD))
    assert [d["document_id"] for d in handled] == [first["document_id"]]
    signed = await ok(system.send("documents", "ListDocuments", {
        "register_name": "outgoing", "status": "signed", "date_from": local_today().isoformat(),
        "date_to": local_today().isoformat()}, as_person=CLERK))
    assert [d["document_id"] for d in signed] == [doc]
    none_yet = await ok(system.send("documents", "ListDocuments", {"date_to": "2000-01-01"},
                                    as_person=DIRECTOR))
    assert none_yet == []
    # Staff see what they wrote or were given, not the rest.
    mine = await ok(system.send("documents", "ListDocuments", {}, as_person=STAFF[2]))
    assert {d["document_id"] for d in mine} == {first["document_id"]}
    other = await system.send("documents", "GetDocument", {"document_id": doc}, as_person=STAFF[2])
    assert other.error.code == "not_found"
    assert date.fromisoformat(incoming[0]["received_on"]) == local_today()
    assert incoming[0]["received_on_vi"] == local_today().strftime("%d/%m/%Y")


async def test_a_ca_issued_certificate_replaces_the_development_key(system, documents, tmp_path, monkeypatch):
    ca = make_ca()
    bundle = tmp_path / "trusted-ca.pem"
    bundle.write_text(ca[1].public_bytes(Encoding.PEM).decode())
    monkeypatch.setenv("WFH_DOCUMENTS_TRUSTED_CA_FILE", str(bundle))
    configured_checks.cache_clear()
    try:
        doc = (await ok(submit(system)))["document_id"]
        await ok(send(system, "ApproveDraft", doc, HEAD))
        await ok(send(system, "CheckFormat", doc, CHECKER))
        director_email = PEOPLE[DIRECTOR]["email"]
        untrusted = issue_certificate(make_ca("CA lạ"), director_email)
        reply = await sign(system, DIRECTOR, None, doc, signer=untrusted)
        assert reply.error.code == "bad_signature"
        not_the_director = issue_certificate(ca, PEOPLE[DEPUTY_DIRECTOR]["email"])
        reply = await sign(system, DIRECTOR, None, doc, signer=not_the_director)
        assert reply.error.code == "bad_signature"
        await ok(sign(system, DIRECTOR, None, doc, signer=issue_certificate(ca, director_email)))
        verified = await ok(send(system, "VerifyDocumentSignature", doc, DIRECTOR))
        assert verified["valid"] and verified["algorithm"] == "x509"
        tampered = await ok(send(system, "VerifyDocumentSignature", doc, DIRECTOR, file_base64=b64(b"other")))
        assert not tampered["valid"]
    finally:
        configured_checks.cache_clear()
