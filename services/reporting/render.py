"""The report as an official document: HTML (for browsers and the PDF), PDF, and a few summary lines.

The layout follows the administrative report form of Decree 30/2020/NĐ-CP: the issuing
department and number on the left, the national name and motto on the right, the place and
date, "BÁO CÁO" and its subject, numbered sections with Roman numerals, tables per division,
the recipients and the signer. Nothing in it depends on the clock or the machine, so the
same figures give the same bytes (the PDF too: WeasyPrint writes no creation date or random id).
"""

from __future__ import annotations

from datetime import date
from html import escape

from services.reporting import charts
from services.reporting.texts import ROMAN, Texts

CSS = """
@page { size: A4; margin: 20mm 15mm 20mm 30mm;
        @bottom-center { content: counter(page); font-size: 10pt; } }
body { font-family: "Times New Roman", "Liberation Serif", "DejaVu Serif", serif; font-size: 13pt;
       line-height: 1.35; color: #000; margin: 0; }
@media screen { body { background: #e8e8e8; }
  .page { background: #fff; max-width: 165mm; margin: 16px auto; padding: 20mm 15mm 20mm 30mm;
          box-shadow: 0 0 6px #999; } }
table.masthead { width: 100%; border-collapse: collapse; margin-bottom: 6pt; }
.masthead td { vertical-align: top; text-align: center; padding: 0; }
.masthead td.agency { width: 44%; }
.agency .superior { font-size: 12pt; }
.masthead { font-size: 12pt; }
.agency .name, .nation, .motto { font-weight: bold; }
.agency .name { font-size: 12pt; }
.nation { font-size: 12pt; }
.rule { width: 35%; margin: 2pt auto 6pt; border-top: 1px solid #000; }
.motto .rule { width: 60%; }
.number { font-size: 13pt; }
.place-date { font-style: italic; margin-top: 6pt; }
.title { text-align: center; font-weight: bold; margin: 14pt 0 0; }
.subject { text-align: center; font-weight: bold; margin: 2pt 0 0; }
.as-of { text-align: center; font-style: italic; margin: 2pt 0 10pt; font-size: 12pt; }
p { text-align: justify; margin: 3pt 0; text-indent: 1cm; }
h2 { font-size: 13pt; font-weight: bold; margin: 12pt 0 4pt; page-break-after: avoid; }
ul { margin: 2pt 0 4pt 1cm; padding: 0; }
table.data { width: 100%; border-collapse: collapse; font-size: 10.5pt; margin: 6pt 0; line-height: 1.2; }
.data th, .data td { border: 1px solid #000; padding: 2pt 3pt; }
.data th { text-align: center; font-weight: bold; }
.data td.n { text-align: center; }
.data tr.total td { font-weight: bold; }
.data tr { page-break-inside: avoid; }
figure { margin: 6pt 0; text-align: center; page-break-inside: avoid; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-style: italic; font-size: 11pt; }
table.closing { width: 100%; border-collapse: collapse; margin-top: 14pt; page-break-inside: avoid; }
.closing td { vertical-align: top; padding: 0; }
.recipients { font-size: 11pt; width: 50%; }
.recipients b { font-style: italic; font-size: 12pt; }
.signer { text-align: center; font-weight: bold; }
.signer .name { margin-top: 48pt; }
.generated { font-size: 9pt; font-style: italic; color: #444; margin-top: 16pt; text-indent: 0; }
"""


def _place(department_name: str) -> str | None:
    """"Sở Thông tin và Truyền thông tỉnh Thanh Hóa" -> "Thanh Hóa" (the place in the date line)."""
    for word in (" tỉnh ", " thành phố "):
        if word in department_name:
            return department_name.split(word, 1)[1].strip()
    return None


def _agency(department_name: str, place: str | None) -> str:
    if place:
        for word in (" tỉnh ", " thành phố "):
            department_name = department_name.split(word, 1)[0]
    return department_name.upper()


class _Doc:
    def __init__(self, t: Texts) -> None:
        self.t = t
        self.parts: list[str] = []
        self.section = 0

    def add(self, html: str) -> None:
        self.parts.append(html)

    def h2(self, key: str) -> None:
        self.add(f"<h2>{ROMAN[self.section]}. {escape(self.t(key))}</h2>")
        self.section += 1

    def p(self, text: str) -> None:
        self.add(f"<p>{escape(text)}</p>")

    def items(self, lines: list[str]) -> None:
        self.add("<ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>")

    def table(self, header: list[str], rows: list[list], total: list | None = None) -> None:
        def cell(value, tag="td") -> str:
            numeric = isinstance(value, (int, float)) or value is None
            text = self.t.number(value) if numeric else str(value)
            return f'<{tag}{" class=n" if numeric and tag == "td" else ""}>{escape(text)}</{tag}>'

        html = ["<table class=data><thead><tr>", *(f"<th>{escape(h)}</th>" for h in header), "</tr></thead><tbody>"]
        for row in rows:
            html.append("<tr>" + "".join(cell(v) for v in row) + "</tr>")
        if total:
            html.append("<tr class=total>" + "".join(cell(v) for v in total) + "</tr>")
        html.append("</tbody></table>")
        self.add("".join(html))

    def figure(self, svg: str, caption: str) -> None:
        self.add(f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>")


def _masthead(doc: _Doc, report: dict) -> None:
    t = doc.t
    name = report["department"]["name"]
    place = _place(name)
    day = date.fromisoformat(report["end"])
    when = (t("place_date", place=place, d=day.day, m=day.month, y=day.year) if place
            else t("date_only", d=day.day, m=day.month, y=day.year))
    superior = f'<div class=superior>{escape(t("superior", place=place.upper()))}</div>' if place else ""
    doc.add(
        "<table class=masthead><tr>"
        f"<td class=agency>{superior}<div class=name>{escape(_agency(name, place))}</div><div class=rule></div>"
        f'<div class=number>{escape(t("number", symbol=report["department"]["symbol"] or "..."))}</div></td>'
        f'<td><div class=nation>{escape(t("nation"))}</div>'
        f'<div class=motto>{escape(t("motto"))}<div class=rule></div></div>'
        f"<div class=place-date>{escape(when)}</div></td>"
        "</tr></table>"
    )
    if report["kind"] == "daily":
        subject = t("title_daily", day=t.date(report["start"]))
    else:
        subject = t("title_period", start=t.date(report["start"]), end=t.date(report["end"]))
    doc.add(f'<div class=title>{escape(t("report"))}</div><div class=subject>{escape(subject)}</div>')
    data_as_of = report["data_as_of"]
    doc.add(f'<div class=as-of>{escape(t("data_as_of", time=t.moment(data_as_of)) if data_as_of else t("no_data"))}</div>')
    if report["as_of"]:
        doc.p(t("as_of_note", time=t.moment(report["as_of"])))
    plan = report["plan"]
    doc.p(t("intro", plan=plan["title"]) if plan else t("intro_no_plan"))


def _closing(doc: _Doc, report: dict) -> None:
    t = doc.t
    doc.p(t("closing"))
    recipients = "".join(f"<div>- {escape(x)}</div>" for x in t.words["recipients_list"])
    chief = report["chief_of_office"] or ""
    doc.add(
        "<table class=closing><tr>"
        f'<td class=recipients><b>{escape(t("recipients"))}</b>{recipients}</td>'
        f'<td class=signer><div>{escape(t("signer"))}</div><div class=name>{escape(chief)}</div></td>'
        "</tr></table>"
        f'<p class=generated>{escape(t("generated"))}</p>'
    )


def _daily(doc: _Doc, day: dict) -> None:
    t = doc.t
    roster, presence = day["roster"], day["presence"]
    doc.h2("s_roster")
    if not day["working_day"]:
        doc.p(t("not_working_day", day=t.date(day["day"]),
                holiday=f" ({day['holiday']})" if day["holiday"] else ""))
    state = roster["state"]
    decided = roster["decided_by"]
    if state == "approved":
        key = "state_approved_override" if roster["overridden"] else "state_approved"
        doc.p(t(key, name=decided["name"], time=t.moment(roster["decided_at"]), n=roster["overridden"]))
    elif state == "returned":
        doc.p(t("state_returned", name=decided["name"], time=t.moment(roster["decided_at"]),
                reason=roster["return_reason"]))
    else:
        doc.p(t(f"state_{state}"))
    doc.p(t("roster_summary", on_site=roster["on_site"], at_home=roster["at_home"], on_leave=roster["on_leave"]))
    leaders = roster["department_leaders_on_site"]
    doc.p(t("leaders_on_site", names=", ".join(leaders)) if leaders else t("no_leader_on_site"))
    if day["working_day"]:
        missing = roster["missing_divisions"]
        doc.p(t("missing_divisions", names=", ".join(m["name"] for m in missing)) if missing
              else t("no_missing_divisions"))
    rows = roster["divisions"]
    doc.table(
        [t("c_no"), t("c_division"), t("c_submitted"), t("c_on_site"), t("c_at_home"), t("c_on_leave"),
         t("c_leaders"), t("c_violations"), t("c_gaps")],
        [[i, r["name"], t("yes") if r["submitted"] else t("no"), r["on_site"], r["at_home"], r["on_leave"],
          ", ".join(r["leaders_on_site"]) or "-", r["violations"], r["coverage_gaps"]]
         for i, r in enumerate(rows, 1)],
        ["", t("total"), f'{sum(r["submitted"] for r in rows)}/{len(rows)}', roster["on_site"],
         roster["at_home"], roster["on_leave"], "", sum(r["violations"] for r in rows) + sum(
             1 for v in roster["violations"] if v["division_id"] is None),
         sum(r["coverage_gaps"] for r in rows)],
    )
    violations = roster["violations"]
    if violations:
        doc.p(t("violations", n=len(violations)))
        doc.items([f'{v["division"] or t("department")}: {t.rule(v["rule"])}'
                   + (f' ({v["message"]})' if t.locale == "vi" else "") for v in violations])
    else:
        doc.p(t("no_violations"))
    gaps = roster["coverage_gaps"]
    if gaps:
        doc.p(t("gaps", n=len(gaps)))
        doc.items([f'{g["division"]}: {g["name"]}, {t.rule(g["rule"])} '
                   f'({t("gap_open") if g["open"] else t("gap_closed")})' for g in gaps])
    else:
        doc.p(t("no_gaps"))
    if rows:
        doc.figure(charts.stacked_rows(
            [r["name"] for r in rows],
            [(t("c_on_site"), [r["on_site"] for r in rows]), (t("c_at_home"), [r["at_home"] for r in rows]),
             (t("c_on_leave"), [r["on_leave"] for r in rows])],
            t("chart_divisions")), t("chart_divisions"))

    doc.h2("s_presence")
    if presence["expected"]:
        doc.p(t("presence_summary", sessions=presence["sessions"], checked=presence["checked_in"],
                expected=presence["expected"], rate=t.percent(presence["rate"]), late=presence["late"],
                away=presence["away_from_registered_place"]))
    else:
        doc.p(t("presence_none"))
    missed = presence["missed"]
    if missed:
        doc.p(t("missed", n=len(missed)))
        doc.table([t("c_no"), t("c_name"), t("c_division"), t("c_session"), t("c_note")],
                  [[i, m["name"], m["division"], t.session(m["session"]),
                    t("checked_in_later") if m["checked_in_later"] else t("not_checked_in")]
                   for i, m in enumerate(missed, 1)])
    else:
        doc.p(t("no_missed"))
    doc.p(t("health", **presence["health"]))

    leave = day["leave"]
    doc.h2("s_leave")
    doc.p(t("leave_summary", **{k: leave[k] for k in ("requested", "approved", "rejected", "cancelled", "pending")}))
    on_leave = leave["on_leave"]
    doc.p(t("on_leave_list", n=len(on_leave), names="; ".join(f'{x["name"]} ({x["division"]})' for x in on_leave))
          if on_leave else t("nobody_on_leave"))

    documents, tasks = day["documents"], day["tasks"]
    doc.h2("s_documents")
    doc.p(t("documents_summary", received=documents["received"], drafts=documents["drafts_submitted"],
            issued=documents["issued"]))
    doc.p(t("documents_stock", in_progress=documents["in_progress"], incoming=documents["incoming_open"],
            drafts=documents["drafts_open"], awaiting=documents["awaiting_signature"], overdue=documents["overdue"]))
    hours = documents["median_hours_to_issue"]
    doc.p(t("lead_time", hours=t.hours(hours)) if hours is not None else t("no_lead_time"))

    doc.h2("s_tasks")
    doc.p(t("tasks_summary", **tasks))
    work = day["work_by_division"]
    doc.table(
        [t("c_no"), t("c_division"), t("c_documents_open"), t("c_documents_overdue"), t("c_tasks_open"),
         t("c_tasks_overdue")],
        [[i, w["name"], w["documents_open"], w["documents_overdue"], w["tasks_open"], w["tasks_overdue"]]
         for i, w in enumerate(work, 1)],
    )
    _notifications(doc, day["notifications"])


def _notifications(doc: _Doc, notifications: dict) -> None:
    t = doc.t
    doc.h2("s_notifications")
    doc.p(t("notifications_summary", delivered=notifications["delivered"], failed=notifications["failed"]))
    by_channel = notifications.get("by_channel")
    if by_channel:
        doc.table([t("c_channel"), t("c_delivered"), t("c_failed")],
                  [[t(f"channel_{c}"), v["delivered"], v["failed"]] for c, v in by_channel.items()])


def _period(doc: _Doc, report: dict) -> None:
    t = doc.t
    totals, trend = report["totals"], report["trend"]
    working = [d for d in trend if d["working_day"]]
    labels = [t.date(d["day"])[:5] for d in working]

    doc.h2("s_roster")
    doc.p(t("period_roster", working=totals["working_days"], approved=totals["days_approved"],
            on_site=totals["on_site_person_days"], avg_on_site=t.number(totals["average_on_site"]),
            at_home=totals["at_home_person_days"], avg_at_home=t.number(totals["average_at_home"]),
            on_leave=totals["on_leave_person_days"], missing=totals["missing_lists"],
            violations=totals["violations"], gaps=totals["coverage_gaps"]))
    if working:
        doc.figure(charts.stacked_columns(
            labels, [(t("c_on_site"), [d["on_site"] for d in working]),
                     (t("c_at_home"), [d["at_home"] for d in working]),
                     (t("c_on_leave"), [d["on_leave"] for d in working])], t("chart_days")), t("chart_days"))

    doc.h2("s_presence")
    doc.p(t("period_presence", checked=totals["check_ins"], expected=totals["expected_check_ins"],
            rate=t.percent(totals["check_in_rate"]), missed=totals["missed_check_ins"], late=totals["late_check_ins"]))
    if working:
        doc.figure(charts.line(labels, [d["check_in_rate"] for d in working], t("chart_rate")), t("chart_rate"))

    doc.h2("s_leave")
    doc.p(t("leave_summary_period", requested=totals["leave_requested"], approved=totals["leave_approved"],
            rejected=totals["leave_rejected"], cancelled=totals["leave_cancelled"], pending=totals["leave_pending"],
            person_days=totals["on_leave_person_days"]))

    doc.h2("s_documents")
    doc.p(t("documents_summary", received=totals["documents_received"], drafts=totals["drafts_submitted"],
            issued=totals["documents_issued"]))
    doc.p(t("period_documents_stock", in_progress=totals["documents_in_progress"],
            awaiting=totals["awaiting_signature"], overdue=totals["documents_overdue"]))
    hours = totals["median_hours_to_issue"]
    doc.p(t("lead_time", hours=t.hours(hours)) if hours is not None else t("no_lead_time"))

    doc.h2("s_tasks")
    doc.p(t("period_tasks", assigned=totals["tasks_assigned"], done=totals["tasks_done"],
            open=totals["tasks_open"], overdue=totals["tasks_overdue"]))
    _notifications(doc, {"delivered": totals["notifications_delivered"], "failed": totals["notifications_failed"]})

    doc.h2("s_divisions")
    divisions = report["divisions"]
    doc.table(
        [t("c_no"), t("c_division"), t("c_person_days_on_site"), t("c_person_days_at_home"),
         t("c_person_days_on_leave"), t("c_missing_lists"), t("c_violations"), t("c_check_in_rate")],
        [[i, d["name"], d["on_site_person_days"], d["at_home_person_days"], d["on_leave_person_days"],
          d["missing_lists"], d["violations"], t.percent(d["check_in_rate"])] for i, d in enumerate(divisions, 1)],
    )
    doc.h2("s_trend")
    doc.table(
        [t("c_day"), t("c_on_site"), t("c_at_home"), t("c_on_leave"), t("c_check_in_rate"), t("c_missed"),
         t("c_leave_approved"), t("c_received"), t("c_issued"), t("c_tasks_done"), t("c_notifications")],
        [[t.date(d["day"]), d["on_site"], d["at_home"], d["on_leave"], t.percent(d["check_in_rate"]),
          d["missed_check_ins"], d["leave_approved"], d["documents_received"], d["documents_issued"],
          d["tasks_done"], f'{d["notifications_delivered"]}/{d["notifications_failed"]}'] for d in working],
    )


def title(report: dict, locale: str) -> str:
    t = Texts(locale)
    if report["kind"] == "daily":
        subject = t("title_daily", day=t.date(report["start"]))
    else:
        subject = t("title_period", start=t.date(report["start"]), end=t.date(report["end"]))
    return f'{t("report").capitalize()} {subject[0].lower()}{subject[1:]}' if locale == "vi" else f"Report: {subject}"


def html_document(report: dict, locale: str = "vi") -> str:
    t = Texts(locale)
    doc = _Doc(t)
    _masthead(doc, report)
    if report["kind"] == "daily":
        _daily(doc, report["day"])
    else:
        _period(doc, report)
    _closing(doc, report)
    return (
        f'<!DOCTYPE html>\n<html lang="{t.locale}"><head><meta charset="utf-8">'
        f"<title>{escape(title(report, t.locale))}</title><style>{CSS}</style></head>"
        f'<body><article class="page">{"".join(doc.parts)}</article></body></html>\n'
    )


def pdf_document(html: str) -> bytes:
    import logging

    # A line per layout step, and three as it loads its own stylesheets on import.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    from weasyprint import HTML  # imported when first needed: it takes most of a second

    return HTML(string=html).write_pdf()


def summary_lines(report: dict, locale: str = "vi") -> list[str]:
    """A few lines for a chat message or a terminal."""
    t = Texts(locale)
    if report["kind"] == "period":
        totals = report["totals"]
        return [t("summary_period", start=t.date(report["start"]), end=t.date(report["end"]),
                  working=totals["working_days"], avg_on_site=t.number(totals["average_on_site"]),
                  rate=t.percent(totals["check_in_rate"]))]
    day = report["day"]
    roster, presence, documents = day["roster"], day["presence"], day["documents"]
    return [
        t("summary_daily", day=t.date(day["day"]), on_site=roster["on_site"], at_home=roster["at_home"],
          on_leave=roster["on_leave"], state=t(f"state_short_{roster['state']}")),
        t("summary_presence", checked=presence["checked_in"], expected=presence["expected"],
          rate=t.percent(presence["rate"]), missed=len(presence["missed"])),
        t("summary_work", received=documents["received"], issued=documents["issued"],
          awaiting=documents["awaiting_signature"], overdue=documents["overdue"], open=day["tasks"]["open"],
          tasks_overdue=day["tasks"]["overdue"]),
    ]
