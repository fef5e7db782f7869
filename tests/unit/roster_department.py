"""A small department for the roster unit tests: leaders, the Office, two divisions, two plans."""

from __future__ import annotations

from datetime import date

from shared.contracts import roster as ev
from shared.directory import Person, Plan
from services.roster.rules import DaySheet, DivisionInfo, Organisation


def person(pid: str, division: str, *roles: str, name: str | None = None) -> Person:
    return Person(pid, name or pid.upper(), f"{pid}@so.vn", division, frozenset(roles or ("staff",)), "vi", True)


DIRECTOR = person("gd", "bgd", "director", name="Nguyễn Văn Giám")
DEPUTY_1 = person("pgd1", "bgd", "deputy_director", name="Lê Thị Phó")
DEPUTY_2 = person("pgd2", "bgd", "deputy_director", name="Trần Văn Phó")
CHIEF = person("cvp", "vp", "chief_of_office", "division_head", name="Phạm Thị Chánh")
SECRET = person("vp1", "vp", "secret_document_handler", name="Đỗ Thị Mật")
CLERK = person("vp2", "vp", name="Bùi Văn Thư")
HEAD = person("tp", "cntt", "division_head", name="Hoàng Đức Trưởng")
DEPUTY_HEAD = person("pp", "cntt", "deputy_division_head", name="Vũ Thị Phó")
S1 = person("s1", "cntt", name="Nguyễn Văn Một")
S2 = person("s2", "cntt", name="Lê Văn Hai")
HEAD_2 = person("tp2", "khtc", "division_head", name="Đinh Thị Lan")
S3 = person("s3", "khtc", name="Cao Văn Ba")

PEOPLE = (DIRECTOR, DEPUTY_1, DEPUTY_2, CHIEF, SECRET, CLERK, HEAD, DEPUTY_HEAD, S1, S2, HEAD_2, S3)
DIVISIONS = (
    DivisionInfo("bgd", "Ban Giám đốc", "leadership"),
    DivisionInfo("vp", "Văn phòng Sở", "office"),
    DivisionInfo("cntt", "Phòng Công nghệ thông tin", "division"),
    DivisionInfo("khtc", "Phòng Kế hoạch - Tài chính", "division"),
)
ORG = Organisation.of(DIVISIONS, PEOPLE)

RULES_2020 = ({"rule": "min_leaders_on_site", "count": 1},
              {"rule": "min_staff_per_division_on_site", "count": 1})
RULES_2021 = ({"rule": "only_designated_on_site"},
              {"rule": "min_on_duty", "duty": "leader_on_duty", "count": 1})

# Monday 05/01/2037 .. Friday 30/01/2037; 12/01/2037 a holiday.
MONDAY = date(2037, 1, 5)
PLAN_2020 = Plan("kh-2020", "Kế hoạch 2020", date(2037, 1, 1), None, frozenset({date(2037, 1, 12)}),
                 onsite_rules=RULES_2020)
# The 2021 plan: Monday 06/09/2021 to Wednesday 08/09/2021.
PLAN_2021 = Plan("kh-2021", "Kế hoạch 2021", date(2021, 9, 6), date(2021, 9, 8), frozenset(),
                 onsite_rules=RULES_2021)


def site(pid: str, duty: str | None = None) -> ev.RosterEntry:
    return ev.RosterEntry(person_id=pid, location="on_site", duty=duty)


def home(pid: str, place: str | None = None) -> ev.RosterEntry:
    return ev.RosterEntry(person_id=pid, location="home", work_place=place or f"Nhà riêng của {pid}")


def full_lists_2020() -> dict[str, tuple[ev.RosterEntry, ...]]:
    """Every division's list meeting the 2020 rules: one leader, one person per division on site."""
    return {
        "bgd": (site("gd"), home("pgd1"), home("pgd2")),
        "vp": (site("cvp"), home("vp1"), home("vp2")),
        "cntt": (site("s1"), home("tp"), home("pp"), home("s2")),
        "khtc": (site("s3"), home("tp2")),
    }


def full_lists_2021() -> dict[str, tuple[ev.RosterEntry, ...]]:
    """Only designated duties on site: the leader on duty, office duty, secret documents."""
    return {
        "bgd": (site("pgd1", "leader_on_duty"), home("gd"), home("pgd2")),
        "vp": (site("vp2", "office_duty"), site("vp1", "secret_documents"), home("cvp")),
        "cntt": (home("tp"), home("pp"), home("s1"), home("s2")),
        "khtc": (home("tp2"), home("s3")),
    }


def sheet(day: date, lists, on_leave=()) -> DaySheet:
    return DaySheet(day, dict(lists), frozenset(on_leave))
