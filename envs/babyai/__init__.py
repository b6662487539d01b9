"""BabyAI (MiniGrid) instruction following behind the TextEnv contract: :class:`BabyAIEnv`.

Needs the PyPI ``minigrid`` package (``pip install -e '.[benchmarks]'``); ``agentsd.envs.make("babyai")``
builds BALROG's level, BabyAI-MixedTrainLocal-v0 (rebuilt in :mod:`agentsd.envs.babyai.levels`).
"""

from agentsd.envs.babyai.env import FAILURE_PREDICATES, PREDICATES, BabyAIEnv, BabyAIFailure
from agentsd.envs.babyai.text import ACTIONS, describe_view

__all__ = ["ACTIONS", "FAILURE_PREDICATES", "PREDICATES", "BabyAIEnv", "BabyAIFailure", "describe_view"]
