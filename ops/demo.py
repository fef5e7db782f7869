"""The demo department (2020 plan's Sở Thông tin và Truyền thông) and a short demo day, via AMQP commands."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

from shared import signatures
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.commands import Reply
from shared.localtime import local_today, vn_date

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


async def play_demo_day(client: CommandClient, idp: DevIdentityProvider) -> list[str]:
    """A staff member asks for a day off; the division head signs the approval."""
    spec = json.loads(DEPARTMENT_FILE.read_text())
    tenant = spec["tenant"]
    division = "cntt"
    staff = next(p for p in spec["people"] if p["division_id"] == division and p["roles"] == ["staff"])
    head = next(p for p in spec["people"] if p["division_id"] == division and "division_head" in p["roles"])
    day = next_working_day(local_today())
    lines = []
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
            return [f"{staff['full_name']}: {requested.error.message} (demo đã chạy nhiều lần)"]
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
