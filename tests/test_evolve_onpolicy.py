"""`agentsd run` with the on-policy algorithms (grpo, opd, skill_sd, skill_prompt, sft) on the tiny model:
end to end, learner stats, the skill teacher's prompts, checkpoints and an exact resume."""

import json
import math
import shutil
from collections import Counter

import pytest

from agentsd.config import ConfigError, load_config
from agentsd.evolve import LEARNER_FILE, run
from agentsd.trajectory import read_jsonl


def _cfg(tmp_path, model_dir, algo, **extra):
    ov = [
        f"output_dir={tmp_path}", "name=t", f"model.name={model_dir}", "model.dtype=float32",
        "model.autocast=false", "env.kwargs.brief=true",
        "learning.warmstart.episodes=2", "learning.warmstart.batch_size=4", "eval.episodes=2",
        "rollout.batch=4", "rollout.group_size=2", "rollout.max_turns=2", "learning.iterations=1",
        f"learning.algo={algo}", "learning.onpolicy.lr=0.01",
        "eval.sampling.max_new_tokens=4", "rollout.sampling.max_new_tokens=4", "memory.enabled=true",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("sokoban", ov)


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algo", ["grpo", "opd", "skill_sd", "skill_prompt", "sft"])
def test_each_algo_runs_end_to_end(tmp_path, tiny_model_dir, algo):
    # sft trains on successful episodes only: the random tiny model has none, so it takes no step
    cfg = _cfg(tmp_path, tiny_model_dir, algo)
    logs = []
    res = run(cfg, log=logs.append)
    recs = _records(res.run_dir)
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "eval_after"]
    learn = recs[2]["learn"]
    assert learn["steps"] == 1 and learn["episodes"] == 4
    assert all(math.isfinite(v) for v in learn.values() if isinstance(v, float))
    if algo != "sft":
        assert learn["stepped"] == 1.0 and learn["tokens"] > 0 and learn["tokens_per_s"] > 0
    if algo in ("grpo", "skill_sd", "skill_prompt"):
        assert "clip_frac" in learn
    if algo in ("opd", "skill_sd"):
        assert "sdl" in learn and "kl" in learn
    if algo == "opd":  # the frozen initial weights, shown the oracle's answer for each turn: they differ
        assert learn["loss"] > 1e-4 and "grpo_loss" not in learn
        train = read_jsonl(res.run_dir / "trajectories" / "iter_1.jsonl")
        refs = [turn.reference for t in train for turn in t.turns]  # None where the oracle had no answer
        assert any(refs) and all(r is None or r.startswith("<answer>") for r in refs)
    for phase in ("eval_after",) if algo == "opd" else ("iter_1", "eval_after"):  # recorded for opd's train only
        assert all(turn.reference is None for t in read_jsonl(res.run_dir / "trajectories" / f"{phase}.jsonl")
                   for turn in t.turns)
    assert any("iter_1: train success" in x and "learner step" in x for x in logs)
    ckpt = res.run_dir / "checkpoints" / "iter_1"
    assert (ckpt / LEARNER_FILE).exists() and (ckpt / "config.json").exists()
    assert (res.run_dir / "checkpoints" / "base").is_dir()  # LoRA: the weights under the adapter
    assert json.loads((res.run_dir / "state.json").read_text())["checkpoint"] == str(ckpt)
    # groups of 2 per seed: 2 seeds, each twice
    seeds = [t.seed for t in read_jsonl(res.run_dir / "trajectories" / "iter_1.jsonl")]
    assert sorted(Counter(seeds).values()) == [2, 2]
    if algo == "skill_prompt":  # skills in the student's prompt, in rollouts and evaluation
        for phase in ("iter_1", "eval_after"):
            t = next(iter(read_jsonl(res.run_dir / "trajectories" / f"{phase}.jsonl")))
            assert "<memory>" in t.turns[0].messages[0]["content"]


def test_merged_checkpoint_loads_and_matches_the_live_model(tmp_path, tiny_model_dir):
    import torch

    from agentsd.policy import load_policy

    # skill_sd with a large lam: the random model's equal returns give GRPO zero advantages, the SDL
    # term to the skill-prompted teacher still moves the weights
    cfg = _cfg(tmp_path, tiny_model_dir, "skill_sd", **{"learning.onpolicy.lr": 0.05, "learning.onpolicy.lam": 1.0})
    res = run(cfg, log=lambda *a: None)
    ckpt = res.run_dir / "checkpoints" / "iter_1"
    merged = load_policy(str(ckpt), dtype="float32", autocast=False)
    base = load_policy(str(res.run_dir / "checkpoints" / "base"), dtype="float32", autocast=False)
    sd = torch.load(ckpt / LEARNER_FILE, weights_only=False)
    assert sd["lora"] and sd["adapter"] and sd["optimizer"]["state"]
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        a = merged.model(input_ids=ids).logits
        b = base.model(input_ids=ids).logits
    assert not torch.allclose(a, b)  # the step changed the weights, and the merged copy has them


def test_generation_uses_the_trained_lora_weights(tiny_model_dir):
    """peft injects the adapter into policy.model's own modules: after a learner step the policy samples
    from the updated weights, the same function as the merged copy a checkpoint saves."""
    import copy

    import torch

    from agentsd.learn.onpolicy import OnPolicyConfig, Sample, learner_step, make_optimizer, prepare_model
    from agentsd.policy.hf import HFPolicy

    pol = HFPolicy(tiny_model_dir, dtype="float32", autocast=False)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = pol.model(input_ids=ids).logits
    cfg = OnPolicyConfig(algo="sft", lr=0.05)
    net = prepare_model(pol.model, cfg)
    opt = make_optimizer(net, cfg)
    stats = learner_step(net, pol.tokenizer, [Sample([1, 2, 3], [4, 5], None, success=True)], cfg, optimizer=opt)
    assert stats["stepped"] == 1.0
    with torch.no_grad():
        after = pol.model(input_ids=ids).logits
        merged = copy.deepcopy(net).merge_and_unload()(input_ids=ids).logits
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, merged, rtol=1e-4, atol=1e-4)
    gen = pol.generate([[{"role": "user", "content": "hi"}]])[0]
    assert gen.token_ids


def test_skill_sd_teacher_prompts_carry_the_memory(tmp_path, tiny_model_dir):
    from agentsd.learn.onpolicy import OnPolicyConfig, build_samples, make_teacher, prepare_model
    from agentsd.memory import SkillMemory
    from agentsd.policy.hf import HFPolicy

    cfg = _cfg(tmp_path, tiny_model_dir, "skill_sd")
    res = run(cfg, log=lambda *a: None)
    d = res.run_dir
    trajs = list(read_jsonl(d / "trajectories" / "iter_1.jsonl"))
    with SkillMemory(d / "memory", create=False) as mem:
        assert len(mem) > 0

        def skills_for(turn, traj):
            obs = [m["content"] for m in turn.messages if m["role"] == "user"][-1]
            return mem.render(mem.retrieve(traj.meta["task"] + "\n" + obs, k=3, env=traj.env)) or None

        pol = HFPolicy(tiny_model_dir, dtype="float32", autocast=False)
        opcfg = OnPolicyConfig(algo="skill_sd")
        teacher = make_teacher(prepare_model(pol.model, opcfg), opcfg, skills_for=skills_for)
        batch = build_samples(trajs, pol.tokenizer, opcfg, teacher=teacher)
    s = batch.samples[0]
    assert "<memory>" in pol.tokenizer.decode(s.teacher_prompt_ids)
    assert "<memory>" not in pol.tokenizer.decode(s.prompt_ids)
    # the run's learner scored its teacher on such prompts: the teacher differed from the student
    learn = _records(d)[2]["learn"]
    assert learn["kl"] > 0 and learn["sdl"] > 0


def test_interrupted_skill_sd_run_resumes(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, "skill_sd", **{"learning.iterations": 2})

    def boom(phase, done, total):
        if phase == "iter_2":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=boom, log=lambda *a: None)
    d = cfg.run_dir
    assert [r["phase"] for r in _records(d)] == ["warmstart", "eval_before", "iter_1"]
    assert (d / "checkpoints" / "iter_1" / LEARNER_FILE).exists()
    run(cfg, resume=True, log=lambda *a: None)
    recs = _records(d)
    assert [r["phase"] for r in recs] == ["warmstart", "eval_before", "iter_1", "iter_2", "eval_after"]
    assert all(math.isfinite(v) for v in recs[3]["learn"].values() if isinstance(v, float))
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == ["base", "iter_2"]


@pytest.mark.parametrize("lora", [True, False])
def test_resumed_iteration_reproduces_the_uninterrupted_one(tmp_path, tiny_model_dir, lora):
    """A copy of the run directory taken during iter_2 (what a kill leaves) resumed: same rollouts and the
    same learner numbers as the run that went on. (Two separate runs are not comparable: memory entry
    ids are random and appear in the teacher's prompt.)"""
    cfg = _cfg(tmp_path, tiny_model_dir, "skill_sd", **{"learning.iterations": 2, "learning.onpolicy.lora": lora,
                                                         "learning.onpolicy.lam": 1.0})
    snap = tmp_path / "snapshot"

    def snapshot(phase, done, total):
        if phase == "iter_2" and not snap.exists():
            shutil.copytree(cfg.run_dir, snap)

    run(cfg, progress=snapshot, log=lambda *a: None)
    full = _records(cfg.run_dir)
    shutil.move(cfg.run_dir, tmp_path / "uninterrupted")
    shutil.move(snap, cfg.run_dir)
    assert [r["phase"] for r in _records(cfg.run_dir)] == ["warmstart", "eval_before", "iter_1"]
    run(cfg, resume=True, log=lambda *a: None)
    resumed = _records(cfg.run_dir)
    a, b = full[3]["learn"], resumed[3]["learn"]
    # CPU, fp32: exactly the same numbers
    for key in ("first_loss", "kl", "sdl", "grad_norm", "entropy"):
        assert b[key] == a[key], key
    assert resumed[4]["metrics"] == full[4]["metrics"]
    assert (cfg.run_dir / "checkpoints" / "base").is_dir() == lora


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["learning.algo=skill_sd", "memory.enabled=false"], "memory.enabled"),
        (["learning.algo=skill_prompt", "memory.enabled=false"], "memory.enabled"),
        (["learning.algo=grpo", "rollout.sampling.temperature=0"], "temperature=1"),
        (["learning.algo=skill_sd", "rollout.sampling.temperature=0.7"], "behaviour log-probs"),
        (["learning.algo=grpo", "rollout.sampling.top_k=5"], "top_k=0"),
        (["learning.algo=grpo", "model.name=openai:http://localhost:1/v1"], "in-process"),
        (["learning.algo=magic"], "learning.algo"),
    ],
)
def test_bad_combinations_are_clear_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("sokoban", overrides)


@pytest.mark.parametrize(
    ("override", "named", "hint"),
    [("learning.onpolicy.lamda=0.1", "learning.onpolicy.lamda", "lam"),
     ("learning.skills.budget=10", "learning.skills.budget", "budget_tokens")],
)
def test_unknown_onpolicy_keys_name_the_nearest(override, named, hint):
    with pytest.raises(ConfigError) as e:
        load_config("sokoban", [override])
    assert repr(named) in str(e.value) and repr(hint) in str(e.value)


def test_onpolicy_keys_load():
    cfg = load_config("sokoban", ["learning.algo=skill_sd", "learning.onpolicy.lam=0.01",
                                  "learning.onpolicy.teacher_mode=ema", "learning.skills.k=2"])
    assert cfg.learning.onpolicy.lam == 0.01 and cfg.learning.onpolicy.teacher_mode == "ema"
    assert cfg.learning.skills.k == 2


def test_opd_with_a_separate_teacher_model_and_a_train_start(tmp_path, tiny_model_dir):
    """learning.onpolicy.teacher_model gives opd a real teacher (a different model: nonzero SDL at the
    first step, where the default teacher equals the student); rollout.train_start moves the
    iterations' train seeds; eval.batch is accepted."""
    from agentsd.policy.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", vocab_source=tiny_model_dir, seed=7)
    base = run(_cfg(tmp_path, tiny_model_dir, "opd", name="anchor", **{"learning.onpolicy.opd_context": "none"}),
               log=lambda *a: None)
    res = run(_cfg(tmp_path, tiny_model_dir, "opd", name="teacher", **{
        "learning.onpolicy.teacher_model": other, "learning.onpolicy.opd_context": "none",
        "rollout.train_start": 50, "eval.batch": 1}), log=lambda *a: None)
    anchor, taught = _records(base.run_dir)[2]["learn"], _records(res.run_dir)[2]["learn"]
    assert anchor["kl"] == pytest.approx(0.0, abs=1e-6)  # the initial weights on the plain prompt: teacher == student
    assert all(turn.reference is None for t in read_jsonl(base.run_dir / "trajectories" / "iter_1.jsonl")
               for turn in t.turns)  # opd_context=none records no references
    assert taught["kl"] > 1e-3 and taught["sdl"] > 1e-3
    seeds = sorted({t.seed for t in read_jsonl(res.run_dir / "trajectories" / "iter_1.jsonl")})
    from agentsd.config import check_combinations
    from agentsd.rollout import EnvFactory

    train = EnvFactory("sokoban", {}).cls.seeds("train")
    assert seeds == [train[50], train[51]]
    with pytest.raises(ConfigError, match="teacher_model"):
        check_combinations(load_config("sokoban", ["learning.algo=grpo", f"learning.onpolicy.teacher_model={other}"]))
