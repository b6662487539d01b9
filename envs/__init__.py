"""agentsd.envs: the TextEnv contract, the registry, and one sub-package per environment.

This directory is installed as ``agentsd.envs`` (see pyproject.toml); importing it under any other
name would load the same modules twice, so it refuses.
"""

if __name__ != "agentsd.envs":  # pragma: no cover - guarded layout invariant
    raise ImportError(f"import this package as 'agentsd.envs', not {__name__!r}")

from agentsd.envs.base import Diagnosis, Predicate, TextEnv  # noqa: E402
from agentsd.envs.registry import EnvSpec, list_envs, make, register, spec  # noqa: E402

__all__ = ["Diagnosis", "EnvSpec", "Predicate", "TextEnv", "list_envs", "make", "register", "spec"]
