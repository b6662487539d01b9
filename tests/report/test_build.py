"""agentsd report on fake run directories: tables, statistics, real PNGs, the HTML page and its data."""

import json
import re

from reportutil import write_run

from agentsd.report.build import build_report
from agentsd.report.collect import find_runs, goal_completion, is_complete, read_run

PNG = b"\x89PNG\r\n\x1a\n"


def _viewer_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_read_run_metrics_costs_and_curve(fake_sweep):
    rec = read_run(fake_sweep / "learn-sokoban-s1")
    assert (rec["arm"], rec["env"], rec["seed"], rec["complete"]) == ("learn", "sokoban", 1, True)
    assert rec["success"] == 5 / 8 and rec["success_before"] == 0.0
    assert rec["wall_s"] == 31.0 and rec["peak_rss_mb"] == 900.0 and rec["memory_entries"] == 3
    assert rec["learner_steps"] == 1 and rec["sft_examples"] == 6
    # tokens: every phase's generated tokens (4 per turn, 3 turns per episode)
    assert rec["tokens"] == 12 * (2 + 8 + 4 + 8)
    assert [(p["phase"], p["episodes"]) for p in rec["curve"]] == [("eval_before", 0), ("eval_after", 4)]
    assert rec["task_success"][1_000_004] == 1.0 and rec["task_success"][1_000_005] == 0.0
    assert rec["tgc"] is None and rec["turns_to_success"] == 3


def test_goal_completion_from_info(tmp_path):
    d = write_run(tmp_path, "apps-run", outcomes={0: True, 1: False, 2: True, 3: True},
                  tgc={0: 1.0, 1: 0.5, 2: 1.0, 3: 1.0})
    rec = read_run(d)
    assert rec["tgc"] == 0.875
    assert rec["sgc"] == 0.5  # scenarios sc0 = {0, 1} (not all complete), sc1 = {2, 3}
    assert goal_completion([]) == (None, None)


def test_incomplete_run_is_reported_not_counted(tmp_path):
    d = write_run(tmp_path, "grpo-sokoban-s0", outcomes={0: True}, complete=False)
    assert not is_complete(d)
    rec = read_run(d)
    assert rec["complete"] is False and rec["final_phase"] == "eval_before"


def test_sweep_report_tables_plots_and_viewer(fake_sweep):
    res = build_report(fake_sweep, episodes_per_run=3)
    md = res.markdown.read_text()
    assert "| sokoban | base | 2/2 | 12.5% |" in md or "| sokoban | base | 2/2 | 12.5% [12.5%, 12.5%] |" in md
    # paired on the same 8 tasks: +1 on 4 of them, 0 on the others
    assert "| sokoban | learn − base | success | 8 | +50.0% [+12.5%, +87.5%] | 1.00 |" in md
    assert "report_files/learning_curves.png" in md
    for p in res.plots:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    agg = res.aggregate
    learn = next(g for g in agg["groups"] if g["arm"] == "learn")
    assert learn["wall_s"]["mean"] == 30.5 and learn["wall_s"]["lo"] >= 30.0 and learn["wall_s"]["hi"] <= 31.0
    html = res.html.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    data = _viewer_data(html)
    assert [r["run"] for r in data["runs"]] == sorted(r["run"] for r in data["runs"])
    eps = data["runs"][2]["episodes"]  # learn-sokoban-s0
    assert len(eps) == 3 + 1 and eps[0]["phase"] == "eval_after" and eps[-1]["phase"] == "iter_1"
    t = eps[0]["turns"][0]
    assert t["info"]["planner"]["decision"] == "act" and t["info"]["retrieved"][0]["id"] == "abc123"
    assert t["diagnosis"]["detail"] == "turn 0" and "######" in t["obs"]
    assert eps[0]["system"] == "Sokoban rules." and all(m["role"] != "system" for m in t["prompt"])
    assert "(no run of this report has a skill memory)" in md


def test_single_run_dir_report(tmp_path):
    d = write_run(tmp_path, "myrun", outcomes={0: True, 1: False}, wall_s=None, memory_entries=None)
    dirs, manifest = find_runs(d)
    assert dirs == [d] and manifest is None
    res = build_report(d, out_dir=tmp_path / "out")
    assert res.html.exists() and (tmp_path / "out" / "report_files" / "cost_benefit.png").exists()
    assert "| sokoban | myrun | 1/1 | 50.0% |" in res.markdown.read_text()


def test_report_lists_memory_entries_by_usage(tmp_path):
    from agentsd.memory import SkillMemory
    from agentsd.rollout import EnvFactory, OracleActor, make_tasks, rollout

    d = write_run(tmp_path, "mem-sokoban-s0", outcomes={0: True})
    envs = EnvFactory("sokoban", {"difficulty": "easy"})
    demos, _ = rollout(envs, OracleActor(), make_tasks(envs.cls, "train", 2))
    with SkillMemory(d / "memory") as mem:
        mem.ingest(demos)
        used = mem.entries()[1].id
        mem.record_outcome([used], success=True)
        mem.record_outcome([used], success=True)
    res = build_report(tmp_path, episodes_per_run=1)
    md = res.markdown.read_text()
    rows = [x for x in md.splitlines() if x.startswith("| mem-sokoban-s0 | skill")]
    assert len(rows) == 2 and "| 2 | +2/-0 | 2 |" in rows[0]  # the used entry first: usage 2, 2 vote events
