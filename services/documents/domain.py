"""Documents and their registers: pure decisions that record events. No I/O.

Each aggregate's decision methods check who may act and whether the current state allows it,
then record their events (applied to the aggregate at once, so one command can chain several
decisions) and return them for the handler to append.

Secret documents (văn bản mật) stop here: the rules refuse their summary, any file and any
draft, so nothing secret can reach an event, a queue or a log line. The register entry is all
that exists of them; the paper stays with the Office and the leader it is routed to.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.commands import DomainError, Forbidden, NotFound
from shared.contracts import Event
from shared.contracts import documents as ev
from shared.directory import Person, Plan
from shared.localtime import LOCAL_TZ, vn_date
from shared.signatures import canonical_bytes, sha256_hex

MAX_FILE_BYTES = 160 * 1024  # commands are at most 256 KiB; base64 adds a third

NEW = "new"
# incoming
REGISTERED, ROUTED, ASSIGNED, HANDLED = "registered", "routed", "assigned", "handled"
# outgoing
SUBMITTED, RETURNED, CONTENT_APPROVED = "submitted", "returned", "content_approved"
READY_FOR_SIGNING, SIGNED, ISSUED = "ready_for_signing", "signed", "issued"

STATUS_VI = {
    NEW: "chưa có",
    REGISTERED: "đã vào sổ",
    ROUTED: "đã chuyển lãnh đạo Sở",
    ASSIGNED: "đã giao xử lý",
    HANDLED: "đã xử lý xong",
    SUBMITTED: "chờ trưởng phòng duyệt nội dung",
    RETURNED: "bị trả lại cho người soạn thảo",
    CONTENT_APPROVED: "chờ thẩm định thể thức",
    READY_FOR_SIGNING: "chờ lãnh đạo Sở ký",
    SIGNED: "đã ký, chờ phát hành",
    ISSUED: "đã phát hành",
    "open": "đang thực hiện",
    "completed": "đã hoàn thành",
}

# action -> (register it belongs to, statuses it may start from, what it is called)
TRANSITIONS: dict[str, tuple[str, frozenset[str], str, str]] = {
    "assign": ("incoming", frozenset({REGISTERED, ROUTED, ASSIGNED}), "giao xử lý", "assign"),
    "route": ("incoming", frozenset({REGISTERED, ROUTED}), "chuyển lãnh đạo Sở", "route to a leader"),
    "attach_file": ("incoming", frozenset({REGISTERED, ASSIGNED}), "đính kèm tệp", "attach a file"),
    "mark_handled": ("incoming", frozenset({ASSIGNED}), "báo đã xử lý", "mark handled"),
    "revise": (
        "outgoing", frozenset({SUBMITTED, RETURNED, CONTENT_APPROVED, READY_FOR_SIGNING}),
        "trình phiên bản mới", "submit a new version",
    ),
    "approve_content": ("outgoing", frozenset({SUBMITTED}), "duyệt nội dung", "approve the content"),
    "check_format": ("outgoing", frozenset({CONTENT_APPROVED}), "thẩm định thể thức", "check the format"),
    "return": (
        "outgoing", frozenset({SUBMITTED, CONTENT_APPROVED, READY_FOR_SIGNING}),
        "trả lại dự thảo", "return the draft",
    ),
    "sign": ("outgoing", frozenset({READY_FOR_SIGNING}), "ký số", "sign"),
    "issue": ("outgoing", frozenset({SIGNED}), "phát hành", "issue"),
}

REGISTER_VI = {"incoming": "văn bản đến", "outgoing": "văn bản đi"}


def invalid(message: str, message_en: str, code: str = "invalid", **details) -> DomainError:
    return DomainError(message, message_en, code=code, **details)


def secret_not_remote() -> DomainError:
    return DomainError(
        "Văn bản mật không được xử lý trên môi trường mạng: không trình dự thảo, không đính kèm tệp. "
        "Văn phòng chuyển bản giấy đến lãnh đạo Sở theo quy định.",
        "Secret documents never enter the remote flow: no drafts, no files. The Office takes the "
        "paper to a department leader.",
        code="secret_not_remote",
    )


def secret_content_refused() -> DomainError:
    return DomainError(
        "Không nhập trích yếu hay nội dung của văn bản mật vào hệ thống; chỉ vào sổ số, ký hiệu, "
        "cơ quan ban hành, ngày, độ khẩn và độ mật.",
        "A secret document's summary or content is never entered; only its register entry "
        "(number, symbol, issuing body, dates, urgency, secrecy).",
        code="secret_content_refused",
    )


# --- who acts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """A person as the rules see them: roles, division, and the divisions they act as head for today."""

    person: Person
    in_office: bool = False
    acting_head_of: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.person.person_id

    @property
    def roles(self) -> frozenset[str]:
        return self.person.roles

    @property
    def is_leader(self) -> bool:
        return self.person.is_leader

    @property
    def handles_secrets(self) -> bool:
        return bool(self.roles & {"chief_of_office", "secret_document_handler"})

    def heads(self, division_id: str) -> bool:
        """Heads the division, or acts for its head today."""
        own = self.person.heads_division and self.person.division_id == division_id
        return own or division_id in self.acting_head_of

    def leads(self, division_id: str) -> bool:
        """Is in the division's leadership (head, deputy or acting head): may assign its work."""
        deputy = "deputy_division_head" in self.roles and self.person.division_id == division_id
        return self.heads(division_id) or deputy


def check_may_approve_content(approver: Actor, author: Person, division_id: str) -> None:
    """The author's division head answers for the content (2020 plan §II.2.6); a head's or a
    leader's own draft goes to a department leader; nobody approves their own draft."""
    if approver.id == author.person_id:
        raise Forbidden(
            "Không ai được tự duyệt nội dung dự thảo của chính mình.",
            "Nobody may approve the content of their own draft.",
        )
    if author.is_leader or author.heads_division:
        if not approver.is_leader:
            raise Forbidden(
                "Dự thảo của trưởng phòng hoặc lãnh đạo Sở do lãnh đạo Sở duyệt nội dung.",
                "A head's or leader's draft is approved by a department leader.",
            )
    elif not approver.heads(division_id):
        raise Forbidden(
            "Chỉ trưởng phòng của người soạn thảo (hoặc cấp phó được giao quyền) được duyệt nội dung.",
            "Only the author's division head (or a deputy acting for the head) approves the content.",
        )


def check_format_checker(actor: Actor, author_id: str) -> None:
    if "format_checker" not in actor.roles:
        raise Forbidden(
            "Chỉ cán bộ thẩm định thể thức được kiểm tra thể thức văn bản.",
            "Only a format checker checks the format.",
        )
    if actor.id == author_id:
        raise Forbidden(
            "Không ai được tự thẩm định thể thức dự thảo của chính mình.",
            "Nobody checks the format of their own draft.",
        )


def check_leader(actor: Actor) -> None:
    if not actor.is_leader:
        raise Forbidden(
            "Chỉ lãnh đạo Sở (Giám đốc, Phó Giám đốc) được ký văn bản.",
            "Only a department leader (Director or Deputy Director) signs.",
        )


def check_may_issue(actor: Actor) -> None:
    if not (actor.in_office or actor.is_leader):
        raise Forbidden(
            "Chỉ Văn phòng Sở (văn thư) hoặc lãnh đạo Sở được phát hành văn bản.",
            "Only the Office (the registry clerk) or a department leader issues documents.",
        )


def check_may_register(actor: Actor, secret: bool) -> None:
    if secret:
        if not (actor.handles_secrets or actor.is_leader):
            raise Forbidden(
                "Chỉ Chánh Văn phòng hoặc cán bộ được giao xử lý văn bản mật được vào sổ văn bản mật.",
                "Only the Chief of Office or the secret-document handler registers secret documents.",
            )
    elif not (actor.in_office or actor.is_leader):
        raise Forbidden(
            "Chỉ Văn phòng Sở được vào sổ văn bản đến.",
            "Only the Office registers incoming documents.",
        )


# --- files, numbers, working days ----------------------------------------------------------


@dataclass(frozen=True)
class FileUpload:
    """A file as a command carried it: its bytes go to the blob store, its hash into events."""

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def from_base64(cls, name: str, encoded: str) -> FileUpload:
        if "/" in name or "\\" in name or name.strip() != name or not name:
            raise invalid("Tên tệp không hợp lệ.", "Invalid file name.", code="invalid_file")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(
                "Tệp không đúng mã hóa base64.", "The file is not valid base64.", code="invalid_file"
            ) from None
        if not data:
            raise invalid("Tệp rỗng.", "The file is empty.", code="invalid_file")
        if len(data) > MAX_FILE_BYTES:
            raise invalid(
                f"Tệp quá lớn: {len(data)} byte, tối đa {MAX_FILE_BYTES} byte.",
                f"File too large: {len(data)} bytes, at most {MAX_FILE_BYTES}.",
                code="file_too_large", size=len(data), limit=MAX_FILE_BYTES,
            )
        return cls(name, data)


@dataclass(frozen=True)
class RegisterCounter:
    """One register's numbers for one year. Its stream holds only `RegisterNumberAssigned`,
    so the stream version is the last number: appending at that expected version is what
    makes a number impossible to hand out twice or to skip."""

    register: str
    year: int
    last: int = 0

    def take(self, document_id: uuid.UUID) -> ev.RegisterNumberAssigned:
        return ev.RegisterNumberAssigned(
            register_name=self.register, year=self.year, number=self.last + 1, document_id=document_id
        )


def official_symbol(number: int, doc_type: str, department_symbol: str, division_id: str) -> str:
    """Number and symbol as Decree 30/2020/NĐ-CP writes them: `05/KH-STTTT`; a công văn names
    the drafting division instead of its type: `06/STTTT-CNTT`. Numbers below 10 take a 0."""
    if doc_type == "CV":
        return f"{number:02d}/{department_symbol}-{division_id.upper()}"
    return f"{number:02d}/{ev.DOC_TYPES[doc_type][1]}-{department_symbol}"


def is_working_day(day: date, plans: Iterable[Plan]) -> bool:
    """A plan's working day where a plan covers the day (its holidays off); else Monday to Friday."""
    covering = [p for p in plans if p.covers(day)]
    if covering:
        return any(p.is_working_day(day) for p in covering)
    return day.weekday() < 5


def working_days_late(due: date, as_of: date, plans: list[Plan]) -> int:
    """Working days after `due`, up to and including `as_of`."""
    late, day = 0, due + timedelta(days=1)
    while day <= as_of:
        late += is_working_day(day, plans)
        day += timedelta(days=1)
    return late


def local_date(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


def late_at(due: date, as_of: datetime, plans: list[Plan]) -> int:
    """Working days late at the moment `as_of` (by its local date); 0 while not late: a
    working day must have begun after the due date."""
    return working_days_late(due, local_date(as_of), plans)


def check_due(due: date | None, today: date) -> None:
    if due is not None and due < today:
        raise invalid(
            f"Hạn xử lý {vn_date(due)} đã qua.", f"The due date {due} is in the past.",
            code="invalid", due_date=due.isoformat(),
        )


class Aggregate:
    """Base of this service's aggregates: rebuilt from their events; a decision applies the events
    it records at once, so one command can chain several decisions on the same aggregate.
    Subclasses are dataclasses whose first field is the aggregate's id."""

    @classmethod
    def from_events(cls, aggregate_id: uuid.UUID, events: list[Event]):
        aggregate = cls(aggregate_id)
        for e in events:
            aggregate.apply(e)
        return aggregate

    def apply(self, e: Event) -> None:
        raise NotImplementedError

    def _record(self, *events: Event) -> list[Event]:
        for e in events:
            self.apply(e)
        return list(events)


# --- documents ---------------------------------------------------------------------------


@dataclass
class Document(Aggregate):
    """One document: an incoming register entry, or an outgoing draft on its way to issue."""

    document_id: uuid.UUID
    register: str | None = None
    status: str = NEW
    secrecy: str = "none"
    urgency: str = "normal"
    received: ev.DocumentReceived | None = None
    division_id: str | None = None
    person_id: str | None = None
    due_date: date | None = None
    leader_id: str | None = None
    overdue_raised: bool = False
    draft: ev.DraftSubmitted | None = None
    signed: ev.DocumentSigned | None = None
    issued: ev.DocumentIssued | None = None

    @property
    def is_secret(self) -> bool:
        return self.secrecy != "none"

    @property
    def exists(self) -> bool:
        return self.status != NEW

    def apply(self, e: Event) -> None:
        match e:
            case ev.DocumentReceived():
                self.register, self.status, self.received = "incoming", REGISTERED, e
                self.secrecy, self.urgency = e.secrecy, e.urgency
            case ev.SecretDocumentRouted():
                self.status, self.leader_id = ROUTED, e.leader_id
            case ev.DocumentAssigned():
                self.status, self.division_id, self.person_id = ASSIGNED, e.division_id, e.person_id
                self.due_date, self.overdue_raised = e.due_date, False
            case ev.DocumentHandled():
                self.status = HANDLED
            case ev.DocumentOverdue():
                self.overdue_raised = True
            case ev.DraftSubmitted():
                self.register, self.status, self.draft = "outgoing", SUBMITTED, e
                self.urgency, self.division_id, self.signed = e.urgency, e.division_id, None
            case ev.DraftApproved():
                self.status = CONTENT_APPROVED
            case ev.DraftReturned():
                self.status = RETURNED
            case ev.DraftReadyForSigning():
                self.status = READY_FOR_SIGNING
            case ev.DocumentSigned():
                self.status, self.signed = SIGNED, e
            case ev.DocumentIssued():
                self.status, self.issued = ISSUED, e

    def _require(self, action: str) -> None:
        register, allowed, name_vi, name_en = TRANSITIONS[action]
        if not self.exists:
            raise NotFound(
                f"Không tìm thấy văn bản {self.document_id}.", f"No document {self.document_id}."
            )
        if self.register != register:
            raise invalid(
                f"Không thể {name_vi}: đây là {REGISTER_VI[self.register]}, "
                f"việc này chỉ dành cho {REGISTER_VI[register]}.",
                f"Cannot {name_en}: this is an {self.register} document, not {register}.",
                code="invalid_transition", action=action, register=self.register,
            )
        if self.status not in allowed:
            expected = ", ".join(f"“{STATUS_VI[s]}”" for s in sorted(allowed))
            raise invalid(
                f"Không thể {name_vi}: văn bản đang ở trạng thái “{STATUS_VI[self.status]}” "
                f"(chỉ được khi {expected}).",
                f"Cannot {name_en} a document that is {self.status} "
                f"(only when {', '.join(sorted(allowed))}).",
                code="invalid_transition", action=action, status=self.status,
            )

    # --- incoming ------------------------------------------------------------------------

    def receive(
        self, actor: Actor, *, number: int, year: int, original_number: str, issuing_body: str,
        summary: str | None, document_date: date, received_on: date, urgency: str, secrecy: str,
        file: FileUpload | None = None,
    ) -> list[Event]:
        if self.exists:
            raise invalid("Mã văn bản đã tồn tại.", "This document id already exists.",
                          code="already_exists")
        secret = secrecy != "none"
        check_may_register(actor, secret)
        if secret and summary:
            raise secret_content_refused()
        if secret and file is not None:
            raise secret_not_remote()
        if not secret and not (summary and summary.strip()):
            raise invalid("Cần nhập trích yếu văn bản.", "A summary is required.")
        if document_date > received_on:
            raise invalid(
                f"Ngày văn bản {vn_date(document_date)} sau ngày đến {vn_date(received_on)}.",
                f"The document date {document_date} is after its arrival {received_on}.",
            )
        events: list[Event] = [ev.DocumentReceived(
            document_id=self.document_id, year=year, number=number, original_number=original_number,
            issuing_body=issuing_body, summary=None if secret else summary,
            document_date=document_date, received_on=received_on, urgency=urgency, secrecy=secrecy,
        )]
        if file is not None:
            events.append(ev.IncomingFileAttached(
                document_id=self.document_id, file_sha256=file.sha256, file_name=file.name,
                file_size=file.size,
            ))
        return self._record(*events)

    def attach_file(self, actor: Actor, file: FileUpload) -> list[Event]:
        if self.is_secret:
            raise secret_not_remote()
        self._require("attach_file")
        check_may_register(actor, secret=False)
        return self._record(ev.IncomingFileAttached(
            document_id=self.document_id, file_sha256=file.sha256, file_name=file.name,
            file_size=file.size,
        ))

    def route(self, actor: Actor, leader: Person) -> list[Event]:
        self._require("route")
        if not self.is_secret:
            raise invalid(
                "Chỉ văn bản mật được chuyển lãnh đạo Sở theo cách này; văn bản thường được giao xử lý.",
                "Only secret documents are routed to a leader; assign ordinary ones.",
                code="invalid_transition",
            )
        check_may_register(actor, secret=True)
        if not leader.is_leader:
            raise invalid(
                "Văn bản mật chỉ được chuyển đến lãnh đạo Sở.", "Secret documents go to a department leader.",
                code="not_a_leader",
            )
        return self._record(ev.SecretDocumentRouted(document_id=self.document_id, leader_id=leader.person_id))

    def assign(
        self, actor: Actor, division_id: str, person: Person | None, due_date: date | None,
        today: date, division_head_id: str | None = None,
    ) -> list[Event]:
        """Hand the document to a division (or a person in it). A secret one goes only from a
        leader to a named person; when urgent, the person is summoned to the office."""
        self._require("assign")
        check_due(due_date, today)
        if person is not None and person.division_id != division_id:
            raise invalid(
                f"Cán bộ {person.full_name} không thuộc phòng được giao.",
                "The person is not in the assigned division.",
            )
        if self.is_secret:
            if self.status == REGISTERED:
                raise invalid(
                    "Văn bản mật phải được Văn phòng chuyển lãnh đạo Sở trước khi giao xử lý.",
                    "The Office routes a secret document to a leader before it is assigned.",
                    code="invalid_transition", status=self.status,
                )
            if not actor.is_leader:
                raise Forbidden(
                    "Chỉ lãnh đạo Sở giao xử lý văn bản mật.", "Only a department leader assigns secret documents.",
                )
            if person is None:
                raise invalid(
                    "Văn bản mật phải giao cho một cán bộ cụ thể.", "A secret document is assigned to a named person.",
                )
        else:
            reassigning_within = self.division_id == division_id and actor.heads(division_id)
            if not (actor.is_leader or actor.in_office or reassigning_within):
                raise Forbidden(
                    "Chỉ Văn phòng, lãnh đạo Sở hoặc trưởng phòng đang được giao mới được giao xử lý văn bản.",
                    "Only the Office, a leader, or the head of the assigned division assigns this document.",
                )
        events: list[Event] = [ev.DocumentAssigned(
            document_id=self.document_id, division_id=division_id,
            person_id=person.person_id if person else None, due_date=due_date,
        )]
        if self.is_secret and self.urgency != "normal":
            # 2020 plan §II.2.3: an urgent secret document calls the person in; the head is told first.
            events.append(ev.SecretDocumentSummons(
                document_id=self.document_id, number=self.received.number, person_id=person.person_id,
                division_id=division_id, division_head_id=division_head_id, urgency=self.urgency,
                come_in_on=today,
            ))
        return self._record(*events)

    def mark_handled(self, actor: Actor) -> list[Event]:
        self._require("mark_handled")
        if not (actor.id == self.person_id or actor.heads(self.division_id) or actor.is_leader):
            raise Forbidden(
                "Chỉ người được giao, trưởng phòng được giao hoặc lãnh đạo Sở báo đã xử lý.",
                "Only the assignee, the head of the assigned division or a leader marks it handled.",
            )
        return self._record(ev.DocumentHandled(document_id=self.document_id, person_id=actor.id))

    def detect_overdue(self, as_of: datetime, plans: list[Plan]) -> list[Event]:
        open_ = self.status == ASSIGNED and self.due_date is not None and not self.overdue_raised
        late = late_at(self.due_date, as_of, plans) if open_ else 0
        return self._record(ev.DocumentOverdue(
            document_id=self.document_id, division_id=self.division_id, person_id=self.person_id,
            due_date=self.due_date, as_of=as_of, working_days_late=late,
        )) if late else []

    # --- outgoing ------------------------------------------------------------------------

    def check_may_draft(self, secrecy: str) -> None:
        """Secret documents never become drafts: refused before their file is even read."""
        if secrecy != "none" or self.is_secret:
            raise secret_not_remote()

    def submit_draft(
        self, author: Actor, *, doc_type: str, summary: str, recipients: tuple[str, ...],
        urgency: str, secrecy: str, file: FileUpload,
    ) -> list[Event]:
        """The first version creates the draft; a later one (author only) restarts the approvals."""
        self.check_may_draft(secrecy)
        if self.exists:
            self._require("revise")
            if author.id != self.draft.author_id:
                raise Forbidden(
                    "Chỉ người soạn thảo được trình phiên bản mới.",
                    "Only the author submits a new version.",
                )
        version = self.draft.version + 1 if self.draft else 1
        return self._record(ev.DraftSubmitted(
            document_id=self.document_id, version=version, author_id=author.id,
            division_id=self.draft.division_id if self.draft else author.person.division_id,
            doc_type=doc_type, summary=summary, recipients=recipients, urgency=urgency,
            file_sha256=file.sha256, file_name=file.name, file_size=file.size,
        ))

    def approve_content(self, actor: Actor, author: Person | None) -> list[Event]:
        self._require("approve_content")
        check_may_approve_content(actor, author, self.draft.division_id)
        return self._record(ev.DraftApproved(
            document_id=self.document_id, version=self.draft.version, approver_id=actor.id
        ))

    def check_format(self, actor: Actor) -> list[Event]:
        self._require("check_format")
        check_format_checker(actor, self.draft.author_id)
        return self._record(
            ev.FormatChecked(document_id=self.document_id, version=self.draft.version, checker_id=actor.id),
            ev.DraftReadyForSigning(
                document_id=self.document_id, version=self.draft.version, file_sha256=self.draft.file_sha256
            ),
        )

    def return_draft(self, actor: Actor, author: Person | None, comments: str) -> list[Event]:
        """Whoever holds the draft at its current stage may send it back with comments."""
        self._require("return")
        stage = {SUBMITTED: "content", CONTENT_APPROVED: "format", READY_FOR_SIGNING: "signing"}[self.status]
        if stage == "content":
            check_may_approve_content(actor, author, self.draft.division_id)
        elif stage == "format":
            check_format_checker(actor, self.draft.author_id)
        else:
            check_leader(actor)
        return self._record(ev.DraftReturned(
            document_id=self.document_id, version=self.draft.version, stage=stage,
            reviewer_id=actor.id, comments=comments,
        ))

    def sign(
        self, actor: Actor, *, version: int, algorithm: str, key_id: str, signature: str,
        signed_content: dict, signature_valid: bool, certificate_pem: str | None = None,
    ) -> list[Event]:
        """Record a leader's signature over `signing_content(...)` of the version awaiting it;
        `signature_valid` is the caller's check of it with the signer's key or certificate."""
        self._require("sign")
        check_leader(actor)
        if version != self.draft.version:
            raise invalid(
                f"Phiên bản {version} không phải phiên bản đang chờ ký ({self.draft.version}).",
                f"Version {version} is not the version awaiting signature ({self.draft.version}).",
                code="stale_version", version=self.draft.version,
            )
        if not signature_valid:
            raise invalid(
                "Chữ ký số không hợp lệ với nội dung văn bản hoặc không thuộc về người ký.",
                "The signature does not match the document's content or is not the signer's.",
                code="bad_signature",
            )
        return self._record(ev.DocumentSigned(
            document_id=self.document_id, version=version, signer_id=actor.id, algorithm=algorithm,
            key_id=key_id, signature=signature, signed_content=signed_content,
            content_sha256=sha256_hex(canonical_bytes(signed_content)),
            file_sha256=self.draft.file_sha256, certificate_pem=certificate_pem,
        ))

    def check_issue(self, actor: Actor) -> None:
        """May `actor` issue this document now? (Asked before a number is taken.)"""
        self._require("issue")
        check_may_issue(actor)

    def issue(
        self, actor: Actor, *, number: int, year: int, department_symbol: str, issued_on: date
    ) -> list[Event]:
        self.check_issue(actor)
        d = self.draft
        return self._record(ev.DocumentIssued(
            document_id=self.document_id, version=d.version, year=year, number=number,
            symbol=official_symbol(number, d.doc_type, department_symbol, d.division_id),
            doc_type=d.doc_type, summary=d.summary, recipients=d.recipients,
            signer_id=self.signed.signer_id, issued_on=issued_on, file_sha256=d.file_sha256,
        ))


def signing_content(tenant: str, doc: Document, signer_id: str) -> dict:
    """What a leader's signature covers: the file's SHA-256 and the draft's metadata, as submitted.
    The number is not in it: the Office numbers a document after it is signed."""
    if doc.draft is None:
        raise invalid("Văn bản này không có dự thảo.", "This document has no draft.",
                      code="invalid_transition")
    d = doc.draft
    return {
        "tenant": tenant,
        "document": "outgoing-document",
        "document_id": str(d.document_id),
        "version": d.version,
        "doc_type": d.doc_type,
        "summary": d.summary,
        "recipients": list(d.recipients),
        "urgency": d.urgency,
        "author_id": d.author_id,
        "division_id": d.division_id,
        "file_name": d.file_name,
        "file_size": d.file_size,
        "file_sha256": d.file_sha256,
        "signer_id": signer_id,
    }
