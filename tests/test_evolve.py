"""The run recipe end to end on the tiny model: phases, outputs, interruption and resume."""

import json

import pytest

from agentsd.config import load_config
from agentsd.evolve import run
from agentsd.trajectory import read_jsonl


def _cfg(tmp_path, model_dir, **extra):
    ov = [
        f"output_dir={tmp_path}", "name=t", f"model.name={model_dir}", "env.kwargs.brief=true",
        "learning.warmstart.episodes=2", "learning.warmstart.batch_size=4", "eval.episodes=2",
        "rollout.batch=2", "rollout.max_turns=3", "learning.iterations=2", "learning.algo=rft",
        "eval.sampling.max_new_tokens=4", "rollout.sampling.max_new_tokens=4",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("sokoban", ov)


def _phases(run_dir):
    return [json.loads(x)["phase"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_every_phase(tmp_path, tiny_model_dir):
    res = run(_cfg(tmp_path, tiny_model_dir), log=lambda *a: None)
    d = res.run_dir
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "iter_2", "eval_after"]
    for name in ("config.yaml", "state.json", "summary.json"):
        assert (d / name).exists()
    demos = list(read_jsonl(d / "trajectories" / "warmstart.jsonl"))
    assert len(demos) == 2 and all(t.success for t in demos)  # the oracle solves easy levels
    ev = list(read_jsonl(d / "trajectories" / "eval_before.jsonl"))
    assert {t.split for t in ev} == {"test"} and all(t.turns[0].token_ids for t in ev)
    train_seeds = {t.seed for p in ("warmstart", "iter_1", "iter_2") for t in read_jsonl(d / "trajectories" / f"{p}.jsonl")}
    assert not train_seeds & {t.seed for t in ev}
    assert len(train_seeds) == 2 + 2 + 2  # each iteration draws fresh train seeds
    assert (d / "checkpoints" / "warmstart").is_dir() or any((d / "checkpoints").iterdir())
    assert len(res.evals) == 2 and res.table().row_count == 2
    # memory: built from train-seed episodes only, recorded per phase and in the summary
    summary = json.loads((d / "summary.json").read_text())
    mem = summary["memory"]
    assert mem["entries"] > 0 and mem["by_kind"].get("skill", 0) >= 1  # the oracle demos give skills
    from agentsd.memory import SkillMemory

    train_ids = {t.id for p in ("warmstart", "iter_1", "iter_2") for t in read_jsonl(d / "trajectories" / f"{p}.jsonl")}
    with SkillMemory(d / "memory", create=False) as m:
        evidence = {x for e in m.entries(status=None) for x in e.evidence}
    assert evidence and evidence <= train_ids
    assert "added" in json.loads((d / "metrics.jsonl").read_text().splitlines()[0])["memory"]


def test_existing_run_needs_resume(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, **{"learning.iterations": 0})
    run(cfg, log=lambda *a: None)
    with pytest.raises(FileExistsError, match="--resume"):
        run(cfg, log=lambda *a: None)


def test_interrupted_run_resumes_without_redoing_phases(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir)

    def boom(phase, done, total):
        if phase == "iter_2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=boom, log=lambda *a: None)
    d = cfg.run_dir
    assert _phases(d) == ["warmstart", "eval_before", "iter_1"]
    # the interrupted phase's JSONL holds only whole lines
    partial = d / "trajectories" / "iter_2.jsonl"
    assert len(list(read_jsonl(partial))) == 1
    state = json.loads((d / "state.json").read_text())
    run(cfg, resume=True, log=lambda *a: None)
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "iter_2", "eval_after"]
    assert len(list(read_jsonl(partial))) == 2  # redone from scratch, not appended twice
    if state["checkpoint"]:
        assert json.loads((d / "state.json").read_text())["checkpoint"] is not None


def test_llm_summarizer_stage_runs_on_the_policy(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, **{
        "learning.iterations": 0, "learning.warmstart.episodes": 1, "eval.episodes": 1,
        "memory.summarizer": "llm", "memory.summarizer_max_new_tokens": 48,
    })
    res = run(cfg, log=lambda *a: None)
    rec = json.loads((res.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    # the random tiny model writes no valid JSON: the stage reports rejections and the run goes on
    assert rec["phase"] == "warmstart" and rec["memory"]["added"] + rec["memory"]["rejected"] >= 1


def test_craft_config_runs_end_to_end(tmp_path, tiny_model_dir):
    ov = [f"output_dir={tmp_path}", "name=c", f"model.name={tiny_model_dir}", "learning.warmstart.episodes=1",
          "eval.episodes=1", "rollout.batch=1", "rollout.max_turns=2", "learning.iterations=1",
          "eval.sampling.max_new_tokens=4", "rollout.sampling.max_new_tokens=4"]
    res = run(load_config("craft", ov), log=lambda *a: None)
    assert _phases(res.run_dir) == ["warmstart", "eval_before", "iter_1", "eval_after"]
    demos = list(read_jsonl(res.run_dir / "trajectories" / "warmstart.jsonl"))
    assert demos[0].success and demos[0].env == "craft"  # the oracle plans wood-tier tasks to the end
    assert json.loads((res.run_dir / "summary.json").read_text())["memory"]["by_kind"].get("skill") == 1


def test_run_logs_every_phase_to_tensorboard(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = run(_cfg(tmp_path, tiny_model_dir, **{"learning.iterations": 0, "memory.enabled": "false"}),
              log=lambda *a: None)
    acc = EventAccumulator(str(res.run_dir / "tb"))
    acc.Reload()
    success = acc.Scalars("eval/metrics/success")
    assert [e.step for e in success] == [2, 3]  # eval_before, eval_after (warmstart is phase 1)
    assert [e.value for e in success] == [p["metrics"]["success"] for p in res.evals]


def test_eval_every_gives_a_learning_curve_and_resumes_it(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, **{"learning.iterations": 3, "eval.every": 1})

    def boom(phase, done, total):
        if phase == "eval_iter_2":
            raise KeyboardInterrupt  # killed between iter_2 and its evaluation

    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=boom, log=lambda *a: None)
    d = cfg.run_dir
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2"]
    res = run(cfg, resume=True, log=lambda *a: None)
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2", "eval_iter_2",
                          "iter_3", "eval_after"]  # the last iteration's point is eval_after
    assert len(res.evals) == 4
    from agentsd.report.collect import read_run

    assert [p["phase"] for p in read_run(d)["curve"]] == ["eval_before", "eval_iter_1", "eval_iter_2", "eval_after"]


def test_a_finished_run_resumed_with_more_iterations_evaluates_at_its_new_end(tmp_path, tiny_model_dir):
    """Extending a finished run: its old final evaluation becomes the curve point of the iteration it
    followed (state, metrics.jsonl, trajectory file), and the extended run evaluates again at the end."""
    from agentsd.report.collect import is_complete, read_run

    run(_cfg(tmp_path, tiny_model_dir, **{"learning.iterations": 1}), log=lambda *a: None)
    d = tmp_path / "t"
    old = list(read_jsonl(d / "trajectories" / "eval_after.jsonl"))
    cfg = _cfg(tmp_path, tiny_model_dir, **{"learning.iterations": 2})
    lines: list[str] = []
    res = run(cfg, resume=True, log=lines.append)
    assert any("extending a finished run: 1 -> 2" in x for x in lines)
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2", "eval_after"]
    assert [p["phase"] for p in res.phases] == _phases(d)
    state = json.loads((d / "state.json").read_text())
    assert state["done"] == _phases(d)
    moved = list(read_jsonl(d / "trajectories" / "eval_iter_1.jsonl"))
    assert [t.id for t in moved] == [t.id for t in old]
    assert len(list(read_jsonl(d / "trajectories" / "eval_after.jsonl"))) == 2 and is_complete(d)
    assert [p["phase"] for p in read_run(d)["curve"]] == ["eval_before", "eval_iter_1", "eval_after"]
    # resuming the extended, finished run again changes nothing
    run(cfg, resume=True, log=lambda *a: None)
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2", "eval_after"]


def test_eval_meter_scores_the_same_oracle_states_at_every_evaluation(tmp_path, tiny_model_dir):
    """eval.meter: every evaluation records the learnability meter on the same held-out oracle states
    (plain student prompt, plus the memory's skills), in metrics.jsonl and in the log."""
    lines: list[str] = []
    res = run(_cfg(tmp_path, tiny_model_dir, **{"eval.meter": 3, "learning.iterations": 1}), log=lines.append)
    evals = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "eval"]
    assert [e["phase"] for e in evals] == ["eval_before", "eval_after"]
    for e in evals:
        m = e["meter"]
        assert m["states"] == 3 and set(m) >= {"student", "skills"}
        for ctx in ("student", "skills"):
            assert 0.0 <= m[ctx]["p_oracle"] <= 1.0 and sum(m[ctx]["top_counts"].values()) == 3
    assert sum("meter (3 oracle states)" in x for x in lines) == 2
    # eval.meter=0: no meter key (the field's default; configs/sokoban.yaml turns it on)
    assert load_config("craft").eval.meter == 0
    shipped = load_config("sokoban")  # make run: meter on, candidates scored, masked by the memory
    assert shipped.eval.meter == 32 and shipped.rollout.actor == "candidates" and shipped.memory.guard
    res = run(_cfg(tmp_path / "off", tiny_model_dir, **{"learning.iterations": 0, "eval.meter": 0}),
              log=lambda *a: None)
    assert all("meter" not in json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines())


def test_candidate_actor_with_memory_guard_masks_what_the_run_learned(tmp_path, tiny_model_dir):
    """rollout.actor=candidates + memory.guard: every eval move is one of the env's candidates, and once
    the train rollouts have taught the memory executable guardrails, no later move breaks one of them
    while an allowed move existed (replayed on the real env, state by state)."""
    from agentsd.envs import make
    from agentsd.memory import SkillMemory

    lines: list[str] = []
    cfg = _cfg(tmp_path, tiny_model_dir, **{"rollout.actor": "candidates", "memory.guard": "true",
                                            "learning.iterations": 1, "rollout.batch": 4, "rollout.max_turns": 6,
                                            "eval.episodes": 3, "rollout.sampling.temperature": 1.0})
    res = run(cfg, log=lines.append)
    recs = {json.loads(x)["phase"]: json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()}
    assert "guardrails" in recs["eval_before"] and "guard" in recs["iter_1"]["memory"]
    with SkillMemory(res.run_dir / "memory", create=False) as m:
        rails = [g for g in m.entries(kind="guardrail", env="sokoban") if g.executable or g.forbidden_action]
    assert rails, "a random tiny model's train episodes fail: the diagnostic summarizer writes guardrails"
    assert recs["eval_after"]["guardrails"] == len(rails)
    assert any(f"masked by {len(rails)} executable guardrail" in x for x in lines)
    env = make("sokoban", **cfg.env.kwargs)
    moves = masked = 0
    for t in read_jsonl(res.run_dir / "trajectories" / "eval_after.jsonl"):
        env.reset(seed=t.seed)
        for turn in t.turns:
            cands = env.action_candidates()
            assert turn.response in cands
            allowed = [c for c in cands if not any(g.check(env, c) for g in rails)]
            masked += len(cands) - len(allowed)
            assert not allowed or turn.response in allowed
            moves += 1
            if env.step(turn.response)[2]:
                break
    assert moves and masked  # the guard had something to mask


def test_candidate_actor_settings_that_cannot_act_are_named(tmp_path, tiny_model_dir):
    """rollout.actor=candidates on Ray workers is an error naming the fix; memory.guard where it cannot
    act (no memory, text generation, the planner, a data-parallel launch) is off with the reason logged,
    so the shipped config (guard on) still runs with memory.enabled=false."""
    from agentsd.config import ConfigError, check_combinations, guard_off

    with pytest.raises(ConfigError, match="rollout.actor=generate"):
        check_combinations(_cfg(tmp_path, tiny_model_dir, **{"rollout.actor": "candidates", "backend.kind": "ray"}))
    on = _cfg(tmp_path, tiny_model_dir, **{"rollout.actor": "candidates", "memory.guard": "true"})
    check_combinations(on)
    assert guard_off(on) is None and "main process" in guard_off(on, world=2)
    for extra, why in (({"memory.enabled": "false"}, "memory.enabled=false"),
                       ({"rollout.actor": "generate"}, "rollout.actor=generate"),
                       ({"mode": "memory", "learning.algo": "none"}, "planner")):
        cfg = _cfg(tmp_path, tiny_model_dir, **{"memory.guard": "true", **extra})
        check_combinations(cfg)
        assert why in guard_off(cfg)
    assert guard_off(_cfg(tmp_path, tiny_model_dir, **{"memory.guard": "false", "memory.enabled": "false"})) is None
    lines: list[str] = []
    res = run(_cfg(tmp_path, tiny_model_dir, **{"memory.enabled": "false", "learning.iterations": 0}), log=lines.append)
    assert any("memory.guard: off (memory.enabled=false" in x for x in lines)
    assert "guardrails" not in json.loads((res.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    with pytest.raises(Exception, match="rollout.actor"):
        _cfg(tmp_path, tiny_model_dir, **{"rollout.actor": "beam"})
