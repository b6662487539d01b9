"""Craft: a Minecraft-style crafting and mining world.

A seeded grid with biomes (forest, plains, mountains with coal, iron and diamond inside, lakes), a
tech tree shipped as data (``techtree.json``: items, tools with tiers, shaped/shapeless recipes,
smelting, fuels, tasks and step budgets by tier), tool tiers for mining, crafting tables and
furnaces as placed stations, and an oracle planner. ``agentsd.envs.make("craft", tier="iron")``
builds :class:`CraftEnv`; the pieces work alone: ``load_techtree(path)``, ``DEFAULT.prerequisites(
"iron_pickaxe")``, ``generate(np.random.default_rng(0))``, and ``load_recipes(dir)`` (vanilla Minecraft
recipe JSON merged over the tree).
"""

from agentsd.envs.craft.env import FAILURE_PREDICATES, PREDICATES, CraftEnv
from agentsd.envs.craft.planner import next_command
from agentsd.envs.craft.recipes import DEFAULT_ALIASES, RecipeFormatError, RecipeSet, load_recipes
from agentsd.envs.craft.techtree import (
    DEFAULT,
    TIERS,
    Block,
    Recipe,
    TechTree,
    load_techtree,
    techtree_from_dict,
)
from agentsd.envs.craft.text import CraftFailure, format_command, parse_answer
from agentsd.envs.craft.world import World, generate

__all__ = [
    "DEFAULT",
    "DEFAULT_ALIASES",
    "FAILURE_PREDICATES",
    "PREDICATES",
    "TIERS",
    "Block",
    "CraftEnv",
    "CraftFailure",
    "Recipe",
    "RecipeFormatError",
    "RecipeSet",
    "TechTree",
    "World",
    "format_command",
    "generate",
    "load_recipes",
    "load_techtree",
    "next_command",
    "parse_answer",
    "techtree_from_dict",
]
