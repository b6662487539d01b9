"""SkillMemory: the curated, persistent store of skills and guardrails.

    from agentsd.memory import SkillMemory, DiagnosticSummarizer
    mem = SkillMemory("runs/demo/memory")                       # created on first use
    report = mem.ingest(trajectories, DiagnosticSummarizer())   # train-split trajectories only
    hits = mem.retrieve("push the box onto the target", k=4, env="sokoban", budget_tokens=200)
    prompt_block = mem.render(hits)

Curation on every add (all under the store's inter-process write lock):

1. exact dedup on the normalized content hash (kind, env, failure type, content): the existing entry
   gains the new evidence and +1 support per new trajectory; re-adding the same evidence is a no-op,
   so a resumed run does not inflate support;
2. near-duplicate merge only within one kind, env and failure type, at cosine >= ``merge_threshold``
   (0.95) *and* identical numbers and entity tokens (so "3 boxes" never merges into "4 boxes"); the
   merged-in text is kept in the history, never dropped;
3. conflict detection: a skill whose workflow contains a step a guardrail with a similar trigger
   forbids (``forbidden_action``) keeps both entries and flags both.

Votes follow ExpeL: :meth:`record_outcome` gives +1 to entries retrieved into an episode that succeeded
and -1 otherwise; at net votes <= ``retire_floor`` an entry is retired (kept in the side store with its
history, dropped from the index). Entries not supported for ``stale_after`` iterations rank lower
(x ``stale_factor``) and say so when rendered.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentsd.memory.embeddings import Embedder
from agentsd.memory.safety import render_block
from agentsd.memory.schema import Guardrail, Skill, entity_tokens, load_entry, new_id, normalize, parse_entry
from agentsd.memory.store import (
    SIDE_STORE,
    ChromaIndex,
    FileLock,
    MemoryStoreError,
    SideStore,
    collection_name,
    forget_client,
)

log = logging.getLogger("agentsd.memory")

Entry = Skill | Guardrail
KINDS = ("skill", "guardrail")
#: Entry similarity (kind-prefixed trigger + summary) below which a pair is not tested for a conflict.
#: The kind prefix alone puts a skill and a guardrail with identical trigger and summary at ~0.57, so
#: the cut is low; it keeps the trigger embeddings of the conflict test off most pairs.
_CONFLICT_PREFILTER = 0.4


@dataclass
class Retrieved:
    entry: Entry
    score: float
    similarity: float
    stale: bool = False

    def render(self, max_chars: int = 480) -> str:
        return self.entry.render(max_chars, stale=self.stale)


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    #: (incoming id, existing id, "exact" | "near")
    merged: list[tuple[str, str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # exact duplicates whose evidence was known already
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {"added": len(self.added), "merged": len(self.merged), "unchanged": len(self.unchanged),
                "conflicts": len(self.conflicts), "rejected": len(self.rejected)}


class _EmbeddingFunction:
    """Chroma wants an embedding function per collection (its default one downloads a model); ours
    wraps the memory's embedder. agentsd always passes embeddings explicitly, so this runs only when
    someone queries a collection by text through Chroma directly."""

    def __init__(self, embedder: Embedder | None = None):
        self.embedder = embedder

    def __call__(self, input):  # noqa: A002 - chroma's protocol names it so
        if self.embedder is None:
            self.embedder = Embedder()
        return [v for v in self.embedder.embed(list(input))]

    def embed_query(self, input):  # noqa: A002
        return self(input)

    @staticmethod
    def name() -> str:
        return "agentsd"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> _EmbeddingFunction:
        return _EmbeddingFunction()

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]


class SkillMemory:
    """Skills and guardrails of one namespace, in a memory directory (or a Chroma server via ``url``)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        url: str | None = None,
        namespace: str = "default",
        embedder: Embedder | str | None = None,
        embedding_backend: str = "auto",
        create: bool = True,
        merge_threshold: float = 0.95,
        conflict_threshold: float = 0.9,
        retire_floor: int = -3,
        stale_after: int = 3,
        stale_factor: float = 0.5,
    ):
        self.path = Path(path).expanduser()
        self.url = url
        self.namespace = _check_namespace(namespace)
        self.merge_threshold, self.conflict_threshold = merge_threshold, conflict_threshold
        self.retire_floor, self.stale_after, self.stale_factor = retire_floor, stale_after, stale_factor
        self._open_dir(create)
        self._env_cache: tuple[int, list[str]] | None = None
        self.lock = FileLock(self.path / ".lock")
        with self.lock.hold():
            self.side = SideStore(self.path / SIDE_STORE, create=True)
        if isinstance(embedder, Embedder):
            self.embedder = embedder
        else:
            self.embedder = Embedder(embedder, backend=embedding_backend)
        with self.lock.hold():
            known = self.side.get_meta("embedder")
            if known is None:
                with self.side.tx():
                    self.side.set_meta("embedder", self.embedder.id)
            elif known != self.embedder.id:
                raise MemoryStoreError(
                    f"memory at {str(self.path)!r} was built with embedding model {known!r}, not "
                    f"{self.embedder.id!r}; open it with the same model"
                )
            chroma_dir = self.path / "chroma"
            if not chroma_dir.exists():
                forget_client(chroma_dir)  # a cached client of a deleted directory would write nowhere
            if url is None and not chroma_dir.exists() and self._count_indexed() > 0:
                raise MemoryStoreError(
                    f"the Chroma index of {str(self.path)!r} is missing; rebuild it from the side store with: "
                    f"agentsd memory repair --path {self.path}"
                )
            self.index = ChromaIndex(None if url else chroma_dir, url, _EmbeddingFunction(self.embedder))
            self._seen_seq = self.side.index_seq()
            self._recover()

    # --- opening --------------------------------------------------------------------------------------
    def _open_dir(self, create: bool) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise MemoryStoreError(f"memory path {str(p)!r} is a file, not a directory")
        if p.exists():
            names = {x.name for x in p.iterdir()}
            if names and SIDE_STORE not in names:
                raise MemoryStoreError(
                    f"{str(p)!r} is not empty and holds no {SIDE_STORE}: it is not an agentsd memory "
                    "directory; refusing to write into it"
                )
            if not names and not create:
                raise MemoryStoreError(f"no memory at {str(p)!r}")
        elif create:
            p.mkdir(parents=True)
        else:
            raise MemoryStoreError(f"no memory at {str(p)!r}")

    def _count_indexed(self) -> int:
        return self.side.db.execute("SELECT COUNT(*) FROM entries WHERE indexed=1 AND status='active'").fetchone()[0]

    def _recover(self) -> None:
        """Finish index updates a crashed writer left undone (the side store already has them)."""
        rows = self.side.pending()
        if not rows:
            return
        log.warning("memory %s: indexing %d entries the index does not have yet (an interrupted write, "
                    "or a repair)", self.path, len(rows))
        self._index([load_entry(d) for _, _, d in rows])

    def _sync(self) -> None:
        """Reload Chroma if another process changed the index since this process last looked."""
        seq = self.side.index_seq()
        if seq != self._seen_seq:
            with self.lock.hold(exclusive=False):
                self.index.reload()
            self._seen_seq = seq

    def close(self) -> None:
        self.side.close()

    def __enter__(self) -> SkillMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- index helpers ----------------------------------------------------------------------------------
    def _col(self, e_or_env: Entry | str, kind: str | None = None) -> str:
        if isinstance(e_or_env, str):
            return collection_name(self.namespace, e_or_env, kind or "skill")
        return collection_name(e_or_env.namespace, e_or_env.env, e_or_env.kind)

    def _index(self, entries: list[Entry], new: bool = False) -> None:
        """Bring Chroma in line with these entries (active: add/upsert; retired: delete), then mark
        them indexed. ``new``: the ids are not in the index yet (a plain add is cheaper than upsert)."""
        if not entries:
            return
        active = [e for e in entries if e.status == "active"]
        texts = [e.embed_text() for e in active]
        vecs = self.embedder.embed(texts, cache=self.side) if active else None
        groups: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(active):
            groups[self._col(e)].append(i)
        for name, idx in groups.items():
            self.index.upsert(
                name,
                [active[i].id for i in idx],
                vecs[idx],
                [_meta(active[i]) for i in idx],
                [texts[i] for i in idx],
                add=new,
            )
        dead: dict[str, list[str]] = defaultdict(list)
        for e in entries:
            if e.status != "active":
                dead[self._col(e)].append(e.id)
        for name, ids in dead.items():
            self.index.delete(name, ids)
        self.side.mark_indexed([e.id for e in entries])

    def _write(self, entries: list[Entry], ops: list[tuple[str, str, dict]], reindex: list[Entry],
               new: bool = False) -> None:
        """Commit entries and history in one transaction; then update the index for ``reindex``."""
        with self.side.tx():
            touched = {e.id for e in reindex}
            for e in entries:
                self.side.put(_row(e), e.model_dump_json(), indexed=0 if e.id in touched else 1)
            for entry_id, op, data in ops:
                self.side.history(entry_id, op, data)
            if reindex:
                self._seen_seq = self.side.bump_index_seq()
        self._index(reindex, new=new)

    # --- reading ---------------------------------------------------------------------------------------
    def get(self, entry_id: str) -> Entry | None:
        data = self.side.get([entry_id]).get(entry_id)
        if data is None:
            # allow unique prefixes (the CLI shows 6-character ids)
            rows = self.side.db.execute(
                "SELECT data FROM entries WHERE namespace=? AND substr(id, 1, ?)=? LIMIT 2",
                (self.namespace, len(entry_id), entry_id),
            ).fetchall()
            if len(rows) != 1:
                return None
            data = rows[0][0]
        e = load_entry(data)
        return e if e.namespace == self.namespace else None

    def entries(self, kind: str | None = None, env: str | None = None, status: str | None = "active") -> list[Entry]:
        q, args = "SELECT data FROM entries WHERE namespace=?", [self.namespace]
        for col, val in (("kind", kind), ("env", env), ("status", status)):
            if val is not None:
                q += f" AND {col}=?"
                args.append(val)
        return [load_entry(d) for (d,) in self.side.db.execute(q + " ORDER BY rowid", args)]

    def __len__(self) -> int:
        return self.side.db.execute(
            "SELECT COUNT(*) FROM entries WHERE namespace=? AND status='active'", (self.namespace,)
        ).fetchone()[0]

    def history(self, entry_id: str) -> list[dict[str, Any]]:
        rows = self.side.db.execute(
            "SELECT seq, op, time, pid, data FROM history WHERE entry_id=? ORDER BY seq", (entry_id,)
        ).fetchall()
        return [{"seq": s, "op": op, "time": t, "pid": pid, "data": json.loads(d)} for s, op, t, pid, d in rows]

    @property
    def iteration(self) -> int:
        return int(self.side.get_meta("iteration", "0") or 0)

    def advance(self, iteration: int | None = None) -> int:
        """Set (or bump) the memory's iteration counter, which staleness is measured against."""
        with self.lock.hold(), self.side.tx():
            n = self.iteration + 1 if iteration is None else int(iteration)
            self.side.set_meta("iteration", str(n))
        return n

    def is_stale(self, e: Entry) -> bool:
        return self.iteration - e.last_supported >= self.stale_after

    # --- adding and curation -------------------------------------------------------------------------------
    def add(self, entries: Entry | Iterable[Entry]) -> AddReport:
        """Add entries with curation (see the module docstring). Returns what happened to each."""
        items = [entries] if isinstance(entries, Skill | Guardrail) else list(entries)
        report = AddReport()
        if not items:
            return report
        it = self.iteration
        items = [e.model_copy(update={"namespace": self.namespace, "last_supported": it}) for e in items]
        # an id that is already taken (or repeated in this batch) gets a fresh one: add never overwrites
        taken, seen = set(self.side.get([e.id for e in items])), set()
        for k, e in enumerate(items):
            if e.id in taken or e.id in seen:
                items[k] = e = e.model_copy(update={"id": new_id()})
            seen.add(e.id)
        hashes = [e.content_hash() for e in items]
        # embed outside the lock (the slow part); exact duplicates known already need no vector
        known = self.side.by_hash(self.namespace, list(set(hashes)))
        need = [e for e, h in zip(items, hashes, strict=True) if h not in known]
        vec_of: dict[str, np.ndarray] = {}
        if need:
            vecs = self.embedder.embed([e.embed_text() for e in need], cache=self.side)
            vec_of = {e.id: v for e, v in zip(need, vecs, strict=True)}
        with self.lock.hold():
            self._sync()
            self._add_locked(items, hashes, vec_of, report)
        return report

    def _add_locked(self, items: list[Entry], hashes: list[str], vec_of: dict[str, np.ndarray], report: AddReport):
        known = self.side.by_hash(self.namespace, list(set(hashes)))  # again: another writer may have added some
        changed: dict[str, Entry] = {}  # id -> entry to write (existing ones updated by merges)
        new: dict[str, Entry] = {}
        new_by_hash: dict[str, str] = {}
        ops: list[tuple[str, str, dict]] = []

        def current(entry_id: str, data: str | None = None) -> Entry:
            if entry_id in changed:
                return changed[entry_id]
            if entry_id in new:
                return new[entry_id]
            return load_entry(data if data is not None else self.side.get([entry_id])[entry_id])

        def merge(into_id: str, inc: Entry, how: str, sim: float, data: str | None = None) -> None:
            target = current(into_id, data)
            fresh = [x for x in inc.evidence if x not in target.evidence]
            if inc.evidence and not fresh:
                report.unchanged.append(inc.id)
                return
            upd = target.model_copy(update={
                "evidence": (target.evidence + fresh)[-64:],
                "support": target.support + (len(fresh) or 1),
                "confidence": max(target.confidence, inc.confidence),
                "last_supported": max(target.last_supported, inc.last_supported),
                "updated": time.time(),
                "version": target.version + 1,
            })
            if into_id in new:
                new[into_id] = upd
            else:
                changed[into_id] = upd
            ops.append((into_id, "merge", {"how": how, "similarity": round(sim, 4), "incoming": inc.model_dump()}))
            report.merged.append((inc.id, into_id, how))

        # 1) exact duplicates (of stored entries or of earlier items in this batch)
        pending: list[Entry] = []
        for e, h in zip(items, hashes, strict=True):
            if h in known:
                merge(known[h][0], e, "exact", 1.0, known[h][1])
            elif h in new_by_hash:
                merge(new_by_hash[h], e, "exact", 1.0)
            else:
                new_by_hash[h] = e.id
                new[e.id] = e
                pending.append(e)

        # 2) near duplicates: same collection (kind, env), same failure type, equal entity tokens
        by_col: dict[str, list[Entry]] = defaultdict(list)
        for e in pending:
            by_col[self._col(e)].append(e)
        accepted: dict[str, list[Entry]] = defaultdict(list)
        for name, group in by_col.items():
            q = np.stack([vec_of[e.id] for e in group])
            hits = self.index.query(name, q, 5)  # no count() first: it costs ~13 ms at 100k entries
            cand_ids = sorted({i for ids, sims, _ in hits for i, s in zip(ids, sims, strict=True)
                               if s >= self.merge_threshold})
            cands = {i: load_entry(d) for i, d in self.side.get(cand_ids).items()} if cand_ids else {}
            for e, (ids, sims, _) in zip(group, hits, strict=True):
                target, best = None, 0.0
                for i, s in zip(ids, sims, strict=True):
                    c = cands.get(i)
                    if c is not None and s >= self.merge_threshold and _mergeable(e, c):
                        target, best = c, s
                        break
                if target is None:  # near-duplicates within this batch
                    for a in accepted[name]:
                        s = float(vec_of[a.id] @ vec_of[e.id])
                        if s >= self.merge_threshold and _mergeable(e, a):
                            target, best = a, s
                            break
                if target is not None:
                    del new[e.id]
                    merge(target.id, e, "near", best)
                else:
                    accepted[name].append(e)

        # 3) conflicts: a new entry against stored entries of the other kind and against the other new
        # entries. Candidates come by entry similarity; a pair is a conflict when its content contradicts
        # (a cheap string test) and its triggers are similar (embedded once, in one batch).
        pairs: list[tuple[Entry, Entry]] = []
        fresh = [e for group in accepted.values() for e in group]
        for group in accepted.values():
            first = group[0]
            other = "guardrail" if first.kind == "skill" else "skill"
            oname = collection_name(self.namespace, first.env, other)
            hits = self.index.query(oname, np.stack([vec_of[e.id] for e in group]), 8)
            ids = sorted({i for h in hits for i in h[0]})
            stored = {i: load_entry(d) for i, d in self.side.get(ids).items()}
            for e, (hid, hs, _) in zip(group, hits, strict=True):
                pairs += [(e, stored[i]) for i, sim in zip(hid, hs, strict=True)
                          if sim >= _CONFLICT_PREFILTER and i in stored and _contradicts(e, stored[i])]
        for i, e in enumerate(fresh):  # within this batch (each unordered pair once)
            pairs += [(e, o) for o in fresh[i + 1:] if o.env == e.env and o.kind != e.kind
                      and float(vec_of[e.id] @ vec_of[o.id]) >= _CONFLICT_PREFILTER and _contradicts(e, o)]
        if pairs:
            texts = list(dict.fromkeys("; ".join(x.triggers) for pair in pairs for x in pair))
            tv = dict(zip(texts, self.embedder.embed(texts, cache=self.side), strict=True))
            for e, o in pairs:
                sim = float(tv["; ".join(e.triggers)] @ tv["; ".join(o.triggers)])
                if sim < self.conflict_threshold:
                    continue
                e, o = current(e.id), current(o.id)
                for x, y in ((e, o), (o, e)):
                    flagged = _flag(x, y.id)
                    if x.id in new:
                        new[x.id] = flagged
                    else:
                        changed[x.id] = flagged
                    ops.append((x.id, "conflict", {"with": y.id, "similarity": round(sim, 4)}))
                report.conflicts.append((e.id, o.id))

        for e in new.values():
            ops.append((e.id, "add", {"source": e.source, "evidence": e.evidence}))
            report.added.append(e.id)
        ops.sort(key=lambda o: o[1] != "add")  # adds first: a history reads in causal order
        self._write([*new.values(), *changed.values()], ops, list(new.values()), new=True)

    # --- votes, usage, retirement ------------------------------------------------------------------------
    def record_outcome(self, entry_ids: Iterable[str], success: bool) -> list[str]:
        """An episode that had these entries in its prompt finished: usage +1, vote +1 / -1.
        Returns the ids that were retired by this vote."""
        return self._vote(list(dict.fromkeys(entry_ids)), 1 if success else -1, usage=True)

    def vote(self, entry_id: str, delta: int, reason: str = "") -> list[str]:
        if delta not in (-1, 1):
            raise ValueError("a vote is +1 or -1")
        return self._vote([entry_id], delta, usage=False, reason=reason)

    def _vote(self, ids: list[str], delta: int, usage: bool, reason: str = "") -> list[str]:
        if not ids:
            return []
        retired: list[str] = []
        with self.lock.hold():
            self._sync()
            rows = self.side.get(ids)
            updated, ops = [], []
            for i in ids:
                if i not in rows:
                    continue
                e = load_entry(rows[i])
                up = e.upvotes + (delta > 0)
                down = e.downvotes + (delta < 0)
                upd = {"upvotes": up, "downvotes": down, "usage": e.usage + usage, "updated": time.time()}
                ops.append((i, "vote", {"delta": delta, "usage": usage, "reason": reason}))
                if e.status == "active" and up - down <= self.retire_floor:
                    upd["status"] = "retired"
                    ops.append((i, "retire", {"reason": f"net votes {up - down} <= {self.retire_floor}"}))
                    retired.append(i)
                updated.append(e.model_copy(update=upd))
            self._write(updated, ops, [e for e in updated if e.id in retired])
        return retired

    def retire(self, entry_id: str, reason: str = "manual") -> bool:
        with self.lock.hold():
            self._sync()
            e = self.get(entry_id)
            if e is None or e.status == "retired":
                return False
            e = e.model_copy(update={"status": "retired", "updated": time.time()})
            self._write([e], [(e.id, "retire", {"reason": reason})], [e])
        return True

    def edit(self, entry_id: str, reason: str = "manual", **changes: Any) -> Entry:
        """Change content fields of an entry (validated like a new entry); the old version goes to the
        history, ``version`` goes up, and the index is updated."""
        with self.lock.hold():
            self._sync()
            old = self.get(entry_id)
            if old is None:
                raise KeyError(f"no entry {entry_id!r} in namespace {self.namespace!r}")
            fixed = {"id", "kind", "env", "namespace", "created", "evidence", "support", "usage", "upvotes",
                     "downvotes", "version", "status"}
            bad = sorted(set(changes) & fixed)
            if bad:
                raise ValueError(f"edit cannot change {', '.join(bad)}")
            upd = parse_entry({**old.model_dump(), **changes, "version": old.version + 1, "updated": time.time()})
            h = upd.content_hash()
            dup = self.side.by_hash(self.namespace, [h]).get(h)
            if dup and dup[0] != upd.id:
                raise ValueError(f"the edited content equals entry {dup[0]}; merge or retire instead")
            self._write([upd], [(upd.id, "edit", {"reason": reason, "before": old.model_dump()})],
                        [upd] if upd.status == "active" else [])
        return upd

    def prune(self, *, stale: bool = False, min_confidence: float | None = None, floor: int | None = None) -> list[str]:
        """Retire (never delete) stale entries, entries below a confidence, or at/below a net vote floor."""
        out = []
        for e in self.entries():
            why = []
            if stale and self.is_stale(e):
                why.append("stale")
            if min_confidence is not None and e.score_confidence < min_confidence:
                why.append(f"confidence {e.score_confidence:.2f} < {min_confidence}")
            if floor is not None and e.net_votes <= floor:
                why.append(f"net votes {e.net_votes} <= {floor}")
            if why and self.retire(e.id, "prune: " + ", ".join(why)):
                out.append(e.id)
        return out

    # --- retrieval ----------------------------------------------------------------------------------------
    def retrieve(
        self,
        query: str,
        k: int = 5,
        *,
        kind: str | None = None,
        env: str | None = None,
        budget_tokens: int | None = None,
        recent_failures: Iterable[str] = (),
        where: dict[str, Any] | None = None,
        mmr: float = 0.7,
        min_similarity: float = 0.0,
        failure_boost: float = 0.5,
        render_chars: int = 480,
    ) -> list[Retrieved]:
        """Entries for ``query``: semantic similarity x confidence (x ``stale_factor`` when stale,
        x (1 + ``failure_boost``) for guardrails whose failure type is in ``recent_failures``), then
        MMR (``mmr`` = weight of relevance vs. diversity), metadata filters (``where``: entry field ->
        value or list of values), and a token budget on the rendered text (~4 characters per token)."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if k <= 0:
            return []
        self._sync()
        envs = [env] if env is not None else self._envs()
        names = [collection_name(self.namespace, e, kd) for e in envs for kd in ([kind] if kind else KINDS)]
        qv = self.embedder.embed([query], cache=None)
        fetch = max(4 * k, 16)
        ids, sims, vecs = [], [], []
        for name in names:
            for hid, hs, hv in self.index.query(name, qv, fetch):
                ids += hid
                sims += hs
                if len(hid):
                    vecs.append(hv)
        if not ids:
            return []
        rows = self.side.get(ids)
        fails = set(recent_failures)
        it = self.iteration
        cands: list[tuple[Entry, float, float, bool, np.ndarray]] = []
        allv = np.concatenate(vecs) if vecs else np.zeros((0, qv.shape[1]), np.float32)
        for i, s, v in zip(ids, sims, allv, strict=True):
            if i not in rows or s < min_similarity:
                continue
            e = load_entry(rows[i])
            if e.status != "active" or (where and not _matches(e, where)):
                continue
            stale = it - e.last_supported >= self.stale_after
            score = s * (0.5 + 0.5 * e.score_confidence)
            if stale:
                score *= self.stale_factor
            if isinstance(e, Guardrail) and e.failure_type in fails:
                score *= 1.0 + failure_boost
            cands.append((e, score, s, stale, v))
        chosen: list[Retrieved] = []
        chosen_v: list[np.ndarray] = []
        used = 0
        while cands and len(chosen) < k:
            if chosen_v:
                red = np.max(np.stack([c[4] for c in cands]) @ np.stack(chosen_v).T, axis=1)
            else:
                red = np.zeros(len(cands))
            j = int(np.argmax([mmr * c[1] - (1 - mmr) * r for c, r in zip(cands, red, strict=True)]))
            e, score, s, stale, v = cands.pop(j)
            r = Retrieved(e, float(score), float(s), stale)
            if budget_tokens is not None:
                cost = _tokens(r.render(render_chars))
                if used + cost > budget_tokens:
                    continue  # too long for what is left; a shorter one may still fit
                used += cost
            chosen.append(r)
            chosen_v.append(v)
        return chosen

    def _envs(self) -> list[str]:
        """Envs with active entries; cached until the index changes (a DISTINCT scans the table)."""
        seq = self.side.index_seq()
        if self._env_cache is None or self._env_cache[0] != seq:
            envs = [r[0] for r in self.side.db.execute(
                "SELECT DISTINCT env FROM entries WHERE namespace=? AND status='active'", (self.namespace,))]
            self._env_cache = (seq, envs)
        return self._env_cache[1]

    @staticmethod
    def render(hits: Iterable[Retrieved], max_chars: int = 480) -> str:
        """The prompt block for retrieved entries (fenced, marked as data); '' when there are none."""
        return render_block(h.render(max_chars) for h in hits)

    # --- summarizing trajectories --------------------------------------------------------------------------
    def ingest(self, trajectories: Iterable[Any], summarizer: Any = None, *, allow_test: bool = False):
        """Summarize trajectories and add the entries. Test-split trajectories are refused: memory is
        built from train tasks only (``allow_test=True`` overrides, for analysis outside evaluation)."""
        return ingest_into(self, trajectories, summarizer, allow_test=allow_test)

    # --- statistics, export, import, repair -------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        rows = self.side.db.execute(
            "SELECT kind, env, failure_type, status, data FROM entries WHERE namespace=?", (self.namespace,)
        ).fetchall()
        out: dict[str, Any] = {
            "path": str(self.path), "namespace": self.namespace, "iteration": self.iteration,
            "entries": len(rows), "by_kind": Counter(), "by_status": Counter(), "by_env": Counter(),
            "guardrails_by_failure_type": Counter(), "stale": 0, "conflicting": 0, "executable_guardrails": 0,
            "verifiable_skills": 0, "support": 0, "usage": 0,
        }
        it = self.iteration
        for kind, env, ft, status, data in rows:
            d = json.loads(data)
            out["by_status"][status] += 1
            if status != "active":
                continue
            out["by_kind"][kind] += 1
            out["by_env"][env] += 1
            out["support"] += d.get("support", 0)
            out["usage"] += d.get("usage", 0)
            if kind == "guardrail":
                out["guardrails_by_failure_type"][ft] += 1
                out["executable_guardrails"] += d.get("risk_predicate") is not None
            else:
                out["verifiable_skills"] += d.get("verification") is not None
            out["stale"] += it - d.get("last_supported", 0) >= self.stale_after
            out["conflicting"] += "conflict" in d.get("flags", [])
        for key in ("by_kind", "by_status", "by_env", "guardrails_by_failure_type"):
            out[key] = dict(out[key])
        out["history_events"] = self.side.db.execute("SELECT COUNT(*) FROM history").fetchone()[0]
        return out

    def export(self, path: str | os.PathLike) -> int:
        """Every entry of this namespace (retired ones too) as JSON lines; lossless."""
        n = 0
        tmp = Path(str(path) + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for e in self.entries(status=None):
                f.write(e.model_dump_json() + "\n")
                n += 1
        tmp.replace(path)
        return n

    def import_(self, path: str | os.PathLike) -> dict[str, int]:
        """Entries from an export, as they are (ids, counts, votes, times); ids or contents already
        present are skipped. Lines that do not validate are reported, the rest still load."""
        entries, bad = [], 0
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entries.append(parse_entry(line).model_copy(update={"namespace": self.namespace}))
                except ValueError as ex:
                    bad += 1
                    log.warning("memory import: line %d of %s rejected: %s", n, path, str(ex).splitlines()[0])
        with self.lock.hold():
            self._sync()
            have = set(self.side.get([e.id for e in entries]))
            hashes = self.side.by_hash(self.namespace, [e.content_hash() for e in entries])
            fresh, seen = [], set()
            for e in entries:
                h = e.content_hash()
                if e.id in have or h in hashes or h in seen:
                    continue
                seen.add(h)
                fresh.append(e)
            self._write(fresh, [(e.id, "import", {"from": str(path)}) for e in fresh], fresh)
        return {"imported": len(fresh), "skipped": len(entries) - len(fresh), "invalid": bad}

    @classmethod
    def repair(cls, path: str | os.PathLike, **kw) -> int:
        """For a damaged or missing Chroma directory: move it aside and rebuild from the side store."""
        p = Path(path).expanduser()
        chroma = p / "chroma"
        forget_client(chroma)  # this process may hold a client for the old directory
        side = SideStore(p / SIDE_STORE, create=False)  # first: refuse anything that is not our store
        try:
            if chroma.exists():
                aside = p / f"chroma.damaged-{int(time.time())}"
                chroma.rename(aside)
                log.warning("memory %s: moved the old index to %s", p, aside)
            with side.tx():
                side.db.execute("UPDATE entries SET indexed=0")
        finally:
            side.close()
        with cls(p, **kw) as mem:  # opening indexes every pending entry
            return mem._count_indexed()


# --- helpers -----------------------------------------------------------------------------------------------
def _check_namespace(ns: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", ns or ""):
        raise ValueError(f"namespace must be 1-64 characters of [A-Za-z0-9_.-], got {ns!r}")
    return ns


def _row(e: Entry) -> dict[str, Any]:
    return {"id": e.id, "namespace": e.namespace, "kind": e.kind, "env": e.env, "failure_type": e.failure_key,
            "status": e.status, "content_hash": e.content_hash(), "updated": e.updated}


def _meta(e: Entry) -> dict[str, Any]:
    return {"kind": e.kind, "env": e.env, "namespace": e.namespace, "failure_type": e.failure_key}


def _mergeable(a: Entry, b: Entry) -> bool:
    return (a.kind == b.kind and a.env == b.env and a.failure_key == b.failure_key
            and entity_tokens(a.content_text()) == entity_tokens(b.content_text()))


def _contradicts(a: Entry, b: Entry) -> bool:
    """A guardrail forbids a literal action that a skill's workflow uses (similar triggers assumed)."""
    skill, guard = (a, b) if isinstance(a, Skill) else (b, a)
    if not isinstance(skill, Skill) or not isinstance(guard, Guardrail) or not guard.forbidden_action:
        return False
    banned = normalize(guard.forbidden_action)
    return any(normalize(s) == banned for s in skill.golden_workflow)


def _flag(e: Entry, other: str) -> Entry:
    flags = e.flags if "conflict" in e.flags else [*e.flags, "conflict"]
    return e.model_copy(update={"flags": flags, "conflicts_with": list(dict.fromkeys([*e.conflicts_with, other]))})


def _matches(e: Entry, where: dict[str, Any]) -> bool:
    for key, want in where.items():
        have = getattr(e, key, None)
        if isinstance(want, list | tuple | set):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4) + 1


def ingest_into(memory: Any, trajectories: Iterable[Any], summarizer: Any = None, *, allow_test: bool = False):
    """:meth:`SkillMemory.ingest` for any store with ``add``: the summarizer runs in the caller's process
    (an LLM summarizer with its model stays where it is), only the entries travel to ``memory.add`` (a
    :class:`~agentsd.distributed.RemoteMemory` sends them to its actor)."""
    from agentsd.memory.diagnostic import DiagnosticSummarizer
    from agentsd.memory.summarize import SummaryResult

    trajs = list(trajectories)
    bad = [t.id for t in trajs if t.split != "train"]
    if bad and not allow_test:
        raise ValueError(
            f"{len(bad)} trajectories are not from the train split (e.g. {bad[0]}); memory is built "
            "from train tasks only"
        )
    summarizer = summarizer or DiagnosticSummarizer()
    res: SummaryResult = summarizer.summarize(trajs)
    report = memory.add(res.entries)
    report.rejected.extend(res.rejected)
    return report
