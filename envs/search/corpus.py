"""Passages, questions, and loaders for user corpora in the common JSONL layouts.

Passages (one JSON object per line), any of:

- ``{"id": ..., "contents": "\\"Title\\"\\ntext"}`` (the Search-R1 / FlashRAG layout: a quoted title on
  the first line, then the text; contents without such a first line are all text);
- ``{"id": ..., "title": ..., "text": ...}`` (DPR / KILT style; ``"_id"`` as in BEIR also works).

Questions, any of:

- ``{"question": ..., "golden_answers": [...]}`` (Search-R1 / FlashRAG);
- ``{"question": ..., "answer": "..."}`` (HotpotQA) or ``{"question": ..., "answers": [...]}`` (NQ);

with optional ``"id"``, ``"type"`` and gold passage ids under ``"gold_ids"`` (or
``"supporting_ids"``). Without gold ids, a retrieved passage counts as relevant when it contains a gold
answer (see :class:`~agentsd.envs.search.env.SearchEnv`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """The Search-R1 ``contents`` string: the quoted title, a newline, the text."""
        return f'"{self.title}"\n{self.text}' if self.title else self.text

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "contents": self.contents}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    type: str = "user"
    gold_ids: tuple[str, ...] = ()
    #: Reference queries (one per hop) an oracle issues in order; empty for user questions.
    hops: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "question": self.question, "golden_answers": list(self.answers), "type": self.type}
        if self.gold_ids:
            d["gold_ids"] = list(self.gold_ids)
        if self.hops:
            d["hops"] = list(self.hops)
        return d


class CorpusFormatError(ValueError):
    """A corpus or question file line that is not in a known layout; the message names file and line."""


def split_contents(contents: str) -> tuple[str, str]:
    """``'"Title"\\ntext'`` -> ``("Title", "text")``; anything else -> ``("", contents)``."""
    head, sep, rest = contents.partition("\n")
    h = head.strip()
    if sep and len(h) >= 2 and h[0] == '"' and h[-1] == '"':
        return h[1:-1], rest.strip()
    return "", contents.strip()


def passage_from_dict(d: dict[str, Any], where: str = "") -> Passage:
    pid = d.get("id", d.get("_id", d.get("docid")))
    if pid is None:
        raise CorpusFormatError(f"{where}: passage has no 'id' (keys: {sorted(d)})")
    if "contents" in d:
        title, text = split_contents(str(d["contents"]))
        if d.get("title"):
            title = str(d["title"])
    elif "text" in d:
        title, text = str(d.get("title") or ""), str(d["text"])
    else:
        raise CorpusFormatError(f"{where}: passage {pid!r} has neither 'contents' nor 'text' (keys: {sorted(d)})")
    return Passage(str(pid), title, text)


def question_from_dict(d: dict[str, Any], index: int, where: str = "") -> Question:
    q = d.get("question")
    if not isinstance(q, str) or not q.strip():
        raise CorpusFormatError(f"{where}: no 'question' text (keys: {sorted(d)})")
    for key in ("golden_answers", "answers", "answer"):
        if key in d:
            raw = d[key]
            break
    else:
        raise CorpusFormatError(f"{where}: no 'golden_answers', 'answers' or 'answer' (keys: {sorted(d)})")
    answers = [raw] if isinstance(raw, (str, int, float)) else list(raw or [])
    answers = [str(a) for a in answers if str(a).strip()]
    if not answers:
        raise CorpusFormatError(f"{where}: empty gold answers")
    gold = d.get("gold_ids", d.get("supporting_ids")) or []
    return Question(
        id=str(d.get("id", d.get("_id", index))),
        question=q.strip(),
        answers=tuple(answers),
        type=str(d.get("type") or "user"),
        gold_ids=tuple(str(g) for g in gold),
        hops=tuple(str(h) for h in d.get("hops") or ()),
    )


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each JSON object of a JSONL file (or of a JSON array file)."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise CorpusFormatError(f"{path}: a .json file must hold a list of objects")
        for i, d in enumerate(data):
            if not isinstance(d, dict):
                raise CorpusFormatError(f"{path}[{i}]: not a JSON object")
            yield f"{path}[{i}]", d
        return
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusFormatError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(d, dict):
                raise CorpusFormatError(f"{path}:{n}: not a JSON object")
            yield f"{path}:{n}", d


def load_passages(path: str | os.PathLike) -> list[Passage]:
    """Passages from a JSONL (or JSON array) file in one of the layouts above; ids must be unique."""
    p = Path(path).expanduser()
    out, seen = [], set()
    for where, d in _records(p):
        ps = passage_from_dict(d, where)
        if ps.id in seen:
            raise CorpusFormatError(f"{where}: duplicate passage id {ps.id!r}")
        seen.add(ps.id)
        out.append(ps)
    if not out:
        raise CorpusFormatError(f"{p}: no passages")
    return out


def load_questions(path: str | os.PathLike) -> list[Question]:
    p = Path(path).expanduser()
    out = [question_from_dict(d, i, where) for i, (where, d) in enumerate(_records(p))]
    if not out:
        raise CorpusFormatError(f"{p}: no questions")
    return out


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
