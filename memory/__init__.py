"""agentsd.memory: skill and guardrail memory (schema, summarizers, store, curation, retrieval).

    from agentsd.memory import SkillMemory, DiagnosticSummarizer
    mem = SkillMemory("runs/demo/memory")
    mem.ingest(train_trajectories, DiagnosticSummarizer())
    hits = mem.retrieve("push the box onto the target", k=4, env="sokoban", budget_tokens=200)
    block = mem.render(hits)          # fenced text for a prompt

Installed as ``agentsd.memory``; importing it under another name would load modules twice.
"""

if __name__ != "agentsd.memory":  # pragma: no cover - guarded layout invariant
    raise ImportError(f"import this package as 'agentsd.memory', not {__name__!r}")

from agentsd.memory.diagnostic import DiagnosticSummarizer
from agentsd.memory.embeddings import Embedder
from agentsd.memory.memory import AddReport, Retrieved, SkillMemory
from agentsd.memory.safety import clean, render_block
from agentsd.memory.schema import Guardrail, PredicateRef, Skill, parse_entry, verify
from agentsd.memory.store import MemoryStoreError
from agentsd.memory.summarize import Summarizer, SummaryResult, summarize_async

__all__ = [
    "AddReport",
    "DiagnosticSummarizer",
    "Embedder",
    "Guardrail",
    "LLMSummarizer",
    "MemoryStoreError",
    "PredicateRef",
    "Retrieved",
    "Skill",
    "SkillMemory",
    "Summarizer",
    "SummaryResult",
    "clean",
    "parse_entry",
    "render_block",
    "summarize_async",
    "verify",
]


def __getattr__(name: str):
    if name == "LLMSummarizer":  # imports the policy package; only when asked for
        from agentsd.memory.llm import LLMSummarizer

        return LLMSummarizer
    raise AttributeError(name)
