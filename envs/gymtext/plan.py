"""Planning on a known transition table (gymnasium toy-text ``env.unwrapped.P``).

``P[s][a]`` is a list of ``(prob, next_state, reward, terminated)``. :func:`tables` packs it into
dense arrays once; :func:`q_values` runs finite-horizon value iteration over them (exact for the
step budget left, deterministic or not); :func:`distances` counts the fewest steps from each state
to a success along transitions that can happen (progress measure).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Added to every reward inside the planner only: among equally good plans, prefer the shorter one
#: (1e-6 x a 200-step horizon moves no success probability by more than 2e-4).
STEP_COST = 1e-6


@dataclass(frozen=True)
class Tables:
    """``P`` as arrays padded to K outcomes: next state, probability, reward, terminated; (S, A, K)."""

    nxt: np.ndarray  # (S, A, K) int
    prob: np.ndarray  # (S, A, K) float, 0 on padding
    reward: np.ndarray  # (S, A, K) float
    done: np.ndarray  # (S, A, K) bool

    @property
    def n_states(self) -> int:
        return self.nxt.shape[0]


def tables(P: dict) -> Tables:
    S = len(P)
    A = len(P[0])
    K = max(len(P[s][a]) for s in range(S) for a in range(A))
    nxt = np.zeros((S, A, K), dtype=np.int64)
    prob = np.zeros((S, A, K))
    reward = np.zeros((S, A, K))
    done = np.zeros((S, A, K), dtype=bool)
    for s in range(S):
        for a in range(A):
            for k, (p, s2, r, d) in enumerate(P[s][a]):
                nxt[s, a, k], prob[s, a, k], reward[s, a, k], done[s, a, k] = s2, p, r, d
    return Tables(nxt, prob, reward, done)


def q_values(t: Tables, horizon: int) -> np.ndarray:
    """Q[h, s, a]: the best expected return with ``h`` steps left, taking ``a`` first; (H+1, S, A).

    Row 0 is all zeros (no step left). Terminal outcomes stop the sum."""
    S, A, _ = t.nxt.shape
    q = np.zeros((horizon + 1, S, A))
    v = np.zeros(S)
    r = t.reward - STEP_COST
    for h in range(1, horizon + 1):
        cont = np.where(t.done, 0.0, v[t.nxt])  # (S, A, K)
        q[h] = (t.prob * (r + cont)).sum(axis=2)
        v = q[h].max(axis=1)
    return q


def distances(t: Tables, success: Callable[[int, int, int, float, bool], bool]) -> np.ndarray:
    """Fewest steps from each state to a successful transition along outcomes with p > 0 (BFS on the
    reversed graph); ``inf`` where no success is reachable. ``success(s, a, s2, r, done)``."""
    S, A, K = t.nxt.shape
    dist = np.full(S, np.inf)
    back: list[set[int]] = [set() for _ in range(S)]
    frontier: deque[int] = deque()
    for s in range(S):
        for a in range(A):
            for k in range(K):
                if t.prob[s, a, k] <= 0:
                    continue
                s2, r, d = int(t.nxt[s, a, k]), float(t.reward[s, a, k]), bool(t.done[s, a, k])
                if success(s, a, s2, r, d):
                    if dist[s] > 1:
                        dist[s] = 1
                        frontier.append(s)
                elif not d and s2 != s:
                    back[s2].add(s)
    while frontier:
        u = frontier.popleft()
        for s in back[u]:
            if dist[s] > dist[u] + 1:
                dist[s] = dist[u] + 1
                frontier.append(s)
    return dist
