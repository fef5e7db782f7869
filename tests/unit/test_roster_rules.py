"""On-site rules as data, both plans' rule sets, checked against a day's lists without servers."""

from datetime import date

import pytest
from pydantic import ValidationError

from services.roster.rules import EVERYONE_LISTED, evaluate, key
from shared.contracts import roster as ev
from tests.unit.roster_department import (
    MONDAY, ORG, RULES_2020, RULES_2021, full_lists_2020, full_lists_2021, home, sheet, site,
)

RULES20 = ev.parse_onsite_rules(RULES_2020)
RULES21 = ev.parse_onsite_rules(RULES_2021)
DAY_2021 = date(2021, 9, 6)


def rules_broken(rules, lists, on_leave=(), day=MONDAY):
    return [(v.rule, v.division_id, v.person_id) for v in evaluate(rules, ORG, sheet(day, lists, on_leave))]


def test_rules_are_data_with_checked_shapes():
    assert [type(r) for r in RULES20] == [ev.MinLeadersOnSite, ev.MinStaffPerDivisionOnSite]
    assert RULES21[0].duties == ("leader_on_duty", "covid_duty", "office_duty", "secret_documents")
    for bad in ({"rule": "min_leaders_on_site", "count": 0}, {"rule": "no_such_rule"},
                {"rule": "min_on_duty", "duty": "gardening"}, {"rule": "min_leaders_on_site", "count": 1, "x": 1}):
        with pytest.raises(ValidationError):
            ev.parse_onsite_rules([bad])


def test_2020_plan_one_leader_and_one_per_division_on_site_is_clean():
    assert rules_broken(RULES20, full_lists_2020()) == []


def test_2020_plan_no_leader_on_site_is_one_department_violation_named_in_vietnamese():
    lists = full_lists_2020()
    lists["bgd"] = (home("gd"), home("pgd1"), home("pgd2"))
    violations = evaluate(RULES20, ORG, sheet(MONDAY, lists))
    assert [(v.rule, v.division_id, v.required, v.actual) for v in violations] == [
        ("min_leaders_on_site", "bgd", 1, 0)]
    assert violations[0].message == "Ngày 05/01/2037: 0 lãnh đạo Sở trực tại cơ quan, cần tối thiểu 1."


def test_2020_plan_each_division_and_the_office_needs_someone_on_site_but_not_the_leadership():
    lists = full_lists_2020()
    lists["cntt"] = tuple(home(e.person_id) for e in lists["cntt"])
    lists["vp"] = tuple(home(e.person_id) for e in lists["vp"])
    broken = rules_broken(RULES20, lists)
    assert broken == [("min_staff_per_division_on_site", "cntt", None),
                      ("min_staff_per_division_on_site", "vp", None)]
    message = evaluate(RULES20, ORG, sheet(MONDAY, lists))[0].message
    assert "Phòng Công nghệ thông tin: 0 cán bộ trực tại cơ quan, cần tối thiểu 1" in message


def test_people_on_leave_do_not_count_on_site():
    assert rules_broken(RULES20, full_lists_2020(), on_leave={"gd", "s3"}) == [
        ("min_leaders_on_site", "bgd", None), ("min_staff_per_division_on_site", "khtc", None)]


def test_counts_come_from_the_data():
    rules = ev.parse_onsite_rules([{"rule": "min_staff_per_division_on_site", "count": 2},
                                   {"rule": "min_leaders_on_site", "count": 2}])
    broken = rules_broken(rules, full_lists_2020())
    assert {b[0] for b in broken} == {"min_staff_per_division_on_site", "min_leaders_on_site"}
    assert len(broken) == 4  # leaders, and vp, cntt, khtc with one each
    assert rules_broken((), full_lists_2020()) == []  # a plan without rules asks nothing


def test_2021_plan_only_designated_duties_come_in():
    assert rules_broken(RULES21, full_lists_2021(), day=DAY_2021) == []
    lists = full_lists_2021()
    lists["cntt"] = (site("s1"), home("tp"), home("pp"), home("s2"))  # on site with no duty
    lists["khtc"] = (site("s3", "assigned_task"), home("tp2"))  # a duty this plan does not list
    violations = evaluate(RULES21, ORG, sheet(DAY_2021, lists))
    assert [(v.rule, v.division_id, v.person_id) for v in violations] == [
        ("only_designated_on_site", "cntt", "s1"), ("only_designated_on_site", "khtc", "s3")]
    assert violations[0].message.startswith("Ngày 06/09/2021, Phòng Công nghệ thông tin: Nguyễn Văn Một "
                                            "đến cơ quan nhưng không được phân công")
    assert "trực lãnh đạo, phòng, chống dịch COVID-19, trực cơ quan, xử lý tài liệu mật" in violations[0].message


def test_2021_plan_needs_a_leader_on_duty_every_day():
    lists = full_lists_2021()
    lists["bgd"] = (home("pgd1"), home("gd"), home("pgd2"))
    violations = evaluate(RULES21, ORG, sheet(DAY_2021, lists))
    assert [(v.rule, v.division_id, v.actual) for v in violations] == [("min_on_duty", "bgd", 0)]
    assert "0 người trực lãnh đạo tại cơ quan" in violations[0].message
    # The 2021 plan does not ask every division to send someone in; the 2020 plan would.
    assert ("min_staff_per_division_on_site", "cntt", None) in rules_broken(RULES20, full_lists_2021())


def test_a_department_may_combine_rules_of_both_plans():
    rules = ev.parse_onsite_rules([*RULES_2020, {"rule": "min_on_duty", "duty": "covid_duty"}])
    broken = rules_broken(rules, full_lists_2020())
    assert broken == [("min_on_duty", None, None)]


def test_everyone_in_a_listed_division_must_be_on_the_list_unless_on_leave():
    lists = full_lists_2020()
    lists["cntt"] = (site("s1"), home("tp"), home("pp"))  # s2 forgotten
    assert rules_broken((), lists) == [(EVERYONE_LISTED, "cntt", "s2")]
    assert rules_broken((), lists, on_leave={"s2"}) == []


def test_violation_key_ignores_counts():
    lists = full_lists_2020()
    lists["bgd"] = (home("gd"), home("pgd1"), home("pgd2"))
    [v] = evaluate(RULES20, ORG, sheet(MONDAY, lists))
    assert key(v) == ("min_leaders_on_site", "bgd", None)
