"""Reporting against the real broker and database: a known week of the demo department played
onto the events exchange, every figure of the daily and period reports checked against
values worked out by hand, a report as the stream stood at a past moment, the PDF rendered to
an image and read back in Vietnamese.

The week (tests/integration/reporting_scenario.py), in short. 8 divisions, 46 people; every
division lists its first member (a leader: the Director for the leadership) on site and the
rest at home, so 8 on site and 38 at home, 2 sessions a day.
- Mon 02/03: approved roster. Check-ins 75 of 76: nv-010 (vp) missed the morning and checked
  in late, nv-033 (cntt) missed the afternoon; nv-008 checked in away from the registered place.
  38 health declarations, one with symptoms. Leave: nv-030 (cntt, home) and nv-040 (head of
  ttcntt, on site) request and get Tue off; a coverage gap opens for ttcntt on Tue.
  Documents: D1 and D2 (secret) received and assigned (cntt, vp); draft O1 (cntt) submitted
  09:00, issued 16:00 (7 h); draft O2 (khtc) submitted 14:00. Tasks T1 (cntt), T2 (bcvt).
  Notifications: web 3, email 2 delivered, email 1 failed.
- Tue 03/03: ttra all at home (the violation the Director overrode); nv-030 and nv-040 on
  leave, so 6 on site, 38 at home, 2 on leave; check-ins 76 of 76. nv-031's leave for Wed
  requested and rejected. D2 handled; O2 signed; O3 (bcvt) submitted and returned; T3 (vp)
  assigned, T1 completed. Bot notifications 2. Lists for Wed from all but khtc; returned.
- Wed 04/03: 7 on site, 33 at home (khtc has no list), nobody checks in (the roster was
  returned). nv-032 requests Thu-Fri (pending). D1 and T2 overdue; O2 issued (42 h after its
  submission); O3 v2 ready for signing; O4 (vp) submitted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from datetime import datetime

import pytest

from services.reporting.app import ReportingService
from services.reporting.config import ReportingConfig
from shared.localtime import LOCAL_TZ
from tests.conftest import eventually
from tests.integration.reporting_scenario import (
    DEPARTMENT, FRI_BEFORE, MON, TUE, WED, at, publish, stored_facts, week,
)

pytestmark = pytest.mark.integration

CHIEF = "nv-004"  # Chief of Office: compiles reports
NAMES = {d["id"]: d["name"] for d in DEPARTMENT["divisions"]}
AN, HA, THANG, LAN, DUNG, THINH, THANH, TOAN = (
    "Nguyễn Văn An", "Phạm Thị Thu Hà", "Trịnh Văn Thắng", "Đinh Thị Ngọc Lan", "Lương Văn Dũng",
    "Hoàng Đức Thịnh", "Lê Văn Thành", "Phạm Văn Toàn")
RULE = "min_staff_per_division_on_site"


def row(division, submitted, on_site, at_home, on_leave, leaders, violations, gaps, expected, checked):
    return {"division_id": division, "name": NAMES[division], "submitted": submitted, "on_site": on_site,
            "at_home": at_home, "on_leave": on_leave, "leaders_on_site": leaders, "violations": violations,
            "coverage_gaps": gaps, "expected_check_ins": expected, "check_ins": checked}


def work(*rows):
    """(division, documents open, documents overdue, tasks open, tasks overdue) per division."""
    return [{"division_id": d, "name": NAMES[d], "documents_open": a, "documents_overdue": b,
             "tasks_open": c, "tasks_overdue": e} for d, a, b, c, e in rows]


def delivered(total, failed, web=(0, 0), bot=(0, 0), email=(0, 0)):
    return {"delivered": total, "failed": failed, "by_channel": {
        c: {"delivered": v[0], "failed": v[1]} for c, v in (("web", web), ("bot", bot), ("email", email))}}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
async def reporting(system, tmp_path):
    service = ReportingService(
        ReportingConfig(reports_dir=tmp_path / "reports", clock=lambda: at(WED, "16:45")), publish_daily=False)
    runtime = await system.start(service.definition())
    envelopes = week()
    await publish(system.namespace, envelopes)

    async def all_stored():
        return await stored_facts(runtime) == len(envelopes)

    await eventually(all_stored, timeout=20)
    return runtime


async def generate(system, **payload) -> dict:
    reply = await system.send("reporting", "GenerateReport", payload, as_person=CHIEF, timeout=30)
    assert reply.ok, reply.error
    return reply.result


def _check_header(report: dict, day) -> None:
    assert report["tenant"] == "so-tttt-thanhhoa"
    assert report["department"] == {"name": "Sở Thông tin và Truyền thông tỉnh Thanh Hóa", "symbol": "STTTT"}
    assert report["plan"] == {"plan_id": "kh-truc-tuyen", "title": "Kế hoạch triển khai làm việc trực tuyến "
                              "trong thời gian phòng, chống dịch COVID-19"}
    assert report["chief_of_office"] == HA
    assert (report["start"], report["end"]) == (day.isoformat(), day.isoformat())


async def test_daily_reports_of_the_week_match_the_figures_worked_out_by_hand(system, reporting):
    # --- Monday ---------------------------------------------------------------------------
    result = await generate(system, day=MON.isoformat())
    report = result["report"]
    _check_header(report, MON)
    assert report["as_of"] is None and moment(report["data_as_of"]) == at(MON, "16:00")  # O1 issued
    day = report["day"]
    assert (day["day"], day["working_day"], day["holiday"]) == ("2026-03-02", True, None)
    roster = day["roster"]
    assert roster["state"] == "approved" and roster["decided_by"] == {"person_id": "nv-001", "name": AN}
    assert moment(roster["decided_at"]) == at(FRI_BEFORE, "17:00")
    assert (roster["return_reason"], roster["overridden"]) == (None, 0)  # the override was for Tuesday
    assert roster["divisions"] == [
        row("bgd", True, 1, 2, 0, [AN], 0, 0, 4, 4),
        row("vp", True, 1, 6, 0, [HA], 0, 0, 12, 12),  # nv-010's late check-in counts
        row("ttra", True, 1, 4, 0, [THANG], 0, 0, 8, 8),
        row("khtc", True, 1, 5, 0, [LAN], 0, 0, 10, 10),
        row("bcvt", True, 1, 4, 0, [DUNG], 0, 0, 8, 8),
        row("cntt", True, 1, 6, 0, [THINH], 0, 0, 12, 11),  # nv-033 missed the afternoon
        row("ttbcxb", True, 1, 5, 0, [THANH], 0, 0, 10, 10),
        row("ttcntt", True, 1, 6, 0, [TOAN], 0, 0, 12, 12),
    ]
    assert (roster["on_site"], roster["at_home"], roster["on_leave"]) == (8, 38, 0)
    assert roster["department_leaders_on_site"] == [AN]
    assert roster["missing_divisions"] == [] and roster["violations"] == [] and roster["coverage_gaps"] == []
    assert day["presence"] == {
        "sessions": 2, "expected": 76, "checked_in": 75, "rate": 98.7, "late": 1, "away_from_registered_place": 1,
        "missed": [  # by division id, then name: cntt before vp
            {"person_id": "nv-033", "name": "Ngô Thanh Tùng", "division": NAMES["cntt"], "session": 1,
             "checked_in_later": False},
            {"person_id": "nv-010", "name": "Đặng Quốc Bảo", "division": NAMES["vp"], "session": 0,
             "checked_in_later": True}],
        "health": {"declared": 38, "well": 37, "symptoms": 1, "close_contact": 0, "positive": 0},
    }
    assert day["leave"] == {"requested": 2, "approved": 2, "rejected": 0, "cancelled": 0, "pending": 0, "on_leave": []}
    assert day["documents"] == {
        "received": 2, "drafts_submitted": 2, "in_progress": 3, "incoming_open": 2, "drafts_open": 1,
        "overdue": 0, "awaiting_signature": 0, "issued": 1, "median_hours_to_issue": 7.0}
    assert day["tasks"] == {"assigned": 2, "done": 0, "open": 2, "overdue": 0}
    assert day["work_by_division"] == work(
        ("bgd", 0, 0, 0, 0), ("vp", 1, 0, 0, 0), ("ttra", 0, 0, 0, 0), ("khtc", 1, 0, 0, 0),
        ("bcvt", 0, 0, 1, 0), ("cntt", 1, 0, 1, 0), ("ttbcxb", 0, 0, 0, 0), ("ttcntt", 0, 0, 0, 0))
    assert day["notifications"] == delivered(5, 1, web=(3, 0), email=(2, 1))
    assert result["summary"] == [
        "Ngày 02/03/2026: 8 người trực tại cơ quan, 38 người làm việc tại nhà, 0 người nghỉ phép; "
        "lịch trực: đã phê duyệt.",
        "Điểm danh 75/76 lượt (tỉ lệ 98,7%); vắng điểm danh 2 lượt.",
        "Văn bản: đến 2, phát hành 1, chờ ký 0, quá hạn 0; nhiệm vụ: đang thực hiện 2, quá hạn 0."]

    # --- Tuesday --------------------------------------------------------------------------
    report = (await generate(system, day=TUE.isoformat()))["report"]
    _check_header(report, TUE)
    assert moment(report["data_as_of"]) == at(TUE, "17:00")  # the Wednesday roster returned
    day = report["day"]
    roster = day["roster"]
    assert roster["state"] == "approved" and roster["overridden"] == 1
    assert roster["divisions"] == [
        row("bgd", True, 1, 2, 0, [AN], 0, 0, 4, 4),
        row("vp", True, 1, 6, 0, [HA], 0, 0, 12, 12),
        row("ttra", True, 0, 5, 0, [], 1, 0, 10, 10),  # everyone at home: the overridden violation
        row("khtc", True, 1, 5, 0, [LAN], 0, 0, 10, 10),
        row("bcvt", True, 1, 4, 0, [DUNG], 0, 0, 8, 8),
        row("cntt", True, 1, 5, 1, [THINH], 0, 0, 10, 10),  # nv-030 on leave
        row("ttbcxb", True, 1, 5, 0, [THANH], 0, 0, 10, 10),
        row("ttcntt", True, 0, 6, 1, [], 0, 1, 12, 12),  # its head, on site, on leave: a gap
    ]
    assert (roster["on_site"], roster["at_home"], roster["on_leave"]) == (6, 38, 2)
    assert roster["department_leaders_on_site"] == [AN] and roster["missing_divisions"] == []
    assert roster["violations"] == [{"division_id": "ttra", "division": NAMES["ttra"], "rule": RULE,
                                     "message": "Thanh tra Sở không có ai trực tại cơ quan (cần ít nhất 1)."}]
    assert roster["coverage_gaps"] == [{
        "division_id": "ttcntt", "division": NAMES["ttcntt"], "rule": RULE, "person_id": "nv-040", "name": TOAN,
        "message": "Trung tâm Công nghệ thông tin và Truyền thông không còn ai trực tại cơ quan.", "open": True}]
    assert day["presence"] == {
        "sessions": 2, "expected": 76, "checked_in": 76, "rate": 100.0, "late": 0, "away_from_registered_place": 0,
        "missed": [], "health": {"declared": 0, "well": 0, "symptoms": 0, "close_contact": 0, "positive": 0}}
    assert day["leave"] == {"requested": 1, "approved": 0, "rejected": 1, "cancelled": 0, "pending": 0, "on_leave": [
        {"person_id": "nv-030", "name": "Lê Quang Huy", "division": NAMES["cntt"]},
        {"person_id": "nv-040", "name": TOAN, "division": NAMES["ttcntt"]}]}
    assert day["documents"] == {  # D1, O2 (signed, not issued), O3 (returned) open
        "received": 0, "drafts_submitted": 1, "in_progress": 3, "incoming_open": 1, "drafts_open": 2,
        "overdue": 0, "awaiting_signature": 0, "issued": 0, "median_hours_to_issue": None}
    assert day["tasks"] == {"assigned": 1, "done": 1, "open": 2, "overdue": 0}
    assert day["work_by_division"] == work(
        ("bgd", 0, 0, 0, 0), ("vp", 0, 0, 1, 0), ("ttra", 0, 0, 0, 0), ("khtc", 1, 0, 0, 0),
        ("bcvt", 1, 0, 1, 0), ("cntt", 1, 0, 0, 0), ("ttbcxb", 0, 0, 0, 0), ("ttcntt", 0, 0, 0, 0))
    assert day["notifications"] == delivered(2, 0, bot=(2, 0))

    # --- Wednesday ------------------------------------------------------------------------
    report = (await generate(system, day=WED.isoformat()))["report"]
    _check_header(report, WED)
    assert moment(report["data_as_of"]) == at(WED, "13:00")  # O4 submitted
    roster = report["day"]["roster"]
    assert roster["state"] == "returned" and roster["decided_by"] == {"person_id": "nv-001", "name": AN}
    assert moment(roster["decided_at"]) == at(TUE, "17:00")
    assert roster["return_reason"] == "Phòng Kế hoạch - Tài chính chưa đăng ký danh sách."
    assert roster["divisions"] == [
        row("bgd", True, 1, 2, 0, [AN], 0, 0, 4, 0),
        row("vp", True, 1, 6, 0, [HA], 0, 0, 12, 0),
        row("ttra", True, 1, 4, 0, [THANG], 0, 0, 8, 0),
        row("khtc", False, 0, 0, 0, [], 0, 0, 0, 0),
        row("bcvt", True, 1, 4, 0, [DUNG], 0, 0, 8, 0),
        row("cntt", True, 1, 6, 0, [THINH], 0, 0, 12, 0),
        row("ttbcxb", True, 1, 5, 0, [THANH], 0, 0, 10, 0),
        row("ttcntt", True, 1, 6, 0, [TOAN], 0, 0, 12, 0),
    ]
    assert (roster["on_site"], roster["at_home"], roster["on_leave"]) == (7, 33, 0)
    assert roster["missing_divisions"] == [{"division_id": "khtc", "name": NAMES["khtc"]}]
    assert roster["violations"] == [] and roster["coverage_gaps"] == []
    day = report["day"]
    assert day["presence"] == {
        "sessions": 2, "expected": 66, "checked_in": 0, "rate": 0.0, "late": 0, "away_from_registered_place": 0,
        "missed": [], "health": {"declared": 0, "well": 0, "symptoms": 0, "close_contact": 0, "positive": 0}}
    assert day["leave"] == {"requested": 1, "approved": 0, "rejected": 0, "cancelled": 0, "pending": 1, "on_leave": []}
    assert day["documents"] == {  # D1 overdue, O3 awaiting signature, O4 submitted; O2 issued (42 h)
        "received": 0, "drafts_submitted": 1, "in_progress": 2, "incoming_open": 1, "drafts_open": 1,
        "overdue": 1, "awaiting_signature": 1, "issued": 1, "median_hours_to_issue": 42.0}
    assert day["tasks"] == {"assigned": 0, "done": 0, "open": 2, "overdue": 1}
    assert day["work_by_division"] == work(
        ("bgd", 0, 0, 0, 0), ("vp", 1, 0, 1, 0), ("ttra", 0, 0, 0, 0), ("khtc", 0, 0, 0, 0),
        ("bcvt", 1, 0, 1, 1), ("cntt", 1, 1, 0, 0), ("ttbcxb", 0, 0, 0, 0), ("ttcntt", 0, 0, 0, 0))
    assert day["notifications"] == delivered(0, 0)


async def test_period_report_totals_divisions_and_trend(system, reporting):
    result = await generate(system, kind="period", start=MON.isoformat(), end=WED.isoformat())
    report = result["report"]
    assert (report["kind"], report["start"], report["end"]) == ("period", "2026-03-02", "2026-03-04")
    assert report["totals"] == {
        "days": 3, "working_days": 3, "days_approved": 2,
        "on_site_person_days": 21, "at_home_person_days": 109, "on_leave_person_days": 2,  # 8+6+7, 38+38+33
        "average_on_site": 7.0, "average_at_home": 36.3,
        "missing_lists": 1, "violations": 1, "coverage_gaps": 1,
        "expected_check_ins": 218, "check_ins": 151, "check_in_rate": 69.3,  # 76+76+66, 75+76+0
        "missed_check_ins": 2, "late_check_ins": 1,
        "leave_requested": 4, "leave_approved": 2, "leave_rejected": 1, "leave_cancelled": 0, "leave_pending": 1,
        "documents_received": 2, "drafts_submitted": 4, "documents_issued": 2,
        "median_hours_to_issue": 24.5,  # median of 7 and 42
        "documents_in_progress": 2, "documents_overdue": 1, "awaiting_signature": 1,
        "tasks_assigned": 3, "tasks_done": 1, "tasks_open": 2, "tasks_overdue": 1,
        "notifications_delivered": 7, "notifications_failed": 1,
    }

    def division(d, on_site, at_home, on_leave, missing, violations, expected, checked, rate):
        return {"division_id": d, "name": NAMES[d], "on_site_person_days": on_site, "at_home_person_days": at_home,
                "on_leave_person_days": on_leave, "missing_lists": missing, "violations": violations,
                "expected_check_ins": expected, "check_ins": checked, "check_in_rate": rate}

    assert report["divisions"] == [
        division("bgd", 3, 6, 0, 0, 0, 12, 8, 66.7),
        division("vp", 3, 18, 0, 0, 0, 36, 24, 66.7),
        division("ttra", 2, 13, 0, 0, 1, 26, 18, 69.2),
        division("khtc", 2, 10, 0, 1, 0, 20, 20, 100.0),
        division("bcvt", 3, 12, 0, 0, 0, 24, 16, 66.7),
        division("cntt", 3, 17, 1, 0, 0, 34, 21, 61.8),
        division("ttbcxb", 3, 15, 0, 0, 0, 30, 20, 66.7),
        division("ttcntt", 2, 18, 1, 0, 0, 36, 24, 66.7),
    ]

    def trend(day, state, on_site, at_home, on_leave, missing, violations, gaps, expected, checked, rate, missed,
              requested, approved, rejected, received, issued, done, sent, failed):
        return {"day": day.isoformat(), "working_day": True, "roster_state": state, "on_site": on_site,
                "at_home": at_home, "on_leave": on_leave, "missing_lists": missing, "violations": violations,
                "coverage_gaps": gaps, "expected_check_ins": expected, "check_ins": checked, "check_in_rate": rate,
                "missed_check_ins": missed, "leave_requested": requested, "leave_approved": approved,
                "leave_rejected": rejected, "documents_received": received, "documents_issued": issued,
                "tasks_done": done, "notifications_delivered": sent, "notifications_failed": failed}

    assert report["trend"] == [
        trend(MON, "approved", 8, 38, 0, 0, 0, 0, 76, 75, 98.7, 2, 2, 2, 0, 2, 1, 0, 5, 1),
        trend(TUE, "approved", 6, 38, 2, 0, 1, 1, 76, 76, 100.0, 0, 1, 0, 1, 0, 0, 1, 2, 0),
        trend(WED, "returned", 7, 33, 0, 1, 0, 0, 66, 0, 0.0, 0, 1, 0, 0, 0, 1, 0, 0, 0),
    ]
    html = open(result["files"]["html"], encoding="utf-8").read()
    assert "Tình hình thực hiện làm việc trực tuyến từ ngày 02/03/2026 đến ngày 04/03/2026" in html
    assert html.count("<svg") == 2 and "VIII. DIỄN BIẾN THEO NGÀY LÀM VIỆC" in html


async def test_a_report_as_the_stream_stood_at_a_past_moment(system, reporting):
    noon = at(MON, "12:00")
    report = (await generate(system, day=MON.isoformat(), as_of=noon.isoformat()))["report"]
    assert moment(report["as_of"]) == noon
    assert moment(report["data_as_of"]) == at(MON, "11:00", 1)  # O1 ready for signing
    day = report["day"]
    assert day["roster"]["state"] == "approved" and (day["roster"]["on_site"], day["roster"]["at_home"]) == (8, 38)
    assert day["presence"] == {  # mornings only; nv-033's afternoon not yet missed
        "sessions": 2, "expected": 76, "checked_in": 38, "rate": 50.0, "late": 1, "away_from_registered_place": 1,
        "missed": [{"person_id": "nv-010", "name": "Đặng Quốc Bảo", "division": NAMES["vp"], "session": 0,
                    "checked_in_later": True}],
        "health": {"declared": 38, "well": 37, "symptoms": 1, "close_contact": 0, "positive": 0}}
    assert day["leave"] == {"requested": 1, "approved": 1, "rejected": 0, "cancelled": 0, "pending": 0, "on_leave": []}
    assert day["documents"] == {  # O1 awaits the Director's signature; nothing issued yet
        "received": 2, "drafts_submitted": 1, "in_progress": 2, "incoming_open": 2, "drafts_open": 0,
        "overdue": 0, "awaiting_signature": 1, "issued": 0, "median_hours_to_issue": None}
    assert day["tasks"] == {"assigned": 2, "done": 0, "open": 2, "overdue": 0}
    assert day["notifications"] == delivered(2, 0, web=(2, 0))

    # The same fold stopped later than anything in the stream is the live report.
    live = (await generate(system, day=MON.isoformat()))["report"]
    late = (await generate(system, day=MON.isoformat(), as_of=at(WED, "23:00").isoformat()))["report"]
    assert {**late, "as_of": None} == live
    # Before the plan, the directory or any list existed: an empty report, not an error.
    early = (await generate(system, day=MON.isoformat(), as_of=at(FRI_BEFORE, "08:00").isoformat()))["report"]
    assert early["day"]["roster"]["state"] == "no_lists" and early["plan"] is not None


async def test_the_pdf_is_an_official_report_in_vietnamese_and_english(system, reporting, tmp_path):
    assert shutil.which("pdftotext") and shutil.which("pdftoppm"), "poppler-utils is needed (.ci/run installs it)"
    result = await generate(system, day=TUE.isoformat(), include_files=True)
    pdf = base64.b64decode(result["pdf_base64"])
    assert pdf.startswith(b"%PDF") and open(result["files"]["pdf"], "rb").read() == pdf
    assert base64.b64decode(result["html_base64"]).decode() == open(result["files"]["html"], encoding="utf-8").read()
    assert json.loads(open(result["files"]["json"], encoding="utf-8").read()) == result["report"]
    text = subprocess.run(["pdftotext", "-layout", result["files"]["pdf"], "-"], capture_output=True, text=True,
                          timeout=20, check=True).stdout
    for expected in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "SỞ THÔNG TIN VÀ TRUYỀN",
                     "Thanh Hóa, ngày 03 tháng 03 năm 2026", "BÁO CÁO",
                     "Tình hình thực hiện làm việc trực tuyến ngày 03/03/2026", "I. LỊCH TRỰC TẠI CƠ QUAN",
                     "II. ĐIỂM DANH", "III. NGHỈ PHÉP", "IV. XỬ LÝ VĂN BẢN", "V. THEO DÕI NHIỆM VỤ",
                     "VI. THÔNG BÁO", "Trung tâm Công nghệ thông tin", "Phạm Văn Toàn", "Biểu đồ 1",
                     "Nơi nhận", "CHÁNH VĂN PHÒNG", "Phạm Thị Thu Hà"):
        assert expected in text, expected
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", result["files"]["pdf"],
                    str(tmp_path / "page")], check=True, timeout=20)
    page = (tmp_path / "page-1.png").read_bytes()
    assert page.startswith(b"\x89PNG") and len(page) > 20_000  # a page with text on it, not a blank one

    english = await generate(system, day=TUE.isoformat(), locale="en")
    assert english["report"] == result["report"] and english["files"]["pdf"].endswith(".en.pdf")
    text = subprocess.run(["pdftotext", english["files"]["pdf"], "-"], capture_output=True, text=True,
                          timeout=20, check=True).stdout
    assert "SOCIALIST REPUBLIC OF VIET NAM" in text and "Remote work status on 03/03/2026" in text


async def test_only_leaders_heads_and_the_office_read_reports(system, reporting):
    reply = await system.send("reporting", "GenerateReport", {"day": MON.isoformat()}, as_person="nv-029")
    assert not reply.ok and reply.error.code == "forbidden"
    for person in ("nv-001", "nv-027", "nv-008"):  # the Director, a division head, Office staff
        assert (await system.send("reporting", "ListPublishedReports", {}, as_person=person)).ok
    reply = await system.send("reporting", "GenerateReport", {"kind": "period", "start": WED.isoformat(),
                                                             "end": MON.isoformat()}, as_person=CHIEF)
    assert not reply.ok and reply.error.code == "invalid"


async def test_reports_do_not_move_while_the_stream_does_not(system, reporting):
    """The same request twice gives the same bytes (nothing depends on the clock)."""
    first = await generate(system, day=TUE.isoformat(), include_files=True)
    await asyncio.sleep(1.1)
    second = await generate(system, day=TUE.isoformat(), include_files=True)
    assert first["pdf_base64"] == second["pdf_base64"] and first["html_base64"] == second["html_base64"]
    assert first["report"] == second["report"] and first["pdf_sha256"] == second["pdf_sha256"]
    assert datetime.now(LOCAL_TZ).date() != TUE  # (the week is in the past: end-of-day cut-offs apply)
