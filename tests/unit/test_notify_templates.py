"""Every notification template rendered in both locales from a sample of its event: Vietnamese
with full diacritics (NFC), dates dd/mm/yyyy and local times, nothing left unfilled, and
secret rules that cannot show a payload value."""

import re
import typing
import unicodedata
import uuid
from datetime import UTC, date, datetime, time

import pytest
from pydantic import BaseModel

from shared.contracts import event_class
from services.notify.routing import roster_assignment
from services.notify.rules import RULES
from services.notify.templates import catalogue, context, format_value, render

PEOPLE = {"nv-030": "Lê Thị Mai", "nv-027": "Hoàng Đức Thịnh", "nv-031": "Trần Văn Bình"}
DIVISIONS = {"cntt": "Phòng Công nghệ thông tin"}
VIETNAMESE = set("ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SAMPLE_DAY = date(2037, 1, 9)
SAMPLE_MOMENT = datetime(2037, 1, 9, 1, 45, tzinfo=UTC)  # 08:45 in Hà Nội


def _sample_value(name: str, annotation):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _sample_value(name, args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return _sample_value(name, next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return args[0]
    if origin is tuple:
        if name == "invitees":
            return ("nv-030", "nv-031")
        return (_sample_value(name, args[0]), _sample_value(name, args[0]))
    if origin is dict or annotation is dict:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation)
    if annotation is str:
        if name == "division_id":
            return "cntt"
        if name == "person_id":
            return "nv-030"
        if name.endswith(("_id", "_by")):
            return "nv-027"
        return f"nội dung {name}"
    if annotation is datetime or getattr(annotation, "__name__", "") == "AwareDatetime":
        return SAMPLE_MOMENT
    if annotation is date:
        return SAMPLE_DAY
    if annotation is time:
        return time(7, 30)
    if annotation is uuid.UUID:
        return uuid.UUID(int=7)
    if annotation is bool:
        return False
    if annotation is int:
        return 2
    if annotation is float:
        return 1.5
    raise TypeError(f"no sample for {name}: {annotation!r}")


def sample(cls: type[BaseModel]) -> BaseModel:
    return cls(**{name: _sample_value(name, f.annotation) for name, f in cls.model_fields.items()})


def sample_event(event_type: str) -> BaseModel:
    return sample(event_class(event_type))


def rendered(rule, locale: str) -> tuple[str, str]:
    event = sample_event(rule.event_type)
    values = context(event, locale, recipient_name="Lê Thị Mai", department_name="Sở Thông tin và Truyền thông",
                     people=PEOPLE, divisions=DIVISIONS, secret=rule.secret)
    if rule.personal == "roster_assignment":
        values["assignment"] = roster_assignment(
            [{"day": "2037-01-09", "on_site": ["nv-030"], "at_home": []},
             {"day": "2037-01-12", "on_site": [], "at_home": ["nv-030"]}], "nv-030", locale)
    return render(rule.name, locale, values)


def _placeholders(template: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", template))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_vietnamese_text_of_every_template(rule):
    title, body = rendered(rule, "vi")
    template = catalogue("vi")[rule.name]
    for text in (title, body):
        assert text and "{" not in text and "}" not in text
        assert unicodedata.is_normalized("NFC", text)
        assert not ISO_DATE.search(text), text
    # The template's own words carry Vietnamese diacritics (not an English or unaccented text).
    literal = re.sub(r"{\w+}", "", template["title"] + template["body"]).lower()
    assert set(literal) & VIETNAMESE, rule.name
    fields = event_class(rule.event_type).model_fields
    used = _placeholders(template["title"] + template["body"]) & set(fields)
    kinds = {_kind(fields[f].annotation) for f in used}
    if kinds & {"date", "datetime"}:
        assert "09/01/2037" in title + body, rule.name
    if "datetime" in kinds:
        assert "08:45 09/01/2037" in title + body, rule.name  # local time, not UTC


def _kind(annotation) -> str:
    if annotation is datetime or getattr(annotation, "__name__", "") == "AwareDatetime":
        return "datetime"
    if annotation is date or typing.get_args(annotation) == (date, ...):
        return "date"
    return "other"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_english_text_of_every_template(rule):
    title, body = rendered(rule, "en")
    template = catalogue("en")[rule.name]
    literal = re.sub(r"{\w+}", "", template["title"] + template["body"]).lower()
    assert not set(literal) & VIETNAMESE, rule.name
    assert "{" not in title + body and not ISO_DATE.search(title + body)
    assert _placeholders(template["title"] + template["body"]) <= (
        _placeholders(catalogue("vi")[rule.name]["title"] + catalogue("vi")[rule.name]["body"])
        | set(event_class(rule.event_type).model_fields) | {"recipient_name", "department_name"}
        | {f"{f[:-3]}_name" for f in event_class(rule.event_type).model_fields if f.endswith("_id")}
        | {f"{f}_name" for f in event_class(rule.event_type).model_fields if f.endswith("_by")}
    )


def test_leave_request_reads_as_an_official_vietnamese_notice():
    rule = next(r for r in RULES if r.name == "LeaveRequested")
    event = event_class("LeaveRequested")(
        application_id=uuid.uuid4(), person_id="nv-030", division_id="cntt", start_date=date(2037, 1, 9),
        end_date=date(2037, 1, 13), half_day=None, working_dates=(date(2037, 1, 9), date(2037, 1, 13)),
        days=2.0, reason="Việc gia đình")
    values = context(event, "vi", recipient_name="Hoàng Đức Thịnh", department_name="Sở",
                     people=PEOPLE, divisions=DIVISIONS)
    assert render(rule.name, "vi", values) == (
        "Đơn xin nghỉ phép của Lê Thị Mai chờ đồng chí duyệt",
        "Đồng chí Lê Thị Mai (Phòng Công nghệ thông tin) xin nghỉ phép 2 ngày làm việc, từ ngày "
        "09/01/2037 đến ngày 13/01/2037 (các ngày: 09/01/2037, 13/01/2037). Lý do: Việc gia đình. "
        "Đề nghị đồng chí xem xét, ký duyệt trên hệ thống.",
    )


def test_values_read_as_people_read_them():
    assert format_value(0.5, "vi") == "0,5" and format_value(0.5, "en") == "0.5"
    assert format_value(SAMPLE_MOMENT, "vi") == "08:45 09/01/2037"
    assert format_value((SAMPLE_DAY, date(2037, 1, 13)), "vi") == "09/01/2037, 13/01/2037"
    assert format_value("", "vi") == "(không nêu)" and format_value(None, "en") == "none"
    returned = sample_event("DraftReturned").model_copy(update={"stage": "format"})
    values = context(returned, "vi", recipient_name="", department_name="", people=PEOPLE, divisions=DIVISIONS)
    assert values["stage"] == "thẩm định thể thức" and values["reviewer_name"] == "Hoàng Đức Thịnh"
    assert roster_assignment([{"day": "2037-01-09", "on_site": ["a"], "at_home": []}], "a", "vi") == \
        "09/01/2037: trực tại cơ quan"


def test_secret_rules_cannot_show_any_payload_value():
    secret_rules = [r for r in RULES if r.secret]
    assert secret_rules
    for rule in secret_rules:
        event = sample_event(rule.event_type)
        values = context(event, "vi", recipient_name="Lê Thị Mai", department_name="Sở",
                         people=PEOPLE, divisions=DIVISIONS, secret=True)
        assert set(values) == {"recipient_name", "department_name"}
        for locale in ("vi", "en"):
            title, body = rendered(rule, locale)
            payload_text = [str(v) for v in event.model_dump(mode="json").values()]
            assert not any(v and v in title + body for v in payload_text if v not in PEOPLE.values())
        title, body = rendered(rule, "vi")
        assert (title, body) == ("Đề nghị đồng chí đến cơ quan",
                                 "Kính gửi đồng chí Lê Thị Mai: đề nghị đồng chí đến cơ quan, liên hệ Văn phòng Sở.")
