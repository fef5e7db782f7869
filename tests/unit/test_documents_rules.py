"""The documents state machine and its rules, without servers: who may do what, in which state."""

from __future__ import annotations

import base64
import uuid
from datetime import date

import pytest

from services.documents.domain import (
    ASSIGNED, CONTENT_APPROVED, HANDLED, ISSUED, NEW, READY_FOR_SIGNING, REGISTERED, RETURNED,
    ROUTED, SIGNED, SUBMITTED, TRANSITIONS, Actor, Document, FileUpload, MAX_FILE_BYTES,
    signing_content,
)
from shared import signatures
from shared.commands import DomainError, Forbidden, NotFound
from shared.contracts import documents as ev
from shared.directory import Person

TODAY = date(2037, 1, 5)
FILE = FileUpload("ke-hoach.docx", "Kế hoạch chuyển đổi số".encode())


def person(pid, division="cntt", *roles) -> Person:
    return Person(pid, f"Cán bộ {pid}", f"{pid}@so.vn", division, frozenset(roles or ("staff",)), "vi", True)


STAFF, STAFF2 = Actor(person("s1")), Actor(person("s2"))
HEAD = Actor(person("h1", "cntt", "division_head"))
DEPUTY = Actor(person("d1", "cntt", "deputy_division_head"))
ACTING = Actor(person("d1", "cntt", "deputy_division_head"), acting_head_of=frozenset({"cntt"}))
OTHER_HEAD = Actor(person("h2", "khtc", "division_head"))
CHECKER = Actor(person("tt", "vp", "format_checker"), in_office=True)
CLERK = Actor(person("vt", "vp"), in_office=True)
CHIEF = Actor(person("cvp", "vp", "chief_of_office", "division_head"), in_office=True)
SECRET_HANDLER = Actor(person("mat", "vp", "secret_document_handler"), in_office=True)
DIRECTOR = Actor(person("gd", "bgd", "director"))
DEPUTY_DIRECTOR = Actor(person("pgd", "bgd", "deputy_director"))


def draft(author=STAFF, **kw) -> Document:
    doc = Document(uuid.uuid4())
    doc.submit_draft(author, doc_type=kw.get("doc_type", "KH"), summary="Kế hoạch", recipients=("UBND tỉnh",),
                     urgency="normal", secrecy="none", file=kw.get("file", FILE))
    return doc


def sign(doc: Document, signer=DIRECTOR, valid=True):
    content = signing_content("t", doc, signer.id) if doc.draft else {}
    return doc.sign(signer, version=doc.draft.version if doc.draft else 1, algorithm="ed25519", key_id="k",
                    signature="c2lnbmF0dXJl", signed_content=content, signature_valid=valid)


def issue(doc: Document, actor=CLERK, number=15):
    return doc.issue(actor, number=number, year=2037, department_symbol="STTTT", issued_on=TODAY)


def incoming(secrecy="none", urgency="normal", summary="V/v phòng, chống dịch", actor=None) -> Document:
    doc = Document(uuid.uuid4())
    doc.receive(actor or (CLERK if secrecy == "none" else SECRET_HANDLER), number=1, year=2037,
                original_number="125/UBND-VX", issuing_body="UBND tỉnh",
                summary=None if secrecy != "none" else summary, document_date=TODAY,
                received_on=TODAY, urgency=urgency, secrecy=secrecy)
    return doc


# --- states built by the legal steps -----------------------------------------------------


def outgoing_in(status: str) -> Document:
    doc = draft()
    steps = {
        SUBMITTED: [],
        RETURNED: [lambda: doc.return_draft(HEAD, STAFF.person, "Sửa lại")],
        CONTENT_APPROVED: [lambda: doc.approve_content(HEAD, STAFF.person)],
        READY_FOR_SIGNING: [lambda: doc.approve_content(HEAD, STAFF.person), lambda: doc.check_format(CHECKER)],
        SIGNED: [lambda: doc.approve_content(HEAD, STAFF.person), lambda: doc.check_format(CHECKER),
                 lambda: sign(doc)],
        ISSUED: [lambda: doc.approve_content(HEAD, STAFF.person), lambda: doc.check_format(CHECKER),
                 lambda: sign(doc), lambda: issue(doc)],
    }[status]
    for step in steps:
        step()
    assert doc.status == status
    return doc


def incoming_in(status: str) -> Document:
    doc = incoming()
    if status in (ASSIGNED, HANDLED):
        doc.assign(CLERK, "cntt", STAFF.person, TODAY, TODAY)
    if status == HANDLED:
        doc.mark_handled(STAFF)
    assert doc.status == status
    return doc


ACTIONS = {
    "revise": lambda d: d.submit_draft(STAFF, doc_type="KH", summary="v2", recipients=("UBND",),
                                       urgency="normal", secrecy="none", file=FILE),
    "approve_content": lambda d: d.approve_content(HEAD, STAFF.person),
    "check_format": lambda d: d.check_format(CHECKER),
    "return": lambda d: d.return_draft(DIRECTOR, STAFF.person, "Không"),
    "sign": lambda d: sign(d),
    "issue": lambda d: issue(d),
    "assign": lambda d: d.assign(DIRECTOR, "cntt", None, TODAY, TODAY),
    "route": lambda d: d.route(SECRET_HANDLER, DIRECTOR.person),
    "attach_file": lambda d: d.attach_file(CLERK, FILE),
    "mark_handled": lambda d: d.mark_handled(DIRECTOR),
}
OUTGOING_STATES = (SUBMITTED, RETURNED, CONTENT_APPROVED, READY_FOR_SIGNING, SIGNED, ISSUED)
INCOMING_STATES = (REGISTERED, ASSIGNED, HANDLED)
ILLEGAL = [
    (state, action)
    for states, build_register in ((OUTGOING_STATES, "outgoing"), (INCOMING_STATES, "incoming"))
    for state in states
    for action, (register, allowed, _, _) in TRANSITIONS.items()
    if register != build_register or state not in allowed
]


@pytest.mark.parametrize("state,action", ILLEGAL)
def test_every_illegal_transition_is_refused_with_a_clear_error(state, action):
    doc = outgoing_in(state) if state in OUTGOING_STATES else incoming_in(state)
    before = (doc.status, doc.draft, doc.signed, doc.issued)
    with pytest.raises(DomainError) as err:
        ACTIONS[action](doc)
    # `route` on an ordinary document is a wrong transition too; nothing changed either way.
    assert err.value.code == "invalid_transition", (state, action, err.value.code)
    assert err.value.message and err.value.message_en
    assert (doc.status, doc.draft, doc.signed, doc.issued) == before


def test_the_illegal_transition_message_says_where_the_document_is():
    with pytest.raises(DomainError) as err:
        outgoing_in(SUBMITTED).check_format(CHECKER)
    assert "chờ trưởng phòng duyệt nội dung" in err.value.message
    assert err.value.details == {"action": "check_format", "status": "submitted"}


def test_nothing_is_done_to_a_document_that_does_not_exist():
    for action in ("approve_content", "sign", "assign", "mark_handled"):
        with pytest.raises(NotFound):
            ACTIONS[action](Document(uuid.uuid4()))


def test_the_whole_flow_records_each_step_in_order():
    doc = draft()
    events = doc.approve_content(HEAD, STAFF.person) + doc.check_format(CHECKER) + sign(doc) + issue(doc)
    assert [type(e).__name__ for e in events] == [
        "DraftApproved", "FormatChecked", "DraftReadyForSigning", "DocumentSigned", "DocumentIssued"]
    issued = events[-1]
    assert (issued.number, issued.symbol, issued.signer_id) == (15, "15/KH-STTTT", "gd")
    assert doc.status == ISSUED


def test_a_new_version_restarts_the_approvals_and_only_the_author_submits_it():
    doc = outgoing_in(READY_FOR_SIGNING)
    with pytest.raises(Forbidden):
        doc.submit_draft(STAFF2, doc_type="KH", summary="x", recipients=("x",), urgency="normal",
                         secrecy="none", file=FILE)
    (v2,) = ACTIONS["revise"](doc)
    assert (v2.version, doc.status) == (2, SUBMITTED)
    with pytest.raises(DomainError):
        doc.check_format(CHECKER)  # back to the head first


@pytest.mark.parametrize("approver", [STAFF2, OTHER_HEAD, DEPUTY, CHECKER, STAFF])
def test_only_the_authors_division_head_approves_the_content(approver):
    with pytest.raises(Forbidden):
        draft().approve_content(approver, STAFF.person)


@pytest.mark.parametrize("approver", [HEAD, ACTING])
def test_the_head_or_the_acting_deputy_approves_the_content(approver):
    assert draft().approve_content(approver, STAFF.person)


def test_a_heads_own_draft_goes_to_a_leader():
    doc = draft(HEAD)
    with pytest.raises(Forbidden):
        doc.approve_content(HEAD, HEAD.person)
    with pytest.raises(Forbidden):
        doc.approve_content(ACTING, HEAD.person)
    assert doc.approve_content(DEPUTY_DIRECTOR, HEAD.person)


def test_format_is_checked_by_a_format_checker_who_is_not_the_author():
    doc = draft(CHECKER)
    doc.approve_content(CHIEF, CHECKER.person)  # the Office's head answers for the content
    with pytest.raises(Forbidden):
        doc.check_format(CHECKER)
    for other in (HEAD, DIRECTOR, CLERK):
        with pytest.raises(Forbidden):
            outgoing_in(CONTENT_APPROVED).check_format(other)


@pytest.mark.parametrize("signer", [HEAD, CHIEF, CHECKER, STAFF])
def test_only_a_department_leader_signs(signer):
    with pytest.raises(Forbidden):
        sign(outgoing_in(READY_FOR_SIGNING), signer)


def test_an_invalid_signature_or_a_stale_version_is_refused():
    doc = outgoing_in(READY_FOR_SIGNING)
    with pytest.raises(DomainError) as err:
        sign(doc, valid=False)
    assert err.value.code == "bad_signature"
    with pytest.raises(DomainError) as err:
        doc.sign(DIRECTOR, version=7, algorithm="ed25519", key_id="k", signature="x" * 12,
                 signed_content={}, signature_valid=True)
    assert err.value.code == "stale_version"
    assert doc.status == READY_FOR_SIGNING


def test_the_office_or_a_leader_issues():
    for actor in (STAFF, HEAD, CHECKER.__class__(CHECKER.person, in_office=False)):
        with pytest.raises(Forbidden):
            issue(outgoing_in(SIGNED), actor)
    assert issue(outgoing_in(SIGNED), DEPUTY_DIRECTOR)


def test_returning_takes_the_stage_and_its_people():
    with pytest.raises(Forbidden):
        outgoing_in(SUBMITTED).return_draft(CHECKER, STAFF.person, "x")
    with pytest.raises(Forbidden):
        outgoing_in(CONTENT_APPROVED).return_draft(HEAD, STAFF.person, "x")
    with pytest.raises(Forbidden):
        outgoing_in(READY_FOR_SIGNING).return_draft(CHECKER, STAFF.person, "x")
    stages = [outgoing_in(s).return_draft(a, STAFF.person, "Sửa")[0].stage for s, a in (
        (SUBMITTED, HEAD), (CONTENT_APPROVED, CHECKER), (READY_FOR_SIGNING, DIRECTOR))]
    assert stages == ["content", "format", "signing"]


# --- the signature -----------------------------------------------------------------------


def test_the_signature_covers_the_file_hash_and_metadata_and_a_tampered_file_fails():
    doc = outgoing_in(READY_FOR_SIGNING)
    key = signatures.development_signing_key("t", "gd")
    content = signing_content("t", doc, "gd")
    signature = signatures.sign(key, content)
    public = signatures.public_key_b64(key)
    assert content["file_sha256"] == signatures.sha256_hex(FILE.data)
    assert signatures.verify(public, content, signature)
    tampered = {**content, "file_sha256": signatures.sha256_hex(FILE.data + b" ")}
    assert not signatures.verify(public, tampered, signature)
    assert not signatures.verify(public, {**content, "summary": "Khác"}, signature)


# --- files and secret documents ----------------------------------------------------------


def test_files_are_checked_for_encoding_emptiness_size_and_name():
    ok = FileUpload.from_base64("a.docx", base64.b64encode(b"abc").decode())
    assert ok.sha256 == signatures.sha256_hex(b"abc") and ok.size == 3
    for name, data, code in (
        ("a.docx", "not base64!", "invalid_file"),
        ("a.docx", "", "invalid_file"),
        ("../etc/passwd", base64.b64encode(b"x").decode(), "invalid_file"),
        ("a.docx", base64.b64encode(b"x" * (MAX_FILE_BYTES + 1)).decode(), "file_too_large"),
    ):
        with pytest.raises(DomainError) as err:
            FileUpload.from_base64(name, data)
        assert err.value.code == code


SECRET = "NỘI DUNG MẬT: kế hoạch tác chiến"


def test_a_secret_documents_summary_or_file_is_refused():
    doc = Document(uuid.uuid4())
    kwargs = dict(number=1, year=2037, original_number="01/M", issuing_body="Bộ Công an",
                  document_date=TODAY, received_on=TODAY, urgency="flash", secrecy="secret")
    with pytest.raises(DomainError) as err:
        doc.receive(SECRET_HANDLER, summary=SECRET, **kwargs)
    assert err.value.code == "secret_content_refused" and SECRET not in str(err.value.__dict__)
    with pytest.raises(DomainError) as err:
        doc.receive(SECRET_HANDLER, summary=None, file=FILE, **kwargs)
    assert err.value.code == "secret_not_remote"
    assert doc.status == NEW
    (received,) = doc.receive(SECRET_HANDLER, summary=None, **kwargs)
    assert received.summary is None


def test_only_the_chief_of_office_or_the_secret_handler_registers_a_secret_document():
    for actor in (CLERK, STAFF, HEAD):
        with pytest.raises(Forbidden):
            incoming("secret", actor=actor)
    assert incoming("secret", actor=CHIEF).status == REGISTERED


def test_a_secret_document_never_becomes_a_draft_a_file_or_a_task_source():
    doc = incoming("top_secret")
    for attempt in (
        lambda: doc.submit_draft(STAFF, doc_type="KH", summary="x", recipients=("x",), urgency="normal",
                                 secrecy="none", file=FILE),
        lambda: doc.attach_file(SECRET_HANDLER, FILE),
        lambda: draft().submit_draft(STAFF, doc_type="KH", summary="x", recipients=("x",),
                                     urgency="normal", secrecy="confidential", file=FILE),
        lambda: Document(uuid.uuid4()).check_may_draft("secret"),
    ):
        with pytest.raises(DomainError) as err:
            attempt()
        assert err.value.code == "secret_not_remote"
    from services.documents.tasks import Task

    with pytest.raises(DomainError) as err:
        Task(uuid.uuid4()).assign(HEAD, STAFF.person, title="x", description="", due_date=TODAY,
                                  today=TODAY, document=doc)
    assert err.value.code == "secret_not_remote"


def test_a_secret_document_is_routed_to_a_leader_who_assigns_a_person_and_urgent_ones_summon():
    doc = incoming("secret", urgency="very_urgent")
    with pytest.raises(DomainError):
        doc.assign(DIRECTOR, "cntt", STAFF.person, TODAY, TODAY)  # not routed yet
    with pytest.raises(DomainError) as err:
        doc.route(SECRET_HANDLER, HEAD.person)
    assert err.value.code == "not_a_leader"
    with pytest.raises(Forbidden):
        doc.route(CLERK, DIRECTOR.person)
    doc.route(SECRET_HANDLER, DIRECTOR.person)
    assert doc.status == ROUTED
    with pytest.raises(Forbidden):
        doc.assign(CHIEF, "cntt", STAFF.person, TODAY, TODAY)
    with pytest.raises(DomainError):
        doc.assign(DIRECTOR, "cntt", None, TODAY, TODAY)
    assigned, summons = doc.assign(DIRECTOR, "cntt", STAFF.person, TODAY, TODAY, division_head_id="h1")
    assert isinstance(summons, ev.SecretDocumentSummons)
    assert (summons.person_id, summons.division_head_id, summons.come_in_on) == ("s1", "h1", TODAY)
    calm = incoming("confidential")
    calm.route(SECRET_HANDLER, DIRECTOR.person)
    assert len(calm.assign(DIRECTOR, "cntt", STAFF.person, TODAY, TODAY)) == 1


def test_ordinary_documents_are_not_routed_and_are_assigned_by_the_office_leaders_or_the_head():
    with pytest.raises(DomainError) as err:
        incoming().route(SECRET_HANDLER, DIRECTOR.person)
    assert err.value.code == "invalid_transition"
    with pytest.raises(Forbidden):
        incoming().assign(STAFF, "cntt", None, TODAY, TODAY)
    doc = incoming_in(ASSIGNED)
    with pytest.raises(Forbidden):
        doc.assign(OTHER_HEAD, "cntt", STAFF2.person, TODAY, TODAY)
    with pytest.raises(DomainError):
        doc.assign(HEAD, "cntt", OTHER_HEAD.person, TODAY, TODAY)  # not in the division
    assert doc.assign(HEAD, "cntt", STAFF2.person, TODAY, TODAY)
    with pytest.raises(DomainError):
        doc.assign(HEAD, "cntt", STAFF2.person, date(2036, 12, 31), TODAY)  # due in the past


def test_an_incoming_documents_dates_and_summary_are_checked():
    doc = Document(uuid.uuid4())
    common = dict(number=1, year=2037, original_number="1/X", issuing_body="X", received_on=TODAY,
                  urgency="normal", secrecy="none")
    with pytest.raises(DomainError):
        doc.receive(CLERK, summary="", document_date=TODAY, **common)
    with pytest.raises(DomainError):
        doc.receive(CLERK, summary="x", document_date=date(2037, 1, 6), **common)
    doc.receive(CLERK, summary="x", document_date=TODAY, **common)
    with pytest.raises(DomainError) as err:
        doc.receive(CLERK, summary="x", document_date=TODAY, **common)
    assert err.value.code == "already_exists"


def test_history_has_a_vietnamese_label_for_every_event_of_a_document_stream():
    from services.documents.queries import STEP_VI
    from shared.contracts import registered_events

    on_document_streams = {
        name for name, cls in registered_events().items()
        if cls.owner == "documents" and "document_id" in cls.model_fields
        and name not in ("RegisterNumberAssigned", "TaskAssigned")  # on other streams
    }
    assert set(STEP_VI) == on_document_streams
