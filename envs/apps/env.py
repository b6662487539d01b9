"""The apps text environment (see :class:`AppsEnv`)."""

from __future__ import annotations

import ast
import json
from enum import Enum
from typing import Any

from agentsd.envs.apps.apis import REGISTRY, Backend, api_count
from agentsd.envs.apps.evaluate import Change, Verdict, answers_match, diff, match, snapshot
from agentsd.envs.apps.sandbox import Sandbox
from agentsd.envs.apps.tasks import TASKS_PER_SCENARIO, TEMPLATES, Task, build_task
from agentsd.envs.apps.worker import check_code
from agentsd.envs.apps.world import NOW, World
from agentsd.envs.base import Diagnosis, Predicate, TextEnv

MAX_CODE = 20_000
MAX_OBS = 6000


class AppsFailure(str, Enum):
    """Why an apps step or task went wrong (``info["diagnosis"]["failure_type"]``)."""

    INVALID_FORMAT = "invalid_format"  # no code block / JSON call in the text
    CODE_ERROR = "code_error"  # the cell raised (or did not parse)
    API_ERROR = "api_error"  # an API answered not_found / conflict / server_error
    UNKNOWN_API = "unknown_api"  # no such app or API
    BAD_ARGUMENTS = "bad_arguments"  # missing, unknown or mistyped arguments
    AUTH_ERROR = "auth_error"  # missing, wrong or expired access token, or a failed login
    SANDBOX_VIOLATION = "sandbox_violation"  # a blocked import, builtin, attribute, file or OS access
    TIMEOUT = "timeout"  # the cell ran past its CPU or wall-clock limit
    MEMORY_LIMIT = "memory_limit"  # the cell ran past the memory limit
    SANDBOX_CRASH = "sandbox_crash"  # the worker died; it was restarted
    BUDGET_EXCEEDED = "budget_exceeded"  # the task's API call budget is used up
    WRONG_ANSWER = "wrong_answer"  # completed with a wrong or missing answer
    COLLATERAL_DAMAGE = "collateral_damage"  # completed, but rows changed that the task did not ask for
    MISSING_CHANGE = "missing_change"  # completed without some required change
    OUT_OF_STEPS = "out_of_steps"  # the step budget ran out before complete_task


F = AppsFailure
_API_FAIL = {"unknown_api": F.UNKNOWN_API, "bad_arguments": F.BAD_ARGUMENTS, "auth_error": F.AUTH_ERROR,
             "budget_exceeded": F.BUDGET_EXCEEDED}
_CELL_FAIL = {"syntax_error": F.CODE_ERROR, "code_error": F.CODE_ERROR, "sandbox_violation": F.SANDBOX_VIOLATION,
              "timeout": F.TIMEOUT, "memory_limit": F.MEMORY_LIMIT, "crash": F.SANDBOX_CRASH}

_PREDICATES = (
    Predicate("invalid_format", "the text holds no code cell (or JSON call) to run", "before"),
    Predicate("sandbox_violation", "the code uses a blocked import, builtin or attribute (the static check fails)", "before"),
    Predicate("calls_unknown_api", "the code calls apis.<app>.<api> for an app or API that does not exist", "before"),
    Predicate("calls_without_login", "the code calls an API that needs an access token of an app it is not logged "
                                     "in to and does not log in to", "before"),
    Predicate("writes_without_login", "the code calls a write API of an app it is not logged in to and does not "
                                      "log in to", "before"),
    Predicate("completes_without_answer", "the code completes a question task without giving an answer", "before"),
    Predicate("logged_in", "the agent holds a live access token for the app", "after", {"app": "str, app name"}),
    Predicate("task_completed", "complete_task has been called", "after"),
    Predicate("task_success", "the task is completed and passes the database-diff evaluation", "after"),
)
PREDICATES: dict[str, Predicate] = {p.name: p for p in _PREDICATES}
FAILURE_PREDICATES: dict[str, str] = {
    F.INVALID_FORMAT.value: "invalid_format",
    F.SANDBOX_VIOLATION.value: "sandbox_violation",
    F.UNKNOWN_API.value: "calls_unknown_api",
    F.AUTH_ERROR.value: "calls_without_login",
}


def _rlast(text: str, open_: str, close: str) -> str | None:
    """The body of the last ``open_ ... close`` block (linear: rfind, no regex backtracking)."""
    end = text.rfind(close)
    while end >= 0:
        start = text.rfind(open_, 0, end)
        if start >= 0:
            return text[start + len(open_) : end]
        end = -1
    return None


def extract_code(text: Any) -> str | None:
    """The code of the last fenced ```python block (or ```py / bare ```), else of the last
    <code>...</code> or <answer>...</answer> block; None if there is none or it is empty/too long."""
    if not isinstance(text, str):
        return None
    body = None
    end = text.rfind("```")
    if end > 0:
        start = text.rfind("```", 0, end)
        if start >= 0:
            block = text[start + 3 : end]
            first, _, rest = block.partition("\n")
            if first.strip().lower() in ("python", "py", "python3", ""):
                body = rest if first.strip() or "\n" in block else block
            elif not first.strip().isalpha():
                body = block
    if body is None:
        body = _rlast(text, "<code>", "</code>")
    if body is None:
        body = _rlast(text, "<answer>", "</answer>")
    if body is None or not body.strip() or len(body) > MAX_CODE:
        return None
    return body.strip("\n")


def extract_call(text: Any) -> dict[str, Any] | None:
    """A JSON tool call ``{"app": ..., "api": ..., "args": {...}}`` from a ```json block, an
    <answer> block or the bare text; None if there is none."""
    if not isinstance(text, str) or len(text) > MAX_CODE:
        return None
    cands = []
    end = text.rfind("```")
    if end > 0:
        start = text.rfind("```", 0, end)
        if start >= 0:
            block = text[start + 3 : end]
            cands.append(block[4:] if block.lower().startswith("json") else block)
    ans = _rlast(text, "<answer>", "</answer>")
    if ans is not None:
        cands.append(ans)
    cands.append(text)
    for c in cands:
        c = c.strip()
        if not c.startswith("{"):
            continue
        try:
            obj = json.loads(c)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("app"), str) and isinstance(obj.get("api"), str) \
                and isinstance(obj.get("args", {}), dict) and set(obj) <= {"app", "api", "args"}:
            return {"app": obj["app"], "api": obj["api"], "args": obj.get("args", {})}
    return None


def static_calls(tree: ast.AST) -> list[tuple[str, str, ast.Call | None]]:
    """Every ``apis.<app>.<api>`` in the code, with its Call node when it is called directly."""
    out = []
    called = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name) \
                and n.value.value.id == "apis":
            out.append((n.value.attr, n.attr, called.get(id(n))))
    return out


def _short(x: Any, n: int = MAX_OBS) -> str:
    s = x if isinstance(x, str) else json.dumps(x, indent=1, default=str)
    return s if len(s) <= n else s[:n] + f"\n[... {len(s) - n} more characters not shown]"


class AppsEnv(TextEnv):
    """An AppWorld-style world of apps and people; the agent acts by running Python against ``apis``.

    ## Action
    ``action_format="code"`` (default): a Python cell in the last ```python ... ``` block (also
    ``<code>...</code>`` or ``<answer>...</answer>``), run in a warm sandboxed worker process;
    variables persist across steps of an episode. ``action_format="json"``: one API call per step,
    ``{"app": ..., "api": ..., "args": {...}}`` (bare, in a ```json block or in ``<answer>``). Text
    without either is invalid: ``format_penalty``, nothing runs.

    ## Observation
    What the cell printed (and the value of its last expression), then any error (a short traceback
    into the cell, a sandbox message), then the step and API-call counters. JSON calls show the response.

    ## Reward
    ``step_penalty`` per step, ``progress_reward`` times the increase of the fraction of required
    changes present, ``solve_reward`` when the task completes and passes; invalid text gets ``format_penalty``.

    ## Episode end
    Terminated by ``apis.supervisor.complete_task(answer=...)``, then judged by database diff (every
    required change present, the answer right, nothing else changed). Truncated after ``max_steps``.

    ## Info
    ``action_is_valid``, ``action_is_effective`` (rows changed or the task completed), ``success``,
    ``tgc`` (1 when the task passed), ``scenario`` (template and population: SGC groups by it),
    ``template``, ``difficulty``, ``task_seed``, ``api_calls``, ``answer`` and ``diagnosis``: an
    :class:`AppsFailure` value, the rows this step changed (``state_diff``), ``progress`` (required
    changes present / required; 1.0 when solved), ``stagnation`` and ``extra`` (steps, API calls and
    the failed ones, apps logged in, completion, missing changes and collateral rows once judged).
    """

    metadata = {**TextEnv.metadata, "render_fps": 1}
    name = "apps"
    train_seeds = range(0, 900_000)
    test_seeds = range(900_000, 1_000_000)
    failure_types = AppsFailure
    failure_predicates = FAILURE_PREDICATES

    def __init__(
        self,
        action_format: str = "code",
        template: str | None = None,
        max_steps: int | None = None,
        api_budget: int = 200,
        cpu_seconds: float = 2.0,
        wall_seconds: float = 10.0,
        memory_mb: int = 512,
        output_limit: int = 4000,
        render_mode: str | None = None,
        format_penalty: float = -1.0,
        step_penalty: float = -0.01,
        progress_reward: float = 1.0,
        solve_reward: float = 10.0,
    ):
        super().__init__(render_mode=render_mode)
        if action_format not in ("code", "json"):
            raise ValueError(f"action_format must be 'code' or 'json', got {action_format!r}")
        if template is not None and template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATES)})")
        self.action_format, self.template = action_format, template
        self.max_steps = max_steps or (15 if action_format == "code" else 40)
        self.api_budget = api_budget
        self.sandbox = Sandbox(cpu_seconds=cpu_seconds, wall_seconds=wall_seconds, memory_mb=memory_mb,
                               output_limit=output_limit)
        self.format_penalty, self.step_penalty = format_penalty, step_penalty
        self.progress_reward, self.solve_reward = progress_reward, solve_reward
        self.task: Task | None = None
        self.backend: Backend | None = None
        self.last_obs = ""

    # --- text -------------------------------------------------------------------------------------
    def instructions(self) -> str:
        apps = ", ".join(a for a in REGISTRY)
        if self.action_format == "code":
            act = ("Act by writing one Python cell per turn inside ```python ... ```. It runs in a sandbox (no files, "
                   "network or os; imports only json, math, re, datetime, collections, itertools, functools, statistics, "
                   "random, heapq, bisect, string). Variables persist between turns. What you print is what you see.\n"
                   "Example:\n```python\nprint(apis.api_docs.show_api_descriptions(app_name=\"phone\"))\n```")
        else:
            act = ('Act by writing one API call per turn as JSON: {"app": "phone", "api": "login", "args": {"username": '
                   '"...", "password": "..."}}. You see the JSON response.')
        return (
            f"You are an assistant acting for a user through the APIs of their apps ({apps}).\n{act}\n"
            "Every API answers {\"success\": true, \"data\": ...} or {\"success\": false, \"error_type\": ..., \"message\": ...}. "
            "Discover APIs with apis.api_docs.show_app_descriptions(), show_api_descriptions(app_name=...), "
            "show_api_doc(app_name=..., api_name=...), search_api_docs(query=...). apis.supervisor has the user's "
            "profile, app passwords (show_account_passwords) and payment cards. Most APIs need an access_token from "
            "apis.<app>.login(username=<user email>, password=...).\n"
            "Change only what the task asks for: any other change fails the task. When done, call "
            "apis.supervisor.complete_task(answer=...) with the answer if the task asks a question, else with no answer. "
            f"The clock is frozen at {NOW:%Y-%m-%d %H:%M} ({NOW:%A})."
        )

    def task_description(self) -> str:
        if self.task is None:
            return "Do what the user asks using their apps (a new task each episode)."
        return f"Task: {self.task.instruction}"

    # --- parsing --------------------------------------------------------------------------------------
    def parse_action(self, text: str) -> list[Any] | None:
        if self.action_format == "code":
            code = extract_code(text)
            return None if code is None else [("code", code)]
        call = extract_call(text)
        return None if call is None else [("json", call)]

    # --- episode --------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(self.train_seeds.start, self.train_seeds.stop))
        self.task, self.world = build_task(int(seed), self.template)
        if self.backend is not None:
            self.backend.db.close()
        db = self.world.connect()
        self.backend = Backend(db, self.world, budget=self.api_budget, token_salt=f"{seed}")
        self._start = snapshot(db)
        self._snap = self._start
        self.steps, self._oracle_pos, self._oracle_text = 0, 0, None
        self._json_oracle: list[dict] | None = None
        self.verdict: Verdict | None = None
        self.solved = False
        self._progress, self._best, self._stagnation = 0.0, 0.0, 0
        if self.action_format == "code":
            self.sandbox.reset()
        self.last_obs = (f"Task: {self.task.instruction}\nYou act for {World.full_name(self.world.user)} "
                         f"({self.world.user['email']}). It is {NOW:%Y-%m-%d %H:%M} ({NOW:%A}).\n"
                         f"Step 0/{self.max_steps}. Nothing has run yet.")
        diag = Diagnosis(None, "new task", {}, 0.0, 0, self._extra([]))
        return self.last_obs, self._info(True, False, diag)

    def close(self) -> None:
        self.sandbox.close()
        if self.backend is not None:
            self.backend.db.close()
            self.backend = None
        super().close()

    def step(self, action: str):
        if self.task is None or self.backend is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        if self._oracle_text is not None and action == self._oracle_text:
            self._oracle_pos += 1
        self._oracle_text = None
        parsed = self.parse_action(action)
        b = self.backend
        was_completed = b.completed
        failed: list[dict] = []
        fail: AppsFailure | None = None
        detail = ""

        def handler(app: Any, api: Any, args: Any, kwargs: Any) -> dict:
            if b.completed and not (app == "api_docs"):
                resp = {"success": False, "status_code": 409, "error_type": "conflict",
                        "message": "the task is already completed"}
            else:
                resp = b.call(app, api, args if isinstance(args, list) else [], kwargs if isinstance(kwargs, dict) else {})
            if not resp["success"]:
                failed.append({"app": str(app), "api": str(api), "error_type": resp["error_type"], "message": resp["message"]})
            return resp

        if parsed is None:
            fail = F.INVALID_FORMAT
            what = "a ```python ... ``` code block" if self.action_format == "code" else \
                'a JSON call like {"app": ..., "api": ..., "args": {...}}'
            detail = f"no action found: answer with {what}"
            obs_body = f"Invalid action: {detail}."
        elif parsed[0][0] == "code":
            res = self.sandbox.run(parsed[0][1], handler)
            obs_body = res.output if res.output.strip() else "(no output)"
            if res.error_type:
                obs_body += f"\nError ({res.error_type}): {res.error}"
                fail = _CELL_FAIL.get(res.error_type, F.CODE_ERROR)
                detail = res.error
        else:
            call = parsed[0][1]
            resp = handler(call["app"], call["api"], [], call["args"])
            obs_body = _short(resp)
        if failed and fail in (None, F.CODE_ERROR):
            first = next((f for f in failed if f["error_type"] == "budget_exceeded"), failed[0])
            fail = _API_FAIL.get(first["error_type"], F.API_ERROR)
            detail = f"apis.{first['app']}.{first['api']}: {first['message']}"
        # the database after the step, and what it changed
        step_rows: list = []
        if b.writes or b.completed:
            now = snapshot(b.db)
            step_rows = diff(self._snap, now)
            self._snap = now
            b.writes = 0
        completed_now = b.completed and not was_completed
        self.verdict = self._judge()
        self._progress = self.verdict.progress
        if completed_now:
            self.solved = not self.verdict.missing and not self.verdict.collateral and self.verdict.answer_ok
            if self.solved:
                self._progress = 1.0
                fail, detail = None, "task completed: every required change present, answer right, nothing else changed"
            else:
                fail, detail = self._judgement_failure()
        terminated = b.completed
        truncated = not terminated and self.steps >= self.max_steps
        if truncated:
            fail = F.OUT_OF_STEPS
            detail = (detail + "; " if detail else "") + f"ran out of steps ({self.max_steps}) before complete_task"
        reward = self.format_penalty if parsed is None else self.step_penalty
        if parsed is not None:
            reward += self.progress_reward * (self._progress - self._best) if self._progress > self._best else 0.0
            if completed_now and self.solved:
                reward += self.solve_reward
        if self._progress > self._best + 1e-12:
            self._best, self._stagnation = self._progress, 0
        else:
            self._stagnation += 1
        status = f"Step {self.steps}/{self.max_steps}. API calls used: {b.calls}/{b.budget}."
        if terminated:
            status += " Task completed" + (" successfully." if self.solved else f" but it failed: {detail}.")
        self.last_obs = _short(obs_body) + "\n" + status
        diag = Diagnosis(fail.value if fail else None, detail,
                         {"rows": [e.to_dict() for e in step_rows[:20]], "total": len(step_rows)},
                         self._progress, self._stagnation, self._extra(failed))
        effective = bool(step_rows) or completed_now
        return self.last_obs, float(reward), terminated, truncated, self._info(parsed is not None, effective, diag)

    # --- evaluation -----------------------------------------------------------------------------------
    def _judge(self) -> Verdict:
        assert self.task is not None and self.backend is not None
        entries = diff(self._start, self._snap)
        matched, missing, collateral = match(self.task.changes, entries)
        ok = self.task.answer is None or answers_match(self.backend.answer, self.task.answer)
        return Verdict(matched, missing, collateral, ok)

    def _judgement_failure(self) -> tuple[AppsFailure, str]:
        v = self.verdict
        assert v is not None and self.task is not None and self.backend is not None
        if v.collateral:
            rows = "; ".join(f"{e.op} {e.table} #{e.id}" for e in v.collateral[:5])
            return F.COLLATERAL_DAMAGE, f"rows changed that the task did not ask for: {rows}"
        if v.missing:
            return F.MISSING_CHANGE, "required changes missing: " + "; ".join(c.describe() for c in v.missing[:5])
        return F.WRONG_ANSWER, f"wrong answer {self.backend.answer!r}"

    def _extra(self, failed: list[dict]) -> dict[str, Any]:
        b = self.backend
        assert b is not None and self.task is not None
        out = {"steps": self.steps, "max_steps": self.max_steps, "api_calls": b.calls, "api_budget": b.budget,
               "failed_calls": failed[:5], "logged_in": sorted(b.live_apps()), "completed": b.completed,
               "required_changes": len(self.task.changes)}
        if b.completed and self.verdict is not None:
            out["missing"] = [c.describe() for c in self.verdict.missing]
            out["collateral"] = [e.to_dict() for e in self.verdict.collateral[:10]]
            out["answer_ok"] = self.verdict.answer_ok
        return out

    def _info(self, valid: bool, effective: bool, diag: Diagnosis) -> dict[str, Any]:
        assert self.task is not None and self.backend is not None
        return self.make_info(
            valid=valid, effective=effective, success=self.solved, diagnosis=diag,
            tgc=int(self.solved), scenario=self.task.scenario, template=self.task.template,
            difficulty=self.task.difficulty, task_seed=self.task.seed, api_calls=self.backend.calls,
            answer=self.backend.answer if self.backend.completed else None,
        )

    def required_changes(self) -> list[Change]:
        return list(self.task.changes) if self.task is not None else []

    # --- predicates -----------------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.task is None or self.backend is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _calls_of(self, action: str) -> list[tuple[str, str, ast.Call | None]] | None:
        parsed = self.parse_action(action)
        if parsed is None:
            return None
        kind, body = parsed[0]
        if kind == "json":
            return [(body["app"], body["api"], None)]
        tree, _, _ = check_code(body)
        return None if tree is None else static_calls(tree)

    def _pred_invalid_format(self, action: str) -> bool:
        return self._ready() and self.parse_action(action) is None

    def _pred_sandbox_violation(self, action: str) -> bool:
        self._ready()
        parsed = self.parse_action(action)
        if parsed is None or parsed[0][0] != "code":
            return False
        return check_code(parsed[0][1])[1] == "sandbox_violation"

    def _pred_calls_unknown_api(self, action: str) -> bool:
        self._ready()
        calls = self._calls_of(action) or []
        return any(app not in REGISTRY or api not in REGISTRY[app] for app, api, _ in calls)

    def _pred_calls_without_login(self, action: str) -> bool:
        self._ready()
        calls = self._calls_of(action) or []
        live = self.backend.live_apps()
        logs_in = {app for app, api, _ in calls if api == "login"}
        for app, api, _ in calls:
            spec = REGISTRY.get(app, {}).get(api)
            if spec is not None and spec.auth and app not in live and app not in logs_in:
                return True
        return False

    def _pred_writes_without_login(self, action: str) -> bool:
        self._ready()
        calls = self._calls_of(action) or []
        live = self.backend.live_apps()
        logs_in = {app for app, api, _ in calls if api == "login"}
        return any(spec.write and app not in live and app not in logs_in
                   for app, api, _ in calls if (spec := REGISTRY.get(app, {}).get(api)) is not None)

    def _pred_completes_without_answer(self, action: str) -> bool:
        self._ready()
        if self.task.answer is None:
            return False
        parsed = self.parse_action(action)
        if parsed is None:
            return False
        kind, body = parsed[0]
        if kind == "json":
            return (body["app"], body["api"]) == ("supervisor", "complete_task") and body["args"].get("answer") is None
        for app, api, call in self._calls_of(action) or []:
            if (app, api) == ("supervisor", "complete_task") and call is not None:
                given = call.args or [k for k in call.keywords if k.arg in ("answer", None)]
                if not given:
                    return True
        return False

    def _pred_logged_in(self, action: None, app: str) -> bool:
        return self._ready() and str(app) in self.backend.live_apps()

    def _pred_task_completed(self, action: None) -> bool:
        return self._ready() and self.backend.completed

    def _pred_task_success(self, action: None) -> bool:
        return self._ready() and self.solved

    # --- views ----------------------------------------------------------------------------------------
    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.last_obs
        return None

    # --- oracle ---------------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        if self.task is None or self.backend is None or self.backend.completed:
            return None
        if self.action_format == "code":
            cells = self.task.solution
            if self._oracle_pos >= len(cells):
                return None
            text = f"```python\n{cells[self._oracle_pos]}\n```"
        else:
            calls = self._json_program()
            if calls is None or self._oracle_pos >= len(calls):
                return None
            text = json.dumps(calls[self._oracle_pos])
        self._oracle_text = text
        return text

    def _json_program(self) -> list[dict] | None:
        """The reference program as a list of JSON calls: recorded by running it once on a private copy
        of this episode's world (the same seed gives the same rows, ids and tokens)."""
        if self._json_oracle is None:
            assert self.task is not None
            task, world = build_task(self.task.seed, self.template)
            shadow = Backend(world.connect(), world, budget=10**6, token_salt=self.backend.token_salt)
            calls: list[dict] = []

            def rec(app: Any, api: Any, args: Any, kwargs: Any) -> dict:
                calls.append({"app": app, "api": api, "args": dict(kwargs or {})})
                return shadow.call(app, api, args or [], kwargs or {})

            box = Sandbox(cpu_seconds=5, wall_seconds=30)
            try:
                for cell in task.solution:
                    res = box.run(cell, rec)
                    if res.error_type:
                        return None
            finally:
                box.close()
                shadow.db.close()
            self._json_oracle = calls
        return self._json_oracle


def scenario_goal_completion(results: list[dict[str, Any]]) -> dict[str, Any]:
    """TGC and SGC from per-task results (each an info dict of the last step, or any dict with
    ``scenario`` and ``tgc`` / ``success``). SGC counts a scenario only when all its tasks passed."""
    by: dict[str, list[bool]] = {}
    for r in results:
        ok = bool(r.get("tgc", r.get("success", False)))
        by.setdefault(str(r["scenario"]), []).append(ok)
    n = sum(len(v) for v in by.values())
    return {
        "tasks": n,
        "scenarios": len(by),
        "tgc": (sum(sum(v) for v in by.values()) / n) if n else 0.0,
        "sgc": (sum(all(v) for v in by.values()) / len(by)) if by else 0.0,
        "tasks_per_scenario": TASKS_PER_SCENARIO,
        "apis": api_count(),
    }
