"""Workspace scenarios, part two: legal (contract renewals from PDFs), IT operations (an incident),
procurement (vendor quotes in a spreadsheet), project management (a weekly status report)."""

from __future__ import annotations

from typing import Any

from builders import at, call, change, check, days_after, mail, money, op, stage, task
from office import WEEKS, _address

# ----- legal: renewal dates live in PDFs -----------------------------------------------------------------


CONTRACT_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "window": "2024-09-30",
        "contracts": [
            ("acme", "Acme Hosting", "2024-10-31", 60),
            ("brightline", "Brightline Security", "2025-01-15", 30),
            ("corvid", "Corvid Analytics", "2024-12-01", 90),
        ],
        "amend": ("brightline", "2024-10-15"),
        "loud": False,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "window": "2024-12-31",
        "contracts": [
            ("delta", "Delta Print", "2024-11-30", 30),
            ("ember", "Ember Cloud", "2025-03-01", 60),
            ("fjord", "Fjord Payroll", "2024-12-20", 45),
        ],
        "amend": ("delta", "2025-02-28"),
        "loud": True,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "window": "2024-12-31",
        "contracts": [
            ("glyph", "Glyph Fonts", "2025-01-31", 60),
            ("halo", "Halo Stock Images", "2025-06-30", 90),
            ("iris", "Iris Translation", "2025-02-15", 30),
        ],
        "amend": ("halo", "2025-02-10"),
        "loud": True,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "window": "2025-01-31",
        "contracts": [
            ("juno", "Juno CRM", "2025-02-28", 60),
            ("kite", "Kite Telephony", "2025-04-30", 30),
            ("lark", "Lark Events", "2025-03-15", 45),
        ],
        "amend": ("kite", "2025-02-20"),
        "loud": False,
    },
]


def _contract_pdf(name: str, renewal: str, notice: int, version: str) -> dict[str, Any]:
    return {
        "pdf": {
            "title": f"Service agreement: {name} ({version})",
            "lines": [
                f"Supplier: {name}",
                "Customer: our company",
                f"Renewal date: {renewal}",
                f"Notice period: {notice} days before the renewal date",
                "The agreement renews for twelve months unless notice is given.",
            ],
        }
    }


def _deadline(renewal: str, notice: int) -> str:
    return days_after(renewal, -notice)


def contracts(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, legal = _address(v["me"], org), f"legal@{org}"
    items = sorted(v["contracts"])
    tracker = "legal/tracker.xlsx"
    world = {
        "files": [
            *(
                {"path": f"contracts/{key}.pdf", **_contract_pdf(name, renewal, notice, "signed")}
                for key, name, renewal, notice in items
            ),
            {"path": tracker, "sheets": {"Tracker": [["Vendor", "Renewal date", "Notice deadline"]]}},
        ],
        "pages": [
            {
                "slug": "legal/renewals",
                "title": "Renewals",
                "body": "The notice deadline is the renewal date minus the notice period. Legal wants a "
                "calendar "
                "reminder on each deadline that falls inside the review window.",
            }
        ],
    }
    reads = [
        call("list_files", path="contracts"),
        *(call("read_pdf", path=f"contracts/{key}.pdf") for key, *_ in items),
    ]

    def rows(entries: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
        out = []
        for number, (_, name, renewal, notice) in enumerate(entries, start=2):
            out += [
                call("set_cell", path=tracker, cell=f"A{number}", value=name, sheet="Tracker"),
                call("set_cell", path=tracker, cell=f"B{number}", value=renewal, sheet="Tracker"),
                call(
                    "set_cell",
                    path=tracker,
                    cell=f"C{number}",
                    value=_deadline(renewal, notice),
                    sheet="Tracker",
                ),
            ]
        return out

    day1 = stage(
        at(week, 9),
        f"Please fill {tracker} (sheet Tracker): one row per contract in contracts/, in file-name order from "
        f"row 2: "
        "vendor (A), renewal date (B) and notice deadline (C, the renewal date minus the notice period), "
        "dates as "
        "YYYY-MM-DD.",
        [*reads, *rows(items)],
        [
            check(
                f"deadline-{key}",
                "cell",
                f"the notice deadline of {name} is in the tracker",
                1.0,
                path=tracker,
                cell=f"C{n}",
                value=_deadline(renewal, notice),
                sheet="Tracker",
            )
            for n, (key, name, renewal, notice) in enumerate(items, start=2)
        ]
        + [
            check(
                "vendors",
                "cell",
                "the first row names the first vendor",
                0.5,
                path=tracker,
                cell="A2",
                value=items[0][1],
                sheet="Tracker",
            )
        ],
    )
    key, new_renewal = v["amend"]
    amended = [(k, n, new_renewal if k == key else r, d) for k, n, r, d in items]
    row = 2 + [k for k, *_ in items].index(key)
    name = next(n for k, n, *_ in items if k == key)
    notice = next(d for k, _, _, d in items if k == key)
    new_file = {"path": f"contracts/{key}.pdf", **_contract_pdf(name, new_renewal, notice, "amended")}
    if v["loud"]:
        amendment = mail(
            "in-1",
            f"contracts@{key}.example",
            "Amended agreement",
            f"Please find our amended agreement attached; the renewal date is now {new_renewal}. "
            f"It replaces contracts/{key}.pdf.",
            at(days_after(week, 1), 7, 50),
            attachments=[
                {"name": f"{key}-amended.pdf", **_contract_pdf(name, new_renewal, notice, "amended")}
            ],
        )
        changes = [
            change(
                "loud",
                f"New mail from {name}: 'Amended agreement' (with a PDF).",
                op("add_mail", mail=amendment),
                op("replace_file", file=new_file),
            )
        ]
        fresh = [
            call("read_mail", mail_id="in-1"),
            call("save_attachment", mail_id="in-1", name=f"{key}-amended.pdf", path=f"contracts/{key}.pdf"),
            call("read_pdf", path=f"contracts/{key}.pdf"),
        ]
    else:
        changes = [
            change(
                "silent",
                f"The amended {name} agreement replaced contracts/{key}.pdf (renewal {new_renewal}).",
                op("replace_file", file=new_file),
            )
        ]
        fresh = [call("read_pdf", path=f"contracts/{key}.pdf")]
    due = [(n, _deadline(r, d)) for _, n, r, d in amended if _deadline(r, d) <= v["window"]]
    stale_due = [(n, _deadline(r, d)) for _, n, r, d in items if _deadline(r, d) <= v["window"]]
    assert due != stale_due, f"contracts-{index + 1}: the amendment must change what is due"
    listing = "; ".join(f"{n}: {d}" for n, d in due)

    def reminders(entries: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [
            call("create_event", title=f"Notice deadline: {n}", start=at(d, 9), end=at(d, 9, 30))
            for n, d in entries
        ]

    day2 = stage(
        at(days_after(week, 1), 9),
        f"Please make sure the tracker matches the contracts as they are now. Then, for every contract whose "
        f"notice "
        f"deadline is on or before {v['window']}, put a reminder 'Notice deadline: VENDOR' in my calendar on "
        f"the "
        f"deadline day, 09:00-09:30 UTC, and mail {legal} the list of those vendors with their deadlines.",
        [
            *fresh,
            call("set_cell", path=tracker, cell=f"B{row}", value=new_renewal, sheet="Tracker"),
            call(
                "set_cell",
                path=tracker,
                cell=f"C{row}",
                value=_deadline(new_renewal, notice),
                sheet="Tracker",
            ),
            *reminders(due),
            call(
                "send_mail",
                to=[legal],
                subject="Upcoming notice deadlines",
                body=f"Notice deadlines due: {listing}.",
            ),
        ],
        [
            check(
                "tracker-current",
                "cell",
                f"the tracker has {name}'s amended deadline",
                2.0,
                path=tracker,
                cell=f"C{row}",
                value=_deadline(new_renewal, notice),
                sheet="Tracker",
            ),
            *(
                check(
                    f"reminder-{n.split()[0].lower()}",
                    "event",
                    f"a reminder on {n}'s deadline",
                    1.0,
                    title_has=f"Notice deadline: {n}",
                    start=at(d, 9),
                )
                for n, d in due
            ),
            check(
                "legal-told",
                "mail_sent",
                "legal got every due vendor and deadline",
                1.0,
                to=legal,
                body_has=[x for pair in due for x in pair],
                stage=1,
            ),
        ]
        + [
            check(
                f"no-stale-{n.split()[0].lower()}",
                "no_event_at",
                f"no reminder at {n}'s old deadline",
                1.0,
                title_has=f"Notice deadline: {n}",
                start=at(d, 9),
            )
            for n, d in stale_due
            if (n, d) not in due
        ],
        changes=changes,
        stale=[
            *reminders(stale_due),
            call(
                "send_mail",
                to=[legal],
                subject="Upcoming notice deadlines",
                body="Notice deadlines due: " + "; ".join(f"{n}: {d}" for n, d in stale_due),
            ),
        ],
    )
    final = [
        check(
            "end-tracker",
            "cell",
            "at the end the tracker has the amended renewal date",
            1.0,
            path=tracker,
            cell=f"B{row}",
            value=new_renewal,
            sheet="Tracker",
        )
    ]
    return task(
        f"contracts-{index + 1}",
        "contracts",
        "contract renewal tracker",
        me,
        v["me"],
        world,
        [day1, day2],
        final,
    )


# ----- IT operations: an incident that resolves overnight -----------------------------------------------


INCIDENT_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "inc": "INC-2041",
        "service": "checkout API",
        "sev": "SEV-2",
        "symptom": "HTTP 502 errors on 12% of checkout requests",
        "cause": "expired TLS certificate on the payments gateway",
        "loud": True,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "inc": "INC-3107",
        "service": "nightly ETL",
        "sev": "SEV-3",
        "symptom": "the sales dashboard shows yesterday's numbers",
        "cause": "a full disk on the warehouse loader",
        "loud": False,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "inc": "INC-1188",
        "service": "asset CDN",
        "sev": "SEV-2",
        "symptom": "images time out for customers in Europe",
        "cause": "a misrouted DNS record after the provider migration",
        "loud": False,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "inc": "INC-5520",
        "service": "lead sync",
        "sev": "SEV-3",
        "symptom": "new leads reach the CRM with a two-hour delay",
        "cause": "an API rate limit after the partner upgrade",
        "loud": True,
    },
]


def incidents(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, leads, support = _address(v["me"], org), f"ops-leads@{org}", f"support@{org}"
    inc, slug = v["inc"], f"incidents/{v['inc'].lower()}"
    world = {
        "records": [
            {
                "collection": "incidents",
                "id": inc,
                "fields": {"service": v["service"], "severity": v["sev"], "status": "investigating"},
            }
        ],
        "pages": [
            {
                "slug": "runbooks/incidents",
                "title": "Incident runbook",
                "body": "Keep one page per incident (incidents/inc-NNNN) with service, severity, status and, "
                "once "
                "known, the root cause. When an incident is resolved, tell ops-leads and support.",
            }
        ],
        "mail": [
            mail(
                "m001",
                f"monitoring@{org}",
                f"[{v['sev']}] {inc}: {v['service']}",
                f"Alert: {v['symptom']}. Incident {inc} opened.",
                at(week, 8, 10),
            )
        ],
    }
    day1 = stage(
        at(week, 9),
        f"{inc} is open. Please write its incident page ({slug}) as the runbook says, with what the alert "
        f"reports, and "
        f"mail the current status to {leads}.",
        [
            call("read_page", slug="runbooks/incidents"),
            call("get_record", collection="incidents", record_id=inc),
            call("read_mail", mail_id="m001"),
            call(
                "write_page",
                slug=slug,
                title=f"{inc}: {v['service']}",
                body=f"Service: {v['service']}\nSeverity: {v['sev']}\nStatus: investigating\nSymptom: "
                f"{v['symptom']}",
            ),
            call(
                "send_mail",
                to=[leads],
                subject=f"{inc} status",
                body=f"{inc} ({v['service']}, {v['sev']}) is investigating: {v['symptom']}.",
            ),
        ],
        [
            check(
                "page",
                "page_has",
                "the incident page has service, severity and status",
                2.0,
                slug=slug,
                texts=[v["service"], v["sev"], "investigating"],
            ),
            check(
                "status-mail",
                "mail_sent",
                "ops leads got the status",
                1.0,
                to=leads,
                body_has=[inc, "investigating"],
            ),
        ],
    )
    resolved = op("update_record", collection="incidents", record_id=inc, field="status", value="resolved")
    cause = op("update_record", collection="incidents", record_id=inc, field="root_cause", value=v["cause"])
    if v["loud"]:
        note = mail(
            "in-1",
            f"oncall@{org}",
            f"{inc} resolved",
            f"Fixed overnight. Root cause: {v['cause']}.",
            at(days_after(week, 1), 6, 30),
        )
        changes = [
            change(
                "loud",
                f"New mail from on-call: '{inc} resolved'.",
                resolved,
                cause,
                op("add_mail", mail=note),
            )
        ]
        reads = [call("read_mail", mail_id="in-1"), call("get_record", collection="incidents", record_id=inc)]
    else:
        changes = [
            change(
                "silent",
                f"On-call resolved {inc} overnight and wrote the root cause in the record.",
                resolved,
                cause,
            )
        ]
        reads = [call("get_record", collection="incidents", record_id=inc)]
    body2 = (
        f"Service: {v['service']}\nSeverity: {v['sev']}\nStatus: resolved\nSymptom: {v['symptom']}\n"
        f"Root cause: {v['cause']}"
    )
    day2 = stage(
        at(days_after(week, 1), 9),
        f"Please bring the {inc} page up to date with the incident's current status and root cause, and "
        f"follow the "
        "runbook for who to tell.",
        [
            *reads,
            call("write_page", slug=slug, title=f"{inc}: {v['service']}", body=body2),
            call(
                "send_mail",
                to=[leads, support],
                subject=f"{inc} resolved",
                body=f"{inc} ({v['service']}) is resolved. Root cause: {v['cause']}.",
            ),
        ],
        [
            check(
                "page-current",
                "page_has",
                "the page says resolved, with the root cause",
                2.0,
                slug=slug,
                texts=["resolved", v["cause"]],
                lacks=["investigating"],
            ),
            check(
                "support-told",
                "mail_sent",
                "support heard it is resolved",
                1.0,
                to=support,
                body_has=[inc, "resolved"],
                stage=1,
            ),
            check(
                "leads-told",
                "mail_sent",
                "ops leads heard it is resolved",
                1.0,
                to=leads,
                body_has=["resolved"],
                stage=1,
            ),
        ],
        changes=changes,
        stale=[
            call(
                "write_page",
                slug=slug,
                title=f"{inc}: {v['service']}",
                body=f"Service: {v['service']}\nSeverity: {v['sev']}\nStatus: investigating\nSymptom: "
                f"{v['symptom']}",
            )
        ],
    )
    final = [
        check(
            "end-cause",
            "page_has",
            "at the end the page names the root cause",
            1.0,
            slug=slug,
            texts=[v["cause"]],
        )
    ]
    return task(
        f"incidents-{index + 1}", "incidents", f"incident {inc}", me, v["me"], world, [day1, day2], final
    )


# ----- procurement: the cheapest qualifying vendor changes -----------------------------------------------


PROCUREMENT_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "item": "laptops",
        "qty": 40,
        "pr": "PR-77",
        "max_days": 10,
        "vendors": [("Atlas Supply", 912.00, 7), ("Beacon IT", 879.00, 14), ("Cobalt Direct", 934.50, 5)],
        "edit": ("B", 2, 949.00),
        "loud": True,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "item": "monitors",
        "qty": 25,
        "pr": "PR-81",
        "max_days": 7,
        "vendors": [("Delta Screens", 212.00, 6), ("Echo Displays", 199.00, 5), ("Falcon Tech", 205.00, 3)],
        "edit": ("C", 3, 12),
        "loud": False,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "item": "drawing tablets",
        "qty": 12,
        "pr": "PR-93",
        "max_days": 10,
        "vendors": [("Gale Graphics", 344.00, 4), ("Hue Works", 329.00, 9), ("Inkwell Pro", 351.00, 2)],
        "edit": ("C", 3, 15),
        "loud": False,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "item": "headsets",
        "qty": 60,
        "pr": "PR-104",
        "max_days": 8,
        "vendors": [("Jade Audio", 79.00, 6), ("Koa Sound", 74.50, 8), ("Lumo Gear", 81.00, 2)],
        "edit": ("B", 3, 82.00),
        "loud": True,
    },
]


def _choose(vendors: list[list[Any]], max_days: int) -> list[Any]:
    return min((row for row in vendors if row[2] <= max_days), key=lambda row: row[1])


def procurement(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, buyers = _address(v["me"], org), f"procurement@{org}"
    rows = [
        [name, price, days, f"sales@{name.split()[0].lower()}.example"] for name, price, days in v["vendors"]
    ]
    sheet = "procurement/quotes.xlsx"
    chosen = _choose(rows, v["max_days"])
    world = {
        "files": [
            {"path": sheet, "sheets": {"Quotes": [["Vendor", "Unit price", "Delivery days", "Email"], *rows]}}
        ],
        "pages": [
            {
                "slug": "procurement/policy",
                "title": "Purchasing policy",
                "body": f"Choose the lowest unit price among vendors that deliver within {v['max_days']} "
                f"days. "
                "Requests go in the requests records with vendor, quantity, unit_price and total.",
            }
        ],
    }
    total = round(v["qty"] * chosen[1], 2)
    pr, qty = v["pr"], v["qty"]
    day1 = stage(
        at(week, 9),
        f"We need {qty} {v['item']}. Following the purchasing policy page, pick the vendor from {sheet} and "
        f"create the "
        f"purchase request record requests/{pr} (fields vendor, quantity, unit_price, total), then mail "
        f"{buyers} the "
        "choice with the total.",
        [
            call("read_page", slug="procurement/policy"),
            call("read_spreadsheet", path=sheet),
            call(
                "create_record",
                collection="requests",
                record_id=pr,
                fields=[
                    f"vendor={chosen[0]}",
                    f"quantity={qty}",
                    f"unit_price={money(chosen[1])}",
                    f"total={money(total)}",
                ],
            ),
            call(
                "send_mail",
                to=[buyers],
                subject=f"{pr}: {v['item']}",
                body=f"{pr}: {qty} {v['item']} from {chosen[0]} at {money(chosen[1])} each, total "
                f"{money(total)}.",
            ),
        ],
        [
            check(
                "vendor",
                "record",
                "the request names the policy's vendor",
                2.0,
                collection="requests",
                id=pr,
                field="vendor",
                value=chosen[0],
            ),
            check(
                "total",
                "record",
                "the request total is right",
                1.0,
                collection="requests",
                id=pr,
                field="total",
                value=money(total),
            ),
            check(
                "buyers-told",
                "mail_sent",
                "procurement got the vendor and total",
                1.0,
                to=buyers,
                body_has=[chosen[0], money(total)],
            ),
        ],
    )
    column, row, value = v["edit"]
    updated = [list(r) for r in rows]
    updated[row - 2][{"B": 1, "C": 2}[column]] = value
    after = _choose(updated, v["max_days"])
    assert after[0] != chosen[0], f"procurement-{index + 1}: the change must change the vendor"
    edit = op("set_cell", path=sheet, cell=f"{column}{row}", value=value, sheet="Quotes")
    what = "unit price" if column == "B" else "delivery time"
    shown = money(value) if column == "B" else f"{value} days"
    if v["loud"]:
        notice = mail(
            "in-1",
            rows[row - 2][3],
            "Updated quote",
            f"Our {what} for the {v['item']} is now {shown}; we updated your quotes sheet.",
            at(days_after(week, 1), 8, 0),
        )
        changes = [
            change(
                "loud",
                f"New mail from {rows[row - 2][0]}: 'Updated quote'.",
                edit,
                op("add_mail", mail=notice),
            )
        ]
    else:
        changes = [
            change("silent", f"{rows[row - 2][0]}'s {what} changed to {shown} in the quotes sheet.", edit)
        ]
    total2 = round(qty * after[1], 2)
    po = f"po/{pr}.pdf"

    def order(vendor: list[Any], amount: float) -> list[dict[str, Any]]:
        return [
            call(
                "create_pdf",
                path=po,
                title=f"Purchase order {pr}",
                text=f"Vendor: {vendor[0]}\nItem: {v['item']}\nQuantity: {qty}\nUnit price: "
                f"{money(vendor[1])}\n"
                f"Total: {money(amount)}",
            ),
            call(
                "send_mail",
                to=[vendor[3]],
                subject=f"Purchase order {pr}",
                body=f"Please find our purchase order {pr} attached (total {money(amount)}).",
                attachments=[po],
            ),
        ]

    day2 = stage(
        at(days_after(week, 1), 9),
        f"Before I sign: please confirm requests/{pr} still follows the purchasing policy with the quotes as "
        f"they are "
        f"now, fix the record if it does not, then write the purchase order {po} (vendor, item, quantity, "
        f"unit price, "
        "total) and mail it to the chosen vendor's address from the quotes sheet.",
        [
            call("read_spreadsheet", path=sheet),
            call("update_record", collection="requests", record_id=pr, field="vendor", value=after[0]),
            call(
                "update_record",
                collection="requests",
                record_id=pr,
                field="unit_price",
                value=money(after[1]),
            ),
            call("update_record", collection="requests", record_id=pr, field="total", value=money(total2)),
            *order(after, total2),
        ],
        [
            check(
                "vendor-current",
                "record",
                "the request names the vendor the policy picks today",
                2.0,
                collection="requests",
                id=pr,
                field="vendor",
                value=after[0],
            ),
            check(
                "po",
                "pdf_has",
                "the purchase order has the right vendor and total",
                2.0,
                path=po,
                texts=[after[0], money(total2)],
            ),
            check(
                "po-sent",
                "mail_sent",
                "the right vendor got the order",
                1.0,
                to=after[3],
                attachments=[f"{pr}.pdf"],
                stage=1,
            ),
            check(
                "no-wrong-vendor", "no_mail", "the vendor no longer chosen got no order", 1.0, to=chosen[3]
            ),
        ],
        changes=changes,
        stale=order(chosen, total),
    )
    final = [
        check(
            "end-total",
            "record",
            "at the end the request total matches the order",
            1.0,
            collection="requests",
            id=pr,
            field="total",
            value=money(total2),
        )
    ]
    return task(
        f"procurement-{index + 1}",
        "procurement",
        f"buy {qty} {v['item']}",
        me,
        v["me"],
        world,
        [day1, day2],
        final,
    )


# ----- project management: a weekly status report ---------------------------------------------------------


STATUS_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "lead": "Sam Ortiz",
        "project": "Apollo",
        "tasks": [
            ("T-1", "API contract", "Ana", "done", 3),
            ("T-2", "Load tests", "Ben", "open", 1),
            ("T-3", "Billing export", "Chen", "open", 6),
            ("T-4", "Audit log", "Dev", "open", -2),
            ("T-5", "Docs site", "Ana", "blocked", 4),
        ],
        "close": "T-4",
        "move": ("T-3", -1),
        "loud": False,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "lead": "Ivy Lam",
        "project": "Tidewater",
        "tasks": [
            ("T-11", "Schema freeze", "Jon", "open", -1),
            ("T-12", "Backfill", "Kai", "open", 5),
            ("T-13", "Alerting", "Lou", "done", 2),
            ("T-14", "Dashboards", "Jon", "open", 8),
        ],
        "close": "T-11",
        "move": ("T-12", -3),
        "loud": True,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "lead": "Mia Costa",
        "project": "Meridian",
        "tasks": [
            ("T-21", "Moodboard", "Noa", "done", -4),
            ("T-22", "Logo options", "Oli", "open", -1),
            ("T-23", "Type scale", "Pia", "open", 2),
            ("T-24", "Icon set", "Noa", "open", 7),
            ("T-25", "Style guide", "Oli", "open", 12),
        ],
        "close": "T-22",
        "move": ("T-24", -6),
        "loud": False,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "lead": "Raj Patel",
        "project": "Northstar",
        "tasks": [
            ("T-31", "Territory map", "Sue", "open", 2),
            ("T-32", "Pricing sheet", "Tia", "open", -3),
            ("T-33", "Partner list", "Vic", "done", 1),
            ("T-34", "Demo script", "Sue", "open", 9),
        ],
        "close": "T-32",
        "move": ("T-31", -2),
        "loud": True,
    },
]


def _report(
    tasks: list[tuple[str, str, str, str, str]], today: str, project: str, week: str
) -> tuple[str, list[str]]:
    lines = [f"# {project} status, week of {week}", ""]
    overdue = []
    for tid, title, owner, status, due in tasks:
        if status == "done":
            continue
        late = due < today
        overdue += [tid] if late else []
        lines.append(f"- {tid} {title} ({owner}, {status}, due {due}){' OVERDUE' if late else ''}")
    return "\n".join(lines) + "\n", overdue


def status(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, lead = _address(v["me"], org), _address(v["lead"], org)
    today1, today2 = week, days_after(week, 1)
    tasks1 = [(tid, title, owner, st, days_after(week, due)) for tid, title, owner, st, due in v["tasks"]]
    report = f"reports/{v['project'].lower()}-status.md"
    world = {
        "records": [
            {
                "collection": "tasks",
                "id": tid,
                "fields": {"title": title, "owner": owner, "status": st, "due": due, "project": v["project"]},
            }
            for tid, title, owner, st, due in tasks1
        ],
    }
    text1, overdue1 = _report(tasks1, today1, v["project"], week)
    day1 = stage(
        at(week, 9),
        f"Please write the {v['project']} status report {report}: one line per task that is not done (id, "
        f"title, owner, "
        f"status, due date), with OVERDUE on the line of each task due before today, and mail {v['lead']} "
        f"({lead}) the "
        "ids of the overdue tasks.",
        [
            call("list_records", collection="tasks"),
            call("write_file", path=report, content=text1),
            call(
                "send_mail",
                to=[lead],
                subject=f"{v['project']} overdue tasks",
                body=f"Overdue: {', '.join(overdue1) or 'none'}.",
            ),
        ],
        [
            check(
                "report-open",
                "file_has",
                "the report lists every open task and no done one",
                2.0,
                path=report,
                texts=[t[0] for t in tasks1 if t[3] != "done"],
                lacks=[f"{t[0]} " for t in tasks1 if t[3] == "done"],
            ),
            check(
                "report-overdue",
                "file_has",
                "the overdue tasks are marked",
                1.0,
                path=report,
                texts=[f"{tid} " for tid in overdue1] + ["OVERDUE"],
            ),
            check("lead-told", "mail_sent", "the lead got the overdue ids", 1.0, to=lead, body_has=overdue1),
        ],
    )
    moved_id, shift = v["move"]
    tasks2 = []
    for tid, title, owner, st, due in tasks1:
        tasks2.append(
            (
                tid,
                title,
                owner,
                "done" if tid == v["close"] else st,
                days_after(week, shift) if tid == moved_id else due,
            )
        )
    text2, overdue2 = _report(tasks2, today2, v["project"], week)
    assert overdue2 != overdue1, f"status-{index + 1}: the changes must change the overdue list"
    new_due = days_after(week, shift)
    ops = [
        op("update_record", collection="tasks", record_id=v["close"], field="status", value="done"),
        op("update_record", collection="tasks", record_id=moved_id, field="due", value=new_due),
    ]
    if v["loud"]:
        owner = next(o for tid, _, o, *_ in tasks1 if tid == moved_id)
        note = mail(
            "in-1",
            f"{owner.lower()}@{org}",
            f"{moved_id} due date",
            f"Heads-up: {moved_id} is now due {new_due}; I updated the task.",
            at(today2, 8, 20),
        )
        changes = [
            change("loud", f"New mail from {owner}: '{moved_id} due date'.", *ops, op("add_mail", mail=note))
        ]
    else:
        changes = [
            change("silent", f"{v['close']} was closed and {moved_id}'s due date moved to {new_due}.", *ops)
        ]
    slug = f"reports/{v['project'].lower()}"
    day2 = stage(
        at(today2, 9),
        f"Please update {report} to the tasks as they are today, publish the same text as the knowledge-base "
        f"page {slug} "
        f"(title '{v['project']} status'), and mail {v['lead'].split()[0]} the overdue ids again if they "
        f"changed.",
        [
            call("list_records", collection="tasks"),
            call("write_file", path=report, content=text2),
            call("write_page", slug=slug, title=f"{v['project']} status", body=text2),
            call(
                "send_mail",
                to=[lead],
                subject=f"{v['project']} overdue tasks (update)",
                body=f"Overdue now: {', '.join(overdue2) or 'none'}.",
            ),
        ],
        [
            check(
                "report-current",
                "file_has",
                "the report is current (closed task gone, new overdue marked)",
                2.0,
                path=report,
                texts=[f"{tid} " for tid in overdue2],
                lacks=[f"{v['close']} "],
            ),
            check(
                "page",
                "page_has",
                "the page has the current report",
                1.0,
                slug=slug,
                texts=[f"{tid} " for tid in overdue2],
                lacks=[f"{v['close']} "],
            ),
            check(
                "lead-update",
                "mail_sent",
                "the lead got the new overdue ids on day 2",
                1.0,
                to=lead,
                body_has=overdue2 or ["none"],
                stage=1,
            ),
        ],
        changes=changes,
        stale=[
            call("write_file", path=report, content=text1),
            call("write_page", slug=slug, title=f"{v['project']} status", body=text1),
        ],
    )
    final = [
        check(
            "end-report",
            "file_has",
            "at the end the report no longer lists the closed task",
            1.0,
            path=report,
            lacks=[f"{v['close']} "],
        )
    ]
    return task(
        f"status-{index + 1}",
        "status",
        f"{v['project']} weekly status",
        me,
        v["me"],
        world,
        [day1, day2],
        final,
    )


SCENARIOS = [
    (contracts, CONTRACT_VARIANTS),
    (incidents, INCIDENT_VARIANTS),
    (procurement, PROCUREMENT_VARIANTS),
    (status, STATUS_VARIANTS),
]
