"""The demo department (2020 plan's Sở Thông tin và Truyền thông) and a short demo day, via AMQP commands."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import date, timedelta
from pathlib import Path

from shared import signatures
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.commands import Reply
from shared.localtime import local_now, local_today, vn_date

DEPARTMENT_FILE = Path(__file__).parents[1] / "services/roster/demo/department.json"
SIGNING_ROLES = {"director", "deputy_director", "chief_of_office", "division_head", "deputy_division_head"}


class DemoError(RuntimeError):
    pass


def _check(reply: Reply, what: str) -> Reply:
    if not reply.ok:
        raise DemoError(f"{what}: {reply.error.code}: {reply.error.message}")
    return reply


async def _retry_until_known(
    send, what: str, attempts: int = 100, waiting_for: tuple[str, ...] = ("not_found",)
) -> Reply:
    """Leave learns the directory and the plan from roster's events a moment later: retry
    while the answer says it does not know them yet."""
    for _ in range(attempts):
        reply = await send()
        if reply.ok or reply.error.code not in waiting_for:
            return _check(reply, what)
        await asyncio.sleep(0.1)
    return _check(reply, what)


def next_working_day(after: date) -> date:
    day = after + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def load_department(client: CommandClient, idp: DevIdentityProvider) -> dict:
    spec = json.loads(DEPARTMENT_FILE.read_text())
    tenant = spec["tenant"]
    admin = idp.mint("it-admin", tenant, scopes=(ADMIN_SCOPE,))
    imported = _check(
        await client.send("roster", "ImportDepartment", spec, tenant=tenant, token=admin),
        "import the department",
    )
    people = {p["id"]: p for p in spec["people"]}
    registered = 0
    for person_id, person in people.items():
        if not SIGNING_ROLES & set(person["roles"]):
            continue
        key = signatures.development_signing_key(tenant, person_id)
        reply = await client.send("roster", "RegisterSigningKey", {
            "person_id": person_id, "key_id": f"{person_id}-dev",
            "public_key": signatures.public_key_b64(key),
        }, tenant=tenant, token=admin)
        if reply.ok:
            registered += 1
        elif reply.error.code != "already_exists":
            _check(reply, f"register {person_id}'s signing key")
    director = next(p for p in people.values() if "director" in p["roles"])
    today = local_today()
    plan = await client.send("roster", "ActivatePlan", {
        "plan_id": "kh-truc-tuyen",
        "title": "Kế hoạch triển khai làm việc trực tuyến trong thời gian phòng, chống dịch COVID-19",
        "effective_from": today.replace(day=1).isoformat(),
        "onsite_rules": [
            {"rule": "min_leaders_on_site", "count": 1},
            {"rule": "min_staff_per_division_on_site", "count": 1},
        ],
    }, tenant=tenant, token=idp.mint(director["id"], tenant))
    if not plan.ok and plan.error.code != "already_exists":
        _check(plan, "activate the plan")
    for person_id, person in people.items():
        days = person.get("leave_entitlement_days")
        if days is not None and days != 12:
            await _retry_until_known(
                lambda pid=person_id, d=days: client.send(
                    "leave", "SetLeaveEntitlement", {"person_id": pid, "days_per_year": d},
                    tenant=tenant, token=admin,
                ),
                f"set {person_id}'s entitlement",
            )
    return {
        "tenant": tenant, "name": spec["name"], "divisions": len(spec["divisions"]),
        "people": len(people), "directory_events": len(imported.result["events"]),
        "signing_keys": registered,
    }


def division_list(spec: dict, division_id: str) -> list[dict]:
    """The division's first member on site (the Director for the leadership), the rest at home."""
    members = sorted(p["id"] for p in spec["people"] if p["division_id"] == division_id)
    people = {p["id"]: p for p in spec["people"]}
    return [
        {"person_id": pid, "location": "on_site"} if i == 0 else
        {"person_id": pid, "location": "home", "work_place": f"Nhà riêng của {people[pid]['full_name']}, TP Thanh Hóa"}
        for i, pid in enumerate(members)
    ]


def submitter(spec: dict, division: dict) -> str:
    role = "director" if division["kind"] == "leadership" else "division_head"
    return next(p["id"] for p in spec["people"] if p["division_id"] == division["id"] and role in p["roles"])


async def play_roster(client: CommandClient, idp: DevIdentityProvider, spec: dict) -> list[str]:
    """Every division registers today's and the next working day's lists, the Chief of Office
    compiles them and the Director approves; home workers check in and declare their health."""
    tenant = spec["tenant"]

    def send(kind: str, payload: dict, person_id: str):
        return client.send("roster", kind, payload, tenant=tenant, token=idp.mint(person_id, tenant))

    director = next(p["id"] for p in spec["people"] if "director" in p["roles"])
    chief = next(p["id"] for p in spec["people"] if "chief_of_office" in p["roles"])
    today = local_today()
    days = ([today] if today.weekday() < 5 else []) + [next_working_day(today)]
    status = _check(await send("GetRosterStatus", {"start": str(days[0]), "end": str(days[-1])}, chief),
                    "read the roster status")
    open_days = [d for d in days if next((x["status"] for x in status.result["days"] if x["day"] == str(d)),
                                         "not_compiled") != "approved"]
    lines = []
    if open_days:
        for division in spec["divisions"]:
            entries = division_list(spec, division["id"])
            _check(await send("SubmitRoster", {"division_id": division["id"], "days": [
                {"day": str(d), "entries": entries} for d in open_days]}, submitter(spec, division)),
                f"submit {division['id']}'s list")
        compiled = _check(await send("CompileRoster", {"start": str(open_days[0]), "end": str(open_days[-1])},
                                     chief), "compile the roster").result
        _check(await send("ApproveRoster", {"roster_id": compiled["roster_id"]}, director), "approve the roster")
        lines.append(
            f"{len(spec['divisions'])} phòng/đơn vị đăng ký danh sách ngày "
            f"{', '.join(vn_date(d) for d in open_days)}; Chánh Văn phòng tổng hợp "
            f"({len(compiled['violations'])} vi phạm), Giám đốc đã phê duyệt."
        )
    day = _check(await send("GetDayRoster", {"day": str(days[0])}, chief), "read the day").result
    lines.append(f"Ngày {vn_date(days[0])}: {len(day['on_site'])} người trực tại cơ quan, "
                 f"{len(day['at_home'])} người làm việc tại nhà.")
    home = [p for p in day["at_home"] if p["division_id"] == "cntt"][:3]
    for person in home:
        checked = await send("CheckIn", {}, person["person_id"])
        if not checked.ok:  # outside working hours or not a working day: say so once
            lines.append(f"Điểm danh lúc {local_now():%H:%M}: {checked.error.message}")
            break
        lines.append(f"{person['full_name']} điểm danh buổi {'sáng' if checked.result['session'] == 0 else 'chiều'} "
                     f"tại {checked.result['place']}.")
    for person in home[:2]:
        declared = _check(await send("DeclareHealth", {"status": "well"}, person["person_id"]), "declare health")
        lines.append(f"{person['full_name']} khai báo y tế: {declared.result['status_vi']}.")
    return lines


async def play_documents(client: CommandClient, idp: DevIdentityProvider, spec: dict) -> list[str]:
    """An incoming document registered and assigned; a draft from submission to its issued number."""
    tenant, people = spec["tenant"], spec["people"]

    def first(role: str, division: str | None = None) -> dict:
        return next(p for p in people if role in p["roles"] and division in (None, p["division_id"]))

    clerk = next(p for p in people if p["division_id"] == "vp" and p["roles"] == ["staff"])
    author = next(p for p in people if p["division_id"] == "cntt" and p["roles"] == ["staff"])
    head, checker, director = first("division_head", "cntt"), first("format_checker"), first("director")

    def send(command: str, payload: dict, person: dict):
        return client.send("documents", command, payload, tenant=tenant, token=idp.mint(person["id"], tenant))

    due = next_working_day(next_working_day(local_today()))
    received = await _retry_until_known(lambda: send("RegisterIncomingDocument", {
        "original_number": "2345/UBND-VX", "issuing_body": "UBND tỉnh Thanh Hóa",
        "summary": "V/v tiếp tục thực hiện các biện pháp phòng, chống dịch COVID-19",
        "document_date": local_today().isoformat(), "urgency": "urgent", "division_id": "cntt",
        "due_date": due.isoformat(),
    }, clerk), "register an incoming document")
    lines = [f"Văn phòng vào sổ văn bản đến số {received.result['number']}/{received.result['year']} "
             f"(2345/UBND-VX của UBND tỉnh), giao Phòng Công nghệ thông tin xử lý trước {vn_date(due)}."]
    draft = f"KẾ HOẠCH\nDuy trì làm việc trực tuyến, bản dự thảo lúc {local_now():%H:%M %d/%m/%Y}".encode()
    submitted = _check(await send("SubmitDraft", {
        "doc_type": "KH", "summary": "Kế hoạch duy trì làm việc trực tuyến trong tháng",
        "recipients": ["Các phòng, đơn vị thuộc Sở", "Lưu: VT, CNTT"],
        "file_name": "ke-hoach-truc-tuyen.docx", "file_base64": base64.b64encode(draft).decode(),
    }, author), "submit a draft")
    document = {"document_id": submitted.result["document_id"]}
    _check(await send("ApproveDraft", document, head), "approve the draft's content")
    _check(await send("CheckFormat", document, checker), "check the draft's format")
    content = _check(await send("GetSigningContent", document, director), "read what to sign")
    signer = signatures.Ed25519Signer(
        signatures.development_signing_key(tenant, director["id"]), f"{director['id']}-dev")
    await _retry_until_known(lambda: send("SignDocument", {
        **document, "version": 1, "algorithm": signer.algorithm, "key_id": signer.key_id,
        "signature": signer.sign(content.result["content"]),
    }, director), "sign the document", waiting_for=("bad_signature",))  # the key may still be on its way
    issued = await _retry_until_known(lambda: send("IssueDocument", document, clerk), "issue the document")
    verified = _check(await send("VerifyDocumentSignature", document, author), "verify the signature")
    lines.append(
        f"{author['full_name']} trình dự thảo kế hoạch; {head['full_name']} duyệt nội dung; "
        f"{checker['full_name']} thẩm định thể thức; {director['full_name']} ký số; Văn phòng phát hành "
        f"văn bản số {issued.result['symbol']} (chữ ký số {'hợp lệ' if verified.result['valid'] else 'KHÔNG hợp lệ'})."
    )
    return lines


async def play_demo_day(client: CommandClient, idp: DevIdentityProvider) -> list[str]:
    """The roster of the day; then a staff member asks for a day off and the head signs the approval."""
    spec = json.loads(DEPARTMENT_FILE.read_text())
    tenant = spec["tenant"]
    division = "cntt"
    staff = next(p for p in spec["people"] if p["division_id"] == division and p["roles"] == ["staff"])
    head = next(p for p in spec["people"] if p["division_id"] == division and "division_head" in p["roles"])
    day = next_working_day(local_today())
    lines = await play_roster(client, idp, spec)
    lines += await play_documents(client, idp, spec)
    staff_token = idp.mint(staff["id"], tenant)
    # An earlier `make run` may have taken the day already: move on to the next free one.
    for _ in range(100):
        requested = await client.send("leave", "RequestLeave", {
            "start_date": day.isoformat(), "end_date": day.isoformat(),
            "reason": "Đưa con đi khám bệnh",
        }, tenant=tenant, token=staff_token)
        if requested.ok:
            break
        if requested.error.code == "overlap":
            day = next_working_day(day)
        elif requested.error.code in ("not_found", "outside_plan"):
            await asyncio.sleep(0.2)  # leave has not yet seen the directory or the plan
        elif requested.error.code == "entitlement_exceeded":
            return lines + [f"{staff['full_name']}: {requested.error.message} (demo đã chạy nhiều lần)"]
        else:
            _check(requested, "request leave")
    _check(requested, "request leave")
    app_id = requested.result["application_id"]
    lines.append(f"{staff['full_name']} xin nghỉ phép ngày {vn_date(day)} (đơn {app_id[:8]}).")
    head_token = idp.mint(head["id"], tenant)
    content = _check(await client.send("leave", "GetApprovalContent", {"application_id": app_id},
                                       tenant=tenant, token=head_token), "read the application")
    signature = signatures.sign(
        signatures.development_signing_key(tenant, head["id"]), content.result["content"]
    )
    await _retry_until_known(
        lambda: client.send("leave", "ApproveLeave", {
            "application_id": app_id, "key_id": f"{head['id']}-dev", "signature": signature,
        }, tenant=tenant, token=head_token),
        "approve leave",
    )
    verified = _check(await client.send("leave", "VerifyLeaveApproval", {"application_id": app_id},
                                        tenant=tenant, token=head_token), "verify the approval")
    state = "hợp lệ" if verified.result["valid"] else "KHÔNG hợp lệ"
    lines.append(f"{head['full_name']} đã ký duyệt; chữ ký số {state}.")
    balance = _check(await client.send("leave", "GetLeaveBalance", {"year": day.year},
                                       tenant=tenant, token=idp.mint(staff["id"], tenant)), "balance")
    b = balance.result
    lines.append(
        f"Phép năm {b['year']} của {staff['full_name']}: được {b['entitlement']:g} ngày, "
        f"đã dùng {b['used']:g}, chờ duyệt {b['pending']:g}, còn lại {b['left']:g}."
    )
    return lines


async def report_of_the_day(client: CommandClient, idp: DevIdentityProvider) -> tuple[list[str], dict]:
    """The demo day's report (today's, or the next working day's at a weekend), asked of
    reporting as the Chief of Office once it has taken the demo day in (its figures stop
    moving): the summary lines and the files it wrote."""
    spec = json.loads(DEPARTMENT_FILE.read_text())
    tenant = spec["tenant"]
    chief = next(p["id"] for p in spec["people"] if "chief_of_office" in p["roles"])
    token = idp.mint(chief, tenant)
    today = local_today()
    day = today if today.weekday() < 5 else next_working_day(today)  # the demo's first roster day
    previous = None
    for _ in range(60):
        reply = await client.send("reporting", "GenerateReport", {"day": day.isoformat()},
                                  tenant=tenant, token=token, timeout=60)
        if reply.ok and previous is not None and reply.result["report"] == previous.result["report"]:
            return reply.result["summary"], reply.result["files"]
        if not reply.ok and reply.error.code != "forbidden":  # forbidden: the directory is on its way
            _check(reply, "generate the report of the day")
        previous = reply if reply.ok else None
        await asyncio.sleep(0.5)
    _check(reply, "generate the report of the day")
    return reply.result["summary"], reply.result["files"]
