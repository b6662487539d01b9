"""What the search agent reads and writes: the failure vocabulary, the two action tags, answer
normalization and scoring (exact match and token F1, SQuAD-style), and the rules text."""

from __future__ import annotations

import re
import string
from collections import Counter
from enum import Enum


class SearchFailure(str, Enum):
    """Why a search step went wrong (``info["diagnosis"]["failure_type"]`` holds the value)."""

    NO_SEARCH = "no_search"  # answered (wrongly) without a single search
    IRRELEVANT_QUERY = "irrelevant_query"  # the query retrieved no gold passage
    ANSWER_NOT_IN_RESULTS = "answer_not_in_results"  # the (wrong) answer appears in no retrieved passage
    WRONG_ANSWER = "wrong_answer"  # the answer is wrong, though grounded in what was retrieved
    FORMAT = "format"  # no <search> or <answer> block, or an empty / overlong one
    TIMEOUT = "timeout"  # ran out of turns without answering


#: Longest query / answer body accepted (characters); longer blocks are invalid.
MAX_QUERY = 300
MAX_ANSWER = 200
_TAGS = ("search", "answer")

HOW = "write <search>your query</search> to search, or <answer>your answer</answer> to answer"


def parse_turn(text: object) -> tuple[str, str] | None:
    """The first complete ``<search>...</search>`` or ``<answer>...</answer>`` block of ``text`` as
    ``(kind, body)`` (body stripped, original case), or ``None`` when there is none, it is empty or it
    is too long. The first block counts: whatever a model writes after its action (an imagined result,
    a guessed answer) is not acted on. Linear in the text length (``str.find``, no regex)."""
    if not isinstance(text, str):
        return None
    low = text.lower()
    best: tuple[int, str, int] | None = None  # (start of the close tag, kind, start of the body)
    for kind in _TAGS:
        close = low.find(f"</{kind}>")
        if close < 0:
            continue
        start = low.rfind(f"<{kind}>", 0, close)
        if start < 0:
            continue
        if best is None or close < best[0]:
            best = (close, kind, start + len(kind) + 2)
    if best is None:
        return None
    close, kind, body_start = best
    body = " ".join(text[body_start:close].split())
    limit = MAX_QUERY if kind == "search" else MAX_ANSWER
    if not body or len(body) > limit:
        return None
    return kind, body


def explain_invalid(text: object) -> str:
    if not isinstance(text, str):
        return f"the action is not text; {HOW}"
    low = text.lower()
    for kind in _TAGS:
        close = low.find(f"</{kind}>")
        if close >= 0 and low.rfind(f"<{kind}>", 0, close) >= 0:
            start = low.rfind(f"<{kind}>", 0, close) + len(kind) + 2
            if not text[start:close].strip():
                return f"the <{kind}> block is empty; {HOW}"
            limit = MAX_QUERY if kind == "search" else MAX_ANSWER
            return f"the <{kind}> block is longer than {limit} characters; {HOW}"
    return f"no <search>...</search> or <answer>...</answer> block; {HOW}"


def format_search(query: str) -> str:
    return f"<search>{query}</search>"


def format_answer(answer: str) -> str:
    return f"<answer>{answer}</answer>"


# --- answer scoring ---------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (the usual
    SQuAD normalization)."""
    s = s.lower().translate(_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds: list[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: list[str]) -> float:
    """Best token-level F1 of ``prediction`` against any gold answer."""
    pt = normalize_answer(prediction).split()
    best = 0.0
    for g in golds:
        gt = normalize_answer(g).split()
        if not pt or not gt:
            best = max(best, float(pt == gt))
            continue
        common = sum((Counter(pt) & Counter(gt)).values())
        if common:
            prec, rec = common / len(pt), common / len(gt)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def contains_answer(text_norm: str, answer: str) -> bool:
    """Whether the normalized ``answer`` occurs as a whole-token span of ``text_norm`` (an already
    normalized passage)."""
    a = normalize_answer(answer)
    if not a:
        return False
    return f" {a} " in f" {text_norm} "


def rules(k: int, max_turns: int, format_penalty: float, reward: str) -> str:
    what = "1 for an exactly correct answer, else 0" if reward == "em" else "the token F1 of your answer"
    return (
        "Answer the question using a search engine over a collection of passages. The people, places, "
        "organizations and events in it may be fictional: rely on the passages, not on what you know.\n"
        "Each turn, write exactly one action:\n"
        f"- <search>query</search>: returns the top {k} passages for the query, each as Doc id (title): text. "
        "Use short keyword queries (names and the relation you need, e.g. <search>Kavo Drelin born</search>); "
        "for a question with several steps, search for each step in turn.\n"
        "- <answer>text</answer>: your final answer, as short as possible (a name, place or year, no "
        "sentence); it ends the episode.\n"
        f"You have {max_turns} turns. Reward: {what}; {format_penalty:+g} for a turn without a valid action; "
        "0 if you run out of turns.\n"
        "Answer format: think briefly if you like, then write one action, e.g. "
        "<search>Velmora Lantern Festival</search> or <answer>Tarsland</answer>."
    )
