import json
import sqlite3

import numpy as np
import pytest
from memutil import guardrail, skill

from agentsd.memory import MemoryStoreError, SkillMemory


def test_exact_duplicates_merge_support_and_evidence(memory):
    r = memory.add([guardrail(evidence=["t1"]), guardrail(evidence=["t2"]), guardrail(evidence=["t1"])])
    assert len(r.added) == 1 and len(r.merged) == 1 and len(r.unchanged) == 1
    (g,) = memory.entries()
    assert g.support == 2 and g.evidence == ["t1", "t2"] and g.version == 2
    # re-adding known evidence (a resumed run) changes nothing
    r = memory.add(guardrail(evidence=["t2"]))
    assert r.unchanged and memory.get(g.id).support == 2
    ops = [h["op"] for h in memory.history(g.id)]
    assert ops == ["add", "merge"]


def test_near_duplicates_merge_but_numbers_and_failure_types_do_not(memory, embedder):
    a = guardrail(text="never push the box into a corner of the room", evidence=["a"])
    b = guardrail(text="never push a box into a corner of the room", evidence=["b"])
    c = guardrail(text="never push the box into a corner of room 3", evidence=["c"])
    d = guardrail(text="never push the box into a corner of room 4", evidence=["d"])
    va, vb, vc, vd = embedder.embed([a.embed_text(), b.embed_text(), c.embed_text(), d.embed_text()])
    assert float(va @ vb) >= 0.95 and float(vc @ vd) >= 0.95  # cosine alone would merge both pairs
    memory.add(a)
    r = memory.add(b)
    assert r.merged and r.merged[0][2] == "near"
    merged = memory.get(a.id)
    assert merged.support == 2 and merged.summary == a.summary
    # the merged-in text is kept in the history, not dropped
    hist = [h for h in memory.history(a.id) if h["op"] == "merge"]
    assert hist[0]["data"]["incoming"]["summary"] == b.summary
    r = memory.add([c, d])
    assert len(r.added) == 2 and not r.merged  # differ only in a number: distinct entries
    e = guardrail(text="never push the box into a corner of the room", ft="deadlock_freeze", evidence=["e"])
    assert memory.add(e).added  # same text, other failure type: distinct
    assert len(memory) == 4
    # the same numbers in another order: other cells, distinct entries (a set of numbers would merge them)
    f = guardrail(text="never push the box at row 3 col 4 left", evidence=["f"])
    g = guardrail(text="never push the box at row 4 col 3 left", evidence=["g"])
    vf, vg = embedder.embed([f.embed_text(), g.embed_text()])
    assert float(vf @ vg) >= 0.95  # cosine alone would merge them
    r = memory.add([f, g])
    assert len(r.added) == 2 and not r.merged
    assert len(memory) == 6


def test_votes_retire_at_floor_and_retired_entries_stay(tmp_path, embedder):
    with SkillMemory(tmp_path / "m", embedder=embedder, retire_floor=-2) as mem:
        s, g = skill(), guardrail()
        mem.add([s, g])
        assert mem.record_outcome([s.id, g.id], success=True) == []
        assert mem.get(s.id).upvotes == 1 and mem.get(s.id).usage == 1
        mem.record_outcome([s.id], success=False)
        mem.record_outcome([s.id], success=False)
        assert mem.record_outcome([s.id], success=False) == [s.id]  # net -2
        assert mem.get(s.id).status == "retired"
        assert [h.entry.id for h in mem.retrieve("push the box right", k=5)] == [g.id]
        assert mem.stats()["by_status"] == {"active": 1, "retired": 1}
        assert "retire" in [h["op"] for h in mem.history(s.id)]
        with pytest.raises(ValueError):
            mem.vote(g.id, 2)


def test_namespaces_never_leak(tmp_path, embedder):
    with SkillMemory(tmp_path / "m", namespace="alice", embedder=embedder) as a:
        a.add(guardrail(evidence=["x"]))
    with SkillMemory(tmp_path / "m", namespace="bob", embedder=embedder) as b:
        assert len(b) == 0 and b.retrieve("push a box into a corner") == []
        assert b.add(guardrail(evidence=["x"])).added  # same content: its own entry in bob's namespace
        assert b.get(b.entries()[0].id) is not None
        alice_id = SkillMemory(tmp_path / "m", namespace="alice", embedder=embedder).entries()[0].id
        assert b.get(alice_id) is None
    with pytest.raises(ValueError):
        SkillMemory(tmp_path / "m", namespace="no spaces", embedder=embedder)


def test_retrieve_filters_budget_boost_and_mmr(memory):
    entries = [
        skill(summary="push the box right onto the target", evidence=["1"]),
        skill(summary="push the box right onto the target quickly", evidence=["2"], steps=["Right"]),
        skill(summary="walk around the box to push it down", steps=["Up", "Right", "Down"], evidence=["3"]),
        guardrail(evidence=["4"]),
        guardrail(text="do not walk into walls", ft="wall_bump", evidence=["5"]),
        skill(summary="collect wood then craft planks", env="craft", steps=["mine tree"], evidence=["6"]),
    ]
    memory.add(entries)
    hits = memory.retrieve("push the box right onto the target", k=3, env="sokoban")
    assert all(h.entry.env == "sokoban" for h in hits) and len(hits) == 3
    assert memory.retrieve("push", k=5, kind="guardrail", env="sokoban")[0].entry.kind == "guardrail"
    assert {h.entry.env for h in memory.retrieve("craft planks", k=6)} == {"sokoban", "craft"}
    # MMR: of two near-identical skills only one is picked among the top 2
    top2 = [h.entry.id for h in memory.retrieve("push the box right onto the target", k=2, kind="skill", env="sokoban")]
    assert not {entries[0].id, entries[1].id} <= set(top2)
    # boost: a recent failure type lifts its guardrail
    plain = [h.entry.id for h in memory.retrieve("box", k=2, kind="guardrail", env="sokoban", mmr=1.0)]
    boosted = [h.entry.id for h in memory.retrieve("box", k=2, kind="guardrail", env="sokoban", mmr=1.0,
                                                    recent_failures=["wall_bump"])]
    assert boosted[0] == entries[4].id and plain != boosted or plain[0] == entries[4].id
    # token budget bounds the rendered text
    hits = memory.retrieve("push the box", k=6, budget_tokens=60)
    assert sum(len(h.render()) / 4 + 1 for h in hits) <= 60 and hits
    assert memory.retrieve("push the box", k=6, budget_tokens=5) == []
    # metadata filter
    assert all(h.entry.failure_type == "wall_bump" for h in memory.retrieve(
        "box", k=5, kind="guardrail", where={"failure_type": "wall_bump"}))
    block = memory.render(hits)
    assert block.startswith("<memory>") and hits[0].entry.id[:6] in block


def test_staleness_lowers_rank_and_shows(memory):
    old = skill(summary="push the box right onto the target", evidence=["o"])
    memory.add(old)
    memory.advance(5)
    new = skill(summary="push the box right onto the goal", steps=["Right", "Right", "Right"], evidence=["n"])
    memory.add(new)
    hits = memory.retrieve("push the box right onto the target", k=2, mmr=1.0)
    assert hits[0].entry.id == new.id
    stale = next(h for h in hits if h.entry.id == old.id)
    assert stale.stale and "stale" in stale.render()
    assert memory.stats()["stale"] == 1
    assert memory.prune(stale=True) == [old.id]


def test_conflicts_are_kept_and_flagged(memory):
    g = guardrail(text="never push down here", forbidden_action="Down",
                  triggers=["one box left of its target"])
    s = skill(summary="never push down here", steps=["Right", "Down"], triggers=["one box left of its target"])
    memory.add(g)
    r = memory.add(s)
    assert r.conflicts == [(s.id, g.id)]
    assert "conflict" in memory.get(g.id).flags and memory.get(s.id).conflicts_with == [g.id]
    assert memory.stats()["conflicting"] == 2 and len(memory) == 2


def test_conflicts_within_one_batch_are_flagged_too(memory):
    g = guardrail(text="never push left here", forbidden_action="Left", triggers=["two boxes in a row"])
    s = skill(summary="push left twice", steps=["Up", "Left"], triggers=["two boxes in a row"])
    other = skill(summary="go around", steps=["Up", "Right"], triggers=["two boxes in a row"])
    r = memory.add([g, s, other])
    assert len(r.conflicts) == 1 and set(r.conflicts[0]) == {g.id, s.id}
    assert "conflict" in memory.get(s.id).flags and "conflict" not in memory.get(other.id).flags


def test_repair_refuses_a_directory_that_is_not_a_store(tmp_path, embedder):
    d = tmp_path / "foreign"
    (d / "chroma").mkdir(parents=True)
    (d / "notes.txt").write_text("mine")
    with pytest.raises(MemoryStoreError):
        SkillMemory.repair(d, embedder=embedder)
    assert sorted(x.name for x in d.iterdir()) == ["chroma", "notes.txt"]  # nothing moved


def test_prefix_lookup_is_literal(memory):
    s = skill()
    memory.add(s)
    assert memory.get(s.id[:6]).id == s.id
    assert memory.get("%") is None and memory.get("_") is None


def test_export_import_round_trip_is_lossless(tmp_path, embedder):
    src = tmp_path / "a"
    with SkillMemory(src, embedder=embedder) as mem:
        s, g = skill(verification={"name": "solved"}), guardrail(risk_predicate={"name": "push_into_dead_square"})
        mem.add([s, g, guardrail(text="do not walk into walls", ft="wall_bump")])
        mem.record_outcome([s.id], True)
        mem.retire(g.id, "test")
        assert mem.export(tmp_path / "out.jsonl") == 3
    with SkillMemory(tmp_path / "b", embedder=embedder) as mem2:
        assert mem2.import_(tmp_path / "out.jsonl") == {"imported": 3, "skipped": 0, "invalid": 0}
        assert mem2.import_(tmp_path / "out.jsonl")["skipped"] == 3
        mem2.export(tmp_path / "again.jsonl")
        assert len(mem2) == 2 and mem2.retrieve("push the box right")[0].entry.id == s.id
    a = sorted((json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()), key=lambda d: d["id"])
    b = sorted((json.loads(x) for x in (tmp_path / "again.jsonl").read_text().splitlines()), key=lambda d: d["id"])
    assert a == b


def test_import_reports_bad_lines(tmp_path, memory):
    p = tmp_path / "in.jsonl"
    p.write_text(guardrail().model_dump_json() + "\n{not json\n" + json.dumps({"kind": "skill"}) + "\n")
    assert memory.import_(p) == {"imported": 1, "skipped": 0, "invalid": 2}


def test_foreign_damaged_and_missing_directories_are_refused(tmp_path, embedder):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(MemoryStoreError, match="not an agentsd memory"):
        SkillMemory(foreign, embedder=embedder)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(MemoryStoreError, match="is a file"):
        SkillMemory(f, embedder=embedder)
    with pytest.raises(MemoryStoreError, match="no memory"):
        SkillMemory(tmp_path / "absent", embedder=embedder, create=False)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "memory.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(MemoryStoreError, match="damaged|not SQLite"):
        SkillMemory(bad, embedder=embedder)
    assert (bad / "memory.sqlite").read_bytes().startswith(b"this is not")  # untouched

    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "memory.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(MemoryStoreError, match="not an agentsd memory store"):
        SkillMemory(other, embedder=embedder)


def test_missing_index_is_reported_and_repair_rebuilds_it(tmp_path, embedder):
    import shutil

    p = tmp_path / "m"
    with SkillMemory(p, embedder=embedder) as mem:
        s = skill()
        mem.add([s, guardrail()])
    shutil.rmtree(p / "chroma")
    with pytest.raises(MemoryStoreError, match="agentsd memory repair"):
        SkillMemory(p, embedder=embedder)
    assert SkillMemory.repair(p, embedder=embedder) == 2
    with SkillMemory(p, embedder=embedder) as mem:
        assert mem.retrieve("push the box right", k=1)[0].entry.id == s.id


def test_other_embedding_model_is_refused(tmp_path, memory, embedder):
    memory.side.db.execute("UPDATE meta SET value='some-other-model' WHERE key='embedder'")
    with pytest.raises(MemoryStoreError, match="embedding model"):
        SkillMemory(memory.path, embedder=embedder)


def test_ingest_refuses_test_split(memory):
    from agentsd.trajectory import Trajectory

    with pytest.raises(ValueError, match="train"):
        memory.ingest([Trajectory(env="sokoban", seed=1_000_001, split="test")])


def test_embedding_cache_and_backends_agree(tmp_path, embedder, memory):
    texts = ["push the box right", "craft a wooden pickaxe", "x"]
    v1 = embedder.embed(texts, cache=memory.side)
    assert memory.side.get_vectors([__import__("agentsd.memory.embeddings", fromlist=["x"]).text_hash(t)
                                    for t in texts], embedder.id).keys()
    assert np.allclose(np.linalg.norm(v1, axis=1), 1.0, atol=1e-5)
    if embedder.backend == "onnx":
        from agentsd.memory import Embedder

        torch_emb = Embedder(backend="torch")
        v2 = torch_emb.embed(texts)
        assert float(np.min(np.sum(v1 * v2, axis=1))) > 0.9999
        assert torch_emb.id == embedder.id  # same model: the vector cache is shared across backends


def test_edit_keeps_the_old_version_and_add_never_overwrites(memory):
    s = skill()
    memory.add(s)
    e = memory.edit(s.id, reason="typo", summary="push the box right, then stop")
    assert e.version == 2 and memory.get(s.id).summary == "push the box right, then stop"
    (h,) = [h for h in memory.history(s.id) if h["op"] == "edit"]
    assert h["data"]["before"]["summary"] == s.summary and h["data"]["reason"] == "typo"
    assert memory.retrieve("push the box right, then stop", k=1)[0].entry.id == s.id
    with pytest.raises(ValueError, match="support"):
        memory.edit(s.id, support=9)
    # an incoming entry that reuses a stored id with other content becomes a new entry
    clash = skill(summary="walk around the box first", steps=["Up", "Up"]).model_copy(update={"id": s.id})
    r = memory.add(clash)
    assert len(r.added) == 1 and r.added[0] != s.id and memory.get(s.id).summary.startswith("push the box")
