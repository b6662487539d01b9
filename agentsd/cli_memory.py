"""``agentsd memory``: inspect and maintain a skill/guardrail memory directory.

    agentsd memory list    --path runs/demo/memory [--kind guardrail] [--env sokoban] [--status all]
    agentsd memory show    --path runs/demo/memory 3f2a9c
    agentsd memory search  --path runs/demo/memory "box next to a wall" --k 5 --env sokoban
    agentsd memory stats   --path runs/demo/memory [--json]
    agentsd memory export  --path runs/demo/memory out.jsonl
    agentsd memory import  --path runs/other/memory out.jsonl
    agentsd memory prune   --path runs/demo/memory --stale --min-confidence 0.2 --floor -2
    agentsd memory repair  --path runs/demo/memory

Every command but ``import`` refuses to create a memory: a missing, foreign or damaged directory is
one line on stderr and exit 2. ``agentsd.memory`` (chromadb, onnxruntime) is imported inside the
commands, so ``agentsd --help`` stays fast and torch-free.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from agentsd.memory import Embedder, SkillMemory

memory_app = typer.Typer(
    no_args_is_help=True,
    help="Inspect and maintain a skill/guardrail memory directory (e.g. runs/<name>/memory).",
)

PathOpt = Annotated[
    Path, typer.Option("--path", "-p", help="The memory directory, e.g. runs/<name>/memory.", show_default=False)
]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Memory namespace.")]


class Kind(str, Enum):
    skill = "skill"
    guardrail = "guardrail"


class Status(str, Enum):
    active = "active"
    retired = "retired"
    all = "all"


ModelOpt = Annotated[
    str | None,
    typer.Option("--embedding-model", help="The embedding model the memory was built with (memory.embedding_model); "
                 "default all-MiniLM-L6-v2."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
KindOpt = Annotated[Kind | None, typer.Option("--kind", help="Only skills or only guardrails.")]
EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Only entries of this environment.")]


console = Console()


def friendly_errors(debug: bool):
    """The CLI's one-line errors (exit 2). Imported late: agentsd.cli imports this module to register it."""
    from agentsd.cli import friendly_errors as errors

    return errors(debug)


@functools.cache
def _embedder(model: str | None = None) -> Embedder:
    """One embedder per model and process (loading one takes about half a second)."""
    from agentsd.memory import Embedder

    return Embedder(model)


def _open(path: Path, namespace: str, model: str | None, create: bool = False) -> SkillMemory:
    from agentsd.memory import SkillMemory

    return SkillMemory(path, namespace=namespace, create=create, embedder=_embedder(model))


def _get(mem: SkillMemory, entry_id: str):
    e = mem.get(entry_id)
    if e is None:
        raise LookupError(
            f"no entry with id or unique id prefix {entry_id!r} in namespace {mem.namespace!r} of {str(mem.path)!r}"
        )
    return e


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _print_table(t: Table) -> None:
    """Entry tables are wide: a terminal gets its own width, piped output (a file, a pager) 160 columns
    rather than rich's default 80, which leaves no room for the summary."""
    out = console if console.is_terminal else Console(width=max(console.width, 160))
    out.print(t)


def _flags(mem: SkillMemory, e: Any) -> str:
    out = []
    if e.status == "active" and mem.is_stale(e):
        out.append("stale")
    if "conflict" in e.flags:
        out.append("conflict")
    if e.status == "retired":
        out.append("retired")
    return ",".join(out)


@memory_app.command("list")
def list_(
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    kind: KindOpt = None,
    env: EnvOpt = None,
    status: Annotated[Status, typer.Option("--status", help="active, retired or all.")] = Status.active,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most N entries.")] = None,
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Entries as a table (oldest first)."""
    with friendly_errors(debug), _open(path, namespace, embedding_model) as mem:
        entries = mem.entries(kind=kind.value if kind else None, env=env,
                              status=None if status is Status.all else status.value)
        shown = entries[:limit] if limit else entries
        t = Table(title=Text(f"memory {mem.path} [{namespace}]: {len(shown)} of {len(entries)} entries"),
                  box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("id", "kind", "env", "failure type", "summary", "support", "usage", "votes", "confidence",
                    "flags"):
            right = col in ("support", "usage", "votes", "confidence")
            t.add_column(col, justify="right" if right else "left", no_wrap=col != "summary",
                         min_width=8 if col == "id" else None, overflow="fold" if col == "summary" else "ellipsis")
        for e in shown:
            t.add_row(
                e.id[:8], e.kind, Text(e.env), Text(e.failure_key or "-"), Text(_short(e.summary, 80)),
                str(e.support), str(e.usage), f"+{e.upvotes}/-{e.downvotes}", f"{e.score_confidence:.2f}",
                _flags(mem, e),
            )
        _print_table(t)


@memory_app.command()
def show(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Entry id or a unique prefix of it.")],
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """One entry: its full JSON, how it renders into a prompt, and its history."""
    with friendly_errors(debug), _open(path, namespace, embedding_model) as mem:
        e = _get(mem, entry_id)
        console.print(json.dumps(e.model_dump(mode="json"), indent=2, ensure_ascii=False), markup=False,
                      highlight=False, soft_wrap=True)
        console.rule("rendered")
        console.print(e.render(stale=e.status == "active" and mem.is_stale(e)), markup=False, highlight=False,
                      soft_wrap=True)
        hist = mem.history(e.id)
        console.rule(f"history ({len(hist)} events)")
        for h in hist:
            data = json.dumps(h["data"], ensure_ascii=False, default=str)
            console.print(f"{h['seq']:>6}  {_time(h['time'])}  {h['op']:<8}  pid {h['pid']}  {_short(data, 160)}",
                          markup=False, highlight=False, soft_wrap=True)


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="What the agent is facing, in words.")],
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Number of entries.")] = 5,
    kind: KindOpt = None,
    env: EnvOpt = None,
    budget_tokens: Annotated[
        int | None, typer.Option("--budget-tokens", min=1, help="Token budget of the rendered block.")
    ] = None,
    recent_failure: Annotated[
        list[str] | None,
        typer.Option("--recent-failure", help="A failure type seen recently (boosts its guardrails); repeatable."),
    ] = None,
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retrieve entries as an agent would, with scores and the rendered prompt block."""
    with friendly_errors(debug), _open(path, namespace, embedding_model) as mem:
        hits = mem.retrieve(query, k=k, kind=kind.value if kind else None, env=env, budget_tokens=budget_tokens,
                            recent_failures=recent_failure or ())
        if not hits:
            console.print("no entries match")
            return
        t = Table(title=Text(f"{len(hits)} results for {query!r}"), box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("#", "id", "kind", "env", "failure type", "score", "similarity", "stale"):
            t.add_column(col, justify="right" if col in ("#", "score", "similarity") else "left", no_wrap=True,
                         min_width=8 if col == "id" else None)
        for i, h in enumerate(hits, 1):
            e = h.entry
            t.add_row(str(i), e.id[:8], e.kind, Text(e.env), Text(e.failure_key or "-"), f"{h.score:.3f}",
                      f"{h.similarity:.3f}", "stale" if h.stale else "")
        _print_table(t)
        console.print(mem.render(hits), markup=False, highlight=False, soft_wrap=True)


@memory_app.command()
def stats(
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Counts by kind, status, env and failure type; stale, conflicting, executable entries; history size."""
    with friendly_errors(debug), _open(path, namespace, embedding_model) as mem:
        s = mem.stats()
        if as_json:
            typer.echo(json.dumps(s, indent=2, sort_keys=True))
            return
        t = Table(title=Text(f"memory {s['path']} [{s['namespace']}]"), show_header=False, box=box.SIMPLE)
        t.add_column("what")
        t.add_column("value", overflow="fold")
        for key, val in s.items():
            if key in ("path", "namespace"):
                continue
            if isinstance(val, dict):
                val = ", ".join(f"{k2} {v2}" for k2, v2 in sorted(val.items())) or "-"
            t.add_row(key.replace("_", " "), Text(str(val)))
        console.print(t)


@memory_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(metavar="OUT.jsonl", help="Where to write the JSON lines.")],
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Every entry of the namespace, retired ones too, as JSON lines (lossless)."""
    with friendly_errors(debug), _open(path, namespace, embedding_model) as mem:
        n = mem.export(out)
        console.print(f"exported {n} entries to {out}", highlight=False)


@memory_app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(metavar="IN.jsonl", help="An export written by `agentsd memory export`.")],
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Load an export as it is (ids, counts, votes, times); creates the memory if needed."""
    with friendly_errors(debug):
        if not src.is_file():  # before the store is created: a typo must not leave an empty memory behind
            raise FileNotFoundError(f"no export file at {str(src)!r}")
        with _open(path, namespace, embedding_model, create=True) as mem:
            r = mem.import_(src)
        console.print(f"imported {r['imported']}, skipped {r['skipped']} (present already), "
                      f"invalid {r['invalid']} from {src}", highlight=False)


@memory_app.command()
def prune(
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    stale: Annotated[bool, typer.Option("--stale", help="Retire stale entries.")] = False,
    min_confidence: Annotated[
        float | None, typer.Option("--min-confidence", help="Retire entries whose vote-adjusted confidence is below.")
    ] = None,
    floor: Annotated[int | None, typer.Option("--floor", help="Retire entries with net votes at or below.")] = None,
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Retire (never delete) entries by staleness, confidence or votes; prints the retired ids."""
    with friendly_errors(debug):
        if not stale and min_confidence is None and floor is None:
            raise ValueError("prune needs at least one of --stale, --min-confidence, --floor")
        with _open(path, namespace, embedding_model) as mem:
            ids = mem.prune(stale=stale, min_confidence=min_confidence, floor=floor)
        for i in ids:
            typer.echo(i)
        console.print(f"retired {len(ids)} entries", highlight=False)


@memory_app.command()
def repair(
    path: PathOpt,
    namespace: NamespaceOpt = "default",
    embedding_model: ModelOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Rebuild the Chroma index from the side store (the old index, if any, is moved aside)."""
    with friendly_errors(debug):
        from agentsd.memory import MemoryStoreError
        from agentsd.memory.memory import SkillMemory
        from agentsd.memory.store import SIDE_STORE

        # Checked first: repair moves chroma/ aside, which must never happen in a directory that is not ours.
        if not (path / SIDE_STORE).is_file():
            raise MemoryStoreError(f"no memory at {str(path)!r} (no {SIDE_STORE}); nothing to repair")
        n = SkillMemory.repair(path, namespace=namespace, embedder=_embedder(embedding_model))
        console.print(f"rebuilt the index of {path}: {n} active entries indexed", highlight=False)
