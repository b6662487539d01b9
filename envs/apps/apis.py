"""The apps' APIs: typed parameters, JSON responses, access tokens, over one SQLite database.

Every API is declared with :func:`api` (app, name, description, parameters, what it returns) and
implemented as a function of a :class:`Backend` and its keyword arguments. ``Backend.call(app, api,
args, kwargs)`` is the only entry point: it checks the API exists, binds and type-checks the
arguments, checks the access token, counts the call against the episode's budget and runs the
function. It always returns a response dict and never raises:

- success: ``{"success": True, "data": ...}``;
- failure: ``{"success": False, "status_code": 4xx, "error_type": ..., "message": ...}`` with
  ``error_type`` one of ``unknown_api``, ``bad_arguments``, ``auth_error``, ``not_found``,
  ``conflict``, ``budget_exceeded``, ``server_error``.
"""

from __future__ import annotations

import difflib
import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentsd.envs.apps.world import APPS, FMT, NOW, World, ts

REQUIRED = object()
MAX_PAGE = 100

APP_DESCRIPTIONS = {
    "api_docs": "Documentation of every app and API: list apps, list an app's APIs, show one API's full doc, search.",
    "supervisor": "The user you work for: profile, addresses, per-app account passwords, payment cards, and "
                  "complete_task(answer=...) to finish the task.",
    "phone": "Phone: contacts (with relationships), text messages, alarms.",
    "email": "Email: inbox, sent emails, read, send, reply, forward, delete.",
    "calendar": "Calendar: events with times, locations and attendees.",
    "notes": "Notes and to-do lists.",
    "payments": "Person-to-person payments (Venmo-like): balance, transactions, sending money, payment requests.",
    "music": "Music streaming (Spotify-like): song catalog, playlists, liked songs.",
}


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # str, int, float, bool, list[str], list[int], any
    description: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class ApiSpec:
    app: str
    name: str
    description: str
    params: tuple[Param, ...]
    returns: str
    fn: Callable[..., Any]
    auth: bool
    write: bool

    def doc(self) -> dict[str, Any]:
        params = [{"name": p.name, "type": p.type, "required": p.required, "description": p.description,
                   **({} if p.required else {"default": p.default})} for p in self.params]
        return {
            "app_name": self.app,
            "api_name": self.name,
            "path": f"apis.{self.app}.{self.name}",
            "description": self.description,
            "parameters": params,
            "response_schemas": {
                "success": {"success": True, "data": self.returns},
                "failure": {"success": False, "status_code": "int", "error_type": "str", "message": "str"},
            },
        }


REGISTRY: dict[str, dict[str, ApiSpec]] = {a: {} for a in APP_DESCRIPTIONS}
TOKEN = Param("access_token", "str", "the access token from this app's login")
PAGE = (Param("page_index", "int", "page number, from 0", 0),
        Param("page_limit", "int", f"results per page, 1..{MAX_PAGE}", 20))


def api(app: str, name: str, description: str, *params: Param, returns: str, auth: bool = True,
        write: bool = False, paged: bool = False):
    def deco(fn):
        ps = ((TOKEN,) if auth else ()) + tuple(params) + (PAGE if paged else ())
        REGISTRY[app][name] = ApiSpec(app, name, description, ps, returns, fn, auth, write)
        return fn
    return deco


def all_specs() -> list[ApiSpec]:
    return [s for app in REGISTRY.values() for s in app.values()]


# --- the backend ----------------------------------------------------------------------------------
@dataclass
class Backend:
    """One episode's server side: the database, live tokens, the call budget, the completion."""

    db: sqlite3.Connection
    world: World
    budget: int = 200
    token_salt: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # token -> app
    calls: int = 0
    writes: int = 0
    completed: bool = False
    answer: Any = None
    logins: set[str] = field(default_factory=set)

    # --- the entry point --------------------------------------------------------------------------
    def call(self, app: Any, name: Any, args: Any = (), kwargs: Any = None) -> dict[str, Any]:
        try:
            spec = self._spec(app, name)
            bound = self._bind(spec, list(args or ()), dict(kwargs or {}))
            if not (app == "supervisor" and name == "complete_task") and app != "api_docs":
                self.calls += 1
                if self.calls > self.budget:
                    raise ApiError(429, "budget_exceeded", f"API call budget of {self.budget} calls for this task is used up")
            if spec.auth:
                tok = bound.pop("access_token")
                if self.tokens.get(tok) != app:
                    raise ApiError(401, "auth_error", f"invalid or expired access_token for {app}: log in with "
                                                      f"apis.{app}.login(username=..., password=...)")
            data = spec.fn(self, **bound)
            if spec.write:
                self.writes += 1
            return {"success": True, "data": data}
        except ApiError as e:
            return {"success": False, "status_code": e.status, "error_type": e.kind, "message": e.message}
        except Exception as e:  # a bug of ours must still look like an API response
            return {"success": False, "status_code": 500, "error_type": "server_error", "message": f"{type(e).__name__}: {e}"}

    @staticmethod
    def _spec(app: Any, name: Any) -> ApiSpec:
        if not isinstance(app, str) or app not in REGISTRY:
            close = difflib.get_close_matches(str(app), list(REGISTRY), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ApiError(404, "unknown_api", f"No app named {app!r}.{hint} Apps: {', '.join(REGISTRY)}")
        apis = REGISTRY[app]
        if not isinstance(name, str) or name not in apis:
            close = difflib.get_close_matches(str(name), list(apis), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ApiError(404, "unknown_api", f"App {app!r} has no API {name!r}.{hint} "
                                               f"See apis.api_docs.show_api_descriptions(app_name={app!r}).")
        return apis[name]

    @staticmethod
    def _bind(spec: ApiSpec, args: list, kwargs: dict) -> dict[str, Any]:
        where = f"apis.{spec.app}.{spec.name}"
        if len(args) > len(spec.params):
            raise ApiError(422, "bad_arguments", f"{where} takes at most {len(spec.params)} arguments, got {len(args)}")
        out: dict[str, Any] = {}
        for p, v in zip(spec.params, args, strict=False):
            out[p.name] = v
        names = {p.name for p in spec.params}
        for k, v in kwargs.items():
            if k not in names:
                raise ApiError(422, "bad_arguments", f"{where} got an unknown argument {k!r}; it takes: {', '.join(p.name for p in spec.params)}")
            if k in out:
                raise ApiError(422, "bad_arguments", f"{where} got two values for {k!r}")
            out[k] = v
        for p in spec.params:
            if p.name not in out:
                if p.required:
                    what = "missing access_token" if p.name == "access_token" else f"missing required argument {p.name!r} ({p.type})"
                    raise ApiError(401 if p.name == "access_token" else 422,
                                   "auth_error" if p.name == "access_token" else "bad_arguments", f"{where}: {what}")
                out[p.name] = p.default
                continue
            out[p.name] = _typed(where, p, out[p.name])
        if "page_limit" in out and not 1 <= out["page_limit"] <= MAX_PAGE:
            raise ApiError(422, "bad_arguments", f"{where}: page_limit must be in 1..{MAX_PAGE}")
        if "page_index" in out and out["page_index"] < 0:
            raise ApiError(422, "bad_arguments", f"{where}: page_index must be >= 0")
        return out

    # --- helpers for the implementations ----------------------------------------------------------
    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def one(self, sql: str, *args: Any, what: str = "item") -> dict[str, Any]:
        r = self.db.execute(sql, args).fetchone()
        if r is None:
            raise ApiError(404, "not_found", f"{what} not found")
        return dict(r)

    def exec(self, sql: str, *args: Any) -> int:
        cur = self.db.execute(sql, args)
        self.db.commit()
        return int(cur.lastrowid or 0)

    @property
    def user(self) -> dict[str, Any]:
        return self.world.user

    def new_token(self, app: str) -> str:
        n = len(self.logins) + len(self.tokens) + 1
        tok = hashlib.sha1(f"{self.token_salt}/{app}/{n}/{self.calls}".encode()).hexdigest()[:24]
        self.tokens[tok] = app
        self.logins.add(app)
        return tok

    def live_apps(self) -> set[str]:
        return set(self.tokens.values())


def _typed(where: str, p: Param, v: Any) -> Any:
    if v is None and not p.required and p.default is None:
        return None
    t = p.type
    ok = True
    if t == "str":
        ok = isinstance(v, str)
    elif t == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif t == "float":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        v = float(v) if ok else v
    elif t == "bool":
        ok = isinstance(v, bool)
    elif t == "list[str]":
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    elif t == "list[int]":
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    if not ok:
        raise ApiError(422, "bad_arguments", f"{where}: argument {p.name!r} must be {t}, got {type(v).__name__} {v!r:.60}")
    return v


def bad(msg: str) -> ApiError:
    return ApiError(422, "bad_arguments", msg)


def page(items: list, page_index: int, page_limit: int) -> list:
    return items[page_index * page_limit : (page_index + 1) * page_limit]


def like(q: str) -> str:
    return f"%{q.strip().lower()}%"


def parse_date(v: str, name: str) -> str:
    try:
        return datetime.strptime(v, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        raise bad(f"{name} must be a date YYYY-MM-DD, got {v!r}") from None


def parse_dt(v: str, name: str) -> str:
    for f in (FMT, "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(v, f).strftime(FMT)
        except ValueError:
            pass
    raise bad(f"{name} must be a datetime 'YYYY-MM-DD HH:MM[:SS]', got {v!r}")


def money(v: float, name: str = "amount") -> float:
    if not v > 0 or v > 100_000:
        raise bad(f"{name} must be a positive amount up to 100000, got {v}")
    if abs(round(v, 2) - v) > 1e-9:
        raise bad(f"{name} must have at most 2 decimals, got {v}")
    return round(v, 2)


NOW_S = ts(NOW)


# --- login / logout / account, the same for every app ---------------------------------------------
def _login_api(app: str) -> None:
    def login(b: Backend, username: str, password: str) -> dict[str, Any]:
        if username.strip().lower() not in (b.user["email"], b.user["phone_number"]):
            raise ApiError(401, "auth_error", f"no {app} account with username {username!r}")
        if password != b.world.passwords[app]:
            raise ApiError(401, "auth_error", f"wrong password for the {app} account")
        return {"access_token": b.new_token(app), "token_type": "Bearer"}

    def logout(b: Backend) -> dict[str, Any]:
        for tok in [t for t, a in b.tokens.items() if a == app]:
            del b.tokens[tok]
        return {"message": f"logged out of {app}"}

    def show_account(b: Backend) -> dict[str, Any]:
        u = b.user
        out = {"name": World.full_name(u), "email": u["email"], "phone_number": u["phone_number"]}
        if app == "payments":
            out["balance"] = b.one("SELECT balance FROM payment_accounts WHERE id = 1")["balance"]
        return out

    api(app, "login", f"Log in to {app} with the user's username (email or phone number) and {app} password; "
        "returns an access token for this app's other APIs.",
        Param("username", "str", "the user's email address (or phone number)"),
        Param("password", "str", f"the {app} account password (see apis.supervisor.show_account_passwords)"),
        returns="{access_token: str, token_type: 'Bearer'}", auth=False)(login)
    api(app, "logout", f"Log out of {app}: every access token of this app stops working.",
        returns="{message: str}")(logout)
    api(app, "show_account", f"The logged-in user's {app} account.",
        returns="{name, email, phone_number" + (", balance" if app == "payments" else "") + "}")(show_account)


for _app in APPS:
    _login_api(_app)


# --- api_docs ---------------------------------------------------------------------------------------
@api("api_docs", "show_app_descriptions", "List every app with a one-line description.",
     returns="[{name, description}]", auth=False)
def _docs_apps(b: Backend) -> list:
    return [{"name": k, "description": v} for k, v in APP_DESCRIPTIONS.items()]


@api("api_docs", "show_api_descriptions", "List the APIs of one app with a one-line description each.",
     Param("app_name", "str", "an app name from show_app_descriptions"),
     returns="[{name, description}]", auth=False)
def _docs_apis(b: Backend, app_name: str) -> list:
    if app_name not in REGISTRY:
        raise ApiError(404, "not_found", f"no app {app_name!r}; apps: {', '.join(REGISTRY)}")
    return [{"name": s.name, "description": s.description} for s in REGISTRY[app_name].values()]


@api("api_docs", "show_api_doc", "The full documentation of one API: parameters with types and defaults, "
     "and the success and failure response schemas.",
     Param("app_name", "str", "the app"), Param("api_name", "str", "the API"),
     returns="{app_name, api_name, path, description, parameters: [...], response_schemas: {...}}", auth=False)
def _docs_api(b: Backend, app_name: str, api_name: str) -> dict:
    try:
        return Backend._spec(app_name, api_name).doc()
    except ApiError as e:
        raise ApiError(404, "not_found", e.message) from None


@api("api_docs", "search_api_docs", "Search all API docs by keywords; best matches first.",
     Param("query", "str", "keywords, e.g. 'send money'"), Param("limit", "int", "max results", 10),
     returns="[{app_name, api_name, description}]", auth=False)
def _docs_search(b: Backend, query: str, limit: int) -> list:
    words = [w for w in query.lower().replace("_", " ").split() if w]
    if not words:
        raise bad("query must contain at least one word")
    scored = []
    for s in all_specs():
        hay = f"{s.app} {s.name.replace('_', ' ')} {s.description}".lower()
        score = sum(hay.count(w) for w in words) + 2 * sum(w in s.name for w in words)
        if score:
            scored.append((-score, s.app, s.name, s.description))
    scored.sort()
    return [{"app_name": a, "api_name": n, "description": d} for _, a, n, d in scored[: max(1, limit)]]


# --- supervisor -------------------------------------------------------------------------------------
@api("supervisor", "show_profile", "The user's profile: name, email, phone number, birthday.",
     returns="{first_name, last_name, email, phone_number, birthday}", auth=False)
def _sup_profile(b: Backend) -> dict:
    u = b.user
    return {k: u[k] for k in ("first_name", "last_name", "email", "phone_number", "birthday")}


@api("supervisor", "show_addresses", "The user's saved addresses.", returns="[{name, street, city, zip}]", auth=False)
def _sup_addresses(b: Backend) -> list:
    return [dict(a) for a in b.world.addresses]


@api("supervisor", "show_account_passwords", "The user's password for each app.",
     returns="[{app_name, password}]", auth=False)
def _sup_passwords(b: Backend) -> list:
    return [{"app_name": k, "password": v} for k, v in b.world.passwords.items()]


@api("supervisor", "show_payment_cards", "The user's payment cards (usable in payments).",
     returns="[{payment_card_id, card_name, last_four, expiry}]", auth=False)
def _sup_cards(b: Backend) -> list:
    return [{"payment_card_id": r["id"], "card_name": r["card_name"], "last_four": r["last_four"], "expiry": r["expiry"]}
            for r in b.rows("SELECT * FROM payment_cards WHERE owner_id = 1 ORDER BY id")]


@api("supervisor", "complete_task", "Mark the task as done and end the episode. Give the answer when the task "
     "asks a question (a string, number or list); omit it otherwise.",
     Param("answer", "any", "the answer to the task's question, or None", None),
     returns="{message: str}", auth=False)
def _sup_complete(b: Backend, answer: Any) -> dict:
    if b.completed:
        raise ApiError(409, "conflict", "the task is already completed")
    b.completed, b.answer = True, answer
    return {"message": "task marked as completed"}


# --- phone --------------------------------------------------------------------------------------------
def _contact(r: dict) -> dict:
    return {"contact_id": r["id"], "first_name": r["first_name"], "last_name": r["last_name"],
            "name": f"{r['first_name']} {r['last_name']}", "phone_number": r["phone_number"],
            "email": r["email"], "relationship": r["relationship"]}


@api("phone", "show_contacts", "List or search the user's contacts (name, phone, email substring), "
     "optionally by relationship.",
     Param("query", "str", "substring of name, phone number or email; '' for all", ""),
     Param("relationship", "str", "friend, family, coworker, neighbor, roommate, ...", None),
     returns="[{contact_id, first_name, last_name, name, phone_number, email, relationship}]", paged=True)
def _ph_contacts(b: Backend, query: str, relationship: str | None, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM contacts WHERE (lower(first_name || ' ' || last_name) LIKE ? OR phone_number LIKE ? "
                "OR lower(coalesce(email, '')) LIKE ?) AND (? IS NULL OR lower(relationship) = lower(?)) "
                "ORDER BY first_name, last_name, id", like(query), like(query), like(query), relationship, relationship)
    return [_contact(r) for r in page(rs, page_index, page_limit)]


@api("phone", "show_contact", "One contact by id.", Param("contact_id", "int", "the contact's id"),
     returns="{contact_id, first_name, last_name, name, phone_number, email, relationship}")
def _ph_contact(b: Backend, contact_id: int) -> dict:
    return _contact(b.one("SELECT * FROM contacts WHERE id = ?", contact_id, what=f"contact {contact_id}"))


def _digits(v: str, name: str = "phone_number") -> str:
    d = "".join(ch for ch in v if ch.isdigit())
    if len(d) != 10:
        raise bad(f"{name} must have 10 digits, got {v!r}")
    return d


@api("phone", "add_contact", "Add a contact.", Param("first_name", "str", "first name"),
     Param("last_name", "str", "last name"), Param("phone_number", "str", "10 digits"),
     Param("email", "str", "email address", None), Param("relationship", "str", "e.g. friend, coworker", "friend"),
     returns="{contact_id: int}", write=True)
def _ph_add(b: Backend, first_name: str, last_name: str, phone_number: str, email: str | None, relationship: str) -> dict:
    if not first_name.strip():
        raise bad("first_name must not be empty")
    cid = b.exec("INSERT INTO contacts (first_name, last_name, phone_number, email, relationship, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", first_name.strip(), last_name.strip(), _digits(phone_number), email,
                 relationship.strip().lower(), NOW_S)
    return {"contact_id": cid}


@api("phone", "update_contact", "Change some fields of a contact (only the fields given).",
     Param("contact_id", "int", "the contact's id"), Param("first_name", "str", "new first name", None),
     Param("last_name", "str", "new last name", None), Param("phone_number", "str", "new phone number", None),
     Param("email", "str", "new email", None), Param("relationship", "str", "new relationship", None),
     returns="{message: str}", write=True)
def _ph_update(b: Backend, contact_id: int, **fields: Any) -> dict:
    b.one("SELECT id FROM contacts WHERE id = ?", contact_id, what=f"contact {contact_id}")
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        raise bad("give at least one field to change")
    if "phone_number" in fields:
        fields["phone_number"] = _digits(fields["phone_number"])
    if "relationship" in fields:
        fields["relationship"] = fields["relationship"].strip().lower()
    b.exec(f"UPDATE contacts SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", *fields.values(), contact_id)
    return {"message": f"contact {contact_id} updated"}


@api("phone", "delete_contact", "Delete a contact.", Param("contact_id", "int", "the contact's id"),
     returns="{message: str}", write=True)
def _ph_delete(b: Backend, contact_id: int) -> dict:
    b.one("SELECT id FROM contacts WHERE id = ?", contact_id, what=f"contact {contact_id}")
    b.exec("DELETE FROM contacts WHERE id = ?", contact_id)
    return {"message": f"contact {contact_id} deleted"}


@api("phone", "show_text_messages", "Text messages sent or received by the user, newest first; optionally only "
     "those with one phone number, or containing a substring.",
     Param("phone_number", "str", "the other party's phone number", None),
     Param("query", "str", "substring of the message", ""),
     returns="[{text_message_id, sender_phone, receiver_phone, body, sent_at}]", paged=True)
def _ph_texts(b: Backend, phone_number: str | None, query: str, page_index: int, page_limit: int) -> list:
    pn = _digits(phone_number) if phone_number else None
    rs = b.rows("SELECT * FROM text_messages WHERE (? IS NULL OR sender_phone = ? OR receiver_phone = ?) "
                "AND lower(body) LIKE ? ORDER BY sent_at DESC, id DESC", pn, pn, pn, like(query))
    return [{"text_message_id": r["id"], **{k: r[k] for k in ("sender_phone", "receiver_phone", "body", "sent_at")}}
            for r in page(rs, page_index, page_limit)]


@api("phone", "send_text_message", "Send a text message.", Param("phone_number", "str", "the receiver's phone number"),
     Param("message", "str", "the text"), returns="{text_message_id: int}", write=True)
def _ph_send(b: Backend, phone_number: str, message: str) -> dict:
    if not message.strip():
        raise bad("message must not be empty")
    mid = b.exec("INSERT INTO text_messages (sender_phone, receiver_phone, body, sent_at) VALUES (?, ?, ?, ?)",
                 b.user["phone_number"], _digits(phone_number), message, NOW_S)
    return {"text_message_id": mid}


def _alarm(r: dict) -> dict:
    return {"alarm_id": r["id"], "time": r["time"], "label": r["label"], "enabled": bool(r["enabled"])}


def _hhmm(v: str) -> str:
    try:
        return datetime.strptime(v.strip(), "%H:%M").strftime("%H:%M")
    except ValueError:
        raise bad(f"time must be HH:MM (24h), got {v!r}") from None


@api("phone", "show_alarms", "The user's alarms.", returns="[{alarm_id, time, label, enabled}]")
def _ph_alarms(b: Backend) -> list:
    return [_alarm(r) for r in b.rows("SELECT * FROM alarms ORDER BY time, id")]


@api("phone", "create_alarm", "Create an alarm.", Param("time", "str", "HH:MM, 24h"), Param("label", "str", "label", ""),
     Param("enabled", "bool", "whether it rings", True), returns="{alarm_id: int}", write=True)
def _ph_alarm_new(b: Backend, time: str, label: str, enabled: bool) -> dict:
    return {"alarm_id": b.exec("INSERT INTO alarms (time, label, enabled) VALUES (?, ?, ?)", _hhmm(time), label, int(enabled))}


@api("phone", "update_alarm", "Change an alarm's time, label or enabled flag.", Param("alarm_id", "int", "the alarm"),
     Param("time", "str", "HH:MM", None), Param("label", "str", "label", None), Param("enabled", "bool", "rings", None),
     returns="{message: str}", write=True)
def _ph_alarm_upd(b: Backend, alarm_id: int, time: str | None, label: str | None, enabled: bool | None) -> dict:
    b.one("SELECT id FROM alarms WHERE id = ?", alarm_id, what=f"alarm {alarm_id}")
    fields = {k: v for k, v in (("time", None if time is None else _hhmm(time)), ("label", label),
                                ("enabled", None if enabled is None else int(enabled))) if v is not None}
    if not fields:
        raise bad("give at least one field to change")
    b.exec(f"UPDATE alarms SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", *fields.values(), alarm_id)
    return {"message": f"alarm {alarm_id} updated"}


@api("phone", "delete_alarm", "Delete an alarm.", Param("alarm_id", "int", "the alarm"), returns="{message: str}", write=True)
def _ph_alarm_del(b: Backend, alarm_id: int) -> dict:
    b.one("SELECT id FROM alarms WHERE id = ?", alarm_id, what=f"alarm {alarm_id}")
    b.exec("DELETE FROM alarms WHERE id = ?", alarm_id)
    return {"message": f"alarm {alarm_id} deleted"}


# --- email --------------------------------------------------------------------------------------------
def _email_summary(r: dict) -> dict:
    return {"email_id": r["id"], "sender": r["sender"], "recipients": r["recipients"].split(","),
            "subject": r["subject"], "sent_at": r["sent_at"]}


@api("email", "show_inbox", "Emails received by the user, newest first; filter by sender email or a substring of "
     "the subject or body.",
     Param("query", "str", "substring of subject or body", ""), Param("sender", "str", "sender email address", None),
     returns="[{email_id, sender, recipients, subject, sent_at}]", paged=True)
def _em_inbox(b: Backend, query: str, sender: str | None, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM emails WHERE (',' || recipients || ',') LIKE ? AND (? IS NULL OR lower(sender) = lower(?)) "
                "AND (lower(subject) LIKE ? OR lower(body) LIKE ?) ORDER BY sent_at DESC, id DESC",
                f"%,{b.user['email']},%", sender, sender, like(query), like(query))
    return [_email_summary(r) for r in page(rs, page_index, page_limit)]


@api("email", "show_sent_emails", "Emails the user sent, newest first.",
     Param("query", "str", "substring of subject or body", ""),
     returns="[{email_id, sender, recipients, subject, sent_at}]", paged=True)
def _em_sent(b: Backend, query: str, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM emails WHERE sender = ? AND (lower(subject) LIKE ? OR lower(body) LIKE ?) "
                "ORDER BY sent_at DESC, id DESC", b.user["email"], like(query), like(query))
    return [_email_summary(r) for r in page(rs, page_index, page_limit)]


def _own_email(b: Backend, email_id: int) -> dict:
    r = b.one("SELECT * FROM emails WHERE id = ?", email_id, what=f"email {email_id}")
    if r["sender"] != b.user["email"] and b.user["email"] not in r["recipients"].split(","):
        raise ApiError(404, "not_found", f"email {email_id} not found")
    return r


@api("email", "show_email", "One email with its body.", Param("email_id", "int", "the email's id"),
     returns="{email_id, sender, recipients, subject, body, sent_at, reply_to_id}")
def _em_show(b: Backend, email_id: int) -> dict:
    r = _own_email(b, email_id)
    return {**_email_summary(r), "body": r["body"], "reply_to_id": r["reply_to_id"]}


def _addresses(v: list[str]) -> str:
    if not v:
        raise bad("recipients must list at least one email address")
    out = []
    for a in v:
        a = a.strip().lower()
        if a.count("@") != 1 or "." not in a.split("@")[1] or "," in a:
            raise bad(f"not an email address: {a!r}")
        out.append(a)
    return ",".join(out)


@api("email", "send_email", "Send an email.", Param("recipients", "list[str]", "email addresses"),
     Param("subject", "str", "subject line"), Param("body", "str", "the text", ""), returns="{email_id: int}", write=True)
def _em_send(b: Backend, recipients: list[str], subject: str, body: str) -> dict:
    return {"email_id": b.exec("INSERT INTO emails (sender, recipients, subject, body, sent_at, reply_to_id) VALUES "
                               "(?, ?, ?, ?, ?, NULL)", b.user["email"], _addresses(recipients), subject, body, NOW_S)}


@api("email", "reply_to_email", "Reply to the sender of an email (subject 'Re: ...').",
     Param("email_id", "int", "the email to reply to"), Param("body", "str", "the text"),
     returns="{email_id: int}", write=True)
def _em_reply(b: Backend, email_id: int, body: str) -> dict:
    r = _own_email(b, email_id)
    to = r["sender"] if r["sender"] != b.user["email"] else r["recipients"]
    subj = r["subject"] if r["subject"].startswith("Re: ") else "Re: " + r["subject"]
    return {"email_id": b.exec("INSERT INTO emails (sender, recipients, subject, body, sent_at, reply_to_id) VALUES "
                               "(?, ?, ?, ?, ?, ?)", b.user["email"], to, subj, body, NOW_S, email_id)}


@api("email", "forward_email", "Forward an email (subject 'Fwd: ...', the original body quoted).",
     Param("email_id", "int", "the email"), Param("recipients", "list[str]", "email addresses"),
     Param("body", "str", "a note above the forwarded text", ""), returns="{email_id: int}", write=True)
def _em_forward(b: Backend, email_id: int, recipients: list[str], body: str) -> dict:
    r = _own_email(b, email_id)
    text = f"{body}\n\n---------- Forwarded message ----------\nFrom: {r['sender']}\n{r['body']}"
    return {"email_id": b.exec("INSERT INTO emails (sender, recipients, subject, body, sent_at, reply_to_id) VALUES "
                               "(?, ?, ?, ?, ?, NULL)", b.user["email"], _addresses(recipients), "Fwd: " + r["subject"], text, NOW_S)}


@api("email", "delete_email", "Delete an email.", Param("email_id", "int", "the email"), returns="{message: str}", write=True)
def _em_delete(b: Backend, email_id: int) -> dict:
    _own_email(b, email_id)
    b.exec("DELETE FROM emails WHERE id = ?", email_id)
    return {"message": f"email {email_id} deleted"}


# --- calendar -----------------------------------------------------------------------------------------
def _event(r: dict) -> dict:
    return {"event_id": r["id"], "title": r["title"], "start": r["start"], "end": r["end"], "location": r["location"],
            "attendees": [a for a in r["attendees"].split(",") if a], "description": r["description"]}


@api("calendar", "show_events", "Events, earliest first; optionally between two dates (inclusive, by start) "
     "and/or with a title substring.",
     Param("start_date", "str", "YYYY-MM-DD", None), Param("end_date", "str", "YYYY-MM-DD", None),
     Param("query", "str", "substring of the title", ""),
     returns="[{event_id, title, start, end, location, attendees, description}]", paged=True)
def _cal_events(b: Backend, start_date: str | None, end_date: str | None, query: str, page_index: int, page_limit: int) -> list:
    lo = parse_date(start_date, "start_date") if start_date else "0000"
    hi = parse_date(end_date, "end_date") if end_date else "9999"
    rs = b.rows("SELECT * FROM events WHERE substr(start, 1, 10) >= ? AND substr(start, 1, 10) <= ? AND lower(title) LIKE ? "
                "ORDER BY start, id", lo, hi, like(query))
    return [_event(r) for r in page(rs, page_index, page_limit)]


@api("calendar", "show_event", "One event.", Param("event_id", "int", "the event"),
     returns="{event_id, title, start, end, location, attendees, description}")
def _cal_event(b: Backend, event_id: int) -> dict:
    return _event(b.one("SELECT * FROM events WHERE id = ?", event_id, what=f"event {event_id}"))


@api("calendar", "create_event", "Create an event.", Param("title", "str", "title"),
     Param("start", "str", "'YYYY-MM-DD HH:MM'"), Param("end", "str", "'YYYY-MM-DD HH:MM', after start"),
     Param("location", "str", "where", ""), Param("attendees", "list[str]", "attendee emails", None),
     Param("description", "str", "details", ""), returns="{event_id: int}", write=True)
def _cal_create(b: Backend, title: str, start: str, end: str, location: str, attendees: list[str] | None, description: str) -> dict:
    s, e = parse_dt(start, "start"), parse_dt(end, "end")
    if e <= s:
        raise bad("end must be after start")
    if not title.strip():
        raise bad("title must not be empty")
    att = _addresses(attendees) if attendees else ""
    return {"event_id": b.exec("INSERT INTO events (title, start, end, location, attendees, description) VALUES "
                               "(?, ?, ?, ?, ?, ?)", title.strip(), s, e, location, att, description)}


@api("calendar", "update_event", "Change some fields of an event.", Param("event_id", "int", "the event"),
     Param("title", "str", "title", None), Param("start", "str", "'YYYY-MM-DD HH:MM'", None),
     Param("end", "str", "'YYYY-MM-DD HH:MM'", None), Param("location", "str", "where", None),
     Param("attendees", "list[str]", "attendee emails", None), Param("description", "str", "details", None),
     returns="{message: str}", write=True)
def _cal_update(b: Backend, event_id: int, **f: Any) -> dict:
    cur = b.one("SELECT * FROM events WHERE id = ?", event_id, what=f"event {event_id}")
    f = {k: v for k, v in f.items() if v is not None}
    if not f:
        raise bad("give at least one field to change")
    if "start" in f:
        f["start"] = parse_dt(f["start"], "start")
    if "end" in f:
        f["end"] = parse_dt(f["end"], "end")
    if f.get("end", cur["end"]) <= f.get("start", cur["start"]):
        raise bad("end must be after start")
    if "attendees" in f:
        f["attendees"] = _addresses(f["attendees"]) if f["attendees"] else ""
    b.exec(f"UPDATE events SET {', '.join(f'{k} = ?' for k in f)} WHERE id = ?", *f.values(), event_id)
    return {"message": f"event {event_id} updated"}


@api("calendar", "delete_event", "Delete an event.", Param("event_id", "int", "the event"), returns="{message: str}", write=True)
def _cal_delete(b: Backend, event_id: int) -> dict:
    b.one("SELECT id FROM events WHERE id = ?", event_id, what=f"event {event_id}")
    b.exec("DELETE FROM events WHERE id = ?", event_id)
    return {"message": f"event {event_id} deleted"}


# --- notes --------------------------------------------------------------------------------------------
@api("notes", "show_notes", "The user's notes (without content), newest update first; filter by title/content "
     "substring or tag.",
     Param("query", "str", "substring of title or content", ""), Param("tag", "str", "a tag", None),
     returns="[{note_id, title, tags, updated_at}]", paged=True)
def _no_notes(b: Backend, query: str, tag: str | None, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM notes WHERE (lower(title) LIKE ? OR lower(content) LIKE ?) AND "
                "(? IS NULL OR (',' || lower(tags) || ',') LIKE ?) ORDER BY updated_at DESC, id DESC",
                like(query), like(query), tag, f"%,{(tag or '').lower()},%")
    return [{"note_id": r["id"], "title": r["title"], "tags": [t for t in r["tags"].split(",") if t],
             "updated_at": r["updated_at"]} for r in page(rs, page_index, page_limit)]


@api("notes", "show_note", "One note with its content.", Param("note_id", "int", "the note"),
     returns="{note_id, title, content, tags, created_at, updated_at}")
def _no_note(b: Backend, note_id: int) -> dict:
    r = b.one("SELECT * FROM notes WHERE id = ?", note_id, what=f"note {note_id}")
    return {"note_id": r["id"], "title": r["title"], "content": r["content"], "tags": [t for t in r["tags"].split(",") if t],
            "created_at": r["created_at"], "updated_at": r["updated_at"]}


@api("notes", "create_note", "Create a note.", Param("title", "str", "title"), Param("content", "str", "text", ""),
     Param("tags", "list[str]", "tags", None), returns="{note_id: int}", write=True)
def _no_create(b: Backend, title: str, content: str, tags: list[str] | None) -> dict:
    if not title.strip():
        raise bad("title must not be empty")
    return {"note_id": b.exec("INSERT INTO notes (title, content, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                              title.strip(), content, ",".join(tags or []), NOW_S, NOW_S)}


@api("notes", "update_note", "Change a note's title, content or tags.", Param("note_id", "int", "the note"),
     Param("title", "str", "title", None), Param("content", "str", "new full content", None),
     Param("tags", "list[str]", "tags", None), returns="{message: str}", write=True)
def _no_update(b: Backend, note_id: int, title: str | None, content: str | None, tags: list[str] | None) -> dict:
    b.one("SELECT id FROM notes WHERE id = ?", note_id, what=f"note {note_id}")
    f = {k: v for k, v in (("title", title), ("content", content), ("tags", None if tags is None else ",".join(tags))) if v is not None}
    if not f:
        raise bad("give at least one field to change")
    f["updated_at"] = NOW_S
    b.exec(f"UPDATE notes SET {', '.join(f'{k} = ?' for k in f)} WHERE id = ?", *f.values(), note_id)
    return {"message": f"note {note_id} updated"}


@api("notes", "delete_note", "Delete a note.", Param("note_id", "int", "the note"), returns="{message: str}", write=True)
def _no_delete(b: Backend, note_id: int) -> dict:
    b.one("SELECT id FROM notes WHERE id = ?", note_id, what=f"note {note_id}")
    b.exec("DELETE FROM notes WHERE id = ?", note_id)
    return {"message": f"note {note_id} deleted"}


def _todo(r: dict) -> dict:
    return {"todo_id": r["id"], "title": r["title"], "due_date": r["due_date"], "done": bool(r["done"]),
            "completed_at": r["completed_at"]}


@api("notes", "show_todos", "The user's to-do items; filter by done state or title substring.",
     Param("done", "bool", "True: only done ones, False: only open ones, None: all", None),
     Param("query", "str", "substring of the title", ""),
     returns="[{todo_id, title, due_date, done, completed_at}]", paged=True)
def _no_todos(b: Backend, done: bool | None, query: str, page_index: int, page_limit: int) -> list:
    d = None if done is None else int(done)
    rs = b.rows("SELECT * FROM todos WHERE (? IS NULL OR done = ?) AND lower(title) LIKE ? ORDER BY id", d, d, like(query))
    return [_todo(r) for r in page(rs, page_index, page_limit)]


@api("notes", "create_todo", "Add a to-do item.", Param("title", "str", "what to do"),
     Param("due_date", "str", "YYYY-MM-DD", None), returns="{todo_id: int}", write=True)
def _no_todo_new(b: Backend, title: str, due_date: str | None) -> dict:
    if not title.strip():
        raise bad("title must not be empty")
    due = parse_date(due_date, "due_date") if due_date else None
    return {"todo_id": b.exec("INSERT INTO todos (title, due_date, done, created_at, completed_at) VALUES (?, ?, 0, ?, NULL)",
                              title.strip(), due, NOW_S)}


@api("notes", "complete_todo", "Mark a to-do item as done.", Param("todo_id", "int", "the item"),
     returns="{message: str}", write=True)
def _no_todo_done(b: Backend, todo_id: int) -> dict:
    r = b.one("SELECT * FROM todos WHERE id = ?", todo_id, what=f"todo {todo_id}")
    if r["done"]:
        raise ApiError(409, "conflict", f"todo {todo_id} is already done")
    b.exec("UPDATE todos SET done = 1, completed_at = ? WHERE id = ?", NOW_S, todo_id)
    return {"message": f"todo {todo_id} marked as done"}


@api("notes", "delete_todo", "Delete a to-do item.", Param("todo_id", "int", "the item"), returns="{message: str}", write=True)
def _no_todo_del(b: Backend, todo_id: int) -> dict:
    b.one("SELECT id FROM todos WHERE id = ?", todo_id, what=f"todo {todo_id}")
    b.exec("DELETE FROM todos WHERE id = ?", todo_id)
    return {"message": f"todo {todo_id} deleted"}


# --- payments -----------------------------------------------------------------------------------------
def _person_by_email(b: Backend, email: str) -> dict:
    return b.one("SELECT * FROM people WHERE lower(email) = lower(?)", email.strip(), what=f"payments user {email!r}")


def _email_of(b: Backend, pid: int) -> str:
    return b.one("SELECT email FROM people WHERE id = ?", pid)["email"]


def _tx(b: Backend, r: dict) -> dict:
    return {"transaction_id": r["id"], "sender_email": _email_of(b, r["sender_id"]),
            "receiver_email": _email_of(b, r["receiver_id"]), "amount": r["amount"],
            "description": r["description"], "payment_card_id": r["payment_card_id"], "created_at": r["created_at"]}


@api("payments", "search_users", "Search payments users by name or email.", Param("query", "str", "substring of name or email"),
     returns="[{user_id, name, email}]", paged=True)
def _pay_users(b: Backend, query: str, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM people WHERE id != 1 AND (lower(first_name || ' ' || last_name) LIKE ? OR lower(email) LIKE ?) "
                "ORDER BY first_name, last_name", like(query), like(query))
    return [{"user_id": r["id"], "name": World.full_name(r), "email": r["email"]} for r in page(rs, page_index, page_limit)]


@api("payments", "show_transactions", "The user's transactions, newest first; filter by direction (sent/received), "
     "the other user's email, a date range (inclusive) or a description substring.",
     Param("direction", "str", "'sent', 'received' or None for both", None),
     Param("user_email", "str", "the other party's email", None),
     Param("start_date", "str", "YYYY-MM-DD", None), Param("end_date", "str", "YYYY-MM-DD", None),
     Param("query", "str", "substring of the description", ""),
     returns="[{transaction_id, sender_email, receiver_email, amount, description, payment_card_id, created_at}]", paged=True)
def _pay_txs(b: Backend, direction: str | None, user_email: str | None, start_date: str | None, end_date: str | None,
             query: str, page_index: int, page_limit: int) -> list:
    if direction not in (None, "sent", "received"):
        raise bad(f"direction must be 'sent', 'received' or None, got {direction!r}")
    other = _person_by_email(b, user_email)["id"] if user_email else None
    lo = parse_date(start_date, "start_date") if start_date else "0000"
    hi = parse_date(end_date, "end_date") if end_date else "9999"
    rs = b.rows("SELECT * FROM transactions WHERE (sender_id = 1 OR receiver_id = 1) AND substr(created_at, 1, 10) BETWEEN ? AND ? "
                "AND lower(description) LIKE ? ORDER BY created_at DESC, id DESC", lo, hi, like(query))
    if direction == "sent":
        rs = [r for r in rs if r["sender_id"] == 1]
    elif direction == "received":
        rs = [r for r in rs if r["receiver_id"] == 1]
    if other is not None:
        rs = [r for r in rs if other in (r["sender_id"], r["receiver_id"])]
    return [_tx(b, r) for r in page(rs, page_index, page_limit)]


@api("payments", "show_transaction", "One transaction.", Param("transaction_id", "int", "the transaction"),
     returns="{transaction_id, sender_email, receiver_email, amount, description, payment_card_id, created_at}")
def _pay_tx(b: Backend, transaction_id: int) -> dict:
    r = b.one("SELECT * FROM transactions WHERE id = ? AND (sender_id = 1 OR receiver_id = 1)", transaction_id,
              what=f"transaction {transaction_id}")
    return _tx(b, r)


def _pay(b: Backend, to_id: int, amount: float, description: str, card: int | None) -> int:
    if card is not None:
        b.one("SELECT id FROM payment_cards WHERE id = ? AND owner_id = 1", card, what=f"payment card {card}")
    else:
        bal = b.one("SELECT balance FROM payment_accounts WHERE id = 1")["balance"]
        if bal + 1e-9 < amount:
            raise ApiError(409, "conflict", f"insufficient balance ({bal:.2f}); pass a payment_card_id to pay by card")
        b.db.execute("UPDATE payment_accounts SET balance = round(balance - ?, 2) WHERE id = 1", (amount,))
    b.db.execute("UPDATE payment_accounts SET balance = round(balance + ?, 2) WHERE id = ?", (amount, to_id))
    return b.exec("INSERT INTO transactions (sender_id, receiver_id, amount, description, payment_card_id, created_at) "
                  "VALUES (1, ?, ?, ?, ?, ?)", to_id, amount, description, card, NOW_S)


@api("payments", "send_money", "Send money to another user, from the balance or a payment card.",
     Param("receiver_email", "str", "the receiver's email"), Param("amount", "float", "amount, > 0, 2 decimals"),
     Param("description", "str", "what it is for", ""),
     Param("payment_card_id", "int", "pay with this card instead of the balance", None),
     returns="{transaction_id: int}", write=True)
def _pay_send(b: Backend, receiver_email: str, amount: float, description: str, payment_card_id: int | None) -> dict:
    amount = money(amount)
    to = _person_by_email(b, receiver_email)
    if to["id"] == 1:
        raise bad("cannot send money to yourself")
    return {"transaction_id": _pay(b, to["id"], amount, description, payment_card_id)}


def _req(b: Backend, r: dict) -> dict:
    return {"payment_request_id": r["id"], "requester_email": _email_of(b, r["requester_id"]),
            "payer_email": _email_of(b, r["payer_id"]), "amount": r["amount"], "description": r["description"],
            "status": r["status"], "created_at": r["created_at"], "resolved_at": r["resolved_at"]}


@api("payments", "show_payment_requests", "Payment requests the user received (others asking the user to pay) or "
     "sent, newest first; optionally by status.",
     Param("direction", "str", "'received' or 'sent'", "received"),
     Param("status", "str", "'pending', 'approved', 'denied' or None for all", None),
     returns="[{payment_request_id, requester_email, payer_email, amount, description, status, created_at, resolved_at}]",
     paged=True)
def _pay_reqs(b: Backend, direction: str, status: str | None, page_index: int, page_limit: int) -> list:
    if direction not in ("received", "sent"):
        raise bad(f"direction must be 'received' or 'sent', got {direction!r}")
    if status not in (None, "pending", "approved", "denied"):
        raise bad(f"status must be 'pending', 'approved', 'denied' or None, got {status!r}")
    col = "payer_id" if direction == "received" else "requester_id"
    rs = b.rows(f"SELECT * FROM payment_requests WHERE {col} = 1 AND (? IS NULL OR status = ?) ORDER BY created_at DESC, id DESC",
                status, status)
    return [_req(b, r) for r in page(rs, page_index, page_limit)]


@api("payments", "create_payment_request", "Ask another user to pay the user an amount.",
     Param("user_email", "str", "who should pay"), Param("amount", "float", "amount, > 0, 2 decimals"),
     Param("description", "str", "what it is for", ""), returns="{payment_request_id: int}", write=True)
def _pay_request(b: Backend, user_email: str, amount: float, description: str) -> dict:
    amount = money(amount)
    p = _person_by_email(b, user_email)
    if p["id"] == 1:
        raise bad("cannot request money from yourself")
    return {"payment_request_id": b.exec("INSERT INTO payment_requests (requester_id, payer_id, amount, description, status, "
                                         "created_at, resolved_at) VALUES (1, ?, ?, ?, 'pending', ?, NULL)",
                                         p["id"], amount, description, NOW_S)}


def _pending_in(b: Backend, rid: int) -> dict:
    r = b.one("SELECT * FROM payment_requests WHERE id = ? AND payer_id = 1", rid, what=f"payment request {rid}")
    if r["status"] != "pending":
        raise ApiError(409, "conflict", f"payment request {rid} is already {r['status']}")
    return r


@api("payments", "approve_payment_request", "Pay a pending payment request the user received.",
     Param("payment_request_id", "int", "the request"), Param("payment_card_id", "int", "pay by card", None),
     returns="{transaction_id: int}", write=True)
def _pay_approve(b: Backend, payment_request_id: int, payment_card_id: int | None) -> dict:
    r = _pending_in(b, payment_request_id)
    tid = _pay(b, r["requester_id"], r["amount"], r["description"], payment_card_id)
    b.exec("UPDATE payment_requests SET status = 'approved', resolved_at = ? WHERE id = ?", NOW_S, payment_request_id)
    return {"transaction_id": tid}


@api("payments", "deny_payment_request", "Deny a pending payment request the user received.",
     Param("payment_request_id", "int", "the request"), returns="{message: str}", write=True)
def _pay_deny(b: Backend, payment_request_id: int) -> dict:
    _pending_in(b, payment_request_id)
    b.exec("UPDATE payment_requests SET status = 'denied', resolved_at = ? WHERE id = ?", NOW_S, payment_request_id)
    return {"message": f"payment request {payment_request_id} denied"}


# --- music --------------------------------------------------------------------------------------------
def _song(r: dict) -> dict:
    return {"song_id": r["id"], "title": r["title"], "artist": r["artist"], "album": r["album"], "genre": r["genre"],
            "duration_s": r["duration_s"], "plays": r["plays"], "release_year": r["release_year"]}


@api("music", "search_songs", "Search the song catalog by title substring, artist or genre.",
     Param("query", "str", "substring of the title", ""), Param("artist", "str", "exact artist name", None),
     Param("genre", "str", "genre", None),
     returns="[{song_id, title, artist, album, genre, duration_s, plays, release_year}]", paged=True)
def _mu_search(b: Backend, query: str, artist: str | None, genre: str | None, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT * FROM songs WHERE lower(title) LIKE ? AND (? IS NULL OR lower(artist) = lower(?)) "
                "AND (? IS NULL OR lower(genre) = lower(?)) ORDER BY id", like(query), artist, artist, genre, genre)
    return [_song(r) for r in page(rs, page_index, page_limit)]


@api("music", "show_song", "One song.", Param("song_id", "int", "the song"),
     returns="{song_id, title, artist, album, genre, duration_s, plays, release_year}")
def _mu_song(b: Backend, song_id: int) -> dict:
    return _song(b.one("SELECT * FROM songs WHERE id = ?", song_id, what=f"song {song_id}"))


@api("music", "show_playlists", "The user's playlists.", returns="[{playlist_id, title, is_public, song_count}]")
def _mu_playlists(b: Backend) -> list:
    rs = b.rows("SELECT p.*, (SELECT count(*) FROM playlist_songs s WHERE s.playlist_id = p.id) AS n FROM playlists p ORDER BY id")
    return [{"playlist_id": r["id"], "title": r["title"], "is_public": bool(r["is_public"]), "song_count": r["n"]} for r in rs]


@api("music", "show_playlist", "One playlist with its songs in order.", Param("playlist_id", "int", "the playlist"),
     returns="{playlist_id, title, is_public, songs: [{song_id, title, artist, ...}]}")
def _mu_playlist(b: Backend, playlist_id: int) -> dict:
    p = b.one("SELECT * FROM playlists WHERE id = ?", playlist_id, what=f"playlist {playlist_id}")
    songs = b.rows("SELECT s.* FROM playlist_songs ps JOIN songs s ON s.id = ps.song_id WHERE ps.playlist_id = ? ORDER BY ps.id",
                   playlist_id)
    return {"playlist_id": p["id"], "title": p["title"], "is_public": bool(p["is_public"]), "songs": [_song(s) for s in songs]}


@api("music", "create_playlist", "Create an empty playlist.", Param("title", "str", "title"),
     Param("is_public", "bool", "visible to others", False), returns="{playlist_id: int}", write=True)
def _mu_create(b: Backend, title: str, is_public: bool) -> dict:
    if not title.strip():
        raise bad("title must not be empty")
    if b.rows("SELECT id FROM playlists WHERE lower(title) = lower(?)", title.strip()):
        raise ApiError(409, "conflict", f"a playlist named {title.strip()!r} already exists")
    return {"playlist_id": b.exec("INSERT INTO playlists (title, is_public, created_at) VALUES (?, ?, ?)",
                                  title.strip(), int(is_public), NOW_S)}


@api("music", "delete_playlist", "Delete a playlist.", Param("playlist_id", "int", "the playlist"),
     returns="{message: str}", write=True)
def _mu_delete(b: Backend, playlist_id: int) -> dict:
    b.one("SELECT id FROM playlists WHERE id = ?", playlist_id, what=f"playlist {playlist_id}")
    b.db.execute("DELETE FROM playlist_songs WHERE playlist_id = ?", (playlist_id,))
    b.exec("DELETE FROM playlists WHERE id = ?", playlist_id)
    return {"message": f"playlist {playlist_id} deleted"}


@api("music", "add_song_to_playlist", "Append a song to a playlist.", Param("playlist_id", "int", "the playlist"),
     Param("song_id", "int", "the song"), returns="{message: str}", write=True)
def _mu_add(b: Backend, playlist_id: int, song_id: int) -> dict:
    b.one("SELECT id FROM playlists WHERE id = ?", playlist_id, what=f"playlist {playlist_id}")
    b.one("SELECT id FROM songs WHERE id = ?", song_id, what=f"song {song_id}")
    if b.rows("SELECT id FROM playlist_songs WHERE playlist_id = ? AND song_id = ?", playlist_id, song_id):
        raise ApiError(409, "conflict", f"song {song_id} is already in playlist {playlist_id}")
    b.exec("INSERT INTO playlist_songs (playlist_id, song_id, added_at) VALUES (?, ?, ?)", playlist_id, song_id, NOW_S)
    return {"message": f"song {song_id} added to playlist {playlist_id}"}


@api("music", "remove_song_from_playlist", "Remove a song from a playlist.", Param("playlist_id", "int", "the playlist"),
     Param("song_id", "int", "the song"), returns="{message: str}", write=True)
def _mu_remove(b: Backend, playlist_id: int, song_id: int) -> dict:
    b.one("SELECT id FROM playlist_songs WHERE playlist_id = ? AND song_id = ?", playlist_id, song_id,
          what=f"song {song_id} in playlist {playlist_id}")
    b.exec("DELETE FROM playlist_songs WHERE playlist_id = ? AND song_id = ?", playlist_id, song_id)
    return {"message": f"song {song_id} removed from playlist {playlist_id}"}


@api("music", "show_liked_songs", "Songs the user liked, most recent first.",
     returns="[{song_id, title, artist, album, genre, duration_s, plays, release_year, liked_at}]", paged=True)
def _mu_liked(b: Backend, page_index: int, page_limit: int) -> list:
    rs = b.rows("SELECT s.*, l.liked_at FROM liked_songs l JOIN songs s ON s.id = l.song_id ORDER BY l.liked_at DESC, l.id DESC")
    return [{**_song(r), "liked_at": r["liked_at"]} for r in page(rs, page_index, page_limit)]


@api("music", "like_song", "Like a song.", Param("song_id", "int", "the song"), returns="{message: str}", write=True)
def _mu_like(b: Backend, song_id: int) -> dict:
    b.one("SELECT id FROM songs WHERE id = ?", song_id, what=f"song {song_id}")
    if b.rows("SELECT id FROM liked_songs WHERE song_id = ?", song_id):
        raise ApiError(409, "conflict", f"song {song_id} is already liked")
    b.exec("INSERT INTO liked_songs (song_id, liked_at) VALUES (?, ?)", song_id, NOW_S)
    return {"message": f"song {song_id} liked"}


@api("music", "unlike_song", "Remove a song from the liked songs.", Param("song_id", "int", "the song"),
     returns="{message: str}", write=True)
def _mu_unlike(b: Backend, song_id: int) -> dict:
    b.one("SELECT id FROM liked_songs WHERE song_id = ?", song_id, what=f"liked song {song_id}")
    b.exec("DELETE FROM liked_songs WHERE song_id = ?", song_id)
    return {"message": f"song {song_id} unliked"}


def api_count() -> int:
    return len(all_specs())

