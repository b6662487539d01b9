"""agentsd.sweep end to end on the tiny model: expansion and up-front validation, runs as subprocesses,
results, and resume after a run dies mid-way (finished runs are not redone)."""

import json
import os
import stat
import sys
import textwrap

import pytest
import yaml

from agentsd.report.collect import read_metrics
from agentsd.sweep import SweepError, expand, load_sweep, run_sweep


def _sweep_file(tmp_path, model_dir, arms=None, **extra):
    spec = {
        "name": "t",
        "envs": {"sokoban": {"config": "sokoban", "overrides": ["env.kwargs.difficulty=easy"]}},
        "seeds": [0],
        "budget": {"warmstart_episodes": 1, "iterations": 1, "episodes_per_iteration": 2, "max_new_tokens": 4,
                   "max_turns": 2, "eval_episodes": 2},
        "overrides": [f"model.name={model_dir}", "memory.enabled=false", "learning.warmstart.batch_size=4"],
        "arms": arms or {"none": ["learning.algo=none", "learning.warmstart.episodes=0", "learning.iterations=0"],
                         "rft": ["learning.algo=rft"]},
        "baseline": "none",
        **extra,
    }
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def test_expand_orders_overrides_and_names_runs(tmp_path):
    p = _sweep_file(tmp_path, "some/model", seeds=[0, 3])
    spec, base = load_sweep(p)
    plan = expand(spec, base, output_dir=str(tmp_path / "runs"), extra=["eval.episodes=5"])
    assert [r.run for r in plan.runs] == ["none-sokoban-s0", "none-sokoban-s3", "rft-sokoban-s0", "rft-sokoban-s3"]
    r = plan.runs[1]
    cfg = yaml.safe_load(r.config_yaml)
    # budget < sweep overrides < env overrides < --set < arm overrides < seed/name/output_dir
    assert cfg["learning"]["iterations"] == 0 and cfg["eval"]["episodes"] == 5 and cfg["rollout"]["max_turns"] == 2 and cfg["seed"] == 3
    assert cfg["rollout"]["batch"] == 2 and cfg["name"] == "none-sokoban-s3"
    assert cfg["output_dir"] == str(tmp_path / "runs" / "t")
    assert not (tmp_path / "runs").exists()  # expanding writes nothing
    only = expand(spec, base, arms=["rft"], seeds=[3], output_dir=str(tmp_path / "runs"))
    assert [r.run for r in only.runs] == ["rft-sokoban-s3"]


def test_a_bad_key_fails_before_anything_runs_naming_arm_and_key(tmp_path):
    p = _sweep_file(tmp_path, "m", arms={"none": ["learning.algo=none"], "bad": ["learning.algoo=grpo"]})
    spec, base = load_sweep(p)
    with pytest.raises(SweepError, match=r"arm 'bad', env 'sokoban': unknown config key 'learning.algoo'"):
        expand(spec, base, output_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SweepError, match="no arm 'nope'"):
        expand(spec, base, arms=["nope"])
    p.write_text(p.read_text().replace("baseline: none", "baseline: zzz"))
    with pytest.raises(SweepError, match="baseline arm 'zzz'"):
        expand(*load_sweep(p))
    p.write_text("name: x\nenvs: {}\narms: {}\nseedz: [1]\n")
    with pytest.raises(SweepError, match="seedz"):
        load_sweep(p)


def _crashing_python(tmp_path, victim: str):
    """A stand-in for ``python`` that runs the victim run in-process and interrupts it (as a
    kill would: finished phases on disk, exit code non-zero) when its final evaluation starts; every other
    command runs as usual."""
    script = tmp_path / "python-crash"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import runpy, sys
        args = sys.argv[1:]
        if {victim!r} in args and "--resume" not in args:
            from agentsd.config import load_config
            from agentsd.evolve import run
            cfg = load_config(args[args.index("--config") + 1])
            def boom(phase, done, total):
                if phase == "eval_after":
                    raise SystemExit(137)
            run(cfg, progress=boom, log=lambda *a: None)
        assert args[:2] == ["-m", "agentsd.cli"]
        sys.argv = ["agentsd"] + args[2:]
        runpy.run_module("agentsd.cli", run_name="__main__")
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_sweep_runs_subprocesses_and_resumes_without_redoing_finished_runs(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec, base = load_sweep(_sweep_file(tmp_path, tiny_model_dir))
    plan = expand(spec, base)
    assert [r.run for r in plan.runs] == ["none-sokoban-s0", "rft-sokoban-s0"]
    d = plan.sweep_dir
    logs: list[str] = []
    # first pass: the first run finishes, the second dies after iter_1
    recs = run_sweep(plan, log=logs.append, python=_crashing_python(tmp_path, "rft-sokoban-s0"))
    assert [r["status"] for r in recs] == ["done", "failed (rc 137)"]
    assert [p["phase"] for p in read_metrics(d / "rft-sokoban-s0")] == ["warmstart", "eval_before", "iter_1"]
    a1 = json.loads((d / "none-sokoban-s0" / "sweep_run.json").read_text())["attempts"]
    assert len(a1) == 1 and a1[0]["rc"] == 0 and a1[0]["peak_rss_mb"] > 50 and a1[0]["wall_s"] > 0
    none_metrics = (d / "none-sokoban-s0" / "metrics.jsonl").read_text()
    assert "failed (rc 137)" in (d / "results.md").read_text()

    # second pass (plain python): the finished run is skipped, the interrupted one resumed
    logs.clear()
    recs = run_sweep(plan, log=logs.append)
    assert "[1/2] none-sokoban-s0: complete, skipped" in logs
    assert "[2/2] rft-sokoban-s0: resuming" in logs
    assert [r["status"] for r in recs] == ["done", "done"]
    assert (d / "none-sokoban-s0" / "metrics.jsonl").read_text() == none_metrics
    assert len(json.loads((d / "none-sokoban-s0" / "sweep_run.json").read_text())["attempts"]) == 1
    att = json.loads((d / "rft-sokoban-s0" / "sweep_run.json").read_text())["attempts"]
    assert [a["resumed"] for a in att] == [False, True] and att[1]["rc"] == 0
    assert [p["phase"] for p in read_metrics(d / "rft-sokoban-s0")] == [
        "warmstart", "eval_before", "iter_1", "eval_after"]

    rows = [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]
    r = {x["run"]: x for x in rows}
    assert r["rft-sokoban-s0"]["wall_s"] == pytest.approx(sum(a["wall_s"] for a in att))
    assert r["rft-sokoban-s0"]["train_episodes"] == 2 and r["none-sokoban-s0"]["train_episodes"] == 0
    assert r["rft-sokoban-s0"]["tokens"] > 0 and set(r["rft-sokoban-s0"]["task_success"]) == {"1000000", "1000001"}
    md = (d / "results.md").read_text()
    assert "| sokoban | rft − none | success | 2 |" in md and "## Runs" in md
    manifest = json.loads((d / "sweep.json").read_text())
    assert [x["run"] for x in manifest["runs"]] == ["none-sokoban-s0", "rft-sokoban-s0"]
    assert os.path.exists(d / "configs" / "rft-sokoban-s0.yaml") and os.path.exists(d / "logs" / "rft-sokoban-s0.log")

    # a third pass does nothing; `agentsd report` reads the sweep
    logs.clear()
    run_sweep(plan, log=logs.append)
    assert all("skipped" in x for x in logs)
    from agentsd.report.build import build_report

    res = build_report(d, episodes_per_run=1)
    assert "rft − none" in res.markdown.read_text() and res.html.stat().st_size > 20_000


def test_cli_dry_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agentsd.cli import app

    monkeypatch.chdir(tmp_path)
    p = _sweep_file(tmp_path, "some/model")
    res = CliRunner().invoke(app, ["sweep", str(p), "--dry-run", "--seeds", "0,1"])
    assert res.exit_code == 0, res.output
    assert "4 runs validated" in res.output and "rft-sokoban-s1" in res.output
    assert not (tmp_path / "runs").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(p.read_text().replace("learning.algo=rft", "learning.algo=nope"))
    res = CliRunner().invoke(app, ["sweep", str(bad), "--dry-run"])
    assert res.exit_code == 2 and "arm 'rft'" in res.output


def _overlap(d, runs):
    """Whether the runs' (single) attempts overlapped in time."""
    spans = []
    for run in runs:
        a = json.loads((d / run / "sweep_run.json").read_text())["attempts"]
        assert len(a) == 1 and a[0]["rc"] == 0
        spans.append((a[0]["started"], a[0]["started"] + a[0]["wall_s"]))
    return max(s for s, _ in spans) < min(e for _, e in spans)


def test_sweep_jobs_run_at_once(tmp_path, tiny_model_dir, monkeypatch):
    """--jobs 2: the two runs are subprocesses at the same time; results as usual; a rerun skips both."""
    monkeypatch.chdir(tmp_path)
    plan = expand(*load_sweep(_sweep_file(tmp_path, tiny_model_dir)))
    logs: list[str] = []
    recs = run_sweep(plan, log=logs.append, jobs=2, threads=1)
    assert [r["status"] for r in recs] == ["done", "done"]
    assert _overlap(plan.sweep_dir, ["none-sokoban-s0", "rft-sokoban-s0"])
    assert "[2/2] rft-sokoban-s0: running" in logs and "| sokoban | rft − none |" in (plan.sweep_dir / "results.md").read_text()
    logs.clear()
    run_sweep(plan, log=logs.append, jobs=2)
    assert all("skipped" in x for x in logs)


def test_sweep_on_ray_tasks(tmp_path, tiny_model_dir, monkeypatch):
    """--ray local: each run is a Ray task running the same subprocess; both finish, at the same time."""
    ray = pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    plan = expand(*load_sweep(_sweep_file(tmp_path, tiny_model_dir)))
    try:
        recs = run_sweep(plan, log=lambda *a: None, ray_address="local", jobs=0, threads=1)
    finally:
        ray.shutdown()
    assert [r["status"] for r in recs] == ["done", "done"]
    assert _overlap(plan.sweep_dir, ["none-sokoban-s0", "rft-sokoban-s0"])
