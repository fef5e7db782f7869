"""The authorisation matrix, exhaustively: every command of every service x every role.

All five services run in-process with the demo department. One person per role (division
`ttra` for the division-level roles) sends each command with a minimal valid payload aimed at
real objects (a pending leave application and a draft of a `ttra` staff member, an incoming
document, a task, a meeting, a compiled roster). A pair outside the policy must be answered
`forbidden` and logged; a pair inside it must not be forbidden (it may fail otherwise, e.g.
invalid_state once an earlier role already acted).
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from services.documents.app import definition as documents_definition
from services.leave.app import definition as leave_definition
from services.notify.app import definition as notify_definition
from services.reporting.app import definition as reporting_definition
from services.roster.app import definition as roster_definition
from shared.localtime import local_today
from tests.conftest import eventually

pytestmark = pytest.mark.integration

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())

# One person per role; the division-level ones from division `ttra`.
PEOPLE = {
    "director": "nv-001",
    "deputy_director": "nv-002",
    "chief_of_office": "nv-004",
    "division_head": "nv-011",
    "deputy_division_head": "nv-012",
    "format_checker": "nv-006",
    "secret_document_handler": "nv-007",
    "staff": "nv-013",
}
ROLES = tuple(PEOPLE)
AUTHOR = "nv-014"  # a `ttra` staff member: applicant of the leave, author of the draft
DIVISION = "ttra"

ALL = frozenset(ROLES)
LEAVE_DAYS = (d for d in (local_today() + timedelta(days=60 + i) for i in range(400)) if d.weekday() < 5)
SIGNATURE = base64.b64encode(bytes(64)).decode()  # well formed, never valid
NOBODY: frozenset[str] = frozenset()  # the IT team's (admin scope) only
LEADERS = frozenset({"director", "deputy_director"})
OFFICE = frozenset({"chief_of_office", "format_checker", "secret_document_handler"})  # division vp


# These check the document's state before the actor, and the state they act on (a secret
# document taken to a leader; a signed draft) is not set up here: only "the allowed roles are
# not refused" is asserted for them.
STATE_FIRST = frozenset({"RouteSecretDocument", "IssueDocument"})


def only(*roles: str) -> frozenset[str]:
    return frozenset(roles)


# command -> the roles allowed to send it (with the payloads below). The organisation's rules:
# only a division's head decides on its staff's leave, only the Director approves (or returns)
# the department roster (a deputy only by delegation, none given here), only a department
# leader signs.
POLICY: dict[str, dict[str, frozenset[str]]] = {
    "roster": {
        "ImportDepartment": only("chief_of_office"),
        "AddPerson": only("chief_of_office"),
        "ChangeRoles": only("chief_of_office"),
        "MovePerson": only("chief_of_office"),
        "RemovePerson": only("chief_of_office"),
        "RegisterSigningKey": ALL,  # one's own key
        "DesignateActingHead": only("director", "division_head"),  # for ttra
        "ActivatePlan": only("director"),
        "AmendPlan": only("director"),
        "EndPlan": only("director"),
        "AddHoliday": only("director", "chief_of_office"),
        "RemoveHoliday": only("director", "chief_of_office"),
        "CheckIn": ALL,
        "DeclareHealth": ALL,
        "DetectMissingCheckIns": NOBODY,
        "SubmitRoster": only("division_head", "deputy_division_head"),  # ttra's lists
        "CompileRoster": only("chief_of_office"),
        "ApproveRoster": only("director"),
        "ReturnRoster": only("director"),
        "DelegateRosterApproval": only("director"),
    },
    "leave": {
        "RequestLeave": ALL,
        "ApproveLeave": only("division_head"),  # the applicant's own head
        "RejectLeave": only("division_head"),
        "CancelLeave": NOBODY,  # only the applicant
        "SetLeaveEntitlement": only("chief_of_office"),
    },
    "documents": {
        "RegisterIncomingDocument": LEADERS | OFFICE,
        "AttachIncomingFile": LEADERS | OFFICE,
        "RouteSecretDocument": LEADERS | OFFICE,
        "AssignDocument": LEADERS | OFFICE,
        # assigned to a ttra staff member: the assignee, the division's head, leaders
        "MarkDocumentHandled": LEADERS | only("division_head"),
        "SubmitDraft": ALL,
        "ApproveDraft": only("division_head"),  # the author's head
        "ReturnDraft": only("division_head"),
        "CheckFormat": only("format_checker"),
        "SignDocument": LEADERS,
        "IssueDocument": LEADERS | OFFICE,
        "AssignTask": LEADERS | only("division_head", "deputy_division_head"),  # to a ttra member
        # the assignee (a ttra staff member), the division's head, department leaders
        "ReportTaskProgress": NOBODY,  # only the assignee (a ttra staff member)
        "CompleteTask": NOBODY,
        "DetectOverdue": LEADERS | only("chief_of_office"),
        "ScheduleMeeting": ALL - only("staff"),  # leaders, the Office, a division's leadership
        "ConfirmMeetingAttendance": only("director"),  # invitees and the chair (the Director)
        "CancelMeeting": LEADERS | only("chief_of_office"),  # leaders, the organiser (chief)
    },
    "notify": {
        "MarkRead": ALL,
        "SetNotificationPreferences": ALL,  # one's own
    },
    "reporting": {},
}


def ids(world: dict, service: str, command: str, person: str) -> dict:
    """A minimal valid payload of `command` as sent by `person`."""
    today = local_today()
    soon = today + timedelta(days=30)
    while soon.weekday() >= 5:
        soon += timedelta(days=1)
    new = str(uuid.uuid4())
    starts = datetime.now().astimezone() + timedelta(days=3)
    payloads = {
        "ImportDepartment": DEMO,
        "AddPerson": {"person_id": f"sec-{new[:8]}", "full_name": "Người Thử", "email": "thu@example.vn",
                      "division_id": DIVISION, "roles": ["staff"]},
        "ChangeRoles": {"person_id": "nv-015", "roles": ["staff"]},
        "MovePerson": {"person_id": "nv-015", "division_id": DIVISION},
        "RemovePerson": {"person_id": f"sec-missing-{new[:8]}"},
        "RegisterSigningKey": {"person_id": person, "key_id": f"k-{new}", "public_key": world["public_key"]},
        "DesignateActingHead": {"division_id": DIVISION, "person_id": "nv-012",
                                "valid_from": str(soon), "valid_until": str(soon)},
        "ActivatePlan": {"plan_id": f"p-{new[:8]}", "title": "Kế hoạch thử",
                         "effective_from": str(today + timedelta(days=400))},
        "AmendPlan": {"plan_id": world["plan_id"], "title": "Kế hoạch thử (sửa)"},
        "EndPlan": {"plan_id": world["plan_id"], "effective_until": str(today + timedelta(days=300))},
        "AddHoliday": {"day": str(today + timedelta(days=200)), "name": "Ngày thử"},
        "RemoveHoliday": {"day": str(today + timedelta(days=201))},
        "CheckIn": {"place": "Nhà riêng"},
        "DeclareHealth": {"status": "well"},
        "DetectMissingCheckIns": {},
        "SubmitRoster": {"division_id": DIVISION, "days": [{"day": str(soon), "entries": [
            {"person_id": p, "location": "on_site"} for p in ("nv-011", "nv-012", "nv-013", "nv-014", "nv-015")
        ]}]},
        "CompileRoster": {"start": str(soon), "end": str(soon)},
        "ApproveRoster": {"roster_id": world["roster_id"]},
        "ReturnRoster": {"roster_id": world["roster_id"], "reason": "Xem lại"},
        "DelegateRosterApproval": {"person_id": "nv-002", "valid_from": str(soon), "valid_until": str(soon)},
        "RequestLeave": {"start_date": str(soon), "end_date": str(soon), "reason": "Việc riêng"},
        "ApproveLeave": {"application_id": world["application_id"], "key_id": "k-none", "signature": SIGNATURE},
        "RejectLeave": {"application_id": world["application_id"], "reason": "Thiếu người"},
        "CancelLeave": {"application_id": world["application_id"]},
        "SetLeaveEntitlement": {"person_id": "nv-015", "days_per_year": 12},
        "RegisterIncomingDocument": {"original_number": f"{new[:4]}/UBND", "issuing_body": "UBND tỉnh", "summary": "V/v thử",
                                     "document_date": str(today)},
        "AttachIncomingFile": {"document_id": world["incoming_id"], "file_name": "a.pdf",
                               "file_base64": "JVBERi0xLjQK"},
        "RouteSecretDocument": {"document_id": world["incoming_id"], "leader_id": "nv-001"},
        "AssignDocument": {"document_id": world["incoming_id"], "division_id": DIVISION},
        "MarkDocumentHandled": {"document_id": world["incoming_id"]},
        "SubmitDraft": {"doc_type": "CV", "summary": "Công văn thử", "recipients": ["UBND tỉnh"],
                        "file_name": "d.pdf", "file_base64": "JVBERi0xLjQK"},
        "ApproveDraft": {"document_id": world["draft_id"]},
        "ReturnDraft": {"document_id": world["draft_id"], "comments": "Sửa lại"},
        "CheckFormat": {"document_id": world["draft_id"]},
        "SignDocument": {"document_id": world["draft_id"], "version": 1, "key_id": "k-none", "signature": SIGNATURE},
        "IssueDocument": {"document_id": world["draft_id"]},
        "AssignTask": {"title": "Việc thử", "assignee_id": AUTHOR, "due_date": str(soon)},
        "ReportTaskProgress": {"task_id": world["task_id"], "percent": 10},
        "CompleteTask": {"task_id": world["task_id"]},
        "DetectOverdue": {},
        "ScheduleMeeting": {"title": "Họp thử", "starts_at": starts.isoformat(),
                            "ends_at": (starts + timedelta(hours=1)).isoformat(),
                            "link": "https://meet.example.vn/x", "chair_id": person, "invitees": [AUTHOR]},
        "ConfirmMeetingAttendance": {"meeting_id": world["meeting_id"]},
        "CancelMeeting": {"meeting_id": world["meeting_id"], "reason": "Hoãn"},
        "MarkRead": {"all": True},
        "SetNotificationPreferences": {"category": "leave", "channels": ["web"]},
    }
    return payloads[command]


def routes() -> dict[str, list[str]]:
    from services.notify.app import definition as nd
    from services.reporting.app import definition as rd

    definitions = {"roster": roster_definition(), "leave": leave_definition(),
                   "documents": documents_definition(), "notify": nd(), "reporting": rd(publish_daily=False)}
    return {s: sorted(n for n, r in d.router.routes.items() if r.mutates) for s, d in definitions.items()}


def test_the_policy_names_every_command():
    assert {s: sorted(p) for s, p in POLICY.items()} == routes()


async def _world(system) -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.signatures import public_key_b64

    def ok(reply):
        assert reply.ok, reply
        return reply.result

    ok(await system.send("roster", "ImportDepartment", DEMO))
    today = local_today()
    ok(await system.send("roster", "ActivatePlan", {
        "plan_id": "sec-plan", "title": "Kế hoạch", "effective_from": str(today - timedelta(days=1))},
        as_person=PEOPLE["director"]))

    async def directory_everywhere():
        for service, query, payload in (("leave", "GetLeaveBalance", {"person_id": AUTHOR}),
                                        ("documents", "ListDocuments", {})):
            r = await system.send(service, query, payload, as_person=AUTHOR)
            if not r.ok:
                return None
        # The plan comes last in the directory stream: leave must have it before leave requests.
        async with system.runtimes["leave"].pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM dir_plans WHERE plan_id = 'sec-plan'") == 1

    await eventually(directory_everywhere, timeout=30)
    soon = today + timedelta(days=40)
    while soon.weekday() >= 5:
        soon += timedelta(days=1)
    world = {"plan_id": "sec-plan",
             "public_key": public_key_b64(Ed25519PrivateKey.generate())}
    ok(await system.send("leave", "SetLeaveEntitlement", {"person_id": AUTHOR, "days_per_year": 60},
                         as_person=PEOPLE["chief_of_office"]))
    world["application_id"] = ok(await system.send("leave", "RequestLeave", {
        "start_date": str(soon), "end_date": str(soon), "reason": "Việc riêng"}, as_person=AUTHOR))["application_id"]
    world["draft_id"] = ok(await system.send("documents", "SubmitDraft", {
        "doc_type": "CV", "summary": "Dự thảo", "recipients": ["UBND tỉnh"], "file_name": "d.pdf",
        "file_base64": "JVBERi0xLjQK"}, as_person=AUTHOR))["document_id"]
    world["incoming_id"] = ok(await system.send("documents", "RegisterIncomingDocument", {
        "original_number": "1/UBND", "issuing_body": "UBND tỉnh", "document_date": str(today), "summary": "V/v thử"},
        as_person=PEOPLE["chief_of_office"]))["document_id"]
    world["task_id"] = ok(await system.send("documents", "AssignTask", {
        "title": "Việc", "assignee_id": AUTHOR, "due_date": str(soon)},
        as_person=PEOPLE["division_head"]))["task_id"]
    starts = datetime.now().astimezone() + timedelta(days=2)
    world["meeting_id"] = ok(await system.send("documents", "ScheduleMeeting", {
        "title": "Họp", "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=1)).isoformat(),
        "link": "https://meet.example.vn/y", "chair_id": PEOPLE["director"], "invitees": [AUTHOR]},
        as_person=PEOPLE["chief_of_office"]))["meeting_id"]
    world["roster_id"] = str(uuid.uuid4())
    world["ok"] = ok
    return world


async def fresh(system, world: dict, command: str) -> dict:
    """A new object in the state `command` acts on, so that no earlier pair changed it."""
    ok, today = world["ok"], local_today()
    soon = today + timedelta(days=50)
    while soon.weekday() >= 5:
        soon += timedelta(days=1)
    head, chief = PEOPLE["division_head"], PEOPLE["chief_of_office"]
    if command in ("ApproveLeave", "RejectLeave", "CancelLeave"):
        soon = next(LEAVE_DAYS)
        world = {**world, "application_id": ok(await system.send("leave", "RequestLeave", {
            "start_date": str(soon), "end_date": str(soon), "reason": "Việc riêng"},
            as_person=AUTHOR))["application_id"]}
    elif command in ("ApproveDraft", "ReturnDraft", "CheckFormat", "SignDocument"):
        draft = ok(await system.send("documents", "SubmitDraft", {
            "doc_type": "CV", "summary": "Dự thảo", "recipients": ["UBND tỉnh"], "file_name": "d.pdf",
            "file_base64": "JVBERi0xLjQK"}, as_person=AUTHOR))["document_id"]
        if command in ("CheckFormat", "SignDocument"):
            ok(await system.send("documents", "ApproveDraft", {"document_id": draft}, as_person=head))
        if command == "SignDocument":
            ok(await system.send("documents", "CheckFormat", {"document_id": draft},
                                 as_person=PEOPLE["format_checker"]))
        world = {**world, "draft_id": draft}
    elif command in ("RouteSecretDocument", "AssignDocument", "MarkDocumentHandled", "AttachIncomingFile"):
        incoming = ok(await system.send("documents", "RegisterIncomingDocument", {
            "original_number": f"{uuid.uuid4().hex[:4]}/UBND", "issuing_body": "UBND tỉnh",
            "document_date": str(today), "summary": "V/v thử"}, as_person=chief))["document_id"]
        if command == "MarkDocumentHandled":
            ok(await system.send("documents", "AssignDocument", {
                "document_id": incoming, "division_id": DIVISION, "person_id": AUTHOR}, as_person=chief))
        world = {**world, "incoming_id": incoming}
    elif command in ("ReportTaskProgress", "CompleteTask"):
        world = {**world, "task_id": ok(await system.send("documents", "AssignTask", {
            "title": "Việc", "assignee_id": AUTHOR, "due_date": str(soon)}, as_person=head))["task_id"]}
    elif command in ("ConfirmMeetingAttendance", "CancelMeeting"):
        starts = datetime.now().astimezone() + timedelta(days=2)
        world = {**world, "meeting_id": ok(await system.send("documents", "ScheduleMeeting", {
            "title": "Họp", "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=1)).isoformat(), "link": "https://meet.example.vn/y",
            "chair_id": PEOPLE["director"], "invitees": [AUTHOR]}, as_person=chief))["meeting_id"]}
    return world


async def test_every_role_against_every_command(system, capfd):
    await system.start(roster_definition(check_in_tick_seconds=3600))
    await system.start(leave_definition())
    await system.start(documents_definition())
    await system.start(notify_definition())
    await system.start(reporting_definition(publish_daily=False))
    world = await _world(system)
    # The services' log lines, as written to file descriptor 2 (structlog otherwise writes to
    # the sys.stderr of when it was configured).
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=sys.__stderr__))
    try:
        capfd.readouterr()
        actual, command_ids = await _run_matrix(system, world)
        sys.__stderr__.flush()
        logs = capfd.readouterr().err
    finally:
        structlog.configure(**saved)
    _check(actual, command_ids, logs)


async def _run_matrix(system, world):

    actual: dict[tuple[str, str], str] = {}
    command_ids: dict[tuple[str, str], str] = {}
    for service, commands in POLICY.items():
        for command in commands:
            for role in ROLES:
                command_id = uuid.uuid4()
                pair_world = await fresh(system, world, command)
                reply = await system.send(service, command, ids(pair_world, service, command, PEOPLE[role]),
                                          as_person=PEOPLE[role], command_id=command_id)
                actual[(command, role)] = "ok" if reply.ok else reply.error.code
                command_ids[(command, role)] = str(command_id)
    return actual, command_ids


def _check(actual, command_ids, logs):

    wrong = []
    for service, commands in POLICY.items():
        for command, allowed in commands.items():
            for role in ROLES:
                code = actual[(command, role)]
                if role in allowed and code == "forbidden":
                    wrong.append(f"{command} x {role}: forbidden, should be allowed")
                elif role not in allowed and code != "forbidden" and command not in STATE_FIRST:
                    wrong.append(f"{command} x {role}: {code}, should be forbidden")
    table = "\n".join(f"{c:28} " + " ".join(f"{actual[(c, r)][:10]:10}" for r in ROLES)
                      for cmds in POLICY.values() for c in cmds)
    assert not wrong, "\n".join(wrong) + "\n\n" + " " * 29 + " ".join(r[:10].ljust(10) for r in ROLES) + "\n" + table

    refused = [k for k, code in actual.items() if code == "forbidden"]
    assert len(refused) >= 200, len(refused)
    for key in refused:
        line = next((json.loads(l) for l in logs.splitlines()
                     if command_ids[key] in l and l.startswith("{")), None)
        assert line is not None, f"refusal of {key} not logged"
        assert line["event"] == "command refused" and line["code"] == "forbidden"
