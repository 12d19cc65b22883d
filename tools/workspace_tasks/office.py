"""Workspace scenarios, part one: finance (expenses), operations (scheduling), sales (quotes),
people (onboarding). Each function writes one task from one variant's parameters; the values
the checkers expect are computed here from the same data the world is built from."""

from __future__ import annotations

from typing import Any

from builders import at, call, change, check, days_after, hhmm, mail, money, op, plus, stage, task

WEEKS = ["2024-06-10", "2024-07-15", "2024-09-09", "2024-11-04"]


# ----- finance: month-end expenses ------------------------------------------------------------------


EXPENSE_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "lead": "Priya Shah",
        "team": "platform",
        "month": "June",
        "rows": [
            ("06-03", "Ana", "Travel", 412.50),
            ("06-04", "Ben", "Meals", 38.20),
            ("06-07", "Ana", "Travel", 129.00),
            ("06-11", "Chen", "Software", 240.00),
            ("06-14", "Ben", "Travel", 420.00),
            ("06-18", "Dev", "Meals", 61.75),
            ("06-21", "Chen", "Travel", 88.30),
            ("06-26", "Dev", "Travel", 310.00),
        ],
        "edit": (6, 480.00),
        "loud": False,
        "budget": 1500,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "lead": "Hannah Cole",
        "team": "data",
        "month": "July",
        "rows": [
            ("07-01", "Ivy", "Travel", 250.00),
            ("07-02", "Jon", "Travel", 615.40),
            ("07-05", "Kai", "Meals", 44.00),
            ("07-09", "Ivy", "Software", 99.00),
            ("07-12", "Lou", "Travel", 180.60),
            ("07-19", "Jon", "Meals", 27.30),
            ("07-23", "Kai", "Travel", 342.00),
        ],
        "edit": (3, 715.40),
        "loud": True,
        "budget": 1450,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "lead": "Omar Haddad",
        "team": "design",
        "month": "August",
        "rows": [
            ("08-02", "Mia", "Meals", 52.10),
            ("08-05", "Noa", "Travel", 298.00),
            ("08-06", "Mia", "Travel", 74.25),
            ("08-12", "Oli", "Travel", 505.00),
            ("08-15", "Noa", "Software", 180.00),
            ("08-20", "Pia", "Travel", 133.75),
            ("08-27", "Oli", "Meals", 19.90),
            ("08-29", "Pia", "Travel", 260.00),
            ("08-30", "Mia", "Travel", 45.00),
        ],
        "edit": (5, 550.00),
        "loud": False,
        "budget": 1400,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "lead": "Tom Okafor",
        "team": "sales",
        "month": "September",
        "rows": [
            ("09-02", "Raj", "Travel", 830.00),
            ("09-04", "Sue", "Meals", 66.40),
            ("09-10", "Raj", "Travel", 145.20),
            ("09-13", "Tia", "Travel", 399.99),
            ("09-17", "Sue", "Software", 59.00),
            ("09-24", "Tia", "Travel", 210.00),
        ],
        "edit": (4, 359.99),
        "loud": True,
        "budget": 1700,
    },
]


def _address(person: str, org: str) -> str:
    return f"{person.split(maxsplit=1)[0].lower()}.{person.rsplit(maxsplit=1)[-1].lower()}@{org}"


def expenses(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    me, lead = _address(v["me"], v["org"]), _address(v["lead"], v["org"])
    month, team = v["month"], v["team"]
    sheet = f"finance/expenses_{month.lower()}.xlsx"
    rows = [["Date", "Employee", "Category", "Amount"]] + [[f"2024-{d}", e, c, a] for d, e, c, a in v["rows"]]
    travel = round(sum(a for _, _, c, a in v["rows"] if c == "Travel"), 2)
    row, new_amount = v["edit"]
    old_amount = rows[row - 1][3]
    corrected = round(travel - old_amount + new_amount, 2)
    over = corrected > v["budget"]
    world = {
        "files": [
            {"path": sheet, "sheets": {month: rows}},
            {
                "path": "finance/README.txt",
                "text": "Monthly expense sheets: one row per expense; column D is the amount in EUR.\n",
            },
        ],
        "records": [
            {"collection": "budgets", "id": team, "fields": {"team": team, "travel_budget": str(v["budget"])}}
        ],
        "pages": [
            {
                "slug": "policies/expenses",
                "title": "Expense policy",
                "body": "Travel over the team's monthly travel budget (see budgets records) must be flagged "
                "to the finance lead "
                "with the words 'over budget'.",
            },
        ],
        "mail": [
            mail(
                "m001",
                lead,
                f"{month} close",
                f"Hi {v['me'].split()[0]}, please send me the {month} travel total "
                f"for the {team} team when you can. Thanks, {v['lead'].split()[0]}",
                at(week, 8, 5),
            )
        ],
    }
    first_mail = "m002"
    day1 = stage(
        at(week, 9),
        f"Please total the Travel expenses in {sheet} and send the total to {v['lead']} ({lead}) with the "
        f"subject "
        f"'{month} travel total'. Also record it in the knowledge base: record budgets/{team}, field "
        f"{month.lower()}_travel.",
        [
            call("read_spreadsheet", path=sheet),
            call(
                "send_mail",
                to=[lead],
                subject=f"{month} travel total",
                body=f"Hi {v['lead'].split()[0]}, the {month} travel total for {team} is {money(travel)} "
                f"EUR.",
            ),
            call(
                "update_record",
                collection="budgets",
                record_id=team,
                field=f"{month.lower()}_travel",
                value=money(travel),
            ),
        ],
        [
            check(
                "total-mailed",
                "mail_sent",
                "the travel total was mailed to the finance lead",
                2.0,
                to=lead,
                subject_has=f"{month} travel",
                body_has=[money(travel)],
            ),
            check(
                "total-recorded",
                "record",
                "the total is in the budgets record",
                1.0,
                collection="budgets",
                id=team,
                field=f"{month.lower()}_travel",
                value=money(travel),
            ),
        ],
    )
    edit = op("set_cell", path=sheet, cell=f"D{row}", value=new_amount, sheet=month)
    note = f"Accounting corrected row {row} of {sheet}: {money(old_amount)} became {money(new_amount)}."
    if v["loud"]:
        correction = mail(
            "in-1",
            f"accounting@{v['org']}",
            f"Correction to {month} expenses",
            f"Hello, we corrected the amount in row {row} of {sheet} to {money(new_amount)} EUR "
            "(the hotel invoice was re-issued).",
            at(days_after(week, 1), 7, 40),
        )
        changes = [
            change(
                "loud",
                f"New mail from accounting: 'Correction to {month} expenses'.",
                edit,
                op("add_mail", mail=correction),
            )
        ]
    else:
        changes = [change("silent", note, edit)]
    flag = " This is over budget." if over else ""
    day2_gold = [
        call("read_spreadsheet", path=sheet),
        call("set_cell", path="finance/summary.xlsx", cell="A2", value="Travel", sheet="Summary"),
        call("set_cell", path="finance/summary.xlsx", cell="B2", value=money(corrected), sheet="Summary"),
        call(
            "update_record",
            collection="budgets",
            record_id=team,
            field=f"{month.lower()}_travel",
            value=money(corrected),
        ),
        call("get_record", collection="budgets", record_id=team),
        call(
            "reply_mail",
            mail_id=first_mail,
            body=f"Correction: the {month} travel total for {team} is {money(corrected)} EUR.{flag}",
        ),
    ]
    stale_gold = [
        call("set_cell", path="finance/summary.xlsx", cell="A2", value="Travel", sheet="Summary"),
        call("set_cell", path="finance/summary.xlsx", cell="B2", value=money(travel), sheet="Summary"),
        call(
            "update_record",
            collection="budgets",
            record_id=team,
            field=f"{month.lower()}_travel",
            value=money(travel),
        ),
    ]
    day2_checks = [
        check(
            "summary-total",
            "cell",
            "summary.xlsx B2 holds the current travel total",
            2.0,
            path="finance/summary.xlsx",
            cell="B2",
            value=corrected,
            sheet="Summary",
        ),
        check(
            "summary-label",
            "cell",
            "summary.xlsx A2 says Travel",
            0.5,
            path="finance/summary.xlsx",
            cell="A2",
            value="Travel",
            sheet="Summary",
        ),
        check(
            "record-current",
            "record",
            "the budgets record matches the sheet",
            1.0,
            collection="budgets",
            id=team,
            field=f"{month.lower()}_travel",
            value=money(corrected),
        ),
        check(
            "correction-mailed",
            "mail_sent",
            "the finance lead got the corrected total on day 2",
            1.0,
            to=lead,
            body_has=[money(corrected)],
            stage=1,
        ),
    ]
    if over:
        day2_checks.append(
            check(
                "flagged",
                "mail_sent",
                "the total over budget was flagged",
                1.0,
                to=lead,
                body_has=["over budget"],
                stage=1,
            )
        )
    day2 = stage(
        at(days_after(week, 1), 9),
        f"Finance is closing {month}. Put the Travel total in finance/summary.xlsx (sheet Summary: 'Travel' "
        f"in A2, "
        "the total in B2) and make sure the knowledge-base record matches the expense sheet as it is now. If "
        "the total "
        f"is not what you sent yesterday, reply to your mail to {v['lead'].split()[0]} with the corrected "
        f"figure, and "
        "follow the expense policy.",
        day2_gold,
        day2_checks,
        changes=changes,
        stale=stale_gold,
    )
    final = [
        check(
            "end-agree",
            "cell",
            "at the end the summary holds the corrected total",
            1.0,
            path="finance/summary.xlsx",
            cell="B2",
            value=corrected,
            sheet="Summary",
        )
    ]
    return task(
        f"expenses-{index + 1}",
        "expenses",
        f"{month} travel expenses for the {team} team",
        me,
        v["me"],
        world,
        [day1, day2],
        final,
    )


# ----- operations: scheduling a meeting that keeps moving --------------------------------------------


SCHEDULE_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "a": "Sam Ortiz",
        "b": "Rita Gomez",
        "c": "Ugo Bell",
        "title": "Q3 planning",
        "room": "Atlas",
        "minutes": 60,
        "loud": False,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "a": "Ivy Lam",
        "b": "Jon Park",
        "c": "Kim Ruiz",
        "title": "Data roadmap review",
        "room": "Harbor",
        "minutes": 90,
        "loud": True,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "a": "Mia Costa",
        "b": "Noa Weiss",
        "c": "Pat Doyle",
        "title": "Brand refresh kickoff",
        "room": "Studio 2",
        "minutes": 60,
        "loud": True,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "a": "Raj Patel",
        "b": "Sue Moreau",
        "c": "Vic Hale",
        "title": "Pipeline review",
        "room": "Orion",
        "minutes": 30,
        "loud": False,
    },
]


def _free_starts(busy: dict[str, list[tuple[str, str]]], date: str, minutes: int) -> list[str]:
    """Half-hour starts between 09:00 and 17:00 when nobody in `busy` is busy (as find_free_slots)."""
    starts = []
    moment = at(date, 9)
    while plus(moment, minutes=minutes) <= at(date, 17):
        end = plus(moment, minutes=minutes)
        if all(not (s < end and e > moment) for blocks in busy.values() for s, e in blocks):
            starts.append(moment)
        moment = plus(moment, minutes=30)
    return starts


def scheduling(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, a, b, c = (_address(v[k], org) for k in ("me", "a", "b", "c"))
    wednesday = days_after(week, 2)
    minutes = v["minutes"]
    busy = {
        me: [(at(wednesday, 9), at(wednesday, 10))],
        a: [(at(wednesday, 10, 30), at(wednesday, 11, 30)), (at(wednesday, 13), at(wednesday, 14))],
        b: [(at(wednesday, 9), at(wednesday, 9, 30)), (at(wednesday, 15, 30), at(wednesday, 16, 30))],
    }
    first = _free_starts(busy, wednesday, minutes)[0]
    conflict = (first, plus(first, minutes=minutes))
    busy_after = {**busy, b: [*busy[b], conflict]}
    second = _free_starts(busy_after, wednesday, minutes)[0]
    assert plus(second, minutes=minutes) <= at(wednesday, 16, 30), "the accepted invitation must not clash"
    event_id = "ev002"  # the seed has one event (ev001): the next the user creates is ev002
    title = v["title"]
    world = {
        "events": [
            {
                "id": "ev001",
                "title": "Team stand-up",
                "start": at(wednesday, 9),
                "end": at(wednesday, 10),
                "organizer": me,
                "attendees": {a: "accepted", b: "accepted"},
            }
        ],
        "busy": [{"person": p, "start": s, "end": e, "label": "busy"} for p in (a, b) for s, e in busy[p]],
        "pages": [
            {
                "slug": "office/rooms",
                "title": "Meeting rooms",
                "body": f"Book rooms by putting their name in the event location. {v['room']} seats 8.",
            }
        ],
    }
    slots_call = call("find_free_slots", people=[a, b], date=wednesday, duration_minutes=minutes)
    day1 = stage(
        at(week, 9),
        f"Set up a {minutes}-minute '{title}' meeting on Wednesday {wednesday} with {v['a']} ({a}) and "
        f"{v['b']} ({b}), "
        f"at the earliest time between 09:00 and 17:00 UTC when all three of us are free, in room "
        f"{v['room']}.",
        [
            slots_call,
            call(
                "create_event",
                title=title,
                start=first,
                end=plus(first, minutes=minutes),
                attendees=[a, b],
                location=v["room"],
            ),
        ],
        [
            check(
                "booked",
                "event",
                "the meeting is booked at the earliest common free time with both invited",
                2.0,
                title_has=title,
                start=first,
                attendees=[a, b],
            ),
            check(
                "room",
                "event",
                "the meeting is in the right room",
                0.5,
                title_has=title,
                location_has=v["room"],
            ),
        ],
    )
    blocker = op("add_busy", busy={"person": b, "start": conflict[0], "end": conflict[1], "label": "dentist"})
    if v["loud"]:
        notice = mail(
            "in-1",
            b,
            "Wednesday",
            f"Hi {v['me'].split()[0]}, sorry: I have a dentist appointment on "
            f"Wednesday from {hhmm(conflict[0])} to {hhmm(conflict[1])} UTC.",
            at(days_after(week, 1), 8, 15),
        )
        changes = [
            change("loud", f"New mail from {v['b']}: 'Wednesday'.", blocker, op("add_mail", mail=notice))
        ]
    else:
        changes = [
            change("silent", f"{v['b']} became busy during the meeting (a dentist appointment).", blocker)
        ]
    day2 = stage(
        at(days_after(week, 1), 9),
        f"Please double-check that Wednesday's '{title}' still works for everyone. If anyone now has a "
        f"conflict, move it "
        f"to the earliest time that day when all three of us are free and mail {v['a'].split()[0]} and "
        f"{v['b'].split()[0]} the new start time.",
        [
            call("check_availability", people=[a, b], start=conflict[0], end=conflict[1]),
            slots_call,
            call("update_event", event_id=event_id, start=second, end=plus(second, minutes=minutes)),
            call(
                "send_mail",
                to=[a, b],
                subject=f"{title} moved",
                body=f"{title} is now on {wednesday} at {hhmm(second)} UTC in {v['room']}.",
            ),
        ],
        [
            check(
                "moved",
                "event",
                "the meeting moved to the earliest time everyone is free",
                2.0,
                title_has=title,
                start=second,
                attendees=[a, b],
            ),
            check(
                "no-clash",
                "free_for",
                "nobody has a clash with the meeting",
                2.0,
                title_has=title,
                people=[me, a, b],
            ),
            check(
                "told-a",
                "mail_sent",
                "the first attendee got the new time",
                1.0,
                to=a,
                body_has=[hhmm(second)],
                stage=1,
            ),
            check(
                "told-b",
                "mail_sent",
                "the second attendee got the new time",
                1.0,
                to=b,
                body_has=[hhmm(second)],
                stage=1,
            ),
        ],
        changes=changes,
        stale=[],
    )
    clash = {
        "id": "inv-clash",
        "title": "Vendor sync",
        "start": second,
        "end": plus(second, minutes=30),
        "organizer": c,
        "attendees": {me: "needs_action", c: "accepted"},
    }
    fine = {
        "id": "inv-fine",
        "title": "Coffee with the new hires",
        "start": at(wednesday, 16, 30),
        "end": at(wednesday, 17),
        "organizer": c,
        "attendees": {me: "needs_action", c: "accepted"},
    }
    invite_mail = mail(
        "in-2",
        c,
        "Invitation: Vendor sync",
        f"{v['c']} invited you to 'Vendor sync' on {wednesday} at {hhmm(second)} UTC.",
        at(days_after(week, 2), 7, 30),
    )
    day3 = stage(
        at(days_after(week, 2), 8),
        "Please answer my pending invitations for today: accept the ones that fit around my meetings, "
        "decline the ones "
        "that clash with them.",
        [
            call("list_events", start_date=wednesday),
            call("respond_to_invitation", event_id="inv-clash", response="declined"),
            call("respond_to_invitation", event_id="inv-fine", response="accepted"),
        ],
        [
            check(
                "declined-clash",
                "response",
                "the clashing invitation is declined",
                1.0,
                event_id="inv-clash",
                value="declined",
            ),
            check(
                "accepted-fine",
                "response",
                "the invitation that fits is accepted",
                1.0,
                event_id="inv-fine",
                value="accepted",
            ),
        ],
        changes=[
            change(
                "loud",
                f"New mail from {v['c']}: 'Invitation: Vendor sync'.",
                op("add_event", event=clash),
                op("add_mail", mail=invite_mail),
            ),
            change(
                "silent",
                f"{v['c']} also invited you to 'Coffee with the new hires' (no mail).",
                op("add_event", event=fine),
            ),
        ],
        stale=[
            call("list_events", start_date=wednesday),
            # Its calendar still shows the meeting at the first time: the vendor sync looks free to it.
            call("respond_to_invitation", event_id="inv-clash", response="accepted"),
            call("respond_to_invitation", event_id="inv-fine", response="accepted"),
        ],
    )
    final = [
        check(
            "still-free",
            "free_for",
            "at the end the meeting clashes with nobody",
            1.0,
            title_has=title,
            people=[me, a, b],
        )
    ]
    return task(
        f"scheduling-{index + 1}",
        "scheduling",
        f"schedule '{title}' while calendars change",
        me,
        v["me"],
        world,
        [day1, day2, day3],
        final,
    )


# ----- sales: a quote the client keeps changing --------------------------------------------------------


QUOTE_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "client": "Kestrel Foods",
        "contact": "Iris Novak",
        "cdomain": "kestrelfoods.example",
        "deal": "D-104",
        "quote": "Q-104",
        "lines": [("SKU-11", "Label printer", 12, 189.00), ("SKU-27", "Thermal paper roll", 200, 2.45)],
        "loud": True,
        "new_qty": 18,
        "new_price": None,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "client": "Harbor Clinics",
        "contact": "Yusuf Demir",
        "cdomain": "harborclinics.example",
        "deal": "D-221",
        "quote": "Q-221",
        "lines": [("SKU-03", "Dashboard licence", 25, 42.00), ("SKU-08", "Onboarding workshop", 2, 950.00)],
        "loud": False,
        "new_qty": None,
        "new_price": 46.50,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "client": "Lumen Books",
        "contact": "Clara Voss",
        "cdomain": "lumenbooks.example",
        "deal": "D-318",
        "quote": "Q-318",
        "lines": [("SKU-40", "Cover design", 6, 420.00), ("SKU-41", "Illustration set", 3, 310.00)],
        "loud": True,
        "new_qty": 9,
        "new_price": None,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "client": "Mistral Air",
        "contact": "Ezra Quinn",
        "cdomain": "mistralair.example",
        "deal": "D-430",
        "quote": "Q-430",
        "lines": [("SKU-71", "Fleet tracker", 40, 129.90), ("SKU-72", "Tracker data plan (year)", 40, 36.00)],
        "loud": False,
        "new_qty": None,
        "new_price": 119.90,
    },
]


def _quote_text(lines: list[tuple[str, str, int, float]], currency: str = "EUR") -> tuple[str, float]:
    total = round(sum(q * p for _, _, q, p in lines), 2)
    body = [f"{q} x {name} at {money(p)} = {money(q * p)} {currency}" for _, name, q, p in lines]
    body.append(f"Total: {money(total)} {currency}")
    return "\n".join(body), total


def quotes(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    me = _address(v["me"], v["org"])
    contact = _address(v["contact"], v["cdomain"])
    lines = v["lines"]
    request = "; ".join(f"{q} x {name}" for _, name, q, _ in lines)
    world = {
        "records": [
            *(
                {"collection": "products", "id": sku, "fields": {"name": name, "unit_price": money(price)}}
                for sku, name, _, price in lines
            ),
            {
                "collection": "products",
                "id": "SKU-99",
                "fields": {"name": "Gift card", "unit_price": "25.00"},
            },
            {
                "collection": "deals",
                "id": v["deal"],
                "fields": {"client": v["client"], "stage": "lead", "contact": contact},
            },
        ],
        "pages": [
            {
                "slug": "sales/quotes",
                "title": "How we quote",
                "body": "One line per product: quantity x product at unit price = line total; then the total "
                "in EUR. "
                "Prices come from the products records.",
            }
        ],
        "mail": [
            mail(
                "m001",
                contact,
                "Quote request",
                f"Hello, could you send us a quote for: {request}? Best, {v['contact']} ({v['client']})",
                at(week, 8, 20),
                thread="t-quote",
            )
        ],
    }
    text1, total1 = _quote_text(lines)
    path1 = f"quotes/{v['quote']}.pdf"
    reads = [
        call("read_mail", mail_id="m001"),
        *(call("get_record", collection="products", record_id=sku) for sku, *_ in lines),
    ]
    day1 = stage(
        at(week, 9),
        f"Please prepare the quote for {v['client']}'s request (the mail from {v['contact']}): write {path1} "
        f"titled "
        f"'Quote {v['quote']}' as our quoting page describes, reply to their mail with the PDF attached and "
        f"the total in "
        f"the text, and set deal {v['deal']} to stage 'quoted' with amount = the total.",
        [
            *reads,
            call("create_pdf", path=path1, title=f"Quote {v['quote']}", text=text1),
            call(
                "reply_mail",
                mail_id="m001",
                body=f"Please find attached quote {v['quote']}. Total: {money(total1)} EUR.",
                attachments=[path1],
            ),
            call("update_record", collection="deals", record_id=v["deal"], field="stage", value="quoted"),
            call(
                "update_record", collection="deals", record_id=v["deal"], field="amount", value=money(total1)
            ),
        ],
        [
            check(
                "quote-pdf",
                "pdf_has",
                "the quote PDF lists the lines and the total",
                2.0,
                path=path1,
                texts=[f"{lines[0][2]} x {lines[0][1]}", money(total1)],
            ),
            check(
                "quote-sent",
                "mail_sent",
                "the client got the quote attached, with the total",
                2.0,
                to=contact,
                attachments=[f"{v['quote']}.pdf"],
                body_has=[money(total1)],
            ),
            check(
                "deal-stage",
                "record",
                "the deal is at stage quoted",
                1.0,
                collection="deals",
                id=v["deal"],
                field="stage",
                value="quoted",
            ),
            check(
                "deal-amount",
                "record",
                "the deal amount is the quote total",
                1.0,
                collection="deals",
                id=v["deal"],
                field="amount",
                value=money(total1),
            ),
        ],
    )
    new_lines = list(lines)
    if v["new_qty"] is not None:
        sku, name, _, price = lines[0]
        new_lines[0] = (sku, name, v["new_qty"], price)
        ask = mail(
            "in-1",
            contact,
            "Re: Quote request",
            f"Thanks! Could you make it {v['new_qty']} x {name} instead? The rest stays the same.",
            at(days_after(week, 1), 8, 0),
            thread="t-quote",
        )
        changes = [
            change("loud", f"New mail from {v['contact']}: 'Re: Quote request'.", op("add_mail", mail=ask))
        ]
        answer, day2_reads = "in-1", [call("read_mail", mail_id="in-1")]
        why = f"{v['contact']} wrote back this morning"
    else:
        sku, name, qty, _ = lines[0]
        new_lines[0] = (sku, name, qty, v["new_price"])
        changes = [
            change(
                "silent",
                f"The price of {name} changed to {money(v['new_price'])} in the products records.",
                op(
                    "update_record",
                    collection="products",
                    record_id=sku,
                    field="unit_price",
                    value=money(v["new_price"]),
                ),
            )
        ]
        answer, day2_reads = "m001", []
        why = f"{v['client']} wants to go ahead"
    text2, total2 = _quote_text(new_lines)
    path2 = f"quotes/{v['quote']}-final.pdf"
    price_reads = [call("get_record", collection="products", record_id=sku) for sku, *_ in lines]
    day2 = stage(
        at(days_after(week, 1), 9),
        f"{why}. Please send {v['client']} the final quote as {path2} (titled 'Quote {v['quote']} final'), "
        f"with today's "
        f"quantities and prices, as a reply in their thread with the total in the text, and update the deal "
        f"amount.",
        [
            *day2_reads,
            *price_reads,
            call("create_pdf", path=path2, title=f"Quote {v['quote']} final", text=text2),
            call(
                "reply_mail",
                mail_id=answer,
                body=f"Here is the final quote {v['quote']}. Total: {money(total2)} EUR.",
                attachments=[path2],
            ),
            call(
                "update_record", collection="deals", record_id=v["deal"], field="amount", value=money(total2)
            ),
        ],
        [
            check(
                "final-pdf",
                "pdf_has",
                "the final PDF has today's total and not yesterday's",
                2.0,
                path=path2,
                texts=[money(total2)],
                lacks=[money(total1)],
            ),
            check(
                "final-sent",
                "mail_sent",
                "the client got the final quote on day 2",
                2.0,
                to=contact,
                attachments=[f"{v['quote']}-final.pdf"],
                body_has=[money(total2)],
                stage=1,
            ),
            check(
                "final-amount",
                "record",
                "the deal amount is the final total",
                1.0,
                collection="deals",
                id=v["deal"],
                field="amount",
                value=money(total2),
            ),
        ],
        changes=changes,
        stale=[
            call("create_pdf", path=path2, title=f"Quote {v['quote']} final", text=text1),
            call(
                "reply_mail",
                mail_id="m001",
                body=f"Here is the final quote {v['quote']}. Total: {money(total1)} EUR.",
                attachments=[path2],
            ),
            call(
                "update_record", collection="deals", record_id=v["deal"], field="amount", value=money(total1)
            ),
        ],
    )
    final = [
        check(
            "end-amount",
            "record",
            "at the end the deal amount is the final total",
            1.0,
            collection="deals",
            id=v["deal"],
            field="amount",
            value=money(total2),
        )
    ]
    return task(
        f"quotes-{index + 1}", "quotes", f"quote for {v['client']}", me, v["me"], world, [day1, day2], final
    )


# ----- people: onboarding whose start date moves -------------------------------------------------------


ONBOARDING_VARIANTS: list[dict[str, Any]] = [
    {
        "org": "northwind.example",
        "me": "Dana Reyes",
        "hire": "Elif Kaya",
        "id": "E-311",
        "role": "backend engineer",
        "manager": "Sam Ortiz",
        "start": 7,
        "moved": 9,
        "loud": True,
    },
    {
        "org": "bluebird.example",
        "me": "Marco Silva",
        "hire": "Theo Brandt",
        "id": "E-412",
        "role": "data analyst",
        "manager": "Ivy Lam",
        "start": 7,
        "moved": 8,
        "loud": False,
    },
    {
        "org": "cedarfinch.example",
        "me": "Aiko Tanaka",
        "hire": "Zara Malik",
        "id": "E-513",
        "role": "product designer",
        "manager": "Mia Costa",
        "start": 14,
        "moved": 10,
        "loud": True,
    },
    {
        "org": "orbit.example",
        "me": "Lena Fischer",
        "hire": "Owen Price",
        "id": "E-614",
        "role": "account executive",
        "manager": "Raj Patel",
        "start": 7,
        "moved": 14,
        "loud": False,
    },
]


def onboarding(index: int, v: dict[str, Any]) -> dict[str, Any]:
    week = WEEKS[index]
    org = v["org"]
    me, manager = _address(v["me"], org), _address(v["manager"], org)
    hire = _address(v["hire"], org)
    it_desk = f"it-desk@{org}"
    start, moved = days_after(week, v["start"]), days_after(week, v["moved"])
    first = v["hire"].split()[0]
    world = {
        "records": [
            {
                "collection": "employees",
                "id": v["id"],
                "fields": {
                    "name": v["hire"],
                    "email": hire,
                    "role": v["role"],
                    "start_date": start,
                    "manager": manager,
                },
            }
        ],
        "pages": [
            {
                "slug": "hr/onboarding",
                "title": "Onboarding",
                "body": "First day: welcome & orientation 09:30-10:30 with the manager, IT setup 11:00-12:00 "
                "with "
                "the IT desk. New hires come to the front lobby at 09:30.",
            }
        ],
    }

    def events(date: str) -> list[dict[str, Any]]:
        return [
            call(
                "create_event",
                title=f"Welcome & orientation: {v['hire']}",
                start=at(date, 9, 30),
                end=at(date, 10, 30),
                attendees=[hire, manager],
                location="Front lobby",
            ),
            call(
                "create_event",
                title=f"IT setup: {v['hire']}",
                start=at(date, 11),
                end=at(date, 12),
                attendees=[hire, it_desk],
                location="IT desk",
            ),
        ]

    def welcome(date: str, subject: str) -> dict[str, Any]:
        return call(
            "send_mail",
            to=[hire],
            cc=[manager],
            subject=subject,
            body=f"Hi {first}, welcome! Your first day is {date}: please come to the front lobby at 09:30.",
        )

    day1 = stage(
        at(week, 9),
        f"{v['hire']} joins as {v['role']} (employee {v['id']} in the knowledge base). Please set up their "
        f"first day as "
        f"our onboarding page says (the two events, inviting {v['hire']} and the others) and send {first} a "
        f"welcome mail "
        "saying when and where to come, copying their manager.",
        [
            call("get_record", collection="employees", record_id=v["id"]),
            call("read_page", slug="hr/onboarding"),
            *events(start),
            welcome(start, "Welcome!"),
        ],
        [
            check(
                "orientation",
                "event",
                "the orientation is on the first day at 09:30 with the hire and manager",
                2.0,
                title_has="orientation",
                start=at(start, 9, 30),
                attendees=[hire, manager],
            ),
            check(
                "it-setup",
                "event",
                "IT setup is on the first day at 11:00",
                1.0,
                title_has="IT setup",
                start=at(start, 11),
                attendees=[hire, it_desk],
            ),
            check(
                "welcome",
                "mail_sent",
                "the welcome mail says the first day and the time",
                1.0,
                to=hire,
                body_has=[start, "09:30"],
            ),
        ],
    )
    update = op("update_record", collection="employees", record_id=v["id"], field="start_date", value=moved)
    if v["loud"]:
        hr_mail = mail(
            "in-1",
            f"hr@{org}",
            f"Start date change: {v['hire']}",
            f"{v['hire']}'s start date moved to {moved}.",
            at(days_after(week, 1), 8, 30),
        )
        changes = [
            change(
                "loud",
                f"New mail from HR: 'Start date change: {v['hire']}'.",
                update,
                op("add_mail", mail=hr_mail),
            )
        ]
    else:
        changes = [change("silent", f"HR moved the start date to {moved} in the employee record.", update)]
    slug = f"hr/onboarding-{v['id'].lower()}"
    page_body = f"First day: {moved}\n- 09:30 Welcome & orientation (front lobby)\n- 11:00 IT setup (IT desk)"
    day2 = stage(
        at(days_after(week, 1), 9),
        f"HR asked me to make sure {first}'s onboarding matches the start date in the employee record. "
        f"Please fix "
        f"whatever is off, send {first} an updated welcome mail if the date changed, and write the first-day "
        f"schedule "
        f"on the page {slug} (the date and both times).",
        [
            call("get_record", collection="employees", record_id=v["id"]),
            call("list_events", start_date=start),
            call("update_event", event_id="ev001", start=at(moved, 9, 30), end=at(moved, 10, 30)),
            call("update_event", event_id="ev002", start=at(moved, 11), end=at(moved, 12)),
            welcome(moved, "Update: your first day"),
            call("write_page", slug=slug, title=f"Onboarding: {v['hire']}", body=page_body),
        ],
        [
            check(
                "orientation-moved",
                "event",
                "the orientation is on the current start date",
                2.0,
                title_has="orientation",
                start=at(moved, 9, 30),
            ),
            check(
                "it-moved",
                "event",
                "IT setup is on the current start date",
                1.0,
                title_has="IT setup",
                start=at(moved, 11),
            ),
            check(
                "told-hire",
                "mail_sent",
                "the hire got the new first day on day 2",
                1.0,
                to=hire,
                body_has=[moved],
                stage=1,
            ),
            check(
                "page",
                "page_has",
                "the schedule page has the current date and both times",
                1.0,
                slug=slug,
                texts=[moved, "09:30", "11:00"],
                lacks=[start],
            ),
        ],
        changes=changes,
        stale=[
            call(
                "write_page",
                slug=slug,
                title=f"Onboarding: {v['hire']}",
                body=page_body.replace(moved, start),
            )
        ],
    )
    final = [
        check(
            "old-day-free",
            "no_event_at",
            "no orientation is left on the old date",
            1.0,
            title_has="orientation",
            start=at(start, 9, 30),
        )
    ]
    return task(
        f"onboarding-{index + 1}",
        "onboarding",
        f"onboarding {v['hire']}",
        me,
        v["me"],
        world,
        [day1, day2],
        final,
    )


SCENARIOS = [
    (expenses, EXPENSE_VARIANTS),
    (scheduling, SCHEDULE_VARIANTS),
    (quotes, QUOTE_VARIANTS),
    (onboarding, ONBOARDING_VARIANTS),
]
