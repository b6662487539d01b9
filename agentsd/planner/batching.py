"""Batch the policy calls of concurrently running episodes into one ``generate`` call.

Each planner episode is its own LangGraph invocation on its own thread; every ``act``/``plan`` node
asks for one completion. Generating one at a time wastes most of the hardware (measured on the
embedded model on 2 CPU cores: ~39 tokens/s at batch 1 against ~355 at batch 32). ``BatchingPolicy``
collects the requests: when every running episode is waiting for the model (or the oldest request has
waited ``max_wait`` seconds, e.g. because another episode is busy in its env or memory), one waiting
thread becomes the leader, runs the whole batch (grouped by sampling settings) and hands each thread
its own completion. Only one batch runs at a time.

    bp = BatchingPolicy(policy)
    with bp.session():               # one per episode thread
        gen = bp.generate_one(messages, sampling)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agentsd.policy.base import Conversation, Generation, Policy, Sampling


@dataclass
class _Request:
    messages: Conversation
    sampling: Sampling
    t0: float = field(default_factory=time.monotonic)
    result: Generation | None = None
    error: BaseException | None = None


class BatchingPolicy:
    """Wraps a :class:`Policy`; thread-safe; see the module docstring."""

    def __init__(self, policy: Policy, max_wait: float = 0.05):
        self.policy = policy
        self.max_wait = max_wait
        self.name = getattr(policy, "name", type(policy).__name__)
        self._cv = threading.Condition()
        self._pending: list[_Request] = []
        self._active = 0
        self._busy = False
        #: sizes of the batches sent to the policy (for stats and tests)
        self.batch_sizes: list[int] = []
        self.seconds = 0.0
        self.tokens = 0

    @contextmanager
    def session(self) -> Iterator[None]:
        """Count the calling episode as running while inside (the batch waits for running episodes)."""
        with self._cv:
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def generate(self, batch: list[Conversation], sampling: Sampling | None = None) -> list[Generation]:
        """Plain Policy interface (no batching across threads), e.g. for a summarizer."""
        with self._cv:
            while self._busy:
                self._cv.wait()
            self._busy = True
        try:
            return self.policy.generate(batch, sampling)
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def generate_one(self, messages: Conversation, sampling: Sampling) -> Generation:
        req = _Request(messages, sampling)
        with self._cv:
            self._pending.append(req)
            self._cv.notify_all()
            while req.result is None and req.error is None:
                if not self._busy and self._pending and self._ready():
                    batch, self._pending = self._pending, []
                    self._busy = True
                    self._cv.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cv.acquire()
                        self._busy = False
                        self._cv.notify_all()
                    continue
                wait = None
                if self._pending and not self._busy:
                    wait = max(0.0, self._pending[0].t0 + self.max_wait - time.monotonic()) + 1e-3
                self._cv.wait(timeout=wait)
        if req.error is not None:
            raise req.error
        return req.result

    def _ready(self) -> bool:
        return len(self._pending) >= self._active or time.monotonic() - self._pending[0].t0 >= self.max_wait

    def _run(self, batch: list[_Request]) -> None:
        groups: dict[str, list[_Request]] = {}
        for r in batch:
            groups.setdefault(r.sampling.model_dump_json(), []).append(r)
        for reqs in groups.values():
            t0 = time.perf_counter()
            try:
                gens = self.policy.generate([r.messages for r in reqs], reqs[0].sampling)
            except BaseException as e:  # noqa: BLE001 - handed to every waiting thread, re-raised there
                for r in reqs:
                    r.error = e
                continue
            self.seconds += time.perf_counter() - t0
            self.batch_sizes.append(len(reqs))
            for r, g in zip(reqs, gens, strict=True):
                r.result = g
                self.tokens += len(g.token_ids)

    def stats(self) -> dict[str, Any]:
        n = len(self.batch_sizes)
        return {"calls": n, "mean_batch": round(sum(self.batch_sizes) / n, 2) if n else 0.0,
                "seconds": round(self.seconds, 3), "tokens": self.tokens}
