"""Sokoban: levels and XSB I/O, a reverse-play generator, a push-level A* solver, and the text env.

``agentsd.envs.make("sokoban", difficulty="hard")`` builds :class:`SokobanEnv`; the pieces are usable
alone: ``solve(load_levels(path)[0])``, ``generate_preset(np.random.default_rng(0), "medium")``.
"""

from agentsd.envs.sokoban.env import SokobanEnv
from agentsd.envs.sokoban.generator import PRESETS, generate, generate_preset
from agentsd.envs.sokoban.level import Level, LevelError, load_levels, parse_level, render_xsb
from agentsd.envs.sokoban.solver import solve
from agentsd.envs.sokoban.text import SokobanFailure

__all__ = [
    "PRESETS",
    "Level",
    "LevelError",
    "SokobanEnv",
    "SokobanFailure",
    "generate",
    "generate_preset",
    "load_levels",
    "parse_level",
    "render_xsb",
    "solve",
]
