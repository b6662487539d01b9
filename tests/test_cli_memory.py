"""`agentsd memory ...` on a small hand-made store.

One store is built per module; tests that change a store work on a copy of it. The CLI keeps one
embedder per process, which the fixture shares, so each command opens the store in milliseconds.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from agentsd.cli import app

runner = CliRunner()


def memory(*args: str):
    # a wide COLUMNS keeps rich from wrapping long tmp paths in messages
    return runner.invoke(app, ["memory", *map(str, args)], env={"COLUMNS": "400"})


def _entries():
    from agentsd.memory import Guardrail, PredicateRef, Skill

    return {
        "corner": Guardrail(
            env="sokoban", triggers=["a box stands next to the east wall"], failure_type="deadlock_corner",
            summary="never push a box into a corner without a target", root_cause="a cornered box can never move",
            risk_pattern="pushing a box onto a dead corner square", forbidden="pushing a box into a non-goal corner",
            risk_predicate=PredicateRef(name="box_into_corner"), evidence=["t1", "t2"], support=2, upvotes=2,
        ),
        "oscillate": Guardrail(
            env="sokoban", triggers=["the player walks back and forth"], failure_type="no_progress",
            summary="stop repeating the same two moves", root_cause="the agent undid its last move",
            risk_pattern="a move that reverses the previous move", forbidden="moving Up right after Down",
            downvotes=3, evidence=["t3"],
        ),
        "push": Skill(
            env="sokoban", triggers=["one box left of its target"], summary="push the box right onto the target",
            golden_workflow=["Right", "Right"], verification=PredicateRef(name="all_boxes_on_targets"),
            evidence=["t4"],
        ),
        "heat": Skill(
            env="alfworld", triggers=["the task asks to heat an egg"], summary="heat the egg in microwave 1",
            golden_workflow=["go to fridge 1", "take egg 1 from fridge 1", "go to microwave 1",
                             "heat egg 1 with microwave 1"],
            confidence=0.1, evidence=["t5"],
        ),
        "search": Guardrail(
            env="webshop", triggers=["search results show no matching product"], failure_type="wrong_item",
            summary="do not buy an item whose size was never checked", root_cause="bought size 9 instead of 10",
            risk_pattern="clicking buy before selecting the size option", forbidden="buying before the size is set",
            evidence=["t6"],
        ),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(path, {name: full id}) of a memory with 3 sokoban, 1 alfworld and 1 webshop entries."""
    from agentsd.cli_memory import _embedder
    from agentsd.memory import SkillMemory

    path = tmp_path_factory.mktemp("cli-memory") / "memory"
    entries = _entries()
    with SkillMemory(path, embedder=_embedder()) as mem:
        report = mem.add(list(entries.values()))
        assert len(report.added) == len(entries), report
    return path, {name: e.id for name, e in entries.items()}


@pytest.fixture
def copy(store, tmp_path):
    """A private copy of the module's store, for commands that change it."""
    path, ids = store
    dst = tmp_path / "memory"
    shutil.copytree(path, dst)
    return dst, ids


def test_list_filters_and_columns(store):
    path, ids = store
    r = memory("list", "--path", path)
    assert r.exit_code == 0, r.output
    for i in ids.values():
        assert i[:8] in r.output
    assert "deadlock_corner" in r.output and "never push a box into a corner" in r.output
    assert "+2/-0" in r.output and "+0/-3" in r.output
    assert "5 of 5 entries" in r.output

    r = memory("list", "--path", path, "--kind", "guardrail", "--env", "sokoban")
    assert r.exit_code == 0, r.output
    assert ids["corner"][:8] in r.output and ids["oscillate"][:8] in r.output
    assert ids["push"][:8] not in r.output and ids["search"][:8] not in r.output

    r = memory("list", "--path", path, "--limit", "2")
    assert "2 of 5 entries" in r.output
    r = memory("list", "--path", path, "--kind", "plan")
    assert r.exit_code == 2 and "plan" in r.output


def test_show_entry_by_prefix_with_history(store):
    path, ids = store
    r = memory("show", ids["corner"][:6], "--path", path)
    assert r.exit_code == 0, r.output
    head = r.stdout.split("─", 1)[0]  # the JSON comes before the first rule
    data = json.loads(head)
    assert data["id"] == ids["corner"] and data["risk_predicate"] == {"name": "box_into_corner", "params": {}}
    assert "[guardrail deadlock_corner" in r.output and "Never: pushing a box into a non-goal corner" in r.output
    assert "history (1 events)" in r.output and " add " in r.output

    r = memory("show", "ffffffffff", "--path", path)
    assert r.exit_code == 2
    assert "no entry with id or unique id prefix 'ffffffffff'" in r.output and "Traceback" not in r.output


def test_search_ranks_and_renders(store):
    path, ids = store
    r = memory("search", "heat an egg in the microwave", "--path", path, "--k", "2")
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.stdout.splitlines()]
    ranked = [row[1] for row in rows if len(row) > 2 and row[0] in ("1", "2") and row[2] in ("skill", "guardrail")]
    assert len(ranked) == 2 and ranked[0] == ids["heat"][:8]
    assert "<memory>" in r.output and "heat egg 1 with microwave 1" in r.output

    r = memory("search", "box next to a wall", "--path", path, "--env", "sokoban", "--kind", "guardrail",
               "--recent-failure", "no_progress", "--budget-tokens", "400")
    assert r.exit_code == 0, r.output
    assert ids["heat"][:8] not in r.output and ids["push"][:8] not in r.output
    assert ids["corner"][:8] in r.output and ids["oscillate"][:8] in r.output

    r = memory("search", "anything", "--path", path, "--env", "minecraft")
    assert r.exit_code == 0 and "no entries match" in r.output


def test_stats_json(store):
    path, _ = store
    r = memory("stats", "--path", path, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["entries"] == 5
    assert s["by_kind"] == {"guardrail": 3, "skill": 2}
    assert s["by_status"] == {"active": 5}
    assert s["by_env"] == {"sokoban": 3, "alfworld": 1, "webshop": 1}
    assert s["guardrails_by_failure_type"] == {"deadlock_corner": 1, "no_progress": 1, "wrong_item": 1}
    assert s["executable_guardrails"] == 1 and s["verifiable_skills"] == 1
    assert s["stale"] == 0 and s["conflicting"] == 0 and s["history_events"] == 5

    r = memory("stats", "--path", path)
    assert r.exit_code == 0 and "guardrails by failure type" in r.output


def test_export_import_round_trip(store, tmp_path):
    path, _ = store
    first, second, target = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "new" / "memory"
    r = memory("export", first, "--path", path)
    assert r.exit_code == 0 and "exported 5 entries" in r.output, r.output
    r = memory("import", first, "--path", target)  # import creates the memory
    assert r.exit_code == 0 and "imported 5, skipped 0" in r.output, r.output
    r = memory("import", first, "--path", target)
    assert r.exit_code == 0 and "imported 0, skipped 5" in r.output, r.output
    r = memory("export", second, "--path", target)
    assert r.exit_code == 0, r.output
    a = [json.loads(x) for x in first.read_text().splitlines()]
    b = [json.loads(x) for x in second.read_text().splitlines()]
    assert len(a) == 5 and a == b

    missing = tmp_path / "nope.jsonl"
    r = memory("import", missing, "--path", tmp_path / "other")
    assert r.exit_code == 2 and str(missing) in r.output
    assert not (tmp_path / "other").exists()  # nothing created for a typo


def test_prune(copy):
    from agentsd.cli_memory import _embedder
    from agentsd.memory import SkillMemory

    path, ids = copy
    r = memory("prune", "--path", path)
    assert r.exit_code == 2 and "at least one of --stale" in r.output

    r = memory("prune", "--path", path, "--floor", "-2")
    assert r.exit_code == 0, r.output
    assert ids["oscillate"] in r.output and "retired 1 entries" in r.output
    r = memory("prune", "--path", path, "--min-confidence", "0.3")
    assert r.exit_code == 0 and ids["heat"] in r.output and "retired 1 entries" in r.output, r.output
    r = memory("list", "--path", path, "--status", "retired")
    assert "2 of 2 entries" in r.output and "retired" in r.output

    with SkillMemory(path, create=False, embedder=_embedder()) as mem:
        mem.advance(5)
    r = memory("list", "--path", path)
    assert "3 of 3 entries" in r.output and r.output.count("stale") == 3
    r = memory("prune", "--path", path, "--stale")
    assert r.exit_code == 0 and "retired 3 entries" in r.output
    s = json.loads(memory("stats", "--path", path, "--json").stdout)
    assert s["by_status"] == {"retired": 5} and s["entries"] == 5


def test_repair_rebuilds_a_deleted_index(copy):
    path, ids = copy
    shutil.rmtree(path / "chroma")
    r = memory("search", "heat an egg", "--path", path)
    assert r.exit_code == 2, r.output
    assert "agentsd memory repair" in r.output and "Traceback" not in r.output
    r = memory("repair", "--path", path)
    assert r.exit_code == 0 and "5 active entries indexed" in r.output, r.output
    r = memory("search", "heat an egg", "--path", path, "--k", "1")
    assert r.exit_code == 0 and ids["heat"][:8] in r.output, r.output


def test_foreign_and_missing_directories(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("not a memory")
    (foreign / "chroma").mkdir()
    for args in (["list"], ["stats", "--json"], ["repair"], ["import", tmp_path / "x.jsonl"]):
        if args[0] == "import":
            (tmp_path / "x.jsonl").write_text("")
        r = memory(*args, "--path", foreign)
        assert r.exit_code == 2, (args, r.output)
        assert str(foreign) in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in foreign.iterdir()) == ["chroma", "todo.txt"]  # untouched

    missing = tmp_path / "missing"
    for args in (["list"], ["show", "abc"], ["search", "q"], ["export", tmp_path / "o.jsonl"], ["prune", "--stale"]):
        r = memory(*args, "--path", missing)
        assert r.exit_code == 2, (args, r.output)
        assert f"no memory at {str(missing)!r}" in r.output
    assert not missing.exists()
