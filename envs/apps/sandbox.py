"""The parent side of the sandbox: a warm worker process that runs code cells (see ``worker.py``).

``Sandbox.run(code, handler)`` sends one cell, serves the worker's ``apis`` calls with ``handler(app,
api, args, kwargs) -> response`` while it runs, and returns a :class:`CellResult`. A cell that runs past
``wall_seconds`` (including a CPU-bound loop the CPU limit could not interrupt, or a worker that
died) gets its worker killed; the next cell starts a fresh one (variables are lost then). The worker
starts lazily and is killed on ``close()`` or when the Sandbox is garbage collected.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).with_name("worker.py"))
#: the largest message the worker may send (an API call's arguments, a cell's output): 1 MiB
MAX_MESSAGE = 1 << 20


@dataclass
class CellResult:
    output: str
    error_type: str | None = None  # syntax_error, sandbox_violation, timeout, memory_limit, code_error, crash
    error: str = ""
    calls: int = 0
    seconds: float = 0.0
    restarted: bool = False


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):  # pragma: no cover - already gone
            pass


class Sandbox:
    def __init__(self, cpu_seconds: float = 2.0, wall_seconds: float = 5.0, memory_mb: int = 512,
                 output_limit: int = 8000, start_timeout: float = 20.0):
        self.limits = {"cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "output_limit": output_limit}
        self.wall_seconds, self.start_timeout = wall_seconds, start_timeout
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self.restarts = 0
        self.oversized = False
        self._finalizer: weakref.finalize | None = None

    # --- process ---------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive else None

    def start(self) -> None:
        if self.alive:
            return
        self.close()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", WORKER, json.dumps(self.limits)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True, cwd="/",
        )
        self._buf = b""
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        msg = self._recv(time.monotonic() + self.start_timeout)
        if msg is None or msg.get("op") != "ready":
            self.close()
            raise RuntimeError("the sandbox worker did not start")

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self.proc = None
        self._buf = b""

    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self.start()

    def reset(self) -> None:
        """Clear the cell namespace (a fresh notebook); starts the worker if needed."""
        if not self.alive:
            self.start()
            return
        if not self._send({"op": "reset"}) or (self._recv(time.monotonic() + self.start_timeout) or {}).get("op") != "reset_done":
            self.restart()

    # --- protocol --------------------------------------------------------------------------------
    def _send(self, msg: dict) -> bool:
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _recv(self, deadline: float) -> dict | None:
        """The next message, or None when the deadline passes or the worker is gone."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if not sel.select(left):
                    return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
            if len(self._buf) > MAX_MESSAGE and b"\n" not in self._buf:
                self.oversized = True
                return None
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None

    # --- one cell --------------------------------------------------------------------------------
    def run(self, code: str, handler: Callable[[Any, Any, Any, Any], Any]) -> CellResult:
        t0 = time.monotonic()
        restarted = False
        if not self.alive:
            self.start()
            restarted = self.restarts > 0
        deadline = t0 + self.wall_seconds
        calls = 0
        if not self._send({"op": "exec", "code": code}):
            self.restart()
            return CellResult("", "crash", "the sandbox worker had died; it was restarted and your variables were cleared",
                              0, time.monotonic() - t0, True)
        self.oversized = False
        while True:
            msg = self._recv(deadline)
            if msg is None:
                timed_out = time.monotonic() >= deadline
                oversized = self.oversized
                self.restart()
                if oversized:
                    why = (f"the cell sent a message over {MAX_MESSAGE} bytes (e.g. a huge API argument); the sandbox "
                           "was restarted and your variables were cleared")
                    return CellResult("", "sandbox_violation", why, calls, time.monotonic() - t0, True)
                if timed_out:
                    why = (f"the cell ran longer than {self.wall_seconds:g} s and was killed; the sandbox was "
                           "restarted and your variables were cleared")
                    return CellResult("", "timeout", why, calls, time.monotonic() - t0, True)
                return CellResult("", "crash", "the sandbox worker crashed (e.g. out of memory); it was restarted and "
                                               "your variables were cleared", calls, time.monotonic() - t0, True)
            op = msg.get("op")
            if op == "call":
                calls += 1
                value = handler(msg.get("app"), msg.get("api"), msg.get("args"), msg.get("kwargs"))
                if not self._send({"op": "result", "value": value}):
                    continue  # the next _recv sees the dead worker
            elif op == "done":
                err = msg.get("error") or {}
                return CellResult(str(msg.get("output", "")), err.get("type"), str(err.get("message", "")),
                                  calls, time.monotonic() - t0, restarted)

    def __del__(self) -> None:  # pragma: no cover - the finalizer does the work
        try:
            self.close()
        except Exception:
            pass
