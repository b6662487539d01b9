"""agentsd: self-evolving LLM agents.

Heavy libraries (torch, transformers) load only when a policy or learner is built, so
``agentsd --help`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
