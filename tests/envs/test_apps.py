"""The apps env: APIs and their failure responses, evaluation by database diff, the oracle on test
seeds of every template, plausible wrong programs failing, the JSON action format, predicates."""

import copy

import pytest

from agentsd.envs import make
from agentsd.envs.apps import (
    NOW,
    REGISTRY,
    TASKS_PER_SCENARIO,
    TEMPLATES,
    AppsEnv,
    AppsFailure,
    Backend,
    Change,
    Contains,
    Ref,
    SetOf,
    answers_match,
    api_count,
    build_task,
    diff,
    extract_call,
    extract_code,
    generate,
    scenario_goal_completion,
    snapshot,
)
from agentsd.envs.apps.evaluate import match

F = AppsFailure
START = AppsEnv.test_seeds.start


def py(code: str) -> str:
    return f"```python\n{code}\n```"


def seed_of(template: str, variant: int = 0, k: int = 0) -> int:
    """A test seed whose scenario uses ``template``."""
    names = list(TEMPLATES)
    first = START // TASKS_PER_SCENARIO
    scen = first + (names.index(template) - first) % len(names) + k * len(names)
    return scen * TASKS_PER_SCENARIO + variant


@pytest.fixture(scope="module")
def env():
    e = AppsEnv()
    yield e
    e.close()


def run_oracle(env, seed, limit=6):
    obs, info = env.reset(seed=seed)
    for _ in range(limit):
        a = env.oracle_action()
        if a is None:
            break
        obs, r, term, trunc, info = env.step(a)
        if term or trunc:
            break
    return obs, info


def login_backend(seed=0, budget=200):
    w = generate(seed)
    b = Backend(w.connect(), w, budget=budget)
    tok = {a: b.call(a, "login", [], {"username": w.user["email"], "password": w.passwords[a]})["data"]["access_token"]
           for a in ("phone", "email", "calendar", "notes", "payments", "music")}
    return b, w, tok


# --- world and APIs -------------------------------------------------------------------------------------
def test_world_is_seeded_and_rich():
    a, b = generate(7), generate(7)
    assert a.tables == b.tables and a.passwords == b.passwords
    assert generate(8).tables["people"] != a.tables["people"]
    for t in ("contacts", "emails", "events", "notes", "todos", "transactions", "payment_requests", "songs", "playlists"):
        assert len(a.tables[t]) >= 4, t
    assert len(a.extra["roommates"]) >= 2


def test_api_count_and_docs():
    assert api_count() >= 60
    apps = {a for a in REGISTRY if a not in ("api_docs", "supervisor")}
    assert len(apps) >= 6
    b, w, tok = login_backend()
    names = [x["name"] for x in b.call("api_docs", "show_app_descriptions")["data"]]
    assert set(names) == set(REGISTRY)
    phone = [x["name"] for x in b.call("api_docs", "show_api_descriptions", [], {"app_name": "phone"})["data"]]
    assert "add_contact" in phone and "login" in phone
    doc = b.call("api_docs", "show_api_doc", [], {"app_name": "payments", "api_name": "send_money"})["data"]
    params = {p["name"]: p for p in doc["parameters"]}
    assert params["amount"]["type"] == "float" and params["amount"]["required"]
    assert params["payment_card_id"]["required"] is False and "failure" in doc["response_schemas"]
    hits = b.call("api_docs", "search_api_docs", [], {"query": "send money"})["data"]
    assert hits[0]["api_name"] == "send_money"
    pw = b.call("supervisor", "show_account_passwords")["data"]
    assert {p["app_name"] for p in pw} == set(w.passwords)


@pytest.mark.parametrize(
    "app,api_,kwargs,kind",
    [
        ("nosuchapp", "x", {}, "unknown_api"),
        ("phone", "teleport", {}, "unknown_api"),
        ("phone", "add_contact", {"first_name": "A"}, "bad_arguments"),  # missing required (after the token)
        ("phone", "show_contacts", {"colour": "red"}, "bad_arguments"),
        ("payments", "send_money", {"receiver_email": "x@y.z", "amount": "ten"}, "bad_arguments"),
        ("payments", "send_money", {"receiver_email": "x@y.z", "amount": -5.0}, "bad_arguments"),
        ("calendar", "create_event", {"title": "x", "start": "tomorrow", "end": "later"}, "bad_arguments"),
        ("music", "show_song", {"song_id": 99999}, "not_found"),
        ("payments", "send_money", {"receiver_email": "nobody@nowhere.test", "amount": 5.0}, "not_found"),
    ],
)
def test_failure_responses(app, api_, kwargs, kind):
    b, w, tok = login_backend()
    if app in tok:
        kwargs = {"access_token": tok[app], **kwargs}
    r = b.call(app, api_, [], kwargs)
    assert r["success"] is False and r["error_type"] == kind and r["message"] and 400 <= r["status_code"] < 500


def test_auth_failures_and_logout():
    b, w, tok = login_backend()
    r = b.call("phone", "show_contacts", [], {})
    assert r["error_type"] == "auth_error" and "access_token" in r["message"]
    assert b.call("phone", "show_contacts", [], {"access_token": "forged"})["error_type"] == "auth_error"
    assert b.call("phone", "show_contacts", [], {"access_token": tok["email"]})["error_type"] == "auth_error"  # other app's
    assert b.call("phone", "login", [], {"username": w.user["email"], "password": "wrong"})["error_type"] == "auth_error"
    assert b.call("phone", "show_contacts", [], {"access_token": tok["phone"]})["success"]
    b.call("phone", "logout", [], {"access_token": tok["phone"]})
    assert b.call("phone", "show_contacts", [], {"access_token": tok["phone"]})["error_type"] == "auth_error"


def test_api_call_budget():
    b, w, tok = login_backend(budget=10)
    out = [b.call("music", "show_playlists", [], {"access_token": tok["music"]}) for _ in range(8)]
    assert out[0]["success"] and out[-1]["error_type"] == "budget_exceeded"
    assert b.call("supervisor", "complete_task")["success"]  # finishing is never blocked


def test_payments_moves_money_consistently():
    b, w, tok = login_backend()
    other = w.tables["contacts"][0]["email"]
    pid = w.by_email(other)["id"]
    before = snapshot(b.db)
    r = b.call("payments", "send_money", [], {"access_token": tok["payments"], "receiver_email": other, "amount": 12.5})
    assert r["success"]
    entries = diff(before, snapshot(b.db))
    assert sorted((e.op, e.table) for e in entries) == [("add", "transactions"), ("update", "payment_accounts"),
                                                         ("update", "payment_accounts")]
    bal = {e.id: (e.before["balance"], e.after["balance"]) for e in entries if e.table == "payment_accounts"}
    assert round(bal[1][0] - bal[1][1], 2) == 12.5 and round(bal[pid][1] - bal[pid][0], 2) == 12.5


# --- evaluation --------------------------------------------------------------------------------------------
def test_diff_matching_and_collateral():
    b, w, tok = login_backend()
    before = snapshot(b.db)
    new = b.call("music", "create_playlist", [], {"access_token": tok["music"], "title": "X"})["data"]["playlist_id"]
    b.call("music", "add_song_to_playlist", [], {"access_token": tok["music"], "playlist_id": new, "song_id": 3})
    b.call("music", "like_song", [], {"access_token": tok["music"],
                                      "song_id": next(s["id"] for s in w.tables["songs"]
                                                      if s["id"] not in {r["song_id"] for r in w.tables["liked_songs"]})})
    entries = diff(before, snapshot(b.db))
    want = [Change("add", "playlists", {"title": "x"}), Change("add", "playlist_songs", {"playlist_id": Ref(0), "song_id": 3})]
    matched, missing, collateral = match(want, entries)
    assert matched == [0, 1] and not missing and [e.table for e in collateral] == ["liked_songs"]
    wrong = [Change("add", "playlists", {"title": "x"}), Change("add", "playlist_songs", {"playlist_id": Ref(0), "song_id": 4})]
    assert len(match(wrong, entries)[1]) == 1


def test_update_with_extra_columns_is_not_the_required_change():
    b, w, tok = login_backend()
    before = snapshot(b.db)
    b.call("phone", "update_contact", [], {"access_token": tok["phone"], "contact_id": 1, "phone_number": "2025550123",
                                           "relationship": "enemy"})
    entries = diff(before, snapshot(b.db))
    matched, missing, _ = match([Change("update", "contacts", {"phone_number": "2025550123"}, id=1)], entries)
    assert not matched and missing


def test_matchers_and_answers():
    from agentsd.envs.apps.evaluate import value_matches

    assert value_matches(Contains("dinner"), "Dinner split", {})
    assert value_matches(SetOf(("a@x.io", "b@x.io")), "b@x.io,a@x.io", {})
    assert not value_matches(SetOf(("a@x.io",)), "b@x.io,a@x.io", {})
    assert value_matches(12.5, 12.499999, {}) and not value_matches(12.5, 12.6, {})
    assert answers_match("  Golden Rain. ", "golden rain") and answers_match("$1,234.50", 1234.5)
    assert answers_match(3, "3") and answers_match(["b", "A"], ["a", "b"]) and answers_match("a, b", ["b", "a"])
    assert not answers_match(None, 3) and not answers_match("4", 3)
    # phone numbers in any common format match the stored 10 digits; other digits do not
    for fmt in ("2015551234", "201-555-1234", "(201) 555-1234", "201.555.1234", "+1 201 555 1234", "1-201-555-1234"):
        assert answers_match(fmt, "2015551234"), fmt
    assert not answers_match("201-555-1235", "2015551234") and not answers_match("201-555-123", "2015551234")
    assert answers_match("$1,234.50", 1234.5) and not answers_match("12015551234", "2015551234")


# --- tasks and the oracle ----------------------------------------------------------------------------------
def test_templates_many_and_varied():
    assert len(TEMPLATES) >= 25
    diffs = {t.difficulty for t in TEMPLATES.values()}
    assert diffs == {"easy", "medium", "hard"}
    assert sum(len(t.apps) >= 2 for t in TEMPLATES.values()) >= 8


def test_tasks_are_deterministic_and_grouped_in_scenarios():
    s = seed_of("split_dinner_bills")
    t1, _ = build_task(s)
    t2, _ = build_task(s)
    assert t1.instruction == t2.instruction and t1.solution == t2.solution
    sib, _ = build_task(s + 1)
    assert sib.scenario == t1.scenario and sib.template == t1.template
    other, _ = build_task(s + TASKS_PER_SCENARIO)
    assert other.scenario != t1.scenario


def test_oracle_solves_test_seeds_of_every_template(env):
    seeds = [seed_of(name, v) for name in TEMPLATES for v in range(TASKS_PER_SCENARIO)]
    assert len(seeds) >= 100
    results, fails = [], []
    for seed in seeds:
        _, info = run_oracle(env, seed)
        assert seed in env.test_seeds
        results.append(info)
        if not info["success"]:
            fails.append((seed, info["template"], info["diagnosis"]["detail"]))
    assert len(fails) <= len(seeds) // 100, fails
    for info in results:
        assert info["tgc"] == int(info["success"])
        if info["success"]:
            assert info["diagnosis"]["progress"] == 1.0
    sgc = scenario_goal_completion(results)
    assert sgc["tasks"] == len(seeds) and sgc["scenarios"] == len(TEMPLATES)
    assert sgc["tgc"] >= 0.99 and sgc["sgc"] >= 0.97


def test_scenario_goal_completion():
    res = [{"scenario": "a", "tgc": 1}, {"scenario": "a", "tgc": 1}, {"scenario": "b", "tgc": 1}, {"scenario": "b", "tgc": 0}]
    out = scenario_goal_completion(res)
    assert out["tgc"] == 0.75 and out["sgc"] == 0.5 and out["scenarios"] == 2


def _first_cell_then(env, seed, code):
    env.reset(seed=seed)
    env.step(env.oracle_action())
    return env.step(py(code))


def test_paying_the_wrong_person_fails(env):
    seed = seed_of("send_money_to_contact")
    env.reset(seed=seed)
    right = env.task.solution[1]
    target = [c for c in env.world.tables["contacts"] if c["first_name"] + " " + c["last_name"] in env.task.instruction][0]
    other = next(c for c in env.world.tables["contacts"] if c["id"] != target["id"])
    wrong = right.replace(f"query={target['first_name'] + ' ' + target['last_name']!r}",
                          f"query={other['first_name'] + ' ' + other['last_name']!r}")
    assert wrong != right
    _, r, term, _, info = _first_cell_then(env, seed, wrong)
    assert term and not info["success"] and info["tgc"] == 0
    assert info["diagnosis"]["failure_type"] == F.COLLATERAL_DAMAGE.value
    assert info["diagnosis"]["extra"]["missing"]


def test_an_extra_write_is_collateral_damage(env):
    seed = seed_of("create_alarm", 1)
    env.reset(seed=seed)
    extra = 'apis.phone.create_alarm(access_token=tokens["phone"], time="03:00", label="oops")\n'
    _, _, term, _, info = _first_cell_then(env, seed, extra + env.task.solution[1])
    assert term and not info["success"]
    assert info["diagnosis"]["failure_type"] == F.COLLATERAL_DAMAGE.value
    assert len(info["diagnosis"]["extra"]["collateral"]) == 1


def test_a_wrong_answer_fails(env):
    seed = seed_of("count_open_todos")
    _, _, term, _, info = _first_cell_then(env, seed, "apis.supervisor.complete_task(answer=-1)")
    assert term and not info["success"] and info["diagnosis"]["failure_type"] == F.WRONG_ANSWER.value
    _, _, term, _, info = _first_cell_then(env, seed, "apis.supervisor.complete_task()")
    assert info["diagnosis"]["failure_type"] == F.WRONG_ANSWER.value


def test_completing_without_the_change_is_missing_change(env):
    seed = seed_of("complete_todo")
    _, _, term, _, info = _first_cell_then(env, seed, "apis.supervisor.complete_task()")
    assert term and info["diagnosis"]["failure_type"] == F.MISSING_CHANGE.value and info["diagnosis"]["progress"] == 0.0


def test_progress_and_state_diff_per_step(env):
    seed = seed_of("approve_roommate_requests")
    env.reset(seed=seed)
    env.step(env.oracle_action())
    req = env.task.changes[0]
    code = (f'apis.payments.approve_payment_request(access_token=tokens["payments"], payment_request_id={req.id})')
    _, r, term, _, info = env.step(py(code))
    d = info["diagnosis"]
    assert not term and info["action_is_effective"] and 0 < d["progress"] < 1 and r > 0
    assert {row["table"] for row in d["state_diff"]["rows"]} == {"payment_requests", "transactions", "payment_accounts"}


def test_out_of_steps(env):
    e = AppsEnv(max_steps=2)
    e.reset(seed=START)
    e.step(py("x = 1"))
    _, _, term, trunc, info = e.step(py("x += 1"))
    assert trunc and not term and info["diagnosis"]["failure_type"] == F.OUT_OF_STEPS.value
    e.close()


# --- parsing, formats, the contract ------------------------------------------------------------------------
def test_extract_code_forms():
    assert extract_code("think\n```python\nprint(1)\n```") == "print(1)"
    assert extract_code("```\nprint(2)\n```") == "print(2)"
    assert extract_code("```py\na=1\n```\nthen\n```python\nb=2\n```") == "b=2"
    assert extract_code("<code>print(3)</code>") == "print(3)"
    assert extract_code("<answer>print(4)</answer>") == "print(4)"
    for bad in ("print(1)", "```python\n\n```", "", None, "```json\n{}\n```"):
        assert extract_code(bad) is None
    assert extract_call('{"app": "phone", "api": "login", "args": {"username": "u"}}')["api"] == "login"
    assert extract_call('```json\n{"app": "a", "api": "b"}\n```') == {"app": "a", "api": "b", "args": {}}
    assert extract_call('{"app": "a"}') is None and extract_call("nope") is None


def test_invalid_text_is_a_format_penalty(env):
    env.reset(seed=START)
    _, r, term, trunc, info = env.step("I will now call the API")
    assert not info["action_is_valid"] and r == -1.0 and not term
    assert info["diagnosis"]["failure_type"] == F.INVALID_FORMAT.value


def test_json_action_format_oracle():
    e = make("apps", action_format="json")
    for name in ("payments_balance", "send_money_to_contact", "playlist_from_email_recommendations"):
        obs, info = e.reset(seed=seed_of(name))
        for _ in range(e.max_steps):
            a = e.oracle_action()
            assert a is not None
            obs, r, term, trunc, info = e.step(a)
            if term or trunc:
                break
        assert info["success"], (name, obs)
    e.reset(seed=START)
    obs, _, _, _, info = e.step('{"app": "phone", "api": "fly", "args": {}}')
    assert info["diagnosis"]["failure_type"] == F.UNKNOWN_API.value and '"success": false' in obs
    e.close()


def test_variables_persist_and_reset_clears(env):
    env.reset(seed=START)
    env.step(py("counter = 41"))
    obs, *_ = env.step(py("counter + 1"))
    assert obs.startswith("42")
    env.reset(seed=START)
    obs, _, _, _, info = env.step(py("counter"))
    assert "NameError" in obs and info["diagnosis"]["failure_type"] == F.CODE_ERROR.value


def test_api_failure_inside_code_is_diagnosed(env):
    env.reset(seed=START)
    obs, _, _, _, info = env.step(py("print(apis.phone.show_contacts())"))
    assert "auth_error" in obs and info["diagnosis"]["failure_type"] == F.AUTH_ERROR.value
    obs, _, _, _, info = env.step(py("print(apis.phone.warp_drive())"))
    assert info["diagnosis"]["failure_type"] == F.UNKNOWN_API.value and "unknown_api" in obs
    obs, _, _, _, info = env.step(py("apis.api_docs.show_api_doc(app_name='phone', api_name='add_contact', extra=1)"))
    assert info["diagnosis"]["failure_type"] == F.BAD_ARGUMENTS.value


# --- predicates -------------------------------------------------------------------------------------------
def test_predicates_agree_with_step_and_do_not_change_state(env):
    env.reset(seed=seed_of("count_open_todos"))
    state = (copy.deepcopy(env._snap), env.backend.calls, env.steps, sorted(env.backend.tokens))
    cases = {
        "invalid_format": ("no code here", F.INVALID_FORMAT),
        "sandbox_violation": (py("import os"), F.SANDBOX_VIOLATION),
        "calls_unknown_api": (py("apis.phone.warp()"), F.UNKNOWN_API),
        "calls_without_login": (py("apis.notes.show_todos(access_token='x')"), F.AUTH_ERROR),
    }
    for name, (text, _) in cases.items():
        assert env.check(name, text) is True, name
        assert env.check(name, py("print(1)")) is False, name
    assert env.check("writes_without_login", py("apis.notes.complete_todo(access_token='x', todo_id=1)"))
    assert not env.check("writes_without_login", py("apis.notes.show_todos(access_token='x')"))
    assert env.check("completes_without_answer", py("apis.supervisor.complete_task()"))
    assert not env.check("completes_without_answer", py("apis.supervisor.complete_task(answer=3)"))
    assert not env.check("logged_in", app="notes") and not env.check("task_completed")
    assert state == (env._snap, env.backend.calls, env.steps, sorted(env.backend.tokens))
    for name, (text, fail) in cases.items():
        _, _, _, _, info = env.step(text)
        assert info["diagnosis"]["failure_type"] == fail.value, name
        assert env.failure_predicates[fail.value] == name
    env.step(env.oracle_action())
    assert env.check("logged_in", app="notes")
    assert not env.check("calls_without_login", py("apis.notes.show_todos(access_token=tokens['notes'])"))
    env.step(env.oracle_action())
    assert env.check("task_completed") and env.check("task_success")
    with pytest.raises(KeyError):
        env.check("nope")


def test_time_is_frozen(env):
    env.reset(seed=START)
    obs, *_ = env.step(py("import datetime\nprint(datetime.date(2026, 5, 15).isoformat())"))
    assert "2026-05-15" in obs and f"{NOW:%Y-%m-%d %H:%M}" in env.instructions()
