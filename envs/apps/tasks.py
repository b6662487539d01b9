"""Task templates: from a seeded world and a seeded RNG, a task with its required changes, its
expected answer and a reference solution program.

Seeds map to tasks like this: ``scenario = seed // TASKS_PER_SCENARIO``; the scenario picks the
template (``scenario % len(TEMPLATES)``) and the population (``generate(scenario)``); the seed's own RNG
picks the task's parameters. So each scenario is three variations of one template on one world, and
SGC (scenario goal completion) asks that all three pass.

Each template's ``solution`` is a list of code cells written against ``apis`` only (it finds ids,
emails and amounts through the APIs, like an agent must); the expected changes and answers are
computed separately, from the world's rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentsd.envs.apps.evaluate import Change, Contains, Ref, SetOf
from agentsd.envs.apps.world import NOW, RESTAURANTS, World, generate

TASKS_PER_SCENARIO = 3


@dataclass
class Task:
    template: str
    difficulty: str
    apps: tuple[str, ...]
    instruction: str
    changes: list[Change]
    answer: Any  # None: not a question
    solution: list[str]
    seed: int = 0
    scenario: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    name: str
    difficulty: str
    apps: tuple[str, ...]
    build: Callable[[World, random.Random], tuple[str, list[Change], Any, str]]


TEMPLATES: dict[str, Template] = {}


def template(name: str, difficulty: str, *apps: str):
    def deco(fn):
        TEMPLATES[name] = Template(name, difficulty, apps, fn)
        return fn
    return deco


def login_cell(apps: tuple[str, ...]) -> str:
    lines = [
        'profile = apis.supervisor.show_profile()["data"]',
        'passwords = {p["app_name"]: p["password"] for p in apis.supervisor.show_account_passwords()["data"]}',
        "tokens = {}",
    ]
    for a in apps:
        lines.append(f'tokens["{a}"] = apis.{a}.login(username=profile["email"], password=passwords["{a}"])["data"]["access_token"]')
    lines.append('print("logged in to", sorted(tokens))')
    return "\n".join(lines)


def build_task(seed: int, template: str | None = None) -> tuple[Task, World]:
    """The task of a seed and its world (``template`` forces one template for every seed)."""
    scenario = seed // TASKS_PER_SCENARIO
    names = list(TEMPLATES)
    tpl = TEMPLATES[template or names[scenario % len(names)]]
    world = generate(scenario)
    rng = random.Random(f"apps-task-{seed}")
    instruction, changes, answer, code = tpl.build(world, rng)
    cells = [login_cell(tpl.apps), code.strip()]
    task = Task(tpl.name, tpl.difficulty, tpl.apps, instruction, changes, answer, cells, seed,
                f"{tpl.name}-{scenario}")
    return task, world


# --- helpers ---------------------------------------------------------------------------------------------
def contacts(w: World) -> list[dict]:
    return w.tables["contacts"]


def cname(c: dict) -> str:
    return f"{c['first_name']} {c['last_name']}"


def person_of_contact(w: World, c: dict) -> dict:
    return w.by_email(c["email"])


def pick(rng: random.Random, xs: list) -> Any:
    return xs[rng.randrange(len(xs))]


def inbox(w: World) -> list[dict]:
    me = w.user["email"]
    return [e for e in w.tables["emails"] if me in e["recipients"].split(",")]


def pay_changes(w: World, debts: list[tuple[int, float]], tx: list[dict]) -> list[Change]:
    """Required changes for the user paying ``debts`` [(person id, amount)]: one transaction row per
    payment (``tx`` gives each one's extra matched columns) and the final balance of each account."""
    out = [Change("add", "transactions", {"sender_id": 1, "receiver_id": pid, "amount": round(a, 2),
                                          "payment_card_id": None, **extra}) for (pid, a), extra in zip(debts, tx, strict=True)]
    final: dict[int, float] = {1: w.balance(1)}
    for pid, a in debts:
        final[1] = round(final[1] - a, 2)
        final[pid] = round(final.get(pid, w.balance(pid)) + a, 2)
    out += [Change("update", "payment_accounts", {"balance": v}, id=k) for k, v in sorted(final.items())]
    return out


CONTACT = 'c = apis.phone.show_contacts(access_token=tokens["phone"], query={q!r})["data"][0]\n'


# --- phone --------------------------------------------------------------------------------------------------
@template("contact_phone_number", "easy", "phone")
def _t_contact_phone(w, rng):
    c = pick(rng, contacts(w))
    code = CONTACT.format(q=cname(c)) + 'apis.supervisor.complete_task(answer=c["phone_number"])'
    return (f"What is the phone number of my contact {cname(c)}? Answer with the digits only.",
            [], c["phone_number"], code)


@template("count_contacts_by_relationship", "easy", "phone")
def _t_count_rel(w, rng):
    rel = pick(rng, sorted({c["relationship"] for c in contacts(w)}))
    n = sum(c["relationship"] == rel for c in contacts(w))
    code = (f'found = apis.phone.show_contacts(access_token=tokens["phone"], relationship={rel!r}, page_limit=100)["data"]\n'
            "apis.supervisor.complete_task(answer=len(found))")
    return f"How many of my phone contacts have the relationship '{rel}'?", [], n, code


@template("add_contact", "medium", "phone")
def _t_add_contact(w, rng):
    known = {c["email"] for c in contacts(w)}
    p = pick(rng, [p for p in w.tables["people"][1:] if p["email"] not in known])
    rel = pick(rng, ["friend", "coworker", "neighbor", "family"])
    ch = [Change("add", "contacts", {"first_name": p["first_name"], "last_name": p["last_name"],
                                     "phone_number": p["phone_number"], "email": p["email"], "relationship": rel})]
    code = (f'apis.phone.add_contact(access_token=tokens["phone"], first_name={p["first_name"]!r}, last_name={p["last_name"]!r}, '
            f'phone_number={p["phone_number"]!r}, email={p["email"]!r}, relationship={rel!r})\n'
            "apis.supervisor.complete_task()")
    return (f"Add {w.full_name(p)} to my phone contacts as a {rel}: phone number {p['phone_number']}, "
            f"email {p['email']}.", ch, None, code)


@template("update_contact_phone", "medium", "phone")
def _t_update_phone(w, rng):
    c = pick(rng, contacts(w))
    used = {p["phone_number"] for p in w.tables["people"]}
    new = c["phone_number"]
    while new in used:
        new = f"{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    ch = [Change("update", "contacts", {"phone_number": new}, id=c["id"])]
    code = (CONTACT.format(q=cname(c)) +
            f'apis.phone.update_contact(access_token=tokens["phone"], contact_id=c["contact_id"], phone_number={new!r})\n'
            "apis.supervisor.complete_task()")
    return f"My contact {cname(c)} has a new phone number, {new}. Update the contact.", ch, None, code


@template("create_alarm", "easy", "phone")
def _t_create_alarm(w, rng):
    hh = f"{rng.randint(5, 22):02d}:{rng.choice((0, 15, 30, 45)):02d}"
    label = pick(rng, ["Take out the trash", "Call mom", "Stretch", "Leave for the airport", "Feed the cat", "Standup"])
    ch = [Change("add", "alarms", {"time": hh, "label": label, "enabled": 1})]
    code = f'apis.phone.create_alarm(access_token=tokens["phone"], time={hh!r}, label={label!r})\napis.supervisor.complete_task()'
    return f"Set an alarm at {hh} labelled '{label}'.", ch, None, code


@template("toggle_alarm", "easy", "phone")
def _t_toggle_alarm(w, rng):
    a = pick(rng, w.tables["alarms"])
    on = not a["enabled"]
    ch = [Change("update", "alarms", {"enabled": int(on)}, id=a["id"])]
    code = ('alarm = [a for a in apis.phone.show_alarms(access_token=tokens["phone"])["data"] '
            f'if a["label"] == {a["label"]!r}][0]\n'
            f'apis.phone.update_alarm(access_token=tokens["phone"], alarm_id=alarm["alarm_id"], enabled={on!r})\n'
            "apis.supervisor.complete_task()")
    what = "Turn on" if on else "Turn off"
    return f"{what} my '{a['label']}' alarm (keep it, only change whether it is enabled).", ch, None, code


# --- email --------------------------------------------------------------------------------------------------
@template("count_emails_from_contact", "easy", "phone", "email")
def _t_count_emails(w, rng):
    c = pick(rng, contacts(w))
    n = sum(e["sender"] == c["email"] for e in inbox(w))
    code = (CONTACT.format(q=cname(c)) +
            'found = apis.email.show_inbox(access_token=tokens["email"], sender=c["email"], page_limit=100)["data"]\n'
            "apis.supervisor.complete_task(answer=len(found))")
    return f"How many emails in my inbox are from my contact {cname(c)}?", [], n, code


@template("latest_email_subject", "easy", "email")
def _t_latest_subject(w, rng):
    senders = sorted({e["sender"] for e in inbox(w)})
    s = pick(rng, senders)
    mine = sorted((e for e in inbox(w) if e["sender"] == s), key=lambda e: (e["sent_at"], e["id"]), reverse=True)
    code = (f'found = apis.email.show_inbox(access_token=tokens["email"], sender={s!r}, page_limit=100)["data"]\n'
            'apis.supervisor.complete_task(answer=found[0]["subject"])')
    return f"What is the subject of the most recent email I received from {s}?", [], mine[0]["subject"], code


@template("send_email_to_contact", "medium", "phone", "email")
def _t_send_email(w, rng):
    c = pick(rng, contacts(w))
    subject = pick(rng, ["Catching up", "Saturday plans", "The documents you asked for", "Thank you!", "Quick question"])
    ch = [Change("add", "emails", {"sender": w.user["email"], "recipients": SetOf((c["email"],)), "subject": subject})]
    code = (CONTACT.format(q=cname(c)) +
            f'apis.email.send_email(access_token=tokens["email"], recipients=[c["email"]], subject={subject!r}, '
            f'body="Hi " + c["first_name"] + ",\\n\\nBest,\\n" + profile["first_name"])\n'
            "apis.supervisor.complete_task()")
    return (f"Send an email to my contact {cname(c)} with the subject '{subject}' (write a short body).",
            ch, None, code)


@template("add_contact_from_email_signature", "hard", "email", "phone")
def _t_contact_from_email(w, rng):
    known = {c["email"] for c in contacts(w)}
    p = pick(rng, [p for p in w.tables["people"][1:] if p["email"] not in known])
    company = pick(rng, ["Acme Robotics", "Blue Fern Studio", "Northwind Labs", "Harbor Analytics"])
    subject = f"Introduction: {company} partnership"
    w.add("emails", sender=p["email"], recipients=w.user["email"], subject=subject,
          body=f"Hello {w.user['first_name']},\n\nI'd love to talk about working together.\n\nRegards,\n"
               f"{w.full_name(p)}\n{company}\nPhone: {p['phone_number']}",
          sent_at=(NOW - timedelta(hours=rng.randint(2, 48))).strftime("%Y-%m-%d %H:%M:%S"), reply_to_id=None)
    ch = [Change("add", "contacts", {"first_name": p["first_name"], "last_name": p["last_name"],
                                     "phone_number": p["phone_number"], "email": p["email"], "relationship": "coworker"})]
    code = (f'hit = apis.email.show_inbox(access_token=tokens["email"], query={subject!r})["data"][0]\n'
            'mail = apis.email.show_email(access_token=tokens["email"], email_id=hit["email_id"])["data"]\n'
            'lines = mail["body"].splitlines()\n'
            'phone = [x.split(":", 1)[1].strip() for x in lines if x.startswith("Phone:")][0]\n'
            'name = lines[lines.index([x for x in lines if x.startswith("Phone:")][0]) - 2].split()\n'
            'apis.phone.add_contact(access_token=tokens["phone"], first_name=name[0], last_name=name[-1], '
            'phone_number=phone, email=mail["sender"], relationship="coworker")\n'
            "apis.supervisor.complete_task()")
    return (f"Add the person who emailed me about '{subject}' to my phone contacts as a coworker, with their "
            "name, email and the phone number from their email signature.", ch, None, code)


# --- calendar -------------------------------------------------------------------------------------------------
def _unique_future_events(w: World, need_attendees: bool = False) -> list[dict]:
    evs = [e for e in w.tables["events"] if e["start"] > NOW.strftime("%Y-%m-%d %H:%M:%S")]
    key = {}
    for e in w.tables["events"]:
        k = (e["title"], e["start"][:10])
        key[k] = key.get(k, 0) + 1
    return [e for e in evs if key[(e["title"], e["start"][:10])] == 1 and (e["attendees"] or not need_attendees)]


EVENT = ('ev = [e for e in apis.calendar.show_events(access_token=tokens["calendar"], start_date={d!r}, end_date={d!r}, '
         'page_limit=100)["data"] if e["title"] == {t!r}][0]\n')


@template("event_start_time", "easy", "calendar")
def _t_event_start(w, rng):
    e = pick(rng, _unique_future_events(w))
    d = e["start"][:10]
    code = EVENT.format(d=d, t=e["title"]) + 'apis.supervisor.complete_task(answer=ev["start"][11:16])'
    return f"When does my '{e['title']}' event on {d} start? Answer as HH:MM.", [], e["start"][11:16], code


@template("count_events_on_day", "easy", "calendar")
def _t_count_events(w, rng):
    d = (NOW + timedelta(days=rng.randint(0, 14))).strftime("%Y-%m-%d")
    n = sum(e["start"][:10] == d for e in w.tables["events"])
    code = (f'found = apis.calendar.show_events(access_token=tokens["calendar"], start_date={d!r}, end_date={d!r}, page_limit=100)["data"]\n'
            "apis.supervisor.complete_task(answer=len(found))")
    return f"How many events do I have on my calendar on {d}?", [], n, code


@template("create_event", "medium", "calendar")
def _t_create_event(w, rng):
    day = (NOW + timedelta(days=rng.randint(1, 20))).strftime("%Y-%m-%d")
    h = rng.randint(8, 18)
    dur = rng.choice((30, 60, 90))
    start = f"{day} {h:02d}:00"
    end_h, end_m = divmod(h * 60 + dur, 60)
    end = f"{day} {end_h:02d}:{end_m:02d}"
    title = pick(rng, ["Lunch with Sam", "Tax advisor", "Pottery class", "Vet appointment", "Apartment viewing"])
    loc = pick(rng, ["Cafe Lumen", "Main St 12", "Online", "City Hall"])
    ch = [Change("add", "events", {"title": title, "start": start + ":00", "end": end + ":00", "location": loc})]
    code = (f'apis.calendar.create_event(access_token=tokens["calendar"], title={title!r}, start={start!r}, end={end!r}, location={loc!r})\n'
            "apis.supervisor.complete_task()")
    return f"Add '{title}' to my calendar on {day} from {start[11:]} to {end[11:]} at '{loc}'.", ch, None, code


@template("delete_event", "medium", "calendar")
def _t_delete_event(w, rng):
    e = pick(rng, _unique_future_events(w))
    d = e["start"][:10]
    code = (EVENT.format(d=d, t=e["title"]) +
            'apis.calendar.delete_event(access_token=tokens["calendar"], event_id=ev["event_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Cancel my '{e['title']}' event on {d}: delete it from my calendar.", [Change("delete", "events", id=e["id"])], None, code


@template("email_event_attendees", "hard", "calendar", "email")
def _t_email_attendees(w, rng):
    e = pick(rng, _unique_future_events(w, need_attendees=True) or [None])
    if e is None:  # no future event with attendees in this world: add one
        people = [p["email"] for p in rng.sample(w.tables["people"][1:], 2)]
        start = (NOW + timedelta(days=3)).replace(hour=15, minute=0)
        e = w.add("events", title="Project sync", start=start.strftime("%Y-%m-%d %H:%M:%S"),
                  end=(start + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"), location="Online",
                  attendees=",".join(people), description="")
    d = e["start"][:10]
    subject = pick(rng, ["Agenda", "Reminder", "Change of plans", "See you there"])
    ch = [Change("add", "emails", {"sender": w.user["email"], "recipients": SetOf(tuple(e["attendees"].split(","))),
                                   "subject": subject})]
    code = (EVENT.format(d=d, t=e["title"]) +
            f'apis.email.send_email(access_token=tokens["email"], recipients=ev["attendees"], subject={subject!r}, '
            'body="Hi all, see you at " + ev["title"] + ".")\n'
            "apis.supervisor.complete_task()")
    return (f"Send one email to all attendees of my '{e['title']}' event on {d} with the subject '{subject}' "
            "(write a short body).", ch, None, code)


# --- notes and todos ------------------------------------------------------------------------------------
NOTE = ('note_id = [n for n in apis.notes.show_notes(access_token=tokens["notes"], page_limit=100)["data"] if n["title"] == {t!r}][0]["note_id"]\n'
        'note = apis.notes.show_note(access_token=tokens["notes"], note_id=note_id)["data"]\n')


@template("count_note_items", "easy", "notes")
def _t_note_items(w, rng):
    title = pick(rng, ["Grocery list", "Books to read", "Gift ideas"])
    n = next(n for n in w.tables["notes"] if n["title"] == title)
    k = sum(line.startswith("- ") for line in n["content"].splitlines())
    code = NOTE.format(t=title) + 'apis.supervisor.complete_task(answer=len([x for x in note["content"].splitlines() if x.startswith("- ")]))'
    return f"How many items are listed in my note '{title}'?", [], k, code


@template("count_open_todos", "easy", "notes")
def _t_open_todos(w, rng):
    n = sum(not t["done"] for t in w.tables["todos"])
    code = ('found = apis.notes.show_todos(access_token=tokens["notes"], done=False, page_limit=100)["data"]\n'
            "apis.supervisor.complete_task(answer=len(found))")
    return "How many of my to-do items are not done yet?", [], n, code


@template("complete_todo", "easy", "notes")
def _t_complete_todo(w, rng):
    open_ = [t for t in w.tables["todos"] if not t["done"]]
    if not open_:
        t = w.add("todos", title="Buy a birthday card", due_date=None, done=0, created_at="2026-05-10 09:00:00", completed_at=None)
    else:
        t = pick(rng, open_)
    code = (f'item = apis.notes.show_todos(access_token=tokens["notes"], query={t["title"]!r})["data"][0]\n'
            'apis.notes.complete_todo(access_token=tokens["notes"], todo_id=item["todo_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Mark my to-do '{t['title']}' as done.", [Change("update", "todos", {"done": 1}, id=t["id"])], None, code


@template("add_grocery_item", "medium", "notes")
def _t_add_grocery(w, rng):
    n = next(n for n in w.tables["notes"] if n["title"] == "Grocery list")
    have = {line[2:] for line in n["content"].splitlines()}
    item = pick(rng, [g for g in ("butter", "oranges", "pasta", "yogurt", "honey", "lentils") if g not in have])
    ch = [Change("update", "notes", {"content": n["content"] + f"\n- {item}"}, id=n["id"])]
    code = (NOTE.format(t="Grocery list") +
            f'apis.notes.update_note(access_token=tokens["notes"], note_id=note_id, content=note["content"] + "\\n- " + {item!r})\n'
            "apis.supervisor.complete_task()")
    return (f"Add '{item}' as a new last line '- {item}' to my note 'Grocery list' (keep the other lines as they are).",
            ch, None, code)


# --- payments ----------------------------------------------------------------------------------------------
@template("payments_balance", "easy", "payments")
def _t_balance(w, rng):
    code = 'apis.supervisor.complete_task(answer=apis.payments.show_account(access_token=tokens["payments"])["data"]["balance"])'
    return "What is my current balance in the payments app?", [], w.balance(1), code


@template("total_sent_to_contact", "medium", "phone", "payments")
def _t_total_sent(w, rng):
    partners = {t["receiver_id"] for t in w.tables["transactions"] if t["sender_id"] == 1}
    cs = [c for c in contacts(w) if w.by_email(c["email"])["id"] in partners] or contacts(w)
    c = pick(rng, cs)
    pid = w.by_email(c["email"])["id"]
    total = round(sum(t["amount"] for t in w.tables["transactions"] if t["sender_id"] == 1 and t["receiver_id"] == pid), 2)
    code = (CONTACT.format(q=cname(c)) +
            'txs = apis.payments.show_transactions(access_token=tokens["payments"], direction="sent", user_email=c["email"], page_limit=100)["data"]\n'
            'apis.supervisor.complete_task(answer=round(sum(t["amount"] for t in txs), 2))')
    return f"How much money in total have I sent to {cname(c)} in the payments app?", [], total, code


@template("send_money_to_contact", "medium", "phone", "payments")
def _t_send_money(w, rng):
    c = pick(rng, contacts(w))
    p = w.by_email(c["email"])
    amount = round(rng.randint(500, 6000) / 100, 2)
    desc = pick(rng, ["pizza", "concert tickets", "taxi", "birthday gift", "groceries"])
    ch = pay_changes(w, [(p["id"], amount)], [{"description": Contains(desc)}])
    code = (CONTACT.format(q=cname(c)) +
            f'apis.payments.send_money(access_token=tokens["payments"], receiver_email=c["email"], amount={amount!r}, description={desc!r})\n'
            "apis.supervisor.complete_task()")
    return f"Send {cname(c)} ${amount:.2f} for '{desc}' in the payments app, from my balance.", ch, None, code


def _pending_from(w: World, pid: int) -> list[dict]:
    return [r for r in w.tables["payment_requests"] if r["payer_id"] == 1 and r["requester_id"] == pid and r["status"] == "pending"]


def _one_pending_requester(w: World, rng: random.Random) -> tuple[dict, dict]:
    ids = sorted({r["requester_id"] for r in w.tables["payment_requests"] if r["payer_id"] == 1 and r["status"] == "pending"})
    ids = [i for i in ids if len(_pending_from(w, i)) == 1]
    pid = pick(rng, ids)
    return w.person(pid), _pending_from(w, pid)[0]


REQ = ('who = apis.payments.search_users(access_token=tokens["payments"], query={q!r})["data"][0]\n'
       'req = [r for r in apis.payments.show_payment_requests(access_token=tokens["payments"], status="pending", page_limit=100)["data"] '
       'if r["requester_email"] == who["email"]][0]\n')


@template("approve_payment_request", "medium", "payments")
def _t_approve(w, rng):
    p, r = _one_pending_requester(w, rng)
    ch = [Change("update", "payment_requests", {"status": "approved"}, id=r["id"])]
    ch += pay_changes(w, [(p["id"], r["amount"])], [{}])
    code = (REQ.format(q=w.full_name(p)) +
            'apis.payments.approve_payment_request(access_token=tokens["payments"], payment_request_id=req["payment_request_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Approve (pay) the pending payment request {w.full_name(p)} sent me, from my balance.", ch, None, code


@template("deny_payment_request", "medium", "payments")
def _t_deny(w, rng):
    p, r = _one_pending_requester(w, rng)
    ch = [Change("update", "payment_requests", {"status": "denied"}, id=r["id"])]
    code = (REQ.format(q=w.full_name(p)) +
            'apis.payments.deny_payment_request(access_token=tokens["payments"], payment_request_id=req["payment_request_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Deny the pending payment request {w.full_name(p)} sent me.", ch, None, code


ROOMMATES = NOTE.format(t="Roommates") + 'names = [x[2:].strip() for x in note["content"].splitlines() if x.startswith("- ")]\n'


@template("approve_roommate_requests", "hard", "notes", "payments")
def _t_approve_roommates(w, rng):
    room = set(w.extra["roommates"])
    reqs = sorted((r for r in w.tables["payment_requests"] if r["payer_id"] == 1 and r["status"] == "pending"
                   and r["requester_id"] in room), key=lambda r: r["id"])
    ch = [Change("update", "payment_requests", {"status": "approved"}, id=r["id"]) for r in reqs]
    ch += pay_changes(w, [(r["requester_id"], r["amount"]) for r in reqs], [{} for _ in reqs])
    code = (ROOMMATES +
            'emails = [apis.payments.search_users(access_token=tokens["payments"], query=n)["data"][0]["email"] for n in names]\n'
            'for r in apis.payments.show_payment_requests(access_token=tokens["payments"], status="pending", page_limit=100)["data"]:\n'
            '    if r["requester_email"] in emails:\n'
            '        apis.payments.approve_payment_request(access_token=tokens["payments"], payment_request_id=r["payment_request_id"])\n'
            "apis.supervisor.complete_task()")
    return ("Approve every pending payment request I received from my roommates (they are listed in my note "
            "'Roommates'), paying from my balance. Leave all other requests as they are.", ch, None, code)


@template("split_dinner_bills", "hard", "notes", "payments")
def _t_split_bills(w, rng):
    note = next(n for n in w.tables["notes"] if n["title"] == "Dinner bills")
    month = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    bills = [b for b in w.extra["bills"] if b[0].startswith(month)]
    if not bills:  # make sure last month has a bill
        bills = [(f"{month}-12", RESTAURANTS[rng.randrange(len(RESTAURANTS))], round(rng.randint(3000, 12000) / 100, 2))]
        lines = sorted(note["content"].splitlines() + [f"{bills[0][0]} | {bills[0][1]} | {bills[0][2]:.2f}"])
        note["content"] = "\n".join(lines)
    room = w.extra["roommates"]
    share = round(sum(b[2] for b in bills) / (len(room) + 1), 2)
    ch = [Change("add", "payment_requests", {"requester_id": 1, "payer_id": pid, "amount": share, "status": "pending",
                                             "description": Contains("dinner")}) for pid in room]
    code = (ROOMMATES +
            NOTE.format(t="Dinner bills").replace("note_id =", "bills_id =").replace("note_id=note_id", "note_id=bills_id").replace("note =", "bills =") +
            f'total = sum(float(x.split("|")[2]) for x in bills["content"].splitlines() if x.startswith({month!r}))\n'
            "share = round(total / (len(names) + 1), 2)\n"
            "for n in names:\n"
            '    who = apis.payments.search_users(access_token=tokens["payments"], query=n)["data"][0]\n'
            '    apis.payments.create_payment_request(access_token=tokens["payments"], user_email=who["email"], amount=share, description="dinner split")\n'
            "apis.supervisor.complete_task()")
    return (f"Split the total of last month's ({month}) dinner bills from my note 'Dinner bills' equally between me and "
            "my roommates (listed in my note 'Roommates'): send each roommate a payment request for their share, "
            "rounded to cents, with the description 'dinner split'.", ch, None, code)


@template("pay_amount_from_email", "hard", "phone", "email", "payments")
def _t_pay_from_email(w, rng):
    c = pick(rng, contacts(w))
    p = w.by_email(c["email"])
    amount = round(rng.randint(1000, 9000) / 100, 2)
    thing = pick(rng, ["the concert tickets", "the cabin booking", "the group gift", "the taxi to the airport"])
    w.add("emails", sender=p["email"], recipients=w.user["email"], subject=f"Money for {thing}",
          body=f"Hi {w.user['first_name']},\n\ncould you send me ${amount:.2f} for {thing}? Thanks!\n\n{p['first_name']}",
          sent_at=(NOW - timedelta(hours=rng.randint(1, 30))).strftime("%Y-%m-%d %H:%M:%S"), reply_to_id=None)
    ch = pay_changes(w, [(p["id"], amount)], [{}])
    code = (CONTACT.format(q=cname(c)) +
            'hit = apis.email.show_inbox(access_token=tokens["email"], sender=c["email"], query="Money for")["data"][0]\n'
            'body = apis.email.show_email(access_token=tokens["email"], email_id=hit["email_id"])["data"]["body"]\n'
            'amount = float(re.findall(r"\\$([0-9]+\\.[0-9]{2})", body)[0])\n'
            'apis.payments.send_money(access_token=tokens["payments"], receiver_email=c["email"], amount=amount, description="as asked by email")\n'
            "apis.supervisor.complete_task()").replace("hit = ", "import re\nhit = ", 1)
    return (f"My contact {cname(c)} emailed me asking for money. Send them exactly the amount they asked for "
            "in the payments app, from my balance.", ch, None, code)


# --- music ---------------------------------------------------------------------------------------------------
PLAYLIST = ('pl_id = [p for p in apis.music.show_playlists(access_token=tokens["music"])["data"] if p["title"] == {t!r}][0]["playlist_id"]\n'
            'pl = apis.music.show_playlist(access_token=tokens["music"], playlist_id=pl_id)["data"]\n')


def _playlist_songs(w: World, pid: int) -> list[dict]:
    ids = [ps["song_id"] for ps in sorted(w.tables["playlist_songs"], key=lambda r: r["id"]) if ps["playlist_id"] == pid]
    return [w.row("songs", i) for i in ids]


@template("most_played_in_playlist", "easy", "music")
def _t_top_song(w, rng):
    p = pick(rng, w.tables["playlists"])
    top = max(_playlist_songs(w, p["id"]), key=lambda s: s["plays"])
    code = PLAYLIST.format(t=p["title"]) + 'apis.supervisor.complete_task(answer=max(pl["songs"], key=lambda s: s["plays"])["title"])'
    return f"Which song in my playlist '{p['title']}' has the most plays? Answer with its title.", [], top["title"], code


@template("liked_songs_by_artist", "easy", "music")
def _t_liked_artist(w, rng):
    liked = [w.row("songs", r["song_id"]) for r in w.tables["liked_songs"]]
    artist = pick(rng, sorted({s["artist"] for s in liked}))
    n = sum(s["artist"] == artist for s in liked)
    code = ('liked = apis.music.show_liked_songs(access_token=tokens["music"], page_limit=100)["data"]\n'
            f'apis.supervisor.complete_task(answer=len([s for s in liked if s["artist"] == {artist!r}]))')
    return f"How many of my liked songs are by {artist}?", [], n, code


@template("remove_song_from_playlist", "medium", "music")
def _t_remove_song(w, rng):
    p = pick(rng, w.tables["playlists"])
    s = pick(rng, _playlist_songs(w, p["id"]))
    row = next(r for r in w.tables["playlist_songs"] if r["playlist_id"] == p["id"] and r["song_id"] == s["id"])
    code = (PLAYLIST.format(t=p["title"]) +
            f'song = [s for s in pl["songs"] if s["title"] == {s["title"]!r}][0]\n'
            'apis.music.remove_song_from_playlist(access_token=tokens["music"], playlist_id=pl_id, song_id=song["song_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Remove the song '{s['title']}' from my playlist '{p['title']}'.", [Change("delete", "playlist_songs", id=row["id"])], None, code


@template("like_playlist_songs", "medium", "music")
def _t_like_playlist(w, rng):
    p = pick(rng, w.tables["playlists"])
    liked = {r["song_id"] for r in w.tables["liked_songs"]}
    todo = [s for s in _playlist_songs(w, p["id"]) if s["id"] not in liked]
    ch = [Change("add", "liked_songs", {"song_id": s["id"]}) for s in todo]
    code = (PLAYLIST.format(t=p["title"]) +
            'liked = {s["song_id"] for s in apis.music.show_liked_songs(access_token=tokens["music"], page_limit=100)["data"]}\n'
            'for s in pl["songs"]:\n'
            '    if s["song_id"] not in liked:\n'
            '        apis.music.like_song(access_token=tokens["music"], song_id=s["song_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Like every song in my playlist '{p['title']}' that I have not liked yet.", ch, None, code


@template("playlist_of_artist", "medium", "music")
def _t_artist_playlist(w, rng):
    by: dict[str, list[int]] = {}
    for s in w.tables["songs"]:
        by.setdefault(s["artist"], []).append(s["id"])
    artist = pick(rng, sorted(a for a, ids in by.items() if len(ids) >= 2))
    title = f"Best of {artist}"
    ch = [Change("add", "playlists", {"title": title})]
    ch += [Change("add", "playlist_songs", {"playlist_id": Ref(0), "song_id": i}) for i in by[artist]]
    code = (f'new = apis.music.create_playlist(access_token=tokens["music"], title={title!r})["data"]["playlist_id"]\n'
            f'for s in apis.music.search_songs(access_token=tokens["music"], artist={artist!r}, page_limit=100)["data"]:\n'
            '    apis.music.add_song_to_playlist(access_token=tokens["music"], playlist_id=new, song_id=s["song_id"])\n'
            "apis.supervisor.complete_task()")
    return f"Create a playlist named '{title}' holding every song by {artist} in the catalog.", ch, None, code


@template("playlist_from_email_recommendations", "hard", "phone", "email", "music")
def _t_recs(w, rng):
    c = pick(rng, contacts(w))
    songs = rng.sample(w.tables["songs"], rng.randint(2, 4))
    w.add("emails", sender=c["email"], recipients=w.user["email"], subject="Song recommendations",
          body=f"Hey {w.user['first_name']}! You should listen to these:\n" + "\n".join(f"- {s['title']}" for s in songs)
               + f"\n\nCheers,\n{c['first_name']}",
          sent_at=(NOW - timedelta(hours=rng.randint(1, 72))).strftime("%Y-%m-%d %H:%M:%S"), reply_to_id=None)
    title = f"{c['first_name']}'s picks"
    ch = [Change("add", "playlists", {"title": title})]
    ch += [Change("add", "playlist_songs", {"playlist_id": Ref(0), "song_id": s["id"]}) for s in songs]
    code = (CONTACT.format(q=cname(c)) +
            'hit = apis.email.show_inbox(access_token=tokens["email"], sender=c["email"], query="Song recommendations")["data"][0]\n'
            'body = apis.email.show_email(access_token=tokens["email"], email_id=hit["email_id"])["data"]["body"]\n'
            'wanted = [x[2:].strip() for x in body.splitlines() if x.startswith("- ")]\n'
            f'new = apis.music.create_playlist(access_token=tokens["music"], title={title!r})["data"]["playlist_id"]\n'
            "for t in wanted:\n"
            '    song = [s for s in apis.music.search_songs(access_token=tokens["music"], query=t, page_limit=100)["data"] if s["title"] == t][0]\n'
            '    apis.music.add_song_to_playlist(access_token=tokens["music"], playlist_id=new, song_id=song["song_id"])\n'
            "apis.supervisor.complete_task()")
    return (f"My contact {cname(c)} emailed me song recommendations (subject 'Song recommendations'). Create a playlist "
            f"named \"{title}\" with exactly those songs.", ch, None, code)


@template("text_roommates", "hard", "notes", "phone")
def _t_text_roommates(w, rng):
    msg = pick(rng, ["House meeting tonight at 8", "The plumber comes tomorrow at 9", "Rent is due on Monday",
                     "I bought dish soap, no need to get more"])
    ch = [Change("add", "text_messages", {"sender_phone": w.user["phone_number"], "receiver_phone": w.person(pid)["phone_number"],
                                          "body": msg}) for pid in w.extra["roommates"]]
    code = (ROOMMATES +
            "for n in names:\n"
            '    c = apis.phone.show_contacts(access_token=tokens["phone"], query=n)["data"][0]\n'
            f'    apis.phone.send_text_message(access_token=tokens["phone"], phone_number=c["phone_number"], message={msg!r})\n'
            "apis.supervisor.complete_task()")
    return (f"Send a text message saying exactly \"{msg}\" to each of my roommates (they are listed in my note "
            "'Roommates').", ch, None, code)
