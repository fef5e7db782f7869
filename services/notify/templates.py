"""Notification texts from templates: Vietnamese by default, English second, per the recipient.

Templates live in `templates/<locale>.toml`, one table per kind with `title` and `body`, in
Python's `str.format` syntax. Every payload field of the event is available, formatted for
the locale (dates dd/mm/yyyy, times local HH:MM, numbers with a decimal comma in Vietnamese),
and for each `<x>_id` / `<x>_by` naming a person or division also `<x>_name` (`<x>_ids`:
`<x>_names`); enumerated values are translated by the file's `[_values.<field>]` table. A secret rule's template sees only `recipient_name` and `department_name`.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from shared.contracts import Event
from shared.localtime import LOCAL_TZ, vn_date

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = ("vi", "en")
DEFAULT_LOCALE = "vi"


class TemplateError(KeyError):
    """A template names a value its context does not have, or a kind has no template."""


@cache
def catalogue(locale: str) -> dict[str, dict[str, str]]:
    with (TEMPLATES / f"{locale}.toml").open("rb") as f:
        return tomllib.load(f)


def locale_of(preferred: str | None) -> str:
    return preferred if preferred in LOCALES else DEFAULT_LOCALE


def words(locale: str) -> dict[str, str]:
    return catalogue(locale_of(locale))["_words"]


def format_value(value, locale: str) -> str | None:
    """A payload value as the recipient reads it; None for structures templates do not show."""
    w = words(locale)
    match value:
        case None:
            return w["none"]
        case bool():
            return w["yes"] if value else w["no"]
        case str():
            return value if value.strip() else w["empty"]
        case datetime():
            local = value.astimezone(LOCAL_TZ) if value.tzinfo else value
            return f"{local:%H:%M} {vn_date(local.date())}"
        case date():
            return vn_date(value)
        case time():
            return f"{value:%H:%M}"
        case int():
            return str(value)
        case float():
            text = f"{value:g}"
            return text.replace(".", ",") if locale == "vi" else text
        case uuid.UUID():
            return str(value)
        case tuple() | list() | frozenset():
            parts = [format_value(v, locale) for v in value]
            if any(p is None for p in parts):
                return None
            return ", ".join(parts) if parts else w["none"]
        case BaseModel() | dict():
            return None
    return str(value)


def _name_keys(field: str) -> tuple[str, bool] | None:
    """`approver_id` -> (`approver_name`, single); `invitee_ids` -> (`invitee_names`, many)."""
    for suffix, plural in (("_ids", True), ("_id", False), ("_by", False)):
        if field.endswith(suffix):
            stem = field[: -len(suffix)] if suffix != "_by" else field
            return (f"{stem}_names" if plural else f"{stem}_name"), plural
    return None


def context(
    event: Event,
    locale: str,
    *,
    recipient_name: str,
    department_name: str,
    people: Mapping[str, str],
    divisions: Mapping[str, str],
    secret: bool = False,
) -> dict[str, str]:
    values = {"recipient_name": recipient_name, "department_name": department_name}
    if secret:
        return values
    translated = catalogue(locale_of(locale)).get("_values", {})
    for field in type(event).model_fields:
        value = getattr(event, field)
        shown = format_value(value, locale)
        if shown is not None:
            values[field] = translated.get(field, {}).get(value, shown) if isinstance(value, str) else shown
        keys = _name_keys(field)
        if keys is None:
            continue
        key, plural = keys
        names = divisions if "division" in field else people
        if plural and isinstance(value, tuple):
            values[key] = ", ".join(names.get(v, v) for v in value) or words(locale)["none"]
        elif isinstance(value, str):
            # Someone the directory copy does not know (yet: directory and events arrive on
            # separate queues) is named by their id rather than losing the notification.
            values[key] = names.get(value, value)
    return values


class _Strict(dict):
    def __missing__(self, key: str) -> str:
        raise TemplateError(f"the template needs {{{key}}}, which its context does not have")


def render(kind: str, locale: str, values: Mapping[str, str]) -> tuple[str, str]:
    """The (title, body) of a kind of notification in a locale (Vietnamese when missing)."""
    locale = locale_of(locale)
    template = catalogue(locale).get(kind) or catalogue(DEFAULT_LOCALE).get(kind)
    if template is None:
        raise TemplateError(f"no template for {kind!r}")
    strict = _Strict(values)
    return template["title"].format_map(strict).strip(), template["body"].format_map(strict).strip()


def email_footer(locale: str, department_name: str) -> str:
    return words(locale)["email_footer"].format(department_name=department_name)
