"""The directory aggregate's decisions, without servers."""

import json
from datetime import date
from pathlib import Path

import pytest

from services.roster.commands import ImportDepartment
from services.roster.domain import DepartmentDirectory
from shared.commands import DomainError, NotFound
from shared.contracts import roster as ev

DEMO = json.loads((Path(__file__).parents[2] / "services/roster/demo/department.json").read_text())


def imported() -> DepartmentDirectory:
    directory = DepartmentDirectory()
    for e in directory.import_department(ImportDepartment.model_validate(DEMO)):
        directory.apply(e)
    return directory


def test_import_creates_everything_once_then_only_differences():
    directory = imported()
    assert len(directory.people) == len(DEMO["people"])
    assert directory.import_department(ImportDepartment.model_validate(DEMO)) == []
    changed = json.loads(json.dumps(DEMO))
    changed["people"][3]["division_id"] = "khtc"
    changed["people"][4]["roles"] = ["staff", "format_checker"]
    events = directory.import_department(ImportDepartment.model_validate(changed))
    assert [type(e) for e in events] == [ev.PersonMoved, ev.PersonRolesChanged]


def test_import_refuses_people_of_unknown_divisions_and_duplicate_ids():
    broken = json.loads(json.dumps(DEMO))
    broken["people"][0]["division_id"] = "khong-co"
    with pytest.raises(DomainError):
        DepartmentDirectory().import_department(ImportDepartment.model_validate(broken))
    broken = json.loads(json.dumps(DEMO))
    broken["people"].append(broken["people"][0])
    with pytest.raises(ValueError):
        ImportDepartment.model_validate(broken)


def test_only_a_deputy_of_the_same_division_can_act_for_the_head():
    directory = imported()
    deputy = next(p for p in DEMO["people"] if "deputy_division_head" in p["roles"])
    staff = next(p for p in DEMO["people"] if p["roles"] == ["staff"])
    assert directory.designate_acting_head(deputy["division_id"], deputy["id"], date(2037, 1, 1), date(2037, 1, 9))
    with pytest.raises(DomainError):
        directory.designate_acting_head(staff["division_id"], staff["id"], date(2037, 1, 1), date(2037, 1, 9))
    with pytest.raises(DomainError):
        directory.designate_acting_head(deputy["division_id"], deputy["id"], date(2037, 1, 9), date(2037, 1, 1))


def test_plans_are_activated_once_and_end_after_they_start():
    directory = DepartmentDirectory()
    plan = ev.PlanActivated(plan_id="kh", title="KH", effective_from=date(2037, 1, 1))
    directory.apply(directory.activate_plan(plan)[0])
    with pytest.raises(DomainError):
        directory.activate_plan(plan)
    with pytest.raises(DomainError):
        directory.end_plan("kh", date(2036, 12, 31))
    with pytest.raises(NotFound):
        directory.end_plan("khac", date(2037, 2, 1))
    assert directory.end_plan("kh", date(2037, 2, 1))[0].effective_until == date(2037, 2, 1)
