"""A province's working day, through the public AMQP commands.

Setup (not counted in the day's rate): every department imports its directory, registers its
leaders' and heads' signing keys and activates its remote-work plan; the benchmark waits until
every consuming service holds every department's directory.

The day (counted): each division head registers the day's list and the Chief of Office
compiles it, the Director approves; the 07:00 burst (every home worker checks in, everyone
declares their health); then office hours: leave requests with the heads' signed approvals
(some refused), an incoming document registered and assigned, a draft through approval,
format check, the Director's signature and issue with its number, tasks assigned and reported
on, and the queries people run (lists, presence, notifications, balances, documents). Only
the services that are built are driven (documents flows when documents exists, and so on).
"""

from __future__ import annotations

import asyncio
import base64
import random
from datetime import date, timedelta

import asyncpg

from bench.common import Progress, settle_heap
from bench.driver import Driver
from bench.province import members, with_role
from shared import signatures, topology

SIGNING_ROLES = {"director", "deputy_director", "chief_of_office", "division_head", "deputy_division_head"}


class DayError(RuntimeError):
    pass


def ok(reply, what: str):
    if not reply.ok:
        raise DayError(f"{what}: {reply.error.code}: {reply.error.message_en}")
    return reply.result


def next_working_day(day: date, n: int = 1) -> date:
    while n:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def staff_of(spec: dict) -> list[dict]:
    """Plain staff outside the leadership: the people who file leave and get tasks."""
    return [p for p in spec["people"] if p["roles"] == ["staff"] and p["division_id"] != "bgd"]


def head_of(spec: dict, division_id: str) -> dict:
    return next(p for p in spec["people"] if p["division_id"] == division_id and "division_head" in p["roles"])


def director_of(spec: dict) -> dict:
    return with_role(spec, "director")[0]


def chief_of(spec: dict) -> dict:
    return with_role(spec, "chief_of_office")[0]


def day_list(spec: dict, division_id: str) -> list[dict]:
    """The division's first member on site, the rest at home (each at their registered place)."""
    return [
        {"person_id": p["id"], "location": "on_site"} if i == 0 else
        {"person_id": p["id"], "location": "home", "work_place": f"Nhà riêng của {p['full_name']}"}
        for i, p in enumerate(members(spec, division_id))
    ]


def home_workers(spec: dict) -> list[dict]:
    return [p for d in spec["divisions"] for p in members(spec, d["id"])[1:]]


# --- setup -----------------------------------------------------------------------------------


async def load_department(driver: Driver, spec: dict, day: date, progress: Progress) -> int:
    """Directory, signing keys and plan of one department, one command after another (they
    all append to the department's directory stream)."""
    tenant = spec["tenant"]
    ok((await driver.send("roster", "ImportDepartment", spec, tenant=tenant, admin=True, record=False))[0],
       f"{tenant}: import")
    progress.advance()
    keys = 0
    for person in spec["people"]:
        if SIGNING_ROLES & set(person["roles"]):
            key = signatures.development_signing_key(tenant, person["id"])
            ok((await driver.send("roster", "RegisterSigningKey", {
                "person_id": person["id"], "key_id": f"{person['id']}-dev",
                "public_key": signatures.public_key_b64(key),
            }, tenant=tenant, admin=True, record=False))[0], f"{tenant}: key of {person['id']}")
            keys += 1
            progress.advance()
    ok((await driver.send("roster", "ActivatePlan", {
        "plan_id": "kh-truc-tuyen",
        "title": "Kế hoạch làm việc trực tuyến (mô phỏng)",
        "effective_from": day.replace(day=1).isoformat(),
        "onsite_rules": [{"rule": "min_leaders_on_site", "count": 1},
                         {"rule": "min_staff_per_division_on_site", "count": 1}],
    }, tenant=tenant, person=director_of(spec)["id"], record=False))[0], f"{tenant}: plan")
    progress.advance()
    return keys


async def load_province(driver: Driver, specs: list[dict], day: date, databases: dict[str, str]) -> dict:
    per_department = [2 + sum(1 for p in s["people"] if SIGNING_ROLES & set(p["roles"])) for s in specs]
    progress = Progress("setup: directories, keys, plans", sum(per_department))
    keys = sum(await asyncio.gather(*(load_department(driver, s, day, progress) for s in specs)))
    progress.close()
    people = sum(len(s["people"]) for s in specs)
    consumers = [svc for svc in databases
                 if any(sub.name == "directory" for sub in topology.subscriptions_of(svc))]
    for service in consumers:  # every consumer holds every directory before the day starts
        conn = await asyncpg.connect(databases[service])
        try:
            for _ in range(1200):
                counts = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM dir_people) p, (SELECT count(*) FROM dir_plans) l, "
                    "(SELECT count(*) FROM dir_signing_keys) k")
                if (counts["p"], counts["l"], counts["k"]) == (people, len(specs), keys):
                    break
                await asyncio.sleep(0.1)
            else:
                raise DayError(f"{service} did not receive the directories: {dict(counts)}")
        finally:
            await conn.close()
    return {"departments": len(specs), "people": people, "signing_keys": keys,
            "directory_consumers": consumers}


# --- the day ---------------------------------------------------------------------------------


async def rosters(driver: Driver, spec: dict, day: date, progress: Progress) -> None:
    tenant = spec["tenant"]
    await asyncio.gather(*(
        driver.send("roster", "SubmitRoster", {
            "division_id": d["id"], "days": [{"day": day.isoformat(), "entries": day_list(spec, d["id"])}],
        }, tenant=tenant, person=(director_of(spec) if d["kind"] == "leadership" else head_of(spec, d["id"]))["id"])
        for d in spec["divisions"]
    ))
    progress.advance(len(spec["divisions"]))
    chief, director = chief_of(spec)["id"], director_of(spec)["id"]
    compiled = ok((await driver.send("roster", "CompileRoster", {"start": day.isoformat(), "end": day.isoformat()},
                                     tenant=tenant, person=chief))[0], f"{tenant}: compile")
    progress.advance()
    approval = {"roster_id": compiled["roster_id"]}
    if compiled["violations"]:
        approval["override_reason"] = "Đã bố trí trực thay (mô phỏng)"
    ok((await driver.send("roster", "ApproveRoster", approval, tenant=tenant, person=director))[0],
       f"{tenant}: approve")
    progress.advance()


async def burst(driver: Driver, specs: list[dict], rng: random.Random) -> None:
    """07:00: every home worker checks in and everyone declares their health, all at once."""
    sends = []
    for spec in specs:
        tenant = spec["tenant"]
        sends += [driver.send("roster", "CheckIn", {}, tenant=tenant, person=p["id"]) for p in home_workers(spec)]
        sends += [driver.send("roster", "DeclareHealth",
                              {"status": "well" if rng.random() > 0.03 else "symptoms"},
                              tenant=tenant, person=p["id"]) for p in spec["people"]]
    rng.shuffle(sends)
    progress = Progress("07:00 check-in burst", len(sends))
    driver.on_reply = lambda _: progress.advance()
    await asyncio.gather(*sends)
    driver.on_reply = None
    progress.close()


async def leave_flow(driver: Driver, spec: dict, person: dict, day: date, refuse: bool) -> None:
    tenant = spec["tenant"]
    requested = ok((await driver.send("leave", "RequestLeave", {
        "start_date": day.isoformat(), "end_date": day.isoformat(), "reason": "Việc gia đình (mô phỏng)",
    }, tenant=tenant, person=person["id"]))[0], f"{tenant}: request leave")
    head = head_of(spec, person["division_id"])["id"]
    application = {"application_id": requested["application_id"]}
    if refuse:
        await driver.send("leave", "RejectLeave", {**application, "reason": "Phòng thiếu người ngày này"},
                          tenant=tenant, person=head)
        return
    content = ok((await driver.send("leave", "GetApprovalContent", application, tenant=tenant, person=head))[0],
                  f"{tenant}: approval content")
    signature = signatures.sign(signatures.development_signing_key(tenant, head), content["content"])
    ok((await driver.send("leave", "ApproveLeave", {**application, "key_id": f"{head}-dev", "signature": signature},
                          tenant=tenant, person=head))[0], f"{tenant}: approve leave")
    await driver.send("leave", "GetLeaveBalance", {}, tenant=tenant, person=person["id"])


async def document_flow(driver: Driver, spec: dict, day: date, k: int) -> None:
    tenant, people = spec["tenant"], spec["people"]
    clerk = next(p for p in people if p["division_id"] == "vp" and p["roles"] == ["staff"])["id"]
    author = next(p for p in people if p["division_id"] == "cntt" and p["roles"] == ["staff"])["id"]
    head, director = head_of(spec, "cntt")["id"], director_of(spec)["id"]
    checker = with_role(spec, "format_checker")[0]["id"]
    due = next_working_day(day, 3).isoformat()

    def send(command: str, payload: dict, person: str):
        return driver.send("documents", command, payload, tenant=tenant, person=person)

    ok((await send("RegisterIncomingDocument", {
        "original_number": f"{1000 + k}/UBND-VX", "issuing_body": "UBND tỉnh (mô phỏng)",
        "summary": "V/v triển khai làm việc trực tuyến", "document_date": day.isoformat(),
        "division_id": "cntt", "due_date": due,
    }, clerk))[0], f"{tenant}: incoming document")
    submitted = ok((await send("SubmitDraft", {
        "doc_type": "KH", "summary": f"Kế hoạch duy trì làm việc trực tuyến số {k}",
        "recipients": ["Các phòng, đơn vị thuộc Sở"], "file_name": "ke-hoach.docx",
        "file_base64": base64.b64encode(f"KẾ HOẠCH số {k} (mô phỏng)".encode()).decode(),
    }, author))[0], f"{tenant}: submit draft")
    document = {"document_id": submitted["document_id"]}
    ok((await send("ApproveDraft", document, head))[0], f"{tenant}: approve draft")
    ok((await send("CheckFormat", document, checker))[0], f"{tenant}: check format")
    content = ok((await send("GetSigningContent", document, director))[0], f"{tenant}: signing content")
    signer = signatures.Ed25519Signer(signatures.development_signing_key(tenant, director), f"{director}-dev")
    ok((await send("SignDocument", {**document, "version": 1, "algorithm": signer.algorithm,
                                    "key_id": signer.key_id, "signature": signer.sign(content["content"])},
                   director))[0], f"{tenant}: sign")
    ok((await send("IssueDocument", document, clerk))[0], f"{tenant}: issue")
    await send("ListDocuments", {}, clerk)


async def task_flow(driver: Driver, spec: dict, person: dict, day: date) -> None:
    tenant = spec["tenant"]
    head = head_of(spec, person["division_id"])["id"]
    task = ok((await driver.send("documents", "AssignTask", {
        "title": "Tổng hợp số liệu làm việc trực tuyến", "assignee_id": person["id"],
        "due_date": next_working_day(day, 2).isoformat(),
    }, tenant=tenant, person=head))[0], f"{tenant}: assign task")
    await driver.send("documents", "ReportTaskProgress", {"task_id": task["task_id"], "percent": 50},
                      tenant=tenant, person=person["id"])
    await driver.send("documents", "CompleteTask", {"task_id": task["task_id"], "note": "Đã xong"},
                      tenant=tenant, person=person["id"])


async def queries(driver: Driver, spec: dict, day: date, rng: random.Random, services: list[str]) -> None:
    tenant, chief = spec["tenant"], chief_of(spec)["id"]
    sends = [driver.send("roster", "GetDayRoster", {"day": day.isoformat()}, tenant=tenant, person=chief),
             driver.send("roster", "GetPresence", {"day": day.isoformat()}, tenant=tenant, person=chief),
             driver.send("roster", "GetDirectory", {}, tenant=tenant, person=chief)]
    if "notify" in services:
        sends += [driver.send("notify", "ListNotifications", {}, tenant=tenant, person=p["id"])
                  for p in rng.sample(spec["people"], 5)]
    await asyncio.gather(*sends)


async def office_hours(driver: Driver, spec: dict, day: date, rng: random.Random, services: list[str],
                       leave_share: float) -> None:
    staff = staff_of(spec)
    applicants = rng.sample(staff, max(1, int(len(staff) * leave_share)))
    flows = []
    if "leave" in services:
        flows += [leave_flow(driver, spec, p, next_working_day(day, 1 + i % 5), refuse=i % 5 == 4)
                  for i, p in enumerate(applicants)]
    if "documents" in services:
        flows += [document_flow(driver, spec, day, k) for k in range(2)]
        flows += [task_flow(driver, spec, p, day) for p in rng.sample(staff, 3)]
    flows.append(queries(driver, spec, day, rng, services))
    await asyncio.gather(*flows)


async def working_day(driver: Driver, specs: list[dict], day: date, services: list[str],
                      leave_share: float = 0.12, seed: int = 8) -> dict:
    rng = random.Random(seed)
    settle_heap()
    start = len(driver.sent)
    progress = Progress("06:30 rosters: lists, compile, approve", sum(len(s["divisions"]) + 2 for s in specs))
    await asyncio.gather(*(rosters(driver, s, day, progress) for s in specs))
    progress.close()
    await burst(driver, specs, rng)
    progress = Progress("office hours: leave, documents, tasks", len(specs))

    async def department(spec):
        await office_hours(driver, spec, day, rng, services, leave_share)
        progress.advance()

    await asyncio.gather(*(department(s) for s in specs))
    progress.close()
    sent = driver.sent[start:]
    seconds = max(s.sent_at + s.seconds for s in sent) - min(s.sent_at for s in sent)
    return {"commands": len(sent), "seconds": round(seconds, 2),
            "commands_per_second": round(len(sent) / seconds, 1),
            "refused": sum(1 for s in sent if not s.ok), "outcomes": driver.outcomes(start)}
