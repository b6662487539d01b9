"""Learners that change a policy's weights.

- :mod:`agentsd.learn.sft`: supervised warm-start on demonstrations (full or LoRA).

Import from the modules (``from agentsd.learn.sft import sft``); this package imports nothing, so
importing it costs nothing and the function ``sft`` never shadows the module ``agentsd.learn.sft``.
"""
