"""The Sokoban text environment."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.sokoban.board import INF, MOVES, Board
from agentsd.envs.sokoban.generator import PRESETS, generate_preset
from agentsd.envs.sokoban.level import Level, LevelError, coerce_levels, render_xsb
from agentsd.envs.sokoban.predicates import FAILURE_PREDICATES, PREDICATES, RISKS, deadlocked
from agentsd.envs.sokoban.solver import solve
from agentsd.envs.sokoban.text import (
    CELL_SYMBOLS,
    GRID_FORMATS,
    SEVERITY,
    SokobanFailure,
    brief_rules,
    check_symbols,
    explain_invalid,
    format_answer,
    legend,
    parse_answer,
    rules,
)

F = SokobanFailure
_MOVE_INDEX = {m: k for k, m in enumerate(MOVES)}
#: A position seen this many times before, within the last ``loop_window`` moves, is a loop.
LOOP_REVISITS = 3


class SokobanEnv(TextEnv):
    """Push every box onto a target. Levels are generated from the seed, or given as XSB.

    ## Action
    The model's raw text. The last ``<answer>...</answer>`` block must hold one of ``Up``, ``Down``,
    ``Left``, ``Right`` (any case, spaces allowed), or up to ``max_actions_per_turn`` of them joined
    by ``||``. More moves than that, unknown words, or no block make the turn invalid.
    ``action_candidates()`` lists the four single moves as answers (the planner masks vetoed ones).

    ## Observation
    A legend line (``Legend: # wall, _ floor, O target, X box, √ box on target, P player,
    S player on target``; characters configurable via ``symbols``) followed by the grid rows.
    Cells outside the walls are drawn as walls.

    ## Reward
    Per move ``step_penalty`` (-0.1); ``box_reward`` (+1) for each box pushed onto a target and
    minus that (-1) for each pushed off one; ``solve_reward`` (+10) when the last box lands. An
    invalid turn gets ``format_penalty`` (-1.0) and changes nothing.

    ## Episode End
    Terminated when all boxes are on targets (remaining moves of that turn are dropped). Truncated
    when ``max_steps`` moves have been used (an invalid turn uses one; moves past the limit are
    dropped); defaults: easy 30, medium 80, hard 120, 300 for given levels. Deadlocks and loops are
    diagnosed, not ended.

    ## Info
    ``action_is_valid``, ``action_is_effective`` (the position changed), ``success``, ``actions``
    (the parsed moves, ``[]`` when invalid) and ``diagnosis``: ``failure_type`` (a
    :class:`SokobanFailure` value or None; the worst of the turn: deadlock_freeze >
    deadlock_corner > no_progress_loop > box_blocked > wall_bump; the turn that runs out of steps
    reports timeout unless it made a deadlock), ``detail``, ``state_diff``
    (``player``: [from, to] as [row, col]; ``boxes_moved``: [[from, to], ...]), ``progress``
    (half the share of boxes on targets plus half the drop of the push-distance bound; 1.0 when
    solved), ``stagnation`` (turns since progress last reached a new best) and ``extra``
    (``boxes_on_target``, ``num_boxes``, ``steps``, ``max_steps``, ``deadlocked``: a deadlock was
    produced this episode, so the level can no longer be solved).

    A deadlock is a push onto a square from which no target can be reached (``deadlock_corner``) or
    a push that freezes boxes off target (``deadlock_freeze``). ``no_progress_loop``: the position
    after a move was already seen 3 times within the last ``loop_window`` moves.

    ## Predicates
    ``check(name, action)`` says, without stepping, whether the answer text ``action`` would run a
    risk ("before" predicates; True for a multi-move answer if any of its moves would, in order):
    ``invalid_format`` (the text does not parse; every other "before" predicate is then False),
    ``move_into_wall``, ``push_blocked_box``, ``push_into_dead_square``, ``push_freezes_box`` (not a
    dead-square push) and ``revisits_recent_position``; each is True exactly when ``step`` would
    diagnose its failure (``failure_predicates``: wall_bump -> move_into_wall, box_blocked ->
    push_blocked_box, deadlock_corner -> push_into_dead_square, deadlock_freeze -> push_freezes_box,
    no_progress_loop -> revisits_recent_position; the turn reports only the worst). Moves that
    ``step`` would drop (after the solving move, past ``max_steps``) are not checked.
    ``check(name)`` verifies the current position ("after" predicates): ``solved``,
    ``boxes_on_target_at_least`` (``n``) and ``no_deadlock`` (no box on a dead square or frozen off
    target).

    ## Arguments
    ``difficulty`` (easy 6x6 / 1 box, medium 8x8 / 2, hard 10x10 / 3) with ``size``, ``boxes``,
    ``search_depth`` overriding its preset; ``level`` (one XSB text, file or :class:`Level`: every
    reset plays it) or ``levels`` (a list, or a file / text of several: ``reset(seed)`` plays
    ``levels[seed % len(levels)]``); ``max_steps``; ``max_actions_per_turn`` (1); ``symbols``
    (overrides of :data:`DEFAULT_SYMBOLS` keys); ``render_mode`` ("ansi" or None); the rewards above;
    ``loop_window`` (20); ``oracle_time_limit`` (10 s per solver call); ``brief`` (False: the full
    rules in ``instructions()``; True: a ~70-token version for small models on CPU);
    ``check_solvable`` (True: a given level in which some box can never reach a target raises
    ``LevelError``; False allows such levels, e.g. to study deadlocks); ``grid_format`` ("compact":
    ``#_PX_#``; "cells": ``# _ P X _ #``, one space between cells so that each cell is one token of a
    small BPE vocabulary such as SmolLM2's, which splits ``#__O_#`` into ``#``, ``__``, ``O``, ``_``, ``#``;
    its box-on-target default is ``*`` since ``√`` is two byte-tokens); ``positions`` (False; True adds
    one line per object: "You are at row 2 column 3.", "Box at row 3 column 3.", "Empty target at ...");
    ``end_on_deadlock`` (False; True ends the episode, truncated, at the turn that makes a deadlock: the
    level can no longer be solved, so success is unchanged and the rest of the episode's compute is saved).
    """

    # render_fps only silences gymnasium's checker; text frames have no clock (as in toy_text).
    metadata = {**TextEnv.metadata, "render_fps": 4}
    name = "sokoban"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = SokobanFailure
    failure_predicates = FAILURE_PREDICATES
    MAX_STEPS = {"easy": 30, "medium": 80, "hard": 120}
    MAX_STEPS_GIVEN = 300

    def __init__(
        self,
        difficulty: str = "easy",
        size: int | tuple[int, int] | None = None,
        boxes: int | None = None,
        search_depth: int | None = None,
        level: str | Level | None = None,
        levels: list[str | Level] | str | os.PathLike | None = None,
        max_steps: int | None = None,
        max_actions_per_turn: int = 1,
        symbols: dict[str, str] | None = None,
        render_mode: str | None = None,
        format_penalty: float = -1.0,
        step_penalty: float = -0.1,
        box_reward: float = 1.0,
        solve_reward: float = 10.0,
        loop_window: int = 20,
        oracle_time_limit: float = 10.0,
        brief: bool = False,
        check_solvable: bool = True,
        grid_format: str = "compact",
        positions: bool = False,
        end_on_deadlock: bool = False,
    ):
        super().__init__(render_mode=render_mode)
        if difficulty not in PRESETS:
            raise ValueError(f"difficulty must be one of {sorted(PRESETS)}, got {difficulty!r}")
        if level is not None and levels is not None:
            raise ValueError("give either level or levels, not both")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if max_actions_per_turn < 1:
            raise ValueError(f"max_actions_per_turn must be >= 1, got {max_actions_per_turn}")
        if grid_format not in GRID_FORMATS:
            raise ValueError(f"grid_format must be one of {', '.join(GRID_FORMATS)}, got {grid_format!r}")
        self.grid_format, self.positions, self.end_on_deadlock = grid_format, positions, end_on_deadlock
        self.difficulty = difficulty
        self._gen = {"size": size, "boxes": boxes, "search_depth": search_depth}
        self._fixed = coerce_levels(level, levels)
        for k, lv in enumerate((self._fixed or []) if check_solvable else []):
            # Cheap static check (push distances per goal): catches boxes that can never reach a target.
            # Levels unsolvable only through deeper reasons still load; the oracle then returns None.
            if Board(lv).lower_bound(tuple(sorted(lv.boxes))) >= INF:
                raise LevelError(f"level {k} is unsolvable: some box can never be pushed onto a target")
        given = self._fixed is not None
        default = self.MAX_STEPS_GIVEN if given else self.MAX_STEPS[difficulty]
        self.max_steps = max_steps if max_steps is not None else default
        self.max_actions_per_turn = max_actions_per_turn
        if grid_format == "cells":  # one token per cell: √ is two byte-tokens in small BPE vocabularies
            symbols = {**CELL_SYMBOLS, **(symbols or {})}
        self.symbols = check_symbols(symbols)
        if grid_format == "cells" and " " in self.symbols.values():
            raise ValueError("grid_format 'cells' separates cells by spaces, so no symbol may be a space")
        self.format_penalty, self.step_penalty = format_penalty, step_penalty
        self.box_reward, self.solve_reward = box_reward, solve_reward
        self.loop_window = loop_window
        self.oracle_time_limit = oracle_time_limit
        self.brief = brief
        self._legend = legend(self.symbols)
        self._layout: tuple | None = None
        self.level: Level | None = None

    # --- text for the agent -------------------------------------------------------------------
    def instructions(self) -> str:
        if self.brief:
            return brief_rules(self.symbols, self.max_actions_per_turn)
        return rules(
            self.symbols, self.max_actions_per_turn, self.step_penalty, self.box_reward, self.solve_reward
        )

    def task_description(self) -> str:
        n = (
            self.level.num_boxes
            if self.level is not None
            else (self._gen["boxes"] or PRESETS[self.difficulty].boxes)
        )
        s = "es" if n > 1 else ""
        return f"Push the {n} box{s} onto the {n} target{'s' if n > 1 else ''}."

    def parse_action(self, text: str) -> list[str] | None:
        return parse_answer(text, self.max_actions_per_turn)

    # --- episode ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if self._fixed is not None:
            n = len(self._fixed)
            k = seed % n if seed is not None else int(self.np_random.integers(n))
            lv = self._fixed[k]
        else:
            lv = generate_preset(self.np_random, self.difficulty, **self._gen)
        self._start(lv)
        diag = self._diagnosis(None, "new level", {}, False)
        return self._obs(), self.make_info(
            valid=True, effective=False, success=False, diagnosis=diag, actions=[]
        )

    def _start(self, lv: Level) -> None:
        self.level = lv
        layout = (lv.h, lv.w, lv.walls, lv.goals)
        if layout != self._layout:  # same layout as the last episode: keep the precomputed tables
            self._layout = layout
            self.board = b = Board(lv)
            sym, w = self.symbols, lv.w
            # The text grid is one list with a newline after each row, so a render is one join;
            # _at maps a cell to its slot in that list.
            self._at = [i + i // w for i in range(lv.h * w)]
            self._base = []
            for i in range(lv.h * w):
                if i and i % w == 0:
                    self._base.append("\n")
                self._base.append(sym["wall"] if b.wall[i] else sym["target"] if b.goal[i] else sym["floor"])
        self._player = lv.player
        self._boxes = set(lv.boxes)
        self._mask = sum(1 << x for x in lv.boxes)
        self._n = len(lv.boxes)
        self._on = sum(1 for x in lv.boxes if x in lv.goals)
        self._steps = 0
        self._solved = self._on == self._n
        self._deadlocked = False
        self._h0 = self.board.lower_bound(tuple(sorted(lv.boxes)))
        self._progress = self._measure()
        self._best = self._progress
        self._stagnation = 0
        self._recent: deque = deque([(self._player, self._mask)])
        self._counts = {(self._player, self._mask): 1}
        self._plan: list[str] = []
        self._plan_at: dict[tuple[int, int], int] = {}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.level is None:
            raise RuntimeError("call reset() before step()")
        moves = self.parse_action(action)
        if moves is None:
            self._steps += 1
            fail, reward, effective = F.INVALID_FORMAT, self.format_penalty, False
            notes = [explain_invalid(action, self.max_actions_per_turn)]
            diff: dict[str, Any] = {}
        else:
            fail, reward, notes, diff = self._play(moves)
            effective = bool(diff)
        truncated = self._steps >= self.max_steps and not self._solved
        if self.end_on_deadlock and self._deadlocked and not truncated:
            # the level can no longer be solved: the rest of the episode would only spend compute
            notes.append("the level can no longer be solved: episode ended (end_on_deadlock)")
            truncated = True
        if truncated and SEVERITY.get(fail, 0) < SEVERITY[F.DEADLOCK_CORNER]:
            # running out of steps ends the episode; a deadlock made in this same turn is the deeper cause
            notes.append(f"ran out of steps ({self.max_steps})")
            fail = F.TIMEOUT
        if self._progress > self._best + 1e-12:
            self._best, self._stagnation = self._progress, 0
        else:
            self._stagnation += 1
        diag = self._diagnosis(fail, "; ".join(notes), diff, effective)
        info = self.make_info(
            valid=moves is not None,
            effective=effective,
            success=self._solved,
            diagnosis=diag,
            actions=moves or [],
        )
        return self._obs(), reward, self._solved, truncated, info

    def _play(self, moves: list[str]) -> tuple[SokobanFailure | None, float, list[str], dict]:
        """Apply moves in order; returns (worst failure, reward, notes, state diff)."""
        b, boxes = self.board, self._boxes
        wall, goal, dead, steps = b.wall, b.goal, b.dead, b.steps
        p0, p = self._player, self._player
        fail, worst, reward, notes, moved, looped = None, 0, 0.0, [], [], False
        for m in moves:
            if self._solved or self._steps >= self.max_steps:
                break
            self._steps += 1
            reward += self.step_penalty
            s = steps[_MOVE_INDEX[m]]
            t = p + s
            f = None
            if wall[t]:
                f = F.WALL_BUMP
                notes.append(f"{m}: walked into a wall at {list(divmod(t, b.w))}, nothing moved")
            elif t in boxes:
                u = t + s
                if wall[u] or u in boxes:
                    f = F.BOX_BLOCKED
                    what = "wall" if wall[u] else "box"
                    notes.append(
                        f"{m}: the box at {list(divmod(t, b.w))} is blocked by a {what}, nothing moved"
                    )
                else:
                    boxes.remove(t)
                    boxes.add(u)
                    self._mask ^= (1 << t) | (1 << u)
                    moved.append([list(divmod(t, b.w)), list(divmod(u, b.w))])
                    p = t
                    self._on += goal[u] - goal[t]
                    reward += self.box_reward * (goal[u] - goal[t])
                    notes.append(
                        f"{m}: pushed a box to {list(divmod(u, b.w))}" + (" (on target)" if goal[u] else "")
                    )
                    if self._on == self._n:
                        self._solved = True
                        reward += self.solve_reward
                        notes.append("all boxes are on targets")
                    elif dead[u]:
                        f = F.DEADLOCK_CORNER
                        self._deadlocked = True
                        notes.append("that box can never reach a target from there (deadlock)")
                    elif b.freeze_deadlock(boxes, u):
                        f = F.DEADLOCK_FREEZE
                        self._deadlocked = True
                        notes.append("that box is frozen off target and can never move again (deadlock)")
            else:
                p = t
            if self._visit(p):
                if not looped:
                    notes.append("this position keeps coming back: you are going in circles")
                    looped = True
                if SEVERITY[F.NO_PROGRESS_LOOP] > SEVERITY[f]:
                    f = F.NO_PROGRESS_LOOP
            if SEVERITY[f] > worst:
                fail, worst = f, SEVERITY[f]
        self._player = p
        if moved:
            self._progress = self._measure()
        if not notes:
            notes.append("moved " + ", ".join(moves))
        diff: dict[str, Any] = {}
        if p != p0:
            diff["player"] = [list(divmod(p0, b.w)), list(divmod(p, b.w))]
        if moved:
            diff["boxes_moved"] = moved
        return fail, reward, notes, diff

    def _visit(self, p: int) -> bool:
        """Record the position after a move; True (a loop) if it was seen LOOP_REVISITS times recently."""
        key = (p, self._mask)
        self._recent.append(key)
        c = self._counts[key] = self._counts.get(key, 0) + 1
        if len(self._recent) > self.loop_window:
            old = self._recent.popleft()
            self._counts[old] -= 1
        return c > LOOP_REVISITS

    def _risks(self, moves: list[str]) -> set[SokobanFailure]:
        """Every per-move failure ``step`` would diagnose for ``moves`` from here (all of them, not
        only the worst). Mirrors :meth:`_play` and :meth:`_visit` on copies; changes nothing."""
        b = self.board
        wall, goal, dead, steps = b.wall, b.goal, b.dead, b.steps
        p, boxes, mask, on = self._player, set(self._boxes), self._mask, self._on
        recent, counts = deque(self._recent), dict(self._counts)
        solved, left, out = self._solved, self.max_steps - self._steps, set()
        for m in moves:
            if solved or left <= 0:
                break
            left -= 1
            s = steps[_MOVE_INDEX[m]]
            t = p + s
            if wall[t]:
                out.add(F.WALL_BUMP)
            elif t in boxes:
                u = t + s
                if wall[u] or u in boxes:
                    out.add(F.BOX_BLOCKED)
                else:
                    boxes.remove(t)
                    boxes.add(u)
                    mask ^= (1 << t) | (1 << u)
                    p = t
                    on += goal[u] - goal[t]
                    if on == self._n:
                        solved = True
                    elif dead[u]:
                        out.add(F.DEADLOCK_CORNER)
                    elif b.freeze_deadlock(boxes, u):
                        out.add(F.DEADLOCK_FREEZE)
            else:
                p = t
            key = (p, mask)
            recent.append(key)
            c = counts[key] = counts.get(key, 0) + 1
            if len(recent) > self.loop_window:
                counts[recent.popleft()] -= 1
            if c > LOOP_REVISITS:
                out.add(F.NO_PROGRESS_LOOP)
        return out

    def _measure(self) -> float:
        if self._solved:
            return 1.0
        on = self._on / self._n
        lb = self.board.lower_bound(tuple(sorted(self._boxes)))
        near = 0.0 if lb >= INF or self._h0 <= 0 else max(0.0, 1.0 - lb / self._h0)
        return 0.5 * on + 0.5 * near

    def _diagnosis(
        self, fail: SokobanFailure | None, detail: str, diff: dict, effective: bool
    ) -> Diagnosis:
        extra = {
            "boxes_on_target": self._on,
            "num_boxes": self._n,
            "steps": self._steps,
            "max_steps": self.max_steps,
            "deadlocked": self._deadlocked,
        }
        return Diagnosis(
            failure_type=fail.value if fail is not None else None,
            detail=detail,
            state_diff=diff,
            progress=self._progress,
            stagnation=self._stagnation,
            extra=extra,
        )

    # --- predicates (see the class docstring) --------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.level is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _risk(self, name: str, action: str) -> bool:
        moves = self.parse_action(action)
        return self._ready() and moves is not None and RISKS[name] in self._risks(moves)

    def _pred_invalid_format(self, action: str) -> bool:
        return self._ready() and self.parse_action(action) is None

    def _pred_solved(self, action: None) -> bool:
        return self._ready() and self._solved

    def _pred_boxes_on_target_at_least(self, action: None, n: int) -> bool:
        return self._ready() and self._on >= int(n)

    def _pred_no_deadlock(self, action: None) -> bool:
        return self._ready() and not deadlocked(self.board, self._boxes)

    # --- views --------------------------------------------------------------------------------
    def _grid(self) -> str:
        g, at = self._base[:], self._at
        sym, goal = self.symbols, self.board.goal
        for x in self._boxes:
            g[at[x]] = sym["box_on_target"] if goal[x] else sym["box"]
        p = self._player
        g[at[p]] = sym["player_on_target"] if goal[p] else sym["player"]
        text = "".join(g)
        if self.grid_format == "cells":
            text = "\n".join(" ".join(row) for row in text.split("\n"))
        return text

    def _positions(self) -> str:
        """Where things are, as text (rows and columns count from 1 at the top left)."""
        w, goal = self.level.w, self.board.goal

        def at(i: int) -> str:
            return f"row {i // w + 1} column {i % w + 1}"

        boxes = sorted(self._boxes)
        free = [i for i in range(self.level.h * w) if goal[i] and i not in self._boxes]
        lines = [f"You are at {at(self._player)}."]
        lines += [f"Box at {at(x)}{' (on a target)' if goal[x] else ''}." for x in boxes]
        lines += [f"Empty target at {at(x)}." for x in free]
        return "\n".join(lines)

    def _obs(self) -> str:
        obs = self._legend + "\n" + self._grid()
        return obs + "\n" + self._positions() if self.positions else obs

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._grid()
        return None

    @property
    def state(self) -> Level:
        """The current position as a :class:`Level` (same layout, current boxes and player)."""
        if self.level is None:
            raise RuntimeError("call reset() first")
        return self.level.with_state(self._boxes, self._player)

    def render_xsb(self) -> str:
        return render_xsb(self.state)

    # --- oracle -------------------------------------------------------------------------------
    def action_candidates(self) -> list[str]:
        """The four single moves, as the model should answer them."""
        return [format_answer([m]) for m in MOVES]

    def oracle_action(self) -> str | None:
        """The next turn of a push-optimal plan from the current position, in the model's format;
        None when solved, unsolvable, or the solver ran out of ``oracle_time_limit``."""
        if self.level is None or self._solved:
            return None
        i = self._plan_at.get((self._player, self._mask))
        if i is None:  # no plan yet, or the agent left it: plan again from here
            plan = solve(self.state, time_limit=self.oracle_time_limit, board=self.board)
            if plan is None:
                return None
            self._plan, self._plan_at, i = plan, self._index_plan(plan), 0
        return format_answer(self._plan[i : i + self.max_actions_per_turn])

    def _index_plan(self, plan: list[str]) -> dict[tuple[int, int], int]:
        """Position before each move of ``plan`` -> its index, to follow the plan across steps."""
        steps, boxes = self.board.steps, set(self._boxes)
        p, mask, at = self._player, self._mask, {}
        for j, m in enumerate(plan):
            at.setdefault((p, mask), j)
            s = steps[_MOVE_INDEX[m]]
            t = p + s
            if t in boxes:
                boxes.remove(t)
                boxes.add(t + s)
                mask ^= (1 << t) | (1 << (t + s))
            p = t
        return at
