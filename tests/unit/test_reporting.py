"""Reporting without servers: the fold is a function of the set of events (not their arrival
order), stops at an as-of moment, names only real event types; both locales say everything;
the subscription carries every event type; charts and documents are stable bytes."""

import random
from datetime import date, datetime

from services.reporting import charts
from services.reporting.domain import FOLDED_TYPES, Fact
from services.reporting.projection import days_of
from services.reporting.render import html_document
from services.reporting.report import build
from services.reporting.texts import CATALOGUE, Texts
from shared import topology
from shared.contracts import decode, registered_events
from tests.integration.reporting_scenario import MON, TENANT, TUE, WED, at, week


def facts() -> list[Fact]:
    return [Fact(e.occurred_at, e.stream_id, e.stream_version, e.event_type, decode(e).model_dump(mode="json"))
            for e in week()]


def test_the_fold_handles_only_real_event_types():
    assert FOLDED_TYPES <= set(registered_events()), FOLDED_TYPES - set(registered_events())


def test_reports_do_not_depend_on_the_order_events_arrived_in():
    ordered = facts()
    shuffled = list(ordered)
    random.Random(1).shuffle(shuffled)
    for kind, start, end in (("daily", TUE, TUE), ("period", MON, WED)):
        assert build(TENANT, shuffled, start, end, kind=kind) == build(TENANT, ordered, start, end, kind=kind)


def test_as_of_is_the_same_fold_stopped_at_that_moment():
    everything = facts()
    noon = at(MON, "12:00")
    as_of = build(TENANT, everything, MON, MON, kind="daily", as_of=noon)
    earlier_only = build(TENANT, [f for f in everything if f.occurred_at <= noon], MON, MON, kind="daily")
    assert {**as_of, "as_of": None} == earlier_only
    assert as_of["day"]["presence"]["checked_in"] == 38 and earlier_only["day"]["leave"]["approved"] == 1


def test_both_locales_say_everything():
    assert set(CATALOGUE["vi"]) == set(CATALOGUE["en"])
    t = Texts("vi")
    assert (t.number(36.3), t.percent(98.7), t.hours(24.5), t.date(date(2026, 3, 2))) == (
        "36,3", "98,7%", "24,5 giờ", "02/03/2026")
    assert Texts("en").number(36.3) == "36.3" and Texts("fr").locale == "vi"
    assert t.moment(datetime.fromisoformat("2026-03-02T03:00:00+00:00")) == "10:00 02/03/2026"


def test_reporting_subscribes_to_every_other_services_event_and_its_replay():
    (subscription,) = topology.subscriptions_of("reporting")
    owned = {f"{c.owner}.{n}" for n, c in registered_events().items() if c.owner != "reporting"}
    assert set(subscription.routing_keys) == owned | {"replay.reporting.#"}
    assert not subscription.ordered and all(s.ordered for s in topology.SUBSCRIPTIONS if s is not subscription)
    assert "reporting" in topology.COMMAND_SERVICES and "reporting.ReportPublished" in topology.NOTIFY_KEYS
    assert topology.replay_routing_key("reporting", "leave.LeaveApproved") == "replay.reporting.leave.LeaveApproved"


def test_day_bound_events_carry_their_days():
    by_type = {}
    for e in week():
        by_type.setdefault(e.event_type, days_of(e, e.payload))
    assert by_type["CheckedIn"] == (MON, MON)
    assert by_type["RosterSubmitted"] == (MON, TUE) and by_type["RosterCompiled"] == (MON, TUE)
    assert by_type["NotificationSent"] == (MON, MON)  # the local date it happened
    assert by_type["LeaveRequested"] == (None, None) and by_type["PersonAdded"] == (None, None)


def test_charts_have_round_scales_and_fixed_decimals():
    assert [charts._scale_top([v]) for v in (0, 3, 46, 76, 100, 101, 1234)] == [5, 5, 50, 100, 100, 250, 2500]
    svg = charts.stacked_rows(["Văn phòng Sở"], [("Trực", [1]), ("Nhà", [6])], "Biểu đồ")
    assert svg == charts.stacked_rows(["Văn phòng Sở"], [("Trực", [1]), ("Nhà", [6])], "Biểu đồ")
    assert "Văn phòng Sở" in svg and 'width="' in svg


def test_the_document_is_an_official_report_and_the_same_for_the_same_figures():
    report = build(TENANT, facts(), TUE, TUE, kind="daily")
    html = html_document(report)
    assert html == html_document(build(TENANT, facts(), TUE, TUE, kind="daily"))
    for text in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "SỞ THÔNG TIN VÀ TRUYỀN THÔNG",
                 "Thanh Hóa, ngày 03 tháng 03 năm 2026", "Số: ........./BC-STTTT", "I. LỊCH TRỰC", "VI. THÔNG BÁO",
                 "CHÁNH VĂN PHÒNG", "<svg"):
        assert text in html, text
    english = html_document(report, "en")
    assert "SOCIALIST REPUBLIC OF VIET NAM" in english and 'lang="en"' in english
