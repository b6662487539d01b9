"""The search env: action parsing, answer scoring, the synthetic world, the diagnosis and predicates
agreeing with ``step``, the oracle over every question type, user JSONL corpora, and the retrieval
backends (BM25, the Search-R1 HTTP API on loopback, dense embeddings)."""

import copy
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import gymnasium
import numpy as np
import pytest

from agentsd.envs import make
from agentsd.envs.search import (
    QTYPES,
    BM25Retriever,
    CorpusFormatError,
    HTTPRetriever,
    Passage,
    RetrieverError,
    SearchEnv,
    SearchFailure,
    default_world,
    exact_match,
    f1_score,
    generate_world,
    load_passages,
    load_questions,
    normalize_answer,
    parse_turn,
)
from agentsd.envs.search.retrieval import _top_k, tokenize
from agentsd.envs.search.server import serve_in_thread
from agentsd.envs.search.world import split_questions

F = SearchFailure


def S(q: str) -> str:
    return f"<search>{q}</search>"


def A(a: str) -> str:
    return f"<answer>{a}</answer>"


def episode(env: SearchEnv, seed: int) -> dict:
    env.reset(seed=seed)
    info: dict = {}
    while True:
        a = env.oracle_action()
        assert a is not None
        _, _, term, trunc, info = env.step(a)
        if term or trunc:
            return info


@pytest.fixture(scope="module")
def env() -> SearchEnv:
    return SearchEnv()


# --- parsing and scoring ------------------------------------------------------------------------
def test_parse_turn():
    assert parse_turn("<search>Kavo  Drelin\nborn</search>") == ("search", "Kavo Drelin born")
    assert parse_turn("I think... <ANSWER> Tarsland </Answer>") == ("answer", "Tarsland")
    # the first complete block is the action; a guessed answer after a search is not acted on
    assert parse_turn(S("a") + " <information>...</information> " + A("b")) == ("search", "a")
    assert parse_turn(A("b") + S("a")) == ("answer", "b")
    for bad in ("", "just text", "<search></search>", "<answer>   </answer>", "<search>x", "x</answer>",
                "<answer>" + "y" * 201 + "</answer>", "<search>" + "q" * 301 + "</search>", None, 3):
        assert parse_turn(bad) is None, bad
    t0 = time.perf_counter()  # adversarial text stays linear
    assert parse_turn("<search>" * 200_000 + "</answer>" * 10) is None
    assert time.perf_counter() - t0 < 1.0


def test_normalization_and_scores():
    assert normalize_answer("  The Velmora-Port, Inc.! ") == "velmoraport inc"
    assert normalize_answer("An Apple a day") == "apple day"
    assert exact_match("the Tarsland", ["Tarsland"]) == 1.0
    assert exact_match("Tarsland Republic", ["Tarsland"]) == 0.0
    assert f1_score("Tarsland Republic", ["Tarsland"]) == pytest.approx(2 / 3)
    assert f1_score("x", ["Tarsland", "x"]) == 1.0
    assert f1_score("", ["a"]) == 1.0  # both empty after normalization
    assert f1_score("", ["b"]) == 0.0


# --- the synthetic world -----------------------------------------------------------------------
def test_world_is_deterministic_and_consistent():
    a, b = generate_world(3, scale=0.2), generate_world(3, scale=0.2)
    assert a.passages == b.passages and a.all_questions() == b.all_questions()
    assert generate_world(4, scale=0.2).passages != a.passages
    w = default_world()
    assert 2000 <= len(w.passages) <= 4000 and len({p.id for p in w.passages}) == len(w.passages)
    names = [e.name for group in (w.people, w.cities, w.countries, w.orgs, w.events) for e in group]
    assert len({normalize_answer(n) for n in names}) == len(names)  # every entity name is unique
    texts = [q.question for q in w.all_questions()]
    assert len(set(texts)) == len(texts)
    for t in QTYPES:
        qs = w.questions[t]
        assert len(qs) >= 200, t
        for q in qs:
            assert q.type == t and q.answers and len(q.hops) == len(q.gold_ids) >= 1
            assert all(g in w.by_id for g in q.gold_ids)
            gold_text = " ".join(normalize_answer(w.by_id[g].title + " " + w.by_id[g].text) for g in q.gold_ids)
            assert normalize_answer(q.answers[0]) in gold_text, q  # the answer is stated by a gold passage
        if t != "1hop":
            assert all(len(q.gold_ids) >= 2 for q in qs), t
    # distractors: families share names, so a family name alone is ambiguous
    fam = Counter(p.family for p in w.people)
    assert max(fam.values()) >= 3


def test_train_and_test_questions_are_disjoint(env):
    w = default_world()
    for t in QTYPES:
        tr, te = split_questions(w, t)
        assert tr and te and not {q.id for q in tr} & {q.id for q in te}
    train = {env.question_for(s).id for s in range(0, 4000)}
    test = {env.question_for(s).id for s in range(1_000_000, 1_004000)}
    assert not train & test
    assert len(test) > 1000
    assert {env.question_for(s).type for s in range(1_000_000, 1_000_004)} == set(QTYPES)
    typed = SearchEnv(qtype="bridge")
    assert {typed.question_for(s).type for s in range(50)} == {"bridge"}


# --- episodes, rewards and the diagnosis ---------------------------------------------------------
def test_oracle_solves_test_questions_of_every_type(env):
    ok, gold, n, turns = Counter(), Counter(), Counter(), Counter()
    for seed in range(env.test_seeds.start, env.test_seeds.start + 400):
        info = episode(env, seed)
        t = info["qtype"]
        n[t] += 1
        ok[t] += info["success"] and info["em"] == 1.0 and info["f1"] == 1.0
        gold[t] += env.check("gold_retrieved")
        turns[t] += env.turn
    assert set(n) == set(QTYPES) and min(n.values()) >= 100
    for t in QTYPES:
        assert ok[t] / n[t] >= 0.99, (t, ok[t], n[t])
        assert gold[t] / n[t] >= 0.99, (t, gold[t], n[t])
    assert turns["1hop"] / n["1hop"] == 2.0  # one search, then the answer


def test_search_answer_rewards_and_info(env):
    env.reset(seed=1_000_001)  # a 2hop question
    q = env.q
    assert q.type == "2hop"
    obs, r, term, trunc, info = env.step(S(q.hops[0]))
    assert (r, term, trunc) == (0.0, False, False)
    assert info["action_is_valid"] and info["action_is_effective"] and info["action"] == ["search", q.hops[0]]
    d = info["diagnosis"]
    assert d["failure_type"] is None and d["progress"] == 0.5
    assert d["state_diff"]["new_passages"] == info["retrieved"] and len(info["retrieved"]) == 3
    assert q.gold_ids[0] in info["retrieved"] and f"Doc {q.gold_ids[0]} (" in obs
    assert f"Question: {q.question}" in obs and "Turn 1/6" in obs
    _, r, term, trunc, info = env.step(S(q.hops[0]))  # the same query again: nothing new
    assert not info["action_is_effective"] and info["diagnosis"]["state_diff"]["new_passages"] == []
    assert "already searched" in info["diagnosis"]["detail"] and info["diagnosis"]["stagnation"] == 1
    env.step(S(q.hops[1]))
    assert env.check("gold_retrieved")
    _, r, term, trunc, info = env.step(A(f"  the {q.answers[0].upper()}! "))
    assert (r, term, trunc) == (1.0, True, False)
    assert info["success"] and info["em"] == 1.0 and info["gold_answers"] == list(q.answers)
    assert info["diagnosis"]["progress"] == 1.0 and info["diagnosis"]["failure_type"] is None
    assert env.oracle_action() is None
    _, r, term, _, info = env.step(A("again"))  # after the end: a no-op
    assert r == 0.0 and term and not info["action_is_valid"]


def test_failure_types():
    env = SearchEnv(max_turns=3)
    env.reset(seed=1_000_000)
    info = env.step("<think>hmm</think> no action here")[4]
    assert info["diagnosis"]["failure_type"] == F.FORMAT.value and not info["action_is_valid"]
    assert env.step("<search>   </search>")[1] == -0.1
    env.reset(seed=1_000_000)
    assert env.step(A("Nowhere"))[4]["diagnosis"]["failure_type"] == F.NO_SEARCH.value
    env.reset(seed=1_000_000)
    info = env.step(S("zzqx unrelated words"))[4]
    assert info["diagnosis"]["failure_type"] == F.IRRELEVANT_QUERY.value
    assert info["diagnosis"]["progress"] == 0.0
    assert env.step(A("Nowhere"))[4]["diagnosis"]["failure_type"] == F.ANSWER_NOT_IN_RESULTS.value
    env.reset(seed=1_000_000)
    q = env.q
    obs = env.step(S(q.hops[0]))[0]
    seen_title = env.last[1].title  # a retrieved passage's title is in the results but is not the answer
    assert normalize_answer(seen_title) != normalize_answer(q.answers[0])
    assert env.step(A(seen_title))[4]["diagnosis"]["failure_type"] == F.WRONG_ANSWER.value
    env.reset(seed=1_000_000)
    for k in range(3):
        _, r, term, trunc, info = env.step(S(f"query {k}"))
    assert trunc and not term and info["diagnosis"]["failure_type"] == F.TIMEOUT.value
    assert info["gold_answers"] == list(q.answers) and r == 0.0
    assert obs.startswith("Question:")


def test_f1_reward_and_penalties():
    env = SearchEnv(reward="f1", format_penalty=-0.5, search_penalty=-0.05)
    env.reset(seed=1_000_000)
    assert env.step("nothing")[1] == -0.5
    assert env.step(S("x"))[1] == -0.05
    _, r, *_ , info = env.step(A(env.q.answers[0] + " extra words"))
    assert 0 < r < 1 and r == info["f1"] and info["em"] == 0.0
    with pytest.raises(ValueError):
        SearchEnv(reward="bleu")
    with pytest.raises(ValueError):
        SearchEnv(qtype="trivia")


# --- predicates ------------------------------------------------------------------------------------
def twin_of(env: SearchEnv) -> SearchEnv:
    """A deep copy sharing the (read-only) retriever, corpus and question pools."""
    return copy.deepcopy(env, {id(x): x for x in (env.retriever, env._by_id, env._pools)})


def _state(env: SearchEnv):
    return (env.turn, list(env.queries), dict(env.seen), set(env.gold_seen), env.solved, env.done, env.message,
            env._stagnation, env._obs())


def test_predicates_agree_with_step_and_never_change_the_env():
    env = SearchEnv()
    env.reset(seed=1_000_002)
    q = env.q
    before = ("invalid_format", "answers_without_search", "answer_not_in_results", "repeats_query")
    assert set(env.failure_predicates.values()) <= set(env.predicates())
    assert all(env.predicates()[p].when == "before" for p in env.failure_predicates.values())
    actions = ["junk", S(q.hops[0]), A("Nowhere"), A(q.answers[0])]
    s0 = _state(env)
    got = {(p, a): env.check(p, a) for p in before for a in actions}
    assert _state(env) == s0  # checking changed nothing
    assert got[("invalid_format", "junk")] and not got[("invalid_format", actions[1])]
    assert got[("answers_without_search", A("Nowhere"))] and not got[("answers_without_search", actions[1])]
    assert got[("answer_not_in_results", A("Nowhere"))]
    assert not got[("repeats_query", actions[1])]
    twin = twin_of(env)
    assert twin.step(A("Nowhere"))[4]["diagnosis"]["failure_type"] == F.NO_SEARCH.value
    env.step(actions[1])
    assert env.check("repeats_query", S(q.hops[0].upper() + "!"))
    assert env.check("searched_at_least", n=1) and not env.check("searched_at_least", n=2)
    assert env.check("passage_seen", passage_id=q.gold_ids[0])
    grounded = env.last[0].title
    assert not env.check("answer_not_in_results", A(grounded))
    assert env.check("answer_not_in_results", A("Nowhere"))
    twin = twin_of(env)
    assert twin.step(A("Nowhere"))[4]["diagnosis"]["failure_type"] == F.ANSWER_NOT_IN_RESULTS.value
    assert not env.check("gold_retrieved") and not env.check("solved")
    for hop in q.hops[1:]:
        env.step(S(hop))
    assert env.check("gold_retrieved")
    env.step(A(q.answers[0]))
    assert env.check("solved")
    with pytest.raises(KeyError, match="known"):
        env.check("nope", "x")
    with pytest.raises(ValueError):
        env.check("solved", "x")
    with pytest.raises(ValueError):
        env.check("repeats_query")
    with pytest.raises(TypeError):
        env.check("passage_seen")


# --- registry, gymnasium, render ---------------------------------------------------------------------
def test_registry_gymnasium_and_render():
    e = make("search", qtype="comparison", k=2, render_mode="ansi")
    obs, info = e.reset(seed=7)
    assert e.q.type == "comparison" and e.render() == obs
    assert "top 2 passages" in e.instructions()
    g = gymnasium.make("agentsd/Search-v0", qtype="1hop")
    obs, _ = g.reset(seed=1)
    assert obs.startswith("Question:")
    g.close()


# --- user corpora --------------------------------------------------------------------------------------
def _user_files(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "d1", "contents": '"Ostrel Bay"\nOstrel Bay is a harbour town whose lighthouse was built in 1871.'},
        {"id": "d2", "contents": '"Vemmar Klade"\nVemmar Klade is a painter born in Ostrel Bay.'},
        {"id": "d3", "title": "Quillon", "text": "Quillon is a river that flows into Ostrel Bay."},
        {"_id": "d4", "title": "Harbours", "text": "Many harbour towns have a lighthouse."},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    qs = tmp_path / "questions.jsonl"
    qrows = [
        {"question": "When was the lighthouse of Ostrel Bay built?", "golden_answers": ["1871"]},
        {"question": "Where was Vemmar Klade born?", "answer": "Ostrel Bay", "gold_ids": ["d2"]},
        {"id": "q3", "question": "Which river flows into Ostrel Bay?", "answers": ["Quillon", "the Quillon"]},
        {"question": "What does Vemmar Klade do?", "golden_answers": ["painter"], "type": "job"},
        {"question": "Which town has a lighthouse built in 1871?", "golden_answers": ["Ostrel Bay"]},
    ]
    qs.write_text("\n".join(json.dumps(r) for r in qrows) + "\n")
    return corpus, qs


def test_user_corpus_loaders_and_env(tmp_path):
    corpus, qs = _user_files(tmp_path)
    ps = load_passages(corpus)
    assert ps[0] == Passage("d1", "Ostrel Bay", "Ostrel Bay is a harbour town whose lighthouse was built in 1871.")
    assert ps[2].title == "Quillon" and ps[3].id == "d4"
    assert json.loads(json.dumps(ps[0].to_json()))["contents"].startswith('"Ostrel Bay"\n')
    questions = load_questions(qs)
    assert questions[1].answers == ("Ostrel Bay",) and questions[1].gold_ids == ("d2",)
    assert questions[2].id == "q3" and questions[2].answers == ("Quillon", "the Quillon")
    assert questions[3].type == "job"
    env = SearchEnv(corpus=str(corpus), questions=str(qs), k=2)
    train = {env.question_for(s).id for s in range(20)}
    test = {env.question_for(s).id for s in range(1_000_000, 1_000_020)}
    assert train and test and not train & test and len(train | test) == 5
    for seed in list(range(5)) + [1_000_000]:
        info = episode(env, seed)
        assert info["success"], (seed, env.q)
        assert env.check("gold_retrieved")  # by gold ids, or a retrieved passage containing the answer
    env.reset(seed=0)
    assert env.step(S("lighthouse 1871"))[4]["diagnosis"]["progress"] > 0


def test_loader_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "contents": "x"}\n{"id": "b", "contents": oops}\n')
    with pytest.raises(CorpusFormatError, match=r"bad.jsonl:2: not JSON"):
        load_passages(bad)
    bad.write_text('{"id": "a", "body": "x"}\n')
    with pytest.raises(CorpusFormatError, match=r"bad.jsonl:1: .*neither 'contents' nor 'text'"):
        load_passages(bad)
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(CorpusFormatError, match="duplicate passage id 'a'"):
        load_passages(bad)
    bad.write_text('{"question": "q?"}\n')
    with pytest.raises(CorpusFormatError, match=r"bad.jsonl:1: no 'golden_answers'"):
        load_questions(bad)
    with pytest.raises(ValueError, match="needs questions"):
        SearchEnv(corpus=str(bad))
    with pytest.raises(ValueError, match="needs corpus"):
        SearchEnv(questions=[])


# --- retrieval backends ---------------------------------------------------------------------------------
def test_bm25_matches_brute_force_ranking():
    w = default_world()
    r = BM25Retriever(w.passages)
    assert tokenize("The Velmora, of 1871!") == ["velmora", "1871"]
    assert r.search("the of and", 3) == [] and r.search("zzqxv", 3) == []
    s = r.scores("Lantern Festival held")
    top = r.search_scored("Lantern Festival held", 10)
    assert [p.id for p, _ in top] == [w.passages[i].id for i in np.argsort(-s, kind="stable")[:10]]
    assert all(a[1] >= b[1] for a, b in zip(top, top[1:], strict=False))
    assert list(_top_k(np.array([0.0, 2.0, 1.0, 2.0]), 3)) == [1, 3, 2]
    assert list(_top_k(np.array([0.0, 0.0]), 5)) == []


def test_http_client_and_server_on_loopback():
    w = default_world()
    local = BM25Retriever(w.passages)
    server, url = serve_in_thread(local, n_passages=len(w.passages))
    try:
        client = HTTPRetriever(url)
        for q in ("Lantern Festival held", "founded by", "zzqxv"):
            assert client.search_scored(q, 4) == [(p, pytest.approx(s, rel=1e-6)) for p, s in local.search_scored(q, 4)]
        batch = client.batch_search(["shipyards", "bank"], 2)
        assert len(batch) == 2 and all(len(b) == 2 for b in batch)
        # the raw API: Search-R1 request and response layout, with and without scores
        body = json.dumps({"queries": ["bank"], "topk": 1, "return_scores": False}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        doc = json.loads(urllib.request.urlopen(req, timeout=10).read())["result"][0][0]
        assert set(doc) == {"id", "contents"}
        health = json.loads(urllib.request.urlopen(url.replace("/retrieve", "/health"), timeout=10).read())
        assert health == {"status": "ok", "passages": len(w.passages)}
        bad = urllib.request.Request(url, data=b'{"queries": "x"}', headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=10)
        assert e.value.code == 400
        env = SearchEnv(retriever="http", url=url.removesuffix("/retrieve"))
        for seed in range(1_000_000, 1_000_008):
            assert episode(env, seed)["success"]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(RetrieverError, match="cannot reach"):
        HTTPRetriever(url, timeout=2).search("x", 1)


def test_server_command_line(tmp_path):
    corpus, _ = _user_files(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "agentsd.envs.search.server", "--corpus", str(corpus),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline()]
        while "serving" not in lines[-1] and lines[-1] and len(lines) < 20:  # libraries may log first
            lines.append(proc.stderr.readline())
        line = lines[-1]
        assert "serving 4 passages (bm25)" in line, lines
        url = line.split(" on ")[1].strip()
        hits = HTTPRetriever(url, timeout=10).search("lighthouse built 1871", 2)
        assert hits[0].id == "d1" and hits[0].title == "Ostrel Bay"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration  # loads the packaged all-MiniLM-L6-v2 (ONNX export cached after the first run)
def test_dense_retriever(tmp_path):
    pytest.importorskip("sentence_transformers")
    from agentsd.envs.search import DenseRetriever

    passages = [
        Passage("a", "Boats", "The harbour is full of sailing ships and fishing boats."),
        Passage("b", "Bread", "The bakery sells rye loaves and sweet pastries every morning."),
        Passage("c", "Stars", "Astronomers observe distant galaxies with large telescopes."),
    ]
    r = DenseRetriever(passages)
    assert r.search("vessels at the port", 1)[0].id == "a"
    assert r.search("looking at the night sky", 1)[0].id == "c"
    scored = r.search_scored("baked goods", 3)
    assert [p.id for p, _ in scored][0] == "b" and len(scored) == 3


def test_world_export_round_trips_through_the_loaders(tmp_path):
    from agentsd.envs.search.world import main as export

    export(["--out", str(tmp_path), "--seed", "5", "--scale", "0.1"])
    w = generate_world(5, scale=0.1)
    assert load_passages(tmp_path / "corpus.jsonl") == w.passages
    qs = load_questions(tmp_path / "questions.jsonl")
    assert [(q.question, q.answers, q.gold_ids, q.hops, q.type) for q in qs] == [
        (q.question, q.answers, q.gold_ids, q.hops, q.type) for q in w.all_questions()]
    env = SearchEnv(corpus=str(tmp_path / "corpus.jsonl"), questions=str(tmp_path / "questions.jsonl"))
    assert all(episode(env, s)["success"] for s in range(1_000_000, 1_000_020))
