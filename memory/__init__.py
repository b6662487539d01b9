"""agentsd.memory: skill and guardrail memory (schema, summarizers, store, curation, retrieval).

Installed as ``agentsd.memory``; importing it under another name would load modules twice.
"""

if __name__ != "agentsd.memory":  # pragma: no cover - guarded layout invariant
    raise ImportError(f"import this package as 'agentsd.memory', not {__name__!r}")
