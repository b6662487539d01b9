"""Search: question answering with a search tool.

The agent writes ``<search>query</search>`` to get the top-k passages and ``<answer>text</answer>`` to
answer (exact match after SQuAD normalization; F1 in ``info``). Data: a seeded synthetic world of
fictional people, places, organizations and events with 1-hop, 2-hop, comparison and bridge questions
(:mod:`~agentsd.envs.search.world`), or user JSONL corpora and questions
(:mod:`~agentsd.envs.search.corpus`). Retrieval: BM25 (default), dense embeddings, or an HTTP client of
the Search-R1 ``/retrieve`` API, whose server ships too (``python -m agentsd.envs.search.server``).
``agentsd.envs.make("search", qtype="bridge")`` builds :class:`SearchEnv`.
"""

from agentsd.envs.search.corpus import (
    CorpusFormatError,
    Passage,
    Question,
    load_passages,
    load_questions,
)
from agentsd.envs.search.env import FAILURE_PREDICATES, PREDICATES, SearchEnv
from agentsd.envs.search.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HTTPRetriever,
    Retriever,
    RetrieverError,
    make_retriever,
)
from agentsd.envs.search.text import SearchFailure, exact_match, f1_score, normalize_answer, parse_turn
from agentsd.envs.search.world import QTYPES, World, default_world, generate_world

__all__ = [
    "FAILURE_PREDICATES",
    "PREDICATES",
    "QTYPES",
    "BM25Retriever",
    "CorpusFormatError",
    "DenseRetriever",
    "HTTPRetriever",
    "Passage",
    "Question",
    "Retriever",
    "RetrieverError",
    "SearchEnv",
    "SearchFailure",
    "World",
    "default_world",
    "exact_match",
    "f1_score",
    "generate_world",
    "load_passages",
    "load_questions",
    "make_retriever",
    "normalize_answer",
    "parse_turn",
]
