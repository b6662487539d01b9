"""The skills and guardrails that took part in outcomes: per run, the memory entries with the highest usage
(retrieved into an episode that finished) and votes (``record_outcome`` history), opened read-only through
:class:`agentsd.memory.SkillMemory` (``create=False``: a run without memory is skipped, never created)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _embedding_model(run_dir: Path) -> str | None:
    p = run_dir / "config.yaml"
    try:
        cfg = yaml.safe_load(p.read_text()) if p.exists() else {}
    except yaml.YAMLError:
        return None
    return ((cfg or {}).get("memory") or {}).get("embedding_model")


def memory_entries(records: list[dict[str, Any]], top: int = 12) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, notes): the ``top`` entries over all runs, ranked by usage, then |net votes|, then support.
    Each row: run, arm, env, id, kind, name (failure type or first workflow step), summary, usage, upvotes,
    downvotes, support, confidence, votes_logged (vote events in the entry's history), status."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    embedders: dict[str | None, Any] = {}
    for r in records:
        mdir = Path(r["dir"]) / "memory"
        if not (mdir / "memory.sqlite").exists():
            continue
        try:
            from agentsd.memory import Embedder, SkillMemory

            model = _embedding_model(Path(r["dir"]))
            if model not in embedders:
                embedders[model] = Embedder(model)
            with SkillMemory(mdir, create=False, embedder=embedders[model]) as mem:
                for e in mem.entries(status=None):
                    hist = mem.history(e.id)
                    rows.append({
                        "run": r["run"], "arm": r["arm"], "env": e.env, "id": e.id, "kind": e.kind,
                        "name": getattr(e, "failure_type", None) or "skill", "summary": e.summary,
                        "usage": e.usage, "upvotes": e.upvotes, "downvotes": e.downvotes, "support": e.support,
                        "confidence": round(e.score_confidence, 3), "status": e.status,
                        "votes_logged": sum(1 for h in hist if h["op"] == "vote"),
                    })
        except Exception as exc:  # noqa: BLE001 - one unreadable memory must not sink the report
            notes.append(f"{r['run']}: memory not readable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    rows.sort(key=lambda x: (-x["usage"], -abs(x["upvotes"] - x["downvotes"]), -x["support"], x["run"]))
    if rows and not any(x["usage"] or x["upvotes"] or x["downvotes"] for x in rows):
        notes.append("no entry was used in an episode with a recorded outcome (usage and votes are 0 everywhere): "
                     "ranked by support (how many trajectories produced or merged into it)")
    return rows[:top], notes
