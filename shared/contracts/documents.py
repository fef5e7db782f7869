"""Events owned by the documents service: registers, drafts to signature, secret documents, tasks, meetings.

Nothing secret is ever in these events: a secret document (văn bản mật) is represented only by
its register entry (number, original number and symbol, issuing body, dates, urgency, secrecy
level, who routes and handles it). Its summary, content and file are never accepted.
A draft's file is referred to by its SHA-256; the bytes stay in the service's blob store.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from shared.contracts import Event, event

OWNER = "documents"

Register = Literal["incoming", "outgoing"]
Urgency = Literal["normal", "urgent", "very_urgent", "flash"]
Secrecy = Literal["none", "confidential", "secret", "top_secret"]
ReturnStage = Literal["content", "format", "signing"]
# ASCII-safe codes of the document types (Decree 30/2020/NĐ-CP, Appendix III); see DOC_TYPES.
DocType = Literal["CV", "KH", "QD", "TB", "BC", "TTR", "GM", "HD"]

URGENCY_VI: dict[str, str] = {
    "normal": "Thường", "urgent": "Khẩn", "very_urgent": "Thượng khẩn", "flash": "Hỏa tốc",
}
SECRECY_VI: dict[str, str] = {
    "none": "Thường", "confidential": "Mật", "secret": "Tối mật", "top_secret": "Tuyệt mật",
}
# code -> (name, the form written in the symbol)
DOC_TYPES: dict[str, tuple[str, str]] = {
    "CV": ("Công văn", "CV"),  # a công văn's symbol names the drafting division instead
    "KH": ("Kế hoạch", "KH"),
    "QD": ("Quyết định", "QĐ"),
    "TB": ("Thông báo", "TB"),
    "BC": ("Báo cáo", "BC"),
    "TTR": ("Tờ trình", "TTr"),
    "GM": ("Giấy mời", "GM"),
    "HD": ("Hướng dẫn", "HD"),
}


def document_stream(tenant: str, document_id: uuid.UUID | str) -> str:
    """One stream per document: its whole history (register entry or draft to issue) in order."""
    return f"document-{tenant}-{document_id}"


def register_stream(tenant: str, register: str, year: int) -> str:
    """The counter of one register for one year: its version is the last number handed out."""
    return f"register-{tenant}-{register}-{year}"


def task_stream(tenant: str, task_id: uuid.UUID | str) -> str:
    return f"task-{tenant}-{task_id}"


def meeting_stream(tenant: str, meeting_id: uuid.UUID | str) -> str:
    return f"meeting-{tenant}-{meeting_id}"


# --- registers ---------------------------------------------------------------------------


@event(OWNER, "RegisterNumberAssigned")
class RegisterNumberAssigned(Event):
    """The next number of a register for a year, taken by one document; never repeated or skipped."""

    register_name: Register
    year: int = Field(ge=2000, le=2100)
    number: int = Field(ge=1)
    document_id: uuid.UUID


@event(OWNER, "DocumentReceived")
class DocumentReceived(Event):
    """An incoming document entered in the incoming register. `summary` is None for secret ones."""

    document_id: uuid.UUID
    year: int
    number: int = Field(ge=1)
    original_number: str = Field(min_length=1, description="Number and symbol as issued, e.g. 123/UBND-VX")
    issuing_body: str = Field(min_length=1)
    summary: str | None = None
    document_date: date
    received_on: date
    urgency: Urgency
    secrecy: Secrecy


@event(OWNER, "IncomingFileAttached")
class IncomingFileAttached(Event):
    """A scan of a non-secret incoming document, stored by hash in the service's blob store."""

    document_id: uuid.UUID
    file_sha256: str
    file_name: str
    file_size: int


@event(OWNER, "DocumentAssigned")
class DocumentAssigned(Event):
    """An incoming document handed to a division (and possibly a person in it) with a due date."""

    document_id: uuid.UUID
    division_id: str
    person_id: str | None = None
    due_date: date | None = None


@event(OWNER, "SecretDocumentRouted")
class SecretDocumentRouted(Event):
    """The Office takes a secret document to a department leader (outside the remote flow)."""

    document_id: uuid.UUID
    leader_id: str


@event(OWNER, "SecretDocumentSummons")
class SecretDocumentSummons(Event):
    """An urgent secret document: the assigned person comes in to the office to handle it.
    The division head is informed first (`division_head_id`), then the person."""

    document_id: uuid.UUID
    number: int
    person_id: str
    division_id: str
    division_head_id: str | None
    urgency: Urgency
    come_in_on: date


@event(OWNER, "DocumentHandled")
class DocumentHandled(Event):
    document_id: uuid.UUID
    person_id: str


@event(OWNER, "DocumentOverdue")
class DocumentOverdue(Event):
    """An assigned incoming document not handled a working day after its due date (raised once)."""

    document_id: uuid.UUID
    division_id: str
    person_id: str | None
    due_date: date
    as_of: AwareDatetime
    working_days_late: int = Field(ge=1)


# --- outgoing drafts ---------------------------------------------------------------------


@event(OWNER, "DraftSubmitted")
class DraftSubmitted(Event):
    """Version `version` of an outgoing draft; a version after the first restarts the approvals."""

    document_id: uuid.UUID
    version: int = Field(ge=1)
    author_id: str
    division_id: str
    doc_type: DocType
    summary: str = Field(min_length=1)
    recipients: tuple[str, ...] = Field(min_length=1)
    urgency: Urgency
    file_sha256: str
    file_name: str
    file_size: int = Field(ge=1)


@event(OWNER, "DraftApproved")
class DraftApproved(Event):
    """The author's division head answers for the draft's content."""

    document_id: uuid.UUID
    version: int
    approver_id: str


@event(OWNER, "DraftReturned")
class DraftReturned(Event):
    """Sent back to the author at one stage, with the reviewer's comments."""

    document_id: uuid.UUID
    version: int
    stage: ReturnStage
    reviewer_id: str
    comments: str = Field(min_length=1)


@event(OWNER, "FormatChecked")
class FormatChecked(Event):
    """The format checker (cán bộ thẩm định thể thức) found the official format right."""

    document_id: uuid.UUID
    version: int
    checker_id: str


@event(OWNER, "DraftReadyForSigning")
class DraftReadyForSigning(Event):
    document_id: uuid.UUID
    version: int
    file_sha256: str


@event(OWNER, "DocumentSigned")
class DocumentSigned(Event):
    """A leader's digital signature over `signed_content` (the file's SHA-256 and the metadata).

    Anyone with the signer's public key (or certificate) verifies it: canonical JSON of
    `signed_content` (shared.signatures.canonical_bytes), then the file's SHA-256 against
    `signed_content["file_sha256"]`."""

    document_id: uuid.UUID
    version: int
    signer_id: str
    algorithm: str
    key_id: str
    signature: str
    signed_content: dict[str, Any]
    content_sha256: str
    file_sha256: str
    certificate_pem: str | None = None


@event(OWNER, "DocumentIssued")
class DocumentIssued(Event):
    """Issued with the next number of the outgoing register, to its recipients."""

    document_id: uuid.UUID
    version: int
    year: int
    number: int = Field(ge=1)
    symbol: str = Field(description="Official number and symbol, e.g. 15/KH-STTTT")
    doc_type: DocType
    summary: str
    recipients: tuple[str, ...]
    signer_id: str
    issued_on: date
    file_sha256: str


# --- tasks -------------------------------------------------------------------------------


@event(OWNER, "TaskAssigned")
class TaskAssigned(Event):
    task_id: uuid.UUID
    title: str = Field(min_length=1)
    description: str = ""
    assignee_id: str
    division_id: str
    assigned_by: str
    due_date: date
    document_id: uuid.UUID | None = None


@event(OWNER, "TaskProgressReported")
class TaskProgressReported(Event):
    task_id: uuid.UUID
    assignee_id: str
    percent: int = Field(ge=0, le=100)
    note: str = ""


@event(OWNER, "TaskCompleted")
class TaskCompleted(Event):
    task_id: uuid.UUID
    assignee_id: str
    note: str = ""


@event(OWNER, "TaskOverdue")
class TaskOverdue(Event):
    """An open task a working day past its due date (raised once per task)."""

    task_id: uuid.UUID
    assignee_id: str
    division_id: str
    due_date: date
    as_of: AwareDatetime
    working_days_late: int = Field(ge=1)


# --- meetings ----------------------------------------------------------------------------


@event(OWNER, "MeetingScheduled")
class MeetingScheduled(Event):
    """An online meeting; invitees join at `join_at`, 15 minutes early, to test their equipment."""

    meeting_id: uuid.UUID
    title: str = Field(min_length=1)
    starts_at: AwareDatetime
    join_at: AwareDatetime
    ends_at: AwareDatetime
    link: str
    chair_id: str
    invitees: tuple[str, ...] = Field(min_length=1)
    organiser_id: str


@event(OWNER, "MeetingAttendanceConfirmed")
class MeetingAttendanceConfirmed(Event):
    meeting_id: uuid.UUID
    person_id: str


@event(OWNER, "MeetingCancelled")
class MeetingCancelled(Event):
    meeting_id: uuid.UUID
    reason: str = Field(min_length=1)

