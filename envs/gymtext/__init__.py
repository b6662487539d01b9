"""Gymnasium envs as text: the generic adapter and the toy-text envs with their own tables.

``agentsd.envs.make("gym:FrozenLake-v1", is_slippery=False)`` wraps any Gymnasium env with a discrete
action space and an ``ansi`` renderer (:class:`GymTextEnv`); FrozenLake, CliffWalking and Taxi get
action names, a drawn grid, their failure enums and disjoint train/test tasks (``toytext``). The
oracle plans on the env's transition table (``plan``).
"""

from agentsd.envs.gymtext.env import GymFailure, GymTextEnv
from agentsd.envs.gymtext.plan import distances, q_values, tables
from agentsd.envs.gymtext.toytext import (
    CliffFailure,
    CliffWalkingEnv,
    FrozenLakeEnv,
    FrozenLakeFailure,
    TaxiEnv,
    TaxiFailure,
    is_test_map,
    random_lake,
)

__all__ = [
    "CliffFailure",
    "CliffWalkingEnv",
    "FrozenLakeEnv",
    "FrozenLakeFailure",
    "GymFailure",
    "GymTextEnv",
    "TaxiEnv",
    "TaxiFailure",
    "distances",
    "is_test_map",
    "q_values",
    "random_lake",
    "tables",
]
