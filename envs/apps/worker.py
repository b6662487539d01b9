"""The sandbox worker: runs the agent's Python cells in a separate, long-lived, restricted process.

Started by :class:`agentsd.envs.apps.sandbox.Sandbox` as ``python -I -S worker.py '<json limits>'`` with
its stdin/stdout as the protocol pipe (one JSON message per line) and stderr discarded. Standard
library only. Layers, from the outside in:

- process limits set once at start: address space (``RLIMIT_AS``), no new file descriptors
  (``RLIMIT_NOFILE`` at the three already open, so no file, socket or pipe can be opened), no child
  processes (``RLIMIT_NPROC`` 0, after dropping root to ``nobody`` when started as root), cwd ``/``;
- a CPU-time limit per cell (``RLIMIT_CPU`` soft limit = used + limit; ``SIGXCPU`` interrupts the
  cell); the parent also enforces a wall-clock timeout and kills and restarts the worker;
- a static check of the cell's AST (:func:`check_code`): no ``import`` except an allow-list of pure
  modules, no attribute or name that starts with an underscore (so no ``__class__``, ``__globals__``,
  ``__subclasses__``, ``__builtins__``), no frame/code/traceback attributes, no strings holding
  ``__``, and none of the removed builtins (``open``, ``eval``, ``exec``, ``compile``, ...);
- an allow-listed builtins dict, a restricted ``__import__`` that hands out sanitized copies of the
  allowed modules (public, non-module attributes only), a safe ``getattr``/``hasattr``;
- bounded output: ``print`` writes into a buffer that keeps the first ``output_limit`` characters
  and counts the rest.

The cell's only way out is the ``apis`` object: ``apis.<app>.<api>(...)`` sends the call to the parent
and returns its JSON response. Variables persist across cells until a ``reset`` message.

This file is importable (the parent uses :func:`check_code` for its "before" predicates); the main
loop runs only when it is executed as a script.
"""

from __future__ import annotations

import ast
import bisect
import collections
import datetime
import functools
import heapq
import itertools
import json
import math
import random
import re
import statistics
import string
import sys
import types

ALLOWED_MODULES = ("json", "math", "re", "datetime", "collections", "itertools", "functools", "statistics",
                   "random", "heapq", "bisect", "string")
#: names a cell may not use (unless it assigns them itself): removed builtins, with the reason shown.
BLOCKED_NAMES = {
    "open": "no file system access in the sandbox",
    "eval": "eval is not available in the sandbox",
    "exec": "exec is not available in the sandbox",
    "compile": "compile is not available in the sandbox",
    "globals": "globals() is not available in the sandbox",
    "locals": "locals() is not available in the sandbox",
    "vars": "vars() is not available in the sandbox",
    "input": "there is no console input in the sandbox",
    "breakpoint": "no debugger in the sandbox",
    "memoryview": "memoryview is not available in the sandbox",
    "type": "type() is not available in the sandbox (use isinstance)",
    "object": "object is not available in the sandbox",
    "exit": "exit is not available: call apis.supervisor.complete_task(...) to finish",
    "quit": "quit is not available: call apis.supervisor.complete_task(...) to finish",
    "help": "help is not available: use apis.api_docs",
    "setattr": "setattr is not available in the sandbox",
    "delattr": "delattr is not available in the sandbox",
}
#: attributes that reach interpreter internals without an underscore.
BLOCKED_ATTRS = {
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await",
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code", "co_consts",
    "func_globals", "mro", "format_map",
}
SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "dict", "dir", "divmod", "enumerate",
    "filter", "float", "format", "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "str", "sum", "tuple", "zip", "property", "staticmethod", "classmethod", "super",
    "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError", "LookupError",
    "NameError", "NotImplementedError", "OverflowError", "RuntimeError", "StopIteration", "TypeError",
    "ValueError", "ZeroDivisionError", "MemoryError", "RecursionError",
)


class SandboxViolation(Exception):
    """The cell tried something the sandbox forbids."""


class CPUTimeExceeded(BaseException):
    """The cell used up its CPU time (raised from the SIGXCPU handler)."""


def check_code(code: str) -> tuple[ast.Module | None, str | None, str | None]:
    """Parse and statically check a cell: ``(tree, None, None)`` if allowed, else ``(None, kind, message)``
    with kind ``syntax_error`` or ``sandbox_violation``."""
    try:
        tree = ast.parse(code, "<cell>", "exec")
    except SyntaxError as e:
        return None, "syntax_error", f"SyntaxError: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:
        return None, "syntax_error", f"cannot parse the cell: {type(e).__name__}"
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    stored |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    stored |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                if m not in ALLOWED_MODULES or (isinstance(node, ast.ImportFrom) and node.level):
                    return None, "sandbox_violation", (f"line {line}: import of {m!r} is not allowed in the sandbox "
                                                       f"(allowed: {', '.join(ALLOWED_MODULES)}); no os, sys, "
                                                       "subprocess, socket or file access")
            if isinstance(node, ast.ImportFrom) and any(a.name.startswith("_") or a.name == "*" for a in node.names):
                return None, "sandbox_violation", f"line {line}: only public names can be imported"
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in BLOCKED_ATTRS:
                return None, "sandbox_violation", (f"line {line}: access to attribute {node.attr!r} is not allowed "
                                                   "(no underscore or interpreter-internal attributes)")
        elif isinstance(node, ast.Name):
            if node.id.startswith("__"):
                return None, "sandbox_violation", f"line {line}: the name {node.id!r} is not allowed in the sandbox"
            if isinstance(node.ctx, ast.Load) and node.id in BLOCKED_NAMES and node.id not in stored:
                return None, "sandbox_violation", f"line {line}: {node.id!r}: {BLOCKED_NAMES[node.id]}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            if (b"__" if isinstance(node.value, bytes) else "__") in node.value:
                return None, "sandbox_violation", f"line {line}: strings containing '__' are not allowed in the sandbox"
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return None, "sandbox_violation", f"line {line}: async code is not supported in the sandbox"
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("__"):
            return None, "sandbox_violation", f"line {line}: the name {node.name!r} is not allowed in the sandbox"
        elif isinstance(node, ast.arg) and node.arg.startswith("__"):
            return None, "sandbox_violation", f"line {line}: the name {node.arg!r} is not allowed in the sandbox"
        elif isinstance(node, ast.keyword) and node.arg is not None and node.arg.startswith("__"):
            return None, "sandbox_violation", f"line {line}: the name {node.arg!r} is not allowed in the sandbox"
    return tree, None, None


# --- the cell's world ----------------------------------------------------------------------------------
class BoundedOutput:
    """Keeps the first ``limit`` characters written and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.kept, self.dropped = limit, [], 0, 0

    def write(self, s: str) -> None:
        room = self.limit - self.kept
        if room > 0:
            part = s[:room]
            self.parts.append(part)
            self.kept += len(part)
            self.dropped += len(s) - len(part)
        else:
            self.dropped += len(s)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more characters not shown]"
        return out


def _sanitized(mod: types.ModuleType) -> types.SimpleNamespace:
    keep = {}
    for k in dir(mod):
        if k.startswith("_"):
            continue
        v = getattr(mod, k)
        if isinstance(v, types.ModuleType):
            continue
        keep[k] = v
    if mod is string:  # Formatter.get_field walks attributes by name: keep only the constants
        keep = {k: v for k, v in keep.items() if isinstance(v, str)}
    return types.SimpleNamespace(**keep)


MODULES = {m.__name__: m for m in (json, math, re, datetime, collections, itertools, functools, statistics,
                                   random, heapq, bisect, string)}


class Channel:
    """The protocol pipe: one JSON object per line."""

    def __init__(self, rfile, wfile):
        self.r, self.w = rfile, wfile

    def send(self, msg: dict) -> None:
        self.w.write(json.dumps(msg, default=repr).encode() + b"\n")
        self.w.flush()

    def recv(self) -> dict | None:
        line = self.r.readline()
        if not line:
            return None
        return json.loads(line)


class _App:
    def __init__(self, name: str, call):
        self._name, self._call = name, call

    def __getattr__(self, api: str):
        if api.startswith("_"):
            raise AttributeError(api)
        name, call = self._name, self._call

        def method(*args, **kwargs):
            return call(name, api, args, kwargs)

        method.__name__ = api
        return method

    def __repr__(self) -> str:
        return f"<app {self._name}: see apis.api_docs.show_api_descriptions(app_name={self._name!r})>"


class _Apis:
    def __init__(self, call):
        self._call = call

    def __getattr__(self, app: str) -> _App:
        if app.startswith("_"):
            raise AttributeError(app)
        return _App(app, self._call)

    def __repr__(self) -> str:
        return "<apis: call apis.<app>.<api>(...); start with apis.api_docs.show_app_descriptions()>"


class Worker:
    def __init__(self, channel: Channel, limits: dict):
        self.ch = channel
        self.cpu = float(limits.get("cpu_seconds", 2.0))
        self.out_limit = int(limits.get("output_limit", 8000))
        self.modules = {k: _sanitized(v) for k, v in MODULES.items()}
        self.violations: list[str] = []
        self.reset()

    def reset(self) -> None:
        self.ns = {"__builtins__": self._builtins(), "apis": _Apis(self._api_call), "__name__": "__cell__"}

    # --- builtins --------------------------------------------------------------------------------
    def _builtins(self) -> dict:
        import builtins as b

        out = {k: getattr(b, k) for k in SAFE_BUILTINS}
        modules, violations = self.modules, self.violations

        def _import(name, globals=None, locals=None, fromlist=(), level=0):
            if not level and name in modules:
                return modules[name]
            if not level and name in sys.modules:
                # only library code gets here (e.g. strftime -> time): check_code lets no import
                # statement name a module outside the allow-list, and no cell can reach __import__
                return sys.modules[name]
            violations.append(f"import of {name!r} is not allowed in the sandbox")
            raise SandboxViolation(f"import of {name!r} is not allowed in the sandbox")

        def safe_getattr(obj, name, *default):
            if not isinstance(name, str) or name.startswith("_") or name in BLOCKED_ATTRS:
                violations.append(f"getattr of {name!r} is not allowed in the sandbox")
                raise SandboxViolation(f"getattr of {name!r} is not allowed in the sandbox")
            return getattr(obj, name, *default)

        def safe_hasattr(obj, name):
            if not isinstance(name, str) or name.startswith("_") or name in BLOCKED_ATTRS:
                violations.append(f"hasattr of {name!r} is not allowed in the sandbox")
                raise SandboxViolation(f"hasattr of {name!r} is not allowed in the sandbox")
            return hasattr(obj, name)

        out["__import__"] = _import
        out["__build_class__"] = b.__build_class__
        out["getattr"] = safe_getattr
        out["hasattr"] = safe_hasattr
        out["print"] = self._print
        return out

    def _print(self, *args, sep=" ", end="\n", file=None, flush=False):
        self.out.write(str(sep if sep is not None else " ").join(str(a) for a in args) + str(end if end is not None else "\n"))

    def _api_call(self, app, api, args, kwargs):
        self.ch.send({"op": "call", "app": app, "api": api, "args": list(args), "kwargs": kwargs})
        msg = self.ch.recv()
        if msg is None:
            raise SystemExit(0)
        return msg["value"]

    # --- one cell --------------------------------------------------------------------------------
    def run(self, code: str) -> dict:
        import resource

        self.out = BoundedOutput(self.out_limit)
        self.violations.clear()
        tree, kind, message = check_code(code)
        if tree is None:
            return {"op": "done", "output": "", "error": {"type": kind, "message": message}}
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        error = None
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(math.ceil(used.ru_utime + used.ru_stime + self.cpu))
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        try:
            exec(compile(tree, "<cell>", "exec"), self.ns)
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), self.ns)
                if value is not None:
                    self.out.write(repr(value) + "\n")
        except CPUTimeExceeded:
            error = {"type": "timeout", "message": f"the cell used more than {self.cpu:g} s of CPU time and was stopped"}
        except SandboxViolation as e:
            error = {"type": "sandbox_violation", "message": str(e)}
        except MemoryError:
            error = {"type": "memory_limit", "message": "MemoryError: the cell exceeded the sandbox memory limit"}
        except RecursionError:
            error = {"type": "code_error", "message": "RecursionError: maximum recursion depth exceeded"}
        except OSError as e:
            error = {"type": "sandbox_violation", "message": f"{type(e).__name__}: operating system access is blocked in the sandbox"}
        except BaseException as e:  # the agent's own bug: show a short traceback into the cell only
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                error = {"type": "sandbox_violation", "message": f"{type(e).__name__} is not allowed in the sandbox"}
            else:
                error = {"type": "code_error", "message": self._traceback(e, code)}
        finally:
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        if error is None and self.violations:
            error = {"type": "sandbox_violation", "message": self.violations[0]}
        return {"op": "done", "output": self.out.text(), "error": error}

    @staticmethod
    def _traceback(e: BaseException, code: str) -> str:
        lines = code.splitlines()
        where = []
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<cell>":
                n = tb.tb_lineno
                src = lines[n - 1].strip() if 0 < n <= len(lines) else ""
                where.append(f"  line {n}: {src}")
            tb = tb.tb_next
        head = "Traceback (most recent call last):\n" + "\n".join(where[-3:]) + "\n" if where else ""
        return f"{head}{type(e).__name__}: {e}"[:2000]


def _lock_down(limits: dict) -> None:
    import os
    import resource
    import signal

    def on_xcpu(signum, frame):
        raise CPUTimeExceeded()

    signal.signal(signal.SIGXCPU, on_xcpu)
    datetime.datetime.strptime("2026-01-01", "%Y-%m-%d")  # import _strptime now: no files later
    re.compile(r"(\w+)@(\w+)")
    random.Random(0).random()
    os.chdir("/")
    for fd in range(3, 256):
        try:
            os.close(fd)
        except OSError:
            pass
    if os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError:
            pass
    mem = int(limits.get("memory_mb", 512)) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    if os.geteuid() != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    limits = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    ch = Channel(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdin = sys.stdout = None  # the cell prints through Worker._print only
    _lock_down(limits)
    w = Worker(ch, limits)
    ch.send({"op": "ready"})
    while True:
        msg = ch.recv()
        if msg is None or msg.get("op") == "exit":
            return
        if msg.get("op") == "reset":
            w.reset()
            ch.send({"op": "reset_done"})
        elif msg.get("op") == "exec":
            ch.send(w.run(str(msg.get("code", ""))))


if __name__ == "__main__":
    main()
