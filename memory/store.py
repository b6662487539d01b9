"""Storage under a memory directory: a SQLite side store (the source of truth) and a Chroma index.

```
<path>/memory.sqlite    entries (full JSON), append-only history, embedding cache, meta
<path>/chroma/          Chroma PersistentClient data (one collection per namespace, env and kind)
<path>/.lock            inter-process lock file
```

Every write happens under an exclusive ``flock`` on ``.lock``: first the side store commits (so an
entry whose ``add`` returned survives ``kill -9``), then Chroma is updated, then the entry is marked
``indexed``. Entries left unindexed by a crash are indexed when the store is next opened. Chroma keeps
an in-memory HNSW index per process, so a process whose view is older than the last index change made
by another process reopens its client before reading or writing (the side store's ``index_seq``
counter tells). One collection per (namespace, env, kind) keeps hot-path queries unfiltered: Chroma's
filtered queries scan metadata linearly (~200 ms at 100k entries on this machine) while an unfiltered
query stays at a few milliseconds.

A directory that exists, is not empty and has no ``memory.sqlite`` is refused as foreign; a side store
that is not ours or fails SQLite's quick check is refused as damaged; a Chroma directory that cannot be
opened is reported with the command that rebuilds it from the side store (``agentsd memory repair``).
Nothing is ever recreated silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

log = logging.getLogger("agentsd.memory")

FORMAT = "agentsd-memory/1"
SIDE_STORE = "memory.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    kind TEXT NOT NULL,
    env TEXT NOT NULL,
    failure_type TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_hash ON entries(namespace, content_hash);
CREATE INDEX IF NOT EXISTS entries_scope ON entries(namespace, env, kind, status);
CREATE INDEX IF NOT EXISTS entries_pending ON entries(indexed) WHERE indexed = 0;
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL,
    op TEXT NOT NULL,
    time REAL NOT NULL,
    pid INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_entry ON history(entry_id);
CREATE TABLE IF NOT EXISTS vectors (hash TEXT NOT NULL, model TEXT NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (hash, model));
"""


class MemoryStoreError(RuntimeError):
    """The memory directory is foreign, damaged or incompatible. The message names the path."""


class SideStore:
    """SQLite: full entries, the append-only history of every change, and the embedding cache."""

    def __init__(self, path: Path, create: bool):
        self.path = path
        existed = path.exists()
        if not existed and not create:
            raise MemoryStoreError(f"no memory side store at {str(path)!r}")
        try:
            self.db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
            if existed:
                ok = self.db.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise MemoryStoreError(f"memory side store {str(path)!r} is damaged: {ok}")
                tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not {"meta", "entries", "history"} <= tables:
                    raise MemoryStoreError(f"{str(path)!r} is an SQLite file but not an agentsd memory store")
                fmt = self.get_meta("format")
                if fmt != FORMAT:
                    raise MemoryStoreError(f"memory store {str(path)!r} has format {fmt!r}; this agentsd reads {FORMAT!r}")
            if not existed:
                self.db.executescript(_SCHEMA)
            with self.tx():
                if not existed:
                    self.set_meta("format", FORMAT)
                    self.set_meta("created", str(time.time()))
                    self.set_meta("index_seq", "0")
                    self.set_meta("iteration", "0")
        except sqlite3.DatabaseError as e:
            raise MemoryStoreError(f"memory side store {str(path)!r} is damaged or not SQLite: {e}") from e

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- meta -------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def index_seq(self) -> int:
        return int(self.get_meta("index_seq", "0") or 0)

    def bump_index_seq(self) -> int:
        n = self.index_seq() + 1
        self.set_meta("index_seq", str(n))
        return n

    # --- entries ----------------------------------------------------------------------------------------
    def put(self, row: dict[str, Any], data: str, indexed: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO entries(id, namespace, kind, env, failure_type, status, content_hash, data,"
            " updated, indexed) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row["id"], row["namespace"], row["kind"], row["env"], row.get("failure_type", ""), row["status"],
             row["content_hash"], data, row["updated"], indexed),
        )

    def history(self, entry_id: str, op: str, data: dict[str, Any] | None = None) -> None:
        self.db.execute(
            "INSERT INTO history(entry_id, op, time, pid, data) VALUES (?,?,?,?,?)",
            (entry_id, op, time.time(), os.getpid(), json.dumps(data or {}, default=str)),
        )

    def get(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT id, data FROM entries WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self.db.execute(q, chunk).fetchall())
        return out

    def by_hash(self, namespace: str, hashes: list[str]) -> dict[str, tuple[str, str]]:
        """content_hash -> (id, data)."""
        out: dict[str, tuple[str, str]] = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            q = (f"SELECT content_hash, id, data FROM entries WHERE namespace=? AND content_hash IN "
                 f"({','.join('?' * len(chunk))})")
            for h, id_, data in self.db.execute(q, [namespace, *chunk]):
                out[h] = (id_, data)
        return out

    def pending(self) -> list[tuple[str, str, str]]:
        """(id, status, data) of entries whose index update did not finish."""
        return self.db.execute("SELECT id, status, data FROM entries WHERE indexed=0").fetchall()

    def mark_indexed(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            self.db.execute(f"UPDATE entries SET indexed=1 WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    # --- embedding cache ----------------------------------------------------------------------------------
    def get_vectors(self, hashes: list[str], model: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            q = f"SELECT hash, vec FROM vectors WHERE model=? AND hash IN ({','.join('?' * len(chunk))})"
            for h, blob in self.db.execute(q, [model, *chunk]):
                out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_vectors(self, vecs: dict[str, np.ndarray], model: str) -> None:
        rows = [(h, model, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vecs.items()]
        try:
            self.db.executemany("INSERT OR IGNORE INTO vectors(hash, model, vec) VALUES (?,?,?)", rows)
        except sqlite3.OperationalError as e:  # a cache write may lose to a busy writer; it is only a cache
            log.debug("embedding cache write skipped: %s", e)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()


class FileLock:
    """``flock`` on a lock file: exclusive for writes, shared for index reloads. Reentrant per process."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._depth = 0
        self._mode = 0

    @contextlib.contextmanager
    def hold(self, exclusive: bool = True) -> Iterator[None]:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self._depth and (self._mode == fcntl.LOCK_EX or mode == self._mode):
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, mode)
        self._fd, self._depth, self._mode = fd, 1, mode
        try:
            yield
        finally:
            self._depth = 0
            self._fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def forget_client(path: Path | None) -> None:
    """Drop Chroma's process-wide cached system for one persistent directory (and only that one:
    ``clear_system_cache`` would break every other open client in the process). The next
    ``PersistentClient`` for the path loads the index fresh from disk."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(path)
    for table in (SharedSystemClient._identifier_to_system, SharedSystemClient._identifier_to_refcount):
        table.pop(key, None)


def collection_name(namespace: str, env: str, kind: str) -> str:
    """A Chroma-valid collection name ([a-zA-Z0-9._-], 3-512 chars) that is unique per triple."""
    raw = f"{namespace}--{env}--{kind}"
    safe = re.sub(r"[^a-zA-Z0-9._-]", "_", raw).strip("._-")
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    return f"m-{safe[:200]}-{digest}"


class ChromaIndex:
    """Chroma collections keyed by (namespace, env, kind); embeddings are always given explicitly."""

    def __init__(self, path: Path | None = None, url: str | None = None, embed_fn: Any = None):
        self.path, self.url = path, url
        self._embed_fn = embed_fn
        self._cols: dict[str, Any] = {}
        self.client = self._connect()

    def _connect(self):
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self.url:
            u = urlparse(self.url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise MemoryStoreError(f"memory.url must look like http://host:port, got {self.url!r}")
            try:
                return chromadb.HttpClient(host=u.hostname, port=u.port or (443 if u.scheme == "https" else 8000),
                                           ssl=u.scheme == "https", settings=settings)
            except Exception as e:  # noqa: BLE001 - connection errors vary by transport
                raise MemoryStoreError(f"cannot reach the Chroma server at {self.url}: {e}") from e
        assert self.path is not None
        try:
            return chromadb.PersistentClient(path=str(self.path), settings=settings)
        except Exception as e:  # noqa: BLE001 - chroma raises many types for a bad directory
            raise MemoryStoreError(
                f"the Chroma index at {str(self.path)!r} cannot be opened ({type(e).__name__}: {e}); "
                f"rebuild it from the side store with: agentsd memory repair --path {self.path.parent}"
            ) from e

    def reload(self) -> None:
        """Drop this process's cached client (and its in-memory HNSW) and reconnect."""
        if self.url:
            return  # a server is shared: there is nothing stale in this process
        forget_client(self.path)
        self._cols.clear()
        self.client = self._connect()

    def collection(self, name: str, create: bool = True):
        col = self._cols.get(name)
        if col is not None:
            return col
        if create:
            col = self.client.get_or_create_collection(
                name, embedding_function=self._embed_fn, metadata={"hnsw:space": "cosine"}
            )
        else:
            try:
                col = self.client.get_collection(name, embedding_function=self._embed_fn)
            except Exception:  # noqa: BLE001 - NotFoundError differs across chroma versions
                return None
        self._cols[name] = col
        return col

    def upsert(self, name: str, ids: list[str], embeddings: np.ndarray, metadatas: list[dict], documents: list[str],
               add: bool = False):
        col = self.collection(name)
        write = col.add if add else col.upsert
        for i in range(0, len(ids), 4000):
            write(ids=ids[i : i + 4000], embeddings=embeddings[i : i + 4000],
                  metadatas=metadatas[i : i + 4000], documents=documents[i : i + 4000])

    def delete(self, name: str, ids: list[str]) -> None:
        col = self.collection(name, create=False)
        if col is not None and ids:
            col.delete(ids=ids)

    def query(self, name: str, embeddings: np.ndarray, n: int) -> list[tuple[list[str], list[float], np.ndarray]]:
        """Per query: (ids, cosine similarities, embeddings of the hits)."""
        col = self.collection(name, create=False)
        if col is None:
            return [([], [], np.zeros((0, embeddings.shape[1]), np.float32)) for _ in range(len(embeddings))]
        r = col.query(query_embeddings=embeddings, n_results=n, include=["distances", "embeddings"])
        out = []
        for ids, dists, embs in zip(r["ids"], r["distances"], r["embeddings"], strict=True):
            e = np.asarray(embs, dtype=np.float32) if len(ids) else np.zeros((0, embeddings.shape[1]), np.float32)
            out.append((list(ids), [1.0 - float(d) for d in dists], e))
        return out

    def count(self, name: str) -> int:
        col = self.collection(name, create=False)
        return 0 if col is None else col.count()

    def ids(self, name: str) -> list[str]:
        col = self.collection(name, create=False)
        return [] if col is None else list(col.get(include=[])["ids"])

    def names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self.client.list_collections()]

    def drop(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.client.delete_collection(name)
        self._cols.pop(name, None)
