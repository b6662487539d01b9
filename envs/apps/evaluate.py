"""Evaluation by database diff.

A task declares the changes it requires (:class:`Change`: a row added, a row updated with some new
values, a row deleted) and, for questions, the expected answer. The evaluator diffs the database
against its state at reset (:func:`snapshot`, :func:`diff`) and matches each required change to one
diff entry. The task passes when it was completed, every required change is present, the answer
is right (normalized: case, spaces, a trailing period, numbers to the cent, lists as sets) and
*nothing else changed*: any diff entry no required change accounts for is collateral damage.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

#: columns an update may touch on its own (timestamps the apps set for you).
AUTO_COLUMNS = {"updated_at", "completed_at", "resolved_at"}


class Contains(str):
    """Matches a text column that contains this text (case-insensitive)."""


class SetOf(tuple):
    """Matches a comma-separated column holding exactly these values (any order, case-insensitive)."""


@dataclass(frozen=True)
class Ref:
    """Matches the id of the row that required change number ``index`` matched (e.g. a new playlist)."""

    index: int


@dataclass
class Change:
    op: str  # add | update | delete
    table: str
    values: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def describe(self) -> str:
        vals = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        where = f" #{self.id}" if self.id is not None else ""
        return f"{self.op} {self.table}{where}" + (f" ({vals})" if vals else "")


@dataclass
class Entry:
    """One row that differs: op add (after only), delete (before only) or update (both)."""

    op: str
    table: str
    id: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed(self) -> set[str]:
        if self.before is None or self.after is None:
            return set()
        return {k for k in self.after if self.after[k] != self.before.get(k)}

    def to_dict(self) -> dict[str, Any]:
        if self.op == "update":
            assert self.before is not None and self.after is not None
            return {"op": "update", "table": self.table, "id": self.id,
                    "changes": {k: [self.before[k], self.after[k]] for k in sorted(self.changed)}}
        return {"op": self.op, "table": self.table, "id": self.id, "row": self.after if self.op == "add" else self.before}


Snapshot = dict[str, dict[int, dict[str, Any]]]


def snapshot(db: sqlite3.Connection) -> Snapshot:
    out: Snapshot = {}
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for t in tables:
        cur = db.execute(f"SELECT * FROM {t}")
        cols = [d[0] for d in cur.description]
        out[t] = {row[0]: dict(zip(cols, row, strict=True)) for row in cur.fetchall()}
    return out


def diff(before: Snapshot, after: Snapshot) -> list[Entry]:
    out = []
    for t in sorted(set(before) | set(after)):
        b, a = before.get(t, {}), after.get(t, {})
        for i in sorted(set(b) | set(a)):
            rb, ra = b.get(i), a.get(i)
            if rb == ra:
                continue
            op = "add" if rb is None else "delete" if ra is None else "update"
            out.append(Entry(op, t, i, rb, ra))
    return out


# --- matching -----------------------------------------------------------------------------------------
def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def value_matches(want: Any, got: Any, refs: dict[int, int]) -> bool:
    if isinstance(want, Ref):
        return want.index in refs and got == refs[want.index]
    if isinstance(want, Contains):
        return isinstance(got, str) and _norm_text(want) in _norm_text(got)
    if isinstance(want, SetOf):
        if not isinstance(got, str):
            return False
        return sorted(_norm_text(x) for x in got.split(",") if x.strip()) == sorted(_norm_text(x) for x in want)
    if isinstance(want, float) and not isinstance(want, bool):
        return isinstance(got, (int, float)) and abs(float(got) - want) < 0.005
    if isinstance(want, str):
        return isinstance(got, str) and _norm_text(got) == _norm_text(want)
    return want == got


def change_matches(c: Change, e: Entry, refs: dict[int, int]) -> bool:
    if c.op != e.op or c.table != e.table:
        return False
    if c.id is not None and c.id != e.id:
        return False
    if c.op == "delete":
        return True
    row = e.after or {}
    if not all(value_matches(v, row.get(k), refs) for k, v in c.values.items()):
        return False
    if c.op == "update":
        return e.changed <= set(c.values) | AUTO_COLUMNS
    return True


@dataclass
class Verdict:
    matched: list[int]  # indices of required changes that are present
    missing: list[Change]
    collateral: list[Entry]
    answer_ok: bool

    @property
    def progress(self) -> float:
        n = len(self.matched) + len(self.missing)
        return len(self.matched) / n if n else 0.0


def match(changes: list[Change], entries: list[Entry]) -> tuple[list[int], list[Change], list[Entry]]:
    """Greedy one-to-one matching in declaration order (a ``Ref`` points to an earlier change)."""
    used: set[int] = set()
    refs: dict[int, int] = {}
    matched, missing = [], []
    for ci, c in enumerate(changes):
        hit = next((k for k, e in enumerate(entries) if k not in used and change_matches(c, e, refs)), None)
        if hit is None:
            missing.append(c)
        else:
            used.add(hit)
            refs[ci] = entries[hit].id
            matched.append(ci)
    collateral = [e for k, e in enumerate(entries) if k not in used]
    return matched, missing, collateral


# --- answers --------------------------------------------------------------------------------------------
#: a US phone number written with separators or a country code: "(201) 555-1234", "201.555.1234",
#: "+1 201 555 1234"; the world stores 10 bare digits
_PHONE = re.compile(r"^(?:\+1[\s.-]?|1[\s.-])?\(?(\d{3})\)?[\s.-]?(\d{3})[\s.-]?(\d{4})$")


def normalize(x: Any) -> Any:
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, float)):
        return round(float(x), 2)
    if isinstance(x, str):
        s = _norm_text(x).rstrip(".").strip().strip("'\"")
        if m := _PHONE.match(s):  # a phone number in any common format compares as its 10 digits
            return float("".join(m.groups()))
        num = s.replace("$", "").replace(",", "").strip()
        try:
            return round(float(num), 2)
        except ValueError:
            return s
    if isinstance(x, (list, tuple, set, frozenset)):
        return sorted((normalize(v) for v in x), key=repr)
    return x


def answers_match(got: Any, want: Any) -> bool:
    g, w = normalize(got), normalize(want)
    if isinstance(w, list) and not isinstance(g, list) and isinstance(got, str):
        g = sorted((normalize(p) for p in got.split(",")), key=repr)
    if isinstance(g, float) and isinstance(w, float):
        return abs(g - w) < 0.01 + 1e-9
    return g == w
