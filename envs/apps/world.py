"""A seeded population of people and their app data, under a frozen clock.

``generate(pop_seed)`` builds a :class:`World`: plain rows per table (the schema is ``schema.sql``),
the user's profile, per-app passwords and addresses. ``World.connect()`` loads it into a fresh
in-memory SQLite database. Everything is drawn from ``random.Random(pop_seed)``, so the same seed
gives the same world, and task templates may add rows (``World.add``) before it is loaded.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

#: The frozen clock: every episode happens at this moment (a Friday).
NOW = datetime(2026, 5, 15, 10, 30, 0)
FMT = "%Y-%m-%d %H:%M:%S"
SCHEMA_PATH = Path(__file__).with_name("schema.sql")
SCHEMA = SCHEMA_PATH.read_text()
APPS = ("phone", "email", "calendar", "notes", "payments", "music")

FIRST = (
    "Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Liam",
    "Mona", "Nikolai", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tara", "Ugo", "Vera", "Wen", "Ximena",
    "Yusuf", "Zoe", "Aiko", "Ben", "Carmen", "Dev", "Esme", "Felix", "Gia", "Hugo", "Ivy", "Jake",
)
LAST = (
    "Abara", "Bianchi", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
    "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quispe", "Rossi", "Sato", "Tanaka", "Ueda", "Varga",
    "Weber", "Xu", "Yilmaz", "Zamora", "Arnaud", "Brandt", "Costa", "Duarte",
)
DOMAINS = ("example.com", "mail.test", "inbox.test", "post.test")
RELATIONSHIPS = ("friend", "family", "coworker", "neighbor")
SUBJECTS = (
    "Quarterly report", "Lunch next week?", "Photos from the trip", "Project kickoff", "Invoice", "Book club",
    "Weekend plans", "Question about the lease", "Conference travel", "Recipe you asked for", "Happy hour",
    "Team offsite", "Volunteer schedule", "Garden tools", "Concert tickets", "Moving boxes",
)
EVENT_TITLES = (
    "Dentist appointment", "Team standup", "Yoga class", "Project review", "Coffee with a friend", "Haircut",
    "Piano lesson", "Budget meeting", "Doctor visit", "Book club", "Climbing session", "Parent-teacher meeting",
    "Car service", "1:1 with manager", "Farmers market", "Movie night",
)
LOCATIONS = ("Main St 12", "Office, room 4B", "Online", "City gym", "Cafe Lumen", "Home", "Library", "Clinic")
TX_DESCRIPTIONS = (
    "rent share", "movie tickets", "groceries", "concert", "taxi", "birthday gift", "coffee", "utilities",
    "lunch", "gas money", "book", "parking",
)
TODO_TITLES = (
    "Renew passport", "Call the plumber", "Buy printer ink", "Water the plants", "Return library books",
    "Book flights", "Pay parking ticket", "Clean the garage", "Update resume", "Schedule vet visit",
    "Order new glasses", "Back up laptop", "Fix bike tire", "Send thank-you cards",
)
RESTAURANTS = ("Thai Palace", "Luigi's Trattoria", "Sushi Bar Hana", "El Fogon", "The Burger Joint", "Curry House")
GROCERIES = ("milk", "eggs", "bread", "apples", "rice", "coffee", "cheese", "spinach", "tomatoes", "olive oil")
BOOKS = ("The Long Coast", "Glass Harbor", "Seven Winters", "Quiet Engines", "A Map of Salt", "Paper Moons")
GENRES = ("pop", "rock", "jazz", "hip hop", "classical", "electronic", "folk", "r&b")
ARTISTS = (
    "Nova Lane", "The Copper Kites", "Mira Sol", "Echo Harbor", "DJ Parallax", "Sister Moth", "Juno Reyes",
    "Blue Static", "Orchid Valley", "Kai Storm", "The Paper Lions", "Luma", "Velvet Circuit", "Ash & Ivory",
)
WORDS_A = ("Midnight", "Golden", "Electric", "Silent", "Broken", "Neon", "Wild", "Lonely", "Crystal", "Summer",
           "Velvet", "Paper", "Hollow", "Burning", "Distant", "Sweet")
WORDS_B = ("Rain", "Hearts", "Highway", "Dreams", "Shadows", "Fire", "Echoes", "River", "Skyline", "Letters",
           "Horizon", "Stars", "Waves", "Garden", "Mirrors", "Roads")
PLAYLIST_TITLES = ("Morning Run", "Focus", "Road Trip", "Chill Evenings", "Party Mix", "Throwbacks", "Rainy Day")


def ts(dt: datetime) -> str:
    return dt.strftime(FMT)


@dataclass
class World:
    """Rows per table plus the user's supervisor data (profile, passwords, addresses)."""

    pop_seed: int
    tables: dict[str, list[dict[str, Any]]]
    passwords: dict[str, str]
    addresses: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)

    # --- lookups used by templates ------------------------------------------------------------
    @property
    def user(self) -> dict[str, Any]:
        return self.tables["people"][0]

    def person(self, pid: int) -> dict[str, Any]:
        return self.tables["people"][pid - 1]

    def by_email(self, email: str) -> dict[str, Any]:
        return next(p for p in self.tables["people"] if p["email"] == email)

    @staticmethod
    def full_name(p: dict[str, Any]) -> str:
        return f"{p['first_name']} {p['last_name']}"

    def next_id(self, table: str) -> int:
        rows = self.tables[table]
        return (max(r["id"] for r in rows) + 1) if rows else 1

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        row = {"id": self.next_id(table), **row}
        self.tables[table].append(row)
        return row

    def row(self, table: str, rid: int) -> dict[str, Any]:
        return next(r for r in self.tables[table] if r["id"] == rid)

    def balance(self, pid: int) -> float:
        return self.row("payment_accounts", pid)["balance"]

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.executescript(SCHEMA)
        for table, rows in self.tables.items():
            if not rows:
                continue
            cols = list(rows[0])
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            db.executemany(sql, [tuple(r.get(c) for c in cols) for r in rows])
        db.commit()
        return db


def _phone(rng: random.Random, used: set[str]) -> str:
    while True:
        p = f"{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if p not in used:
            used.add(p)
            return p


def _when(rng: random.Random, days_back: int, days_fwd: int = 0) -> datetime:
    minutes = rng.randint(-days_back * 24 * 60, days_fwd * 24 * 60)
    return (NOW + timedelta(minutes=minutes)).replace(second=0)


def generate(pop_seed: int, n_people: int = 30) -> World:
    rng = random.Random(f"apps-world-{pop_seed}")
    names = rng.sample([(f, la) for f in FIRST for la in LAST], n_people + 1)
    phones: set[str] = set()
    people = []
    for i, (f, la) in enumerate(names, start=1):
        dom = DOMAINS[rng.randrange(len(DOMAINS))]
        bday = f"{rng.randint(1960, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        people.append({"id": i, "first_name": f, "last_name": la, "email": f"{f}.{la}@{dom}".lower(),
                       "phone_number": _phone(rng, phones), "birthday": bday})
    user = people[0]
    others = people[1:]
    t: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "people", "contacts", "text_messages", "alarms", "emails", "events", "notes", "todos",
        "payment_accounts", "payment_cards", "transactions", "payment_requests", "songs", "playlists",
        "playlist_songs", "liked_songs")}
    t["people"] = people

    # phone: 20 contacts, 2-3 of them roommates
    contacts = rng.sample(others, 20)
    n_room = rng.randint(2, 3)
    for k, p in enumerate(contacts):
        rel = "roommate" if k < n_room else RELATIONSHIPS[rng.randrange(len(RELATIONSHIPS))]
        t["contacts"].append({"id": k + 1, "first_name": p["first_name"], "last_name": p["last_name"],
                              "phone_number": p["phone_number"], "email": p["email"], "relationship": rel,
                              "created_at": ts(_when(rng, 700, 0))})
    roommates = contacts[:n_room]
    bodies = ("See you soon!", "Running 10 minutes late", "Did you get my email?", "Thanks a lot!",
              "Call me when you can", "Happy birthday!", "Sounds good", "Where are you?", "On my way")
    for k in range(40):
        p = contacts[rng.randrange(len(contacts))]
        out = rng.random() < 0.4
        s, r = (user, p) if out else (p, user)
        t["text_messages"].append({"id": k + 1, "sender_phone": s["phone_number"], "receiver_phone": r["phone_number"],
                                   "body": bodies[rng.randrange(len(bodies))], "sent_at": ts(_when(rng, 60))})
    for k, (hh, label) in enumerate(rng.sample([("06:30", "Wake up"), ("07:15", "Workout"), ("12:00", "Lunch"),
                                                ("22:30", "Bedtime"), ("08:00", "Meds"), ("17:45", "Pick up kids")], 4)):
        t["alarms"].append({"id": k + 1, "time": hh, "label": label, "enabled": int(rng.random() < 0.7)})

    # email: 35 received, 12 sent
    for k in range(47):
        p = others[rng.randrange(len(others))]
        subj = SUBJECTS[rng.randrange(len(SUBJECTS))]
        sent = k >= 35
        body = f"Hi {p['first_name'] if sent else user['first_name']},\n\nAbout '{subj.lower()}': let me know what you think.\n\nBest,\n" \
               f"{user['first_name'] if sent else p['first_name']}"
        t["emails"].append({"id": k + 1, "sender": user["email"] if sent else p["email"],
                            "recipients": p["email"] if sent else user["email"], "subject": subj, "body": body,
                            "sent_at": ts(_when(rng, 90)), "reply_to_id": None})

    # calendar: 24 events from 20 days ago to 30 days ahead, on the hour
    for k in range(24):
        start = (NOW + timedelta(days=rng.randint(-20, 30))).replace(hour=rng.randint(8, 19), minute=0)
        dur = rng.choice((30, 60, 60, 90, 120))
        att = [p["email"] for p in rng.sample(others, rng.randint(0, 3))]
        t["events"].append({"id": k + 1, "title": EVENT_TITLES[rng.randrange(len(EVENT_TITLES))], "start": ts(start),
                            "end": ts(start + timedelta(minutes=dur)), "location": LOCATIONS[rng.randrange(len(LOCATIONS))],
                            "attendees": ",".join(att), "description": ""})

    # notes and todos
    def note(title: str, content: str, tags: str) -> None:
        made = ts(_when(rng, 200, 0))
        t["notes"].append({"id": len(t["notes"]) + 1, "title": title, "content": content, "tags": tags,
                           "created_at": made, "updated_at": made})

    note("Roommates", "\n".join(f"- {World.full_name(p)}" for p in roommates), "home")
    note("Grocery list", "\n".join(f"- {g}" for g in rng.sample(GROCERIES, rng.randint(4, 8))), "shopping")
    note("Books to read", "\n".join(f"- {b}" for b in rng.sample(BOOKS, rng.randint(3, 5))), "reading")
    bills = []
    for _ in range(rng.randint(6, 9)):
        day = NOW - timedelta(days=rng.randint(1, 75))
        bills.append((day.strftime("%Y-%m-%d"), RESTAURANTS[rng.randrange(len(RESTAURANTS))],
                      round(rng.randint(3000, 15000) / 100, 2)))
    bills.sort()
    note("Dinner bills", "\n".join(f"{d} | {r} | {a:.2f}" for d, r, a in bills), "money")
    note("Gift ideas", "\n".join(f"- {x}" for x in rng.sample(("scarf", "board game", "headphones", "plant",
                                                               "cookbook", "candle"), 3)), "")
    note("Meeting notes", "Discussed the roadmap. Action items: follow up with the design team.", "work")
    for k, title in enumerate(rng.sample(TODO_TITLES, 10)):
        done = int(rng.random() < 0.4)
        made = _when(rng, 40, 0)
        due = (NOW + timedelta(days=rng.randint(-5, 20))).strftime("%Y-%m-%d") if rng.random() < 0.7 else None
        t["todos"].append({"id": k + 1, "title": title, "due_date": due, "done": done, "created_at": ts(made),
                           "completed_at": ts(made + timedelta(hours=5)) if done else None})

    # payments
    for p in people:
        bal = rng.randint(80000, 200000) / 100 if p["id"] == 1 else rng.randint(0, 100000) / 100
        t["payment_accounts"].append({"id": p["id"], "balance": bal})
    for k, name in enumerate(rng.sample(("Visa", "Mastercard", "Amex", "Debit"), 2)):
        t["payment_cards"].append({"id": k + 1, "owner_id": 1, "card_name": f"{name} card",
                                   "last_four": f"{rng.randint(0, 9999):04d}", "expiry": f"{rng.randint(1, 12):02d}/{rng.randint(27, 31)}"})
    partners = contacts[:12] + rng.sample(others, 4)
    for k in range(40):
        p = partners[rng.randrange(len(partners))]
        out = rng.random() < 0.55
        t["transactions"].append({"id": k + 1, "sender_id": 1 if out else p["id"], "receiver_id": p["id"] if out else 1,
                                  "amount": rng.randint(500, 12000) / 100, "description": TX_DESCRIPTIONS[rng.randrange(len(TX_DESCRIPTIONS))],
                                  "payment_card_id": None, "created_at": ts(_when(rng, 90))})
    requesters = roommates + rng.sample([p for p in others if p not in roommates], 4)
    for k in range(10):
        p = requesters[k % len(requesters)] if k < 7 else partners[rng.randrange(len(partners))]
        incoming = k < 7
        status = "pending" if (k < 5 or rng.random() < 0.3) else rng.choice(("approved", "denied"))
        made = _when(rng, 30)
        t["payment_requests"].append({"id": k + 1, "requester_id": p["id"] if incoming else 1,
                                      "payer_id": 1 if incoming else p["id"], "amount": rng.randint(500, 9000) / 100,
                                      "description": TX_DESCRIPTIONS[rng.randrange(len(TX_DESCRIPTIONS))], "status": status,
                                      "created_at": ts(made), "resolved_at": None if status == "pending" else ts(made + timedelta(hours=3))})

    # music: 80 songs, 4 playlists, 20 liked songs
    titles = rng.sample([f"{a} {b}" for a in WORDS_A for b in WORDS_B], 80)
    for k, title in enumerate(titles):
        artist = ARTISTS[rng.randrange(len(ARTISTS))]
        t["songs"].append({"id": k + 1, "title": title, "artist": artist, "album": f"{WORDS_B[rng.randrange(16)]} Sessions",
                           "genre": GENRES[rng.randrange(len(GENRES))], "duration_s": rng.randint(140, 320),
                           "plays": rng.randint(1000, 5_000_000), "release_year": rng.randint(1985, 2026)})
    for k, title in enumerate(rng.sample(PLAYLIST_TITLES, 4)):
        t["playlists"].append({"id": k + 1, "title": title, "is_public": int(rng.random() < 0.5),
                               "created_at": ts(_when(rng, 300, 0))})
        for s in rng.sample(range(1, 81), rng.randint(5, 10)):
            t["playlist_songs"].append({"id": len(t["playlist_songs"]) + 1, "playlist_id": k + 1, "song_id": s,
                                        "added_at": ts(_when(rng, 300, 0))})
    for k, s in enumerate(rng.sample(range(1, 81), 20)):
        t["liked_songs"].append({"id": k + 1, "song_id": s, "liked_at": ts(_when(rng, 300, 0))})

    passwords = {app: "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(10)) for app in APPS}
    addresses = [{"name": "Home", "street": f"{rng.randint(1, 200)} Elm Street", "city": "Springfield", "zip": f"{rng.randint(10000, 99999)}"},
                 {"name": "Work", "street": f"{rng.randint(1, 200)} Market Ave", "city": "Springfield", "zip": f"{rng.randint(10000, 99999)}"}]
    return World(pop_seed, t, passwords, addresses,
                 extra={"roommates": [p["id"] for p in roommates], "bills": bills})
