"""The search text environment (see :class:`SearchEnv`)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentsd.envs.base import Diagnosis, Predicate, TextEnv
from agentsd.envs.search.corpus import Passage, Question, load_passages, load_questions
from agentsd.envs.search.retrieval import Retriever, make_retriever
from agentsd.envs.search.text import (
    SearchFailure,
    contains_answer,
    exact_match,
    explain_invalid,
    f1_score,
    format_answer,
    format_search,
    normalize_answer,
    parse_turn,
    rules,
)
from agentsd.envs.search.world import QTYPES, default_world, split_questions

F = SearchFailure

_PREDICATES = (
    Predicate("invalid_format", "the text has no valid <search> or <answer> block", "before"),
    Predicate("answers_without_search", "the text answers before any search was made", "before"),
    Predicate("answer_not_in_results", "the text answers with something no retrieved passage contains", "before"),
    Predicate("repeats_query", "the text searches a query already searched in this episode", "before"),
    Predicate("gold_retrieved", "every gold supporting passage has been retrieved", "after"),
    Predicate("solved", "the question was answered correctly", "after"),
    Predicate("passage_seen", "the passage with this id has been retrieved", "after",
              {"passage_id": "str, a passage id as shown after 'Doc'"}),
    Predicate("searched_at_least", "at least n searches were made", "after", {"n": "int, number of searches"}),
)
PREDICATES: dict[str, Predicate] = {p.name: p for p in _PREDICATES}
FAILURE_PREDICATES: dict[str, str] = {
    F.FORMAT.value: "invalid_format",
    F.NO_SEARCH.value: "answers_without_search",
    F.ANSWER_NOT_IN_RESULTS.value: "answer_not_in_results",
}

#: Retrievers and corpora shared by every env of a process, by (source, backend, options).
_SHARED: dict[tuple, Any] = {}


def _shared(key: tuple, build):
    if key not in _SHARED:
        _SHARED[key] = build()
    return _SHARED[key]


def _file_key(path: str | os.PathLike) -> tuple:
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return (str(p), st.st_mtime_ns, st.st_size)


class SearchEnv(TextEnv):
    """Answer a question by searching a passage collection.

    ## Action
    The first complete ``<search>query</search>`` or ``<answer>text</answer>`` block of the turn's text
    (query <= 300, answer <= 200 characters). A search returns the top ``k`` passages; an answer ends the
    episode. Anything else is invalid: ``format_penalty`` and no change.

    ## Observation
    The question, the turn counter and the queries so far, the passages of the last search (``Doc id
    (title): text``), then earlier passages newest first (at most ``show`` in all), and the last message.

    ## Reward
    On the answer turn: exact match (1 or 0) after SQuAD normalization (lower case, no punctuation, no
    articles, single spaces) against any gold answer (``reward="f1"``: the token F1 instead); both are in
    ``info["em"]`` / ``info["f1"]``. ``search_penalty`` (0) per search; ``format_penalty`` (-0.1) for an
    invalid turn; nothing more when the turns run out.

    ## Episode end
    Terminated by an answer; truncated after ``max_turns`` turns without one (failure ``timeout``).

    ## Info
    ``action_is_valid``, ``action_is_effective`` (a search brought passages not seen before),
    ``success`` (answered correctly), ``action`` ([kind, body] or None), ``question``, ``qtype``,
    ``retrieved`` (ids of this search), ``em``/``f1`` (answer turns), ``gold_answers`` (when the episode
    ends) and ``diagnosis``: a :class:`SearchFailure` value (``no_search``: a wrong answer before any
    search; ``irrelevant_query``: the search retrieved no gold passage; ``answer_not_in_results``: a wrong
    answer found in no retrieved passage; ``wrong_answer``; ``format``; ``timeout``), the state diff
    (``new_passages``, ``query`` / ``answer``), ``progress`` (the fraction of gold passages retrieved so
    far, below 1 until solved) and ``stagnation``. Questions without gold passage ids (user files) count a
    passage as gold when it contains a gold answer.

    ## Predicates
    "before": ``invalid_format``, ``answers_without_search``, ``answer_not_in_results``,
    ``repeats_query``; they need no gold labels, so they flag the risk whether or not the answer happens
    to be right (``step`` reports ``no_search`` / ``answer_not_in_results`` only for wrong answers).
    "after": ``gold_retrieved``, ``solved``, ``passage_seen(passage_id)``, ``searched_at_least(n)``.

    ## Data
    By default a synthetic world (:mod:`agentsd.envs.search.world`, ``world_seed``, ``world_scale``)
    shared by all tasks; the seed picks the question (``qtype`` fixes one of ``1hop``, ``2hop``,
    ``comparison``, ``bridge``; otherwise they rotate), train and test seeds index disjoint questions.
    ``corpus=path`` and ``questions=path`` load user JSONL files instead
    (:mod:`agentsd.envs.search.corpus`; ``test_fraction`` of the questions are test questions).

    ## Retrieval
    ``retriever``: ``"bm25"`` (default), ``"dense"`` (sentence embeddings), ``"http"`` (a Search-R1
    ``/retrieve`` server at ``url``; then ``corpus`` may be omitted) or any object with
    ``search(query, k) -> list[Passage]``. Retrievers are built once per process and corpus.
    """

    metadata = {**TextEnv.metadata, "render_fps": 4}
    name = "search"
    train_seeds = range(0, 1_000_000)
    test_seeds = range(1_000_000, 1_100_000)
    failure_types = SearchFailure
    failure_predicates = FAILURE_PREDICATES

    def __init__(
        self,
        corpus: str | os.PathLike | None = None,
        questions: str | os.PathLike | Sequence[Question] | None = None,
        retriever: str | Retriever = "bm25",
        url: str = "http://127.0.0.1:8000/retrieve",
        k: int = 3,
        max_turns: int = 6,
        qtype: str | None = None,
        world_seed: int = 0,
        world_scale: float = 1.0,
        show: int = 6,
        max_passage_chars: int = 600,
        reward: str = "em",
        format_penalty: float = -0.1,
        search_penalty: float = 0.0,
        test_fraction: float = 0.2,
        render_mode: str | None = None,
    ):
        super().__init__(render_mode=render_mode)
        if not 1 <= k <= 100:
            raise ValueError(f"k must be in 1..100, got {k}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if reward not in ("em", "f1"):
            raise ValueError(f"reward must be 'em' or 'f1', got {reward!r}")
        if show < 1:
            raise ValueError(f"show must be >= 1, got {show}")
        self.k, self.max_turns, self.show, self.max_passage_chars = k, max_turns, show, max_passage_chars
        self.reward_kind, self.format_penalty, self.search_penalty = reward, format_penalty, search_penalty
        self.qtype = qtype
        self._by_id: dict[str, Passage] = {}
        if questions is None:
            if corpus is not None:
                raise ValueError("corpus= needs questions= (a JSONL file of questions about it)")
            if qtype is not None and qtype not in QTYPES:
                raise ValueError(f"qtype must be one of {QTYPES} or None, got {qtype!r}")
            world = default_world(int(world_seed), float(world_scale))
            self._by_id = world.by_id
            types = [qtype] if qtype else list(QTYPES)
            self._pools = {t: split_questions(world, t) for t in types}
            passages: list[Passage] | None = world.passages
            source: tuple = ("world", int(world_seed), float(world_scale))
        else:
            qs = (_shared(("questions", *_file_key(questions)), lambda: load_questions(questions))
                  if isinstance(questions, (str, os.PathLike)) else list(questions))
            if qtype is not None:
                qs = [q for q in qs if q.type == qtype]
                if not qs:
                    raise ValueError(f"no questions of type {qtype!r}")
            if not 0 < test_fraction < 1:
                raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
            order = list(range(len(qs)))
            random.Random(0).shuffle(order)
            n_test = min(len(qs) - 1, max(1, round(len(qs) * test_fraction))) if len(qs) > 1 else 0
            test = [qs[i] for i in sorted(order[:n_test])]
            train = [qs[i] for i in sorted(order[n_test:])]
            self._pools = {qtype or "user": (train, test or train)}
            passages = None
            source = ("none",)
            if corpus is not None:
                key = ("corpus", *_file_key(corpus))
                passages = _shared(key, lambda: load_passages(corpus))
                self._by_id = _shared(key + ("by_id",), lambda: {p.id: p for p in passages})
                source = key
            elif isinstance(retriever, str) and retriever != "http":
                raise ValueError(f"the {retriever!r} retriever needs corpus= (or use retriever='http')")
        if isinstance(retriever, str):
            opts: dict[str, Any] = {"url": url} if retriever == "http" else {}
            self.retriever = _shared((source, retriever, url if retriever == "http" else None),
                                     lambda: make_retriever(retriever, passages, **opts))
        else:
            self.retriever = make_retriever(retriever, passages)
        self._types = list(self._pools)
        self.q: Question | None = None

    # --- text ---------------------------------------------------------------------------------
    def instructions(self) -> str:
        return rules(self.k, self.max_turns, self.format_penalty, self.reward_kind)

    def task_description(self) -> str:
        if self.q is None:
            return "Answer the question (a new question each episode) using the search engine."
        return f"Answer the question: {self.q.question}"

    def parse_action(self, text: str) -> list[tuple[str, str]] | None:
        a = parse_turn(text)
        return None if a is None else [a]

    # --- tasks --------------------------------------------------------------------------------
    def question_for(self, seed: int) -> Question:
        """The question a seed maps to (test seeds: the test questions; any other seed: train)."""
        test = seed in self.test_seeds
        off = seed - self.test_seeds.start if test else seed
        if len(self._types) > 1:
            t, idx = self._types[off % len(self._types)], off // len(self._types)
        else:
            t, idx = self._types[0], off
        pool = self._pools[t][1 if test else 0]
        return pool[idx % len(pool)]

    # --- episode ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(self.train_seeds.start, self.train_seeds.stop))
        self.q = self.question_for(int(seed))
        self._gold = set(self.q.gold_ids)
        self._golds_norm = [normalize_answer(a) for a in self.q.answers]
        self.turn = 0
        self.queries: list[str] = []  # normalized, in order
        self.query_texts: list[str] = []
        self.seen: dict[str, Passage] = {}
        self._seen_norm: dict[str, str] = {}
        self.order: list[str] = []  # seen ids, newest search first
        self.last: list[Passage] = []
        self.last_query: str | None = None
        self.gold_seen: set[str] = set()
        self.answer: str | None = None
        self.solved = False
        self.done = False
        self.message = "no search yet"
        self._best, self._stagnation = self._progress(), 0
        diag = self._diagnosis(None, "new question", {})
        return self._obs(), self._info(True, False, diag, None, [])

    def step(self, action: str):
        if self.q is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            diag = self._diagnosis(None, "the episode is over; call reset()", {})
            return self._obs(), 0.0, True, False, self._info(False, False, diag, None, [])
        self.turn += 1
        parsed = parse_turn(action)
        reward, fail, diff, retrieved, extra = 0.0, None, {}, [], {}
        effective = terminated = False
        if parsed is None:
            fail, detail, reward = F.FORMAT, explain_invalid(action), self.format_penalty
        elif parsed[0] == "search":
            query = parsed[1]
            results = self._retrieve(query)
            retrieved = [p.id for p in results]
            new = [p for p in results if p.id not in self.seen]
            repeated = normalize_answer(query) in self.queries
            self.queries.append(normalize_answer(query))
            self.query_texts.append(query)
            for p in new:
                self.seen[p.id] = p
                self._seen_norm[p.id] = normalize_answer(f"{p.title} {p.text}")
            self.order = retrieved + [i for i in self.order if i not in set(retrieved)]
            self.last, self.last_query = results, query
            hits = [p.id for p in results if self._is_gold(p)]
            self.gold_seen.update(hits)
            effective = bool(new)
            reward = self.search_penalty
            diff = {"query": query, "new_passages": [p.id for p in new]}
            detail = f"searched {query!r}: {len(results)} passages, {len(new)} new"
            if repeated:
                detail += " (a query already searched)"
            if not hits:
                fail = F.IRRELEVANT_QUERY
                detail += "; none of them supports the answer"
        else:
            ans = parsed[1]
            self.answer = ans
            em, f1 = exact_match(ans, list(self.q.answers)), f1_score(ans, list(self.q.answers))
            self.solved = em == 1.0
            self.done = terminated = True
            effective = True
            reward = em if self.reward_kind == "em" else f1
            diff = {"answer": ans}
            extra = {"em": em, "f1": f1}
            if self.solved:
                detail = f"answered {ans!r}: correct"
            else:
                if not self.queries:
                    fail = F.NO_SEARCH
                elif not self._grounded(ans):
                    fail = F.ANSWER_NOT_IN_RESULTS
                else:
                    fail = F.WRONG_ANSWER
                detail = f"answered {ans!r}: wrong"
        truncated = not terminated and self.turn >= self.max_turns
        if truncated:
            fail, detail = F.TIMEOUT, detail + f"; ran out of turns ({self.max_turns}) without an answer"
            self.done = True
        if terminated or truncated:
            extra["gold_answers"] = list(self.q.answers)
        self.message = detail
        progress = self._progress()
        if progress > self._best + 1e-12:
            self._best, self._stagnation = progress, 0
        else:
            self._stagnation += 1
        diag = self._diagnosis(fail, detail, diff)
        info = self._info(parsed is not None, effective, diag, parsed, retrieved, **extra)
        return self._obs(), float(reward), terminated, truncated, info

    # --- retrieval and grounding --------------------------------------------------------------
    def _retrieve(self, query: str) -> list[Passage]:
        return list(self.retriever.search(query, self.k))[: self.k]

    def _is_gold(self, p: Passage) -> bool:
        if self._gold:
            return p.id in self._gold
        text = normalize_answer(f"{p.title} {p.text}")
        return any(contains_answer(text, a) for a in self.q.answers)

    def _grounded(self, answer: str) -> bool:
        return any(contains_answer(t, answer) for t in self._seen_norm.values())

    # --- diagnosis ----------------------------------------------------------------------------
    def _progress(self) -> float:
        if self.solved:
            return 1.0
        if self._gold:
            frac = len(self.gold_seen & self._gold) / len(self._gold)
        else:
            frac = 1.0 if self.gold_seen else 0.0
        return min(0.99, frac)

    def _diagnosis(self, fail: SearchFailure | None, detail: str, diff: dict) -> Diagnosis:
        extra = {
            "turn": self.turn,
            "max_turns": self.max_turns,
            "searches": len(self.queries),
            "passages_seen": len(self.seen),
            "gold_seen": len(self.gold_seen),
            "gold_total": len(self._gold) or None,
        }
        return Diagnosis(
            failure_type=fail.value if fail is not None else None,
            detail=detail,
            state_diff=diff,
            progress=self._progress(),
            stagnation=self._stagnation,
            extra=extra,
        )

    def _info(self, valid: bool, effective: bool, diag: Diagnosis, parsed, retrieved: list[str],
              **extra: Any) -> dict[str, Any]:
        return self.make_info(
            valid=valid,
            effective=effective,
            success=self.solved,
            diagnosis=diag,
            action=list(parsed) if parsed is not None else None,
            question=self.q.question,
            qtype=self.q.type,
            retrieved=retrieved,
            **extra,
        )

    # --- predicates ---------------------------------------------------------------------------
    def predicates(self) -> dict[str, Predicate]:
        return dict(PREDICATES)

    def _ready(self) -> bool:
        if self.q is None:
            raise RuntimeError("call reset() before check()")
        return True

    def _pred_invalid_format(self, action: str) -> bool:
        return self._ready() and parse_turn(action) is None

    def _pred_answers_without_search(self, action: str) -> bool:
        a = self._ready() and parse_turn(action)
        return bool(a) and a[0] == "answer" and not self.queries

    def _pred_answer_not_in_results(self, action: str) -> bool:
        a = self._ready() and parse_turn(action)
        return bool(a) and a[0] == "answer" and not self._grounded(a[1])

    def _pred_repeats_query(self, action: str) -> bool:
        a = self._ready() and parse_turn(action)
        return bool(a) and a[0] == "search" and normalize_answer(a[1]) in self.queries

    def _pred_gold_retrieved(self, action: None) -> bool:
        self._ready()
        if self._gold:
            return self._gold <= self.gold_seen
        return bool(self.gold_seen)

    def _pred_solved(self, action: None) -> bool:
        return self._ready() and self.solved

    def _pred_passage_seen(self, action: None, passage_id: str) -> bool:
        return self._ready() and str(passage_id) in self.seen

    def _pred_searched_at_least(self, action: None, n: int) -> bool:
        return self._ready() and len(self.queries) >= int(n)

    # --- views --------------------------------------------------------------------------------
    def _fmt(self, p: Passage) -> str:
        text = p.text if len(p.text) <= self.max_passage_chars else p.text[: self.max_passage_chars] + " ..."
        # no [brackets]: terminals that render rich markup (agentsd play) would eat "[syn-000123]"
        return f"Doc {p.id} ({p.title}): {text}" if p.title else f"Doc {p.id}: {text}"

    def _obs(self) -> str:
        q = self.q
        lines = [f"Question: {q.question}", f"Turn {self.turn}/{self.max_turns}. Searches so far: "
                 + ("; ".join(repr(x) for x in self.query_texts) if self.query_texts else "none")]
        shown = 0
        if self.last_query is not None:
            lines.append(f"Results for {self.last_query!r}:" if self.last else
                         f"Results for {self.last_query!r}: no passage matches")
            for p in self.last[: self.show]:
                lines.append(self._fmt(p))
                shown += 1
            last_ids = {p.id for p in self.last}
            earlier = [self.seen[i] for i in self.order if i not in last_ids][: self.show - shown]
            if earlier:
                lines.append("Earlier passages:")
                lines.extend(self._fmt(p) for p in earlier)
        lines.append(f"Last: {self.message}")
        return "\n".join(lines)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._obs() if self.q is not None else ""
        return None

    # --- oracle -------------------------------------------------------------------------------
    def oracle_action(self) -> str | None:
        """Search each hop of the gold path (the reference query, then the gold passage's own opening
        words if that missed), then answer with the first gold answer. Questions without a path:
        search the question once, then answer."""
        if self.q is None or self.done:
            return None
        q = self.q
        if self.turn < self.max_turns - 1:
            if not q.hops:
                if not self.queries:
                    return format_search(q.question[:300])
            else:
                for hop, gid in zip(q.hops, q.gold_ids, strict=False):
                    if gid in self.gold_seen:
                        continue
                    for query in (hop, self._fallback_query(gid)):
                        if query and normalize_answer(query) not in self.queries:
                            return format_search(query)
        return format_answer(q.answers[0])

    def _fallback_query(self, gid: str) -> str | None:
        p = self._by_id.get(gid)
        if p is None:
            return None
        return " ".join(f"{p.title} {p.text}".split()[:14])[:300]
