"""Commands and queries the documents service accepts."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.contracts.documents import DocType, Register, Secrecy, Urgency

FILE_BASE64_MAX = 256 * 1024  # the command limit; the decoded size is checked against MAX_FILE_BYTES


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _File(_Message):
    file_name: str | None = Field(default=None, min_length=1, max_length=200)
    file_base64: str | None = Field(default=None, min_length=1, max_length=FILE_BASE64_MAX)

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.file_name is None) != (self.file_base64 is None):
            raise ValueError("file_name and file_base64 go together")
        return self


# --- incoming documents ------------------------------------------------------------------


class RegisterIncomingDocument(_File):
    """The Office enters an incoming document in the incoming register (next number of the year).

    A secret document (secrecy other than "none") is entered by the Chief of Office or the
    secret-document handler with `leader_id`, the leader it is taken to; its summary and file
    are refused. An ordinary one may be assigned at once (`division_id`/`person_id`, `due_date`)."""

    document_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    original_number: str = Field(min_length=1, max_length=100)
    issuing_body: str = Field(min_length=1, max_length=300)
    summary: str | None = Field(default=None, max_length=2000)
    document_date: date
    urgency: Urgency = "normal"
    secrecy: Secrecy = "none"
    leader_id: str | None = None
    division_id: str | None = None
    person_id: str | None = None
    due_date: date | None = None


class AttachIncomingFile(_Message):
    """A scan of an ordinary incoming document; refused for secret ones."""

    document_id: uuid.UUID
    file_name: str = Field(min_length=1, max_length=200)
    file_base64: str = Field(min_length=1, max_length=FILE_BASE64_MAX)


class RouteSecretDocument(_Message):
    """The Office takes a secret document to a department leader."""

    document_id: uuid.UUID
    leader_id: str


class AssignDocument(_Message):
    """Hand an incoming document to a division or a person (in it) with a due date."""

    document_id: uuid.UUID
    division_id: str | None = None
    person_id: str | None = None
    due_date: date | None = None

    @model_validator(mode="after")
    def _someone(self):
        if self.division_id is None and self.person_id is None:
            raise ValueError("name a division_id or a person_id")
        return self


class MarkDocumentHandled(_Message):
    document_id: uuid.UUID


# --- outgoing drafts ---------------------------------------------------------------------


class SubmitDraft(_Message):
    """The author submits an outgoing draft, or a new version of it (restarting the approvals).
    Secret documents are refused: they never go through the remote flow."""

    document_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    doc_type: DocType
    summary: str = Field(min_length=1, max_length=2000)
    recipients: tuple[str, ...] = Field(min_length=1, max_length=100)
    urgency: Urgency = "normal"
    secrecy: Secrecy = "none"
    file_name: str = Field(min_length=1, max_length=200)
    file_base64: str = Field(min_length=1, max_length=FILE_BASE64_MAX)


class ApproveDraft(_Message):
    """The author's division head approves the draft's content."""

    document_id: uuid.UUID


class CheckFormat(_Message):
    """The format checker finds the format right: the draft is ready for signing."""

    document_id: uuid.UUID


class ReturnDraft(_Message):
    """Whoever holds the draft at its stage (head, format checker, leader) sends it back."""

    document_id: uuid.UUID
    comments: str = Field(min_length=1, max_length=2000)


class SignDocument(_Message):
    """A department leader signs the canonical content from GetSigningContent on their side.

    `algorithm` "ed25519": `key_id` names the key the leader registered in the directory.
    `algorithm` "x509": `certificate_pem` is the leader's certificate from a trusted CA."""

    document_id: uuid.UUID
    version: int = Field(ge=1)
    algorithm: str = Field(default="ed25519", pattern="^(ed25519|x509)$")
    key_id: str = Field(min_length=1, max_length=200)
    signature: str = Field(min_length=10, max_length=2000)
    certificate_pem: str | None = Field(default=None, max_length=20000)


class IssueDocument(_Message):
    """The Office issues a signed document with the next number of the outgoing register."""

    document_id: uuid.UUID


# --- tasks -------------------------------------------------------------------------------


class AssignTask(_Message):
    """A division's leadership assigns work, from a document or standalone, with a due date."""

    task_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    assignee_id: str
    due_date: date
    document_id: uuid.UUID | None = None


class ReportTaskProgress(_Message):
    task_id: uuid.UUID
    percent: int = Field(ge=0, le=100)
    note: str = Field(default="", max_length=2000)


class CompleteTask(_Message):
    task_id: uuid.UUID
    note: str = Field(default="", max_length=2000)


class DetectOverdue(_Message):
    """Raise TaskOverdue/DocumentOverdue once for what is a working day past due at `as_of`
    (now if omitted). A background loop sends it every few minutes."""

    as_of: AwareDatetime | None = None


# --- meetings ----------------------------------------------------------------------------


class ScheduleMeeting(_Message):
    meeting_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    title: str = Field(min_length=1, max_length=300)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    link: str = Field(min_length=10, max_length=500)
    chair_id: str
    invitees: tuple[str, ...] = Field(min_length=1, max_length=500)


class ConfirmMeetingAttendance(_Message):
    meeting_id: uuid.UUID


class CancelMeeting(_Message):
    meeting_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=1000)


# --- queries -----------------------------------------------------------------------------

class ListDocuments(_Message):
    """Documents by register, status, division and date (received, issued or created)."""

    register_name: Register | None = None
    status: str | None = Field(default=None, max_length=40)
    division_id: str | None = None
    year: int | None = Field(default=None, ge=2000, le=2100)
    date_from: date | None = None
    date_to: date | None = None
    limit: int = Field(default=200, ge=1, le=1000)


class GetDocument(_Message):
    document_id: uuid.UUID


class GetDocumentHistory(_Message):
    """Every step of a document, in order, with who and when."""

    document_id: uuid.UUID


class GetDocumentFile(_Message):
    document_id: uuid.UUID


class GetSigningContent(_Message):
    """What a leader signs (canonical JSON, UTF-8) and its SHA-256."""

    document_id: uuid.UUID


class VerifyDocumentSignature(_Message):
    """Check the signature on record; with `file_base64`, check that file is the signed one."""

    document_id: uuid.UUID
    file_base64: str | None = Field(default=None, max_length=FILE_BASE64_MAX)


class ListTasks(_Message):
    assignee_id: str | None = None
    status: str | None = Field(default=None, pattern="^(open|completed)$")
    division_id: str | None = None
    document_id: uuid.UUID | None = None
    limit: int = Field(default=200, ge=1, le=1000)


class ListOverdue(_Message):
    """Open tasks and assigned incoming documents a working day or more past due at `as_of`."""

    as_of: AwareDatetime | None = None
    division_id: str | None = None


class ListMeetings(_Message):
    date_from: date | None = None
    date_to: date | None = None
    limit: int = Field(default=200, ge=1, le=1000)
