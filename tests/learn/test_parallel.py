"""Data parallelism (agentsd.learn.parallel): work division, stats merging, and a learner step on two
gloo processes under torchrun that equals one single-process step on the whole batch.

Each identity is checked in fp32 (pinned: ``bf16_autocast=False``, to ~1e-6) and under bf16 autocast
(to bf16 rounding: tests/numutil.py derives the tolerance), whatever this machine's default is."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from numutil import BF16_STAT_RTOL, assert_bf16_close

from agentsd.learn.onpolicy import OnPolicyConfig, build_samples, learner_step, make_teacher
from agentsd.learn.parallel import DataParallel, merge_rollout_stats

HERE = Path(__file__).parent


def test_shares_cover_every_item_once_in_order():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [DataParallel(r, world).share(list(range(n))) for r in range(world)]
            assert [x for p in parts for x in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            strided = sorted(x for r in range(world) for x in DataParallel(r, world).strided(list(range(n))))
            assert strided == list(range(n))
    with pytest.raises(ValueError, match="rank"):
        DataParallel(2, 2)


def test_single_process_is_not_a_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert DataParallel.from_launch() is None


def test_merged_rollout_stats_sum_counts_and_take_the_slowest_wall():
    a = {"episodes": 2, "turns": 5, "tokens": 100, "act_seconds": 1.0, "env_seconds": 0.5, "wall_seconds": 2.0,
         "tokens_per_s": 50.0, "mean_batch": 2.0}
    b = {**a, "tokens": 300, "wall_seconds": 4.0}
    m = merge_rollout_stats([a, b])
    assert m["episodes"] == 4 and m["turns"] == 10 and m["tokens"] == 400 and m["wall_seconds"] == 4.0
    assert m["tokens_per_s"] == 100.0 and m["processes"] == 2
    assert merge_rollout_stats([a]) == a


@pytest.fixture(scope="module")
def batch(tiny_model_dir):
    """Sampled episodes of the toy counter env with varied returns (nonzero advantages)."""
    from agentsd.envs import register
    from agentsd.policy.base import Sampling
    from agentsd.policy.hf import HFPolicy
    from agentsd.rollout import EnvFactory, PolicyActor, make_tasks, rollout

    register("counter", "toyenv:CounterEnv")
    policy = HFPolicy(tiny_model_dir, dtype="float32", autocast=False, name="tiny")
    envs = EnvFactory("counter", {"max_steps": 2})
    tasks = make_tasks(envs.cls, "train", 3, start=20, group_size=2)
    trajs, _ = rollout(envs, PolicyActor(policy, Sampling(temperature=1.0, max_new_tokens=10, seed=0)), tasks, batch=len(tasks))
    for i, t in enumerate(trajs):
        t.turns[-1].reward = float(i % 3)
    return trajs


def _skills(turn, traj):
    return "Skill: count towards the target one step at a time."


@pytest.mark.parametrize(("algo", "bf16"), [("grpo", False), ("skill_sd", False), ("skill_sd", True)],
                         ids=["grpo-fp32", "skill_sd-fp32", "skill_sd-bf16"])
def test_two_process_step_equals_one_process_step(algo, bf16, batch, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = OnPolicyConfig(algo=algo, lora=False, lam=0.5, micro_batch=2, max_grad_norm=1.0, teacher_mode="frozen",
                         bf16_autocast=bf16)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    teacher = make_teacher(model, cfg, skills_for=_skills)
    samples = build_samples(batch, tokenizer, cfg, teacher=teacher).samples
    assert len(samples) >= 5  # an odd split: the two processes get different numbers of turns
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = learner_step(model, tokenizer, samples, cfg, teacher, torch.optim.SGD(model.parameters(), lr=1.0))
    ref_update = {n: p.detach() - before[n] for n, p in model.named_parameters()}

    torch.save({"cfg": cfg.model_dump(), "samples": samples}, tmp_path / "job.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    port = 29500 + os.getpid() % 1000
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(HERE / "dp_worker.py"), tiny_model_dir, str(tmp_path / "job.pt"), str(tmp_path / "out.pt")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=False)
    biggest = max(float(u.abs().max()) for u in ref_update.values())
    assert biggest > 1e-4  # the step moved the weights
    if bf16:
        _assert_bf16_step(got, ref_update, ref, ("loss", "sdl", "kl", "entropy", "grad_norm"))
        return
    for n, u in ref_update.items():
        torch.testing.assert_close(got["update"][n], u, rtol=1e-4, atol=1e-6)
    for k in ("loss", "grpo_loss", "entropy", "tokens", "samples", "grad_norm", "clip_frac", "ratio_max"):
        assert got["stats"][k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
    if algo == "skill_sd":
        for k in ("sdl", "kl", "rho_mean", "rho_max"):
            assert got["stats"][k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k


def _assert_bf16_step(got, ref_update, ref, stat_keys) -> None:
    """A two-process bf16 step against the one-process one: the same update and stats to bf16 rounding,
    the same token counts exactly."""
    assert_bf16_close(got["update"], ref_update)
    for k in stat_keys:
        assert got["stats"][k] == pytest.approx(ref[k], rel=BF16_STAT_RTOL, abs=1e-6), k
    for k in ("tokens", "samples"):
        assert got["stats"][k] == ref[k], k


def _torchrun_step(tiny_model_dir, tmp_path, cfg, samples) -> dict:
    """One learner step on two gloo processes under torchrun (tests/learn/dp_worker.py); rank 0's output."""
    torch.save({"cfg": cfg.model_dump(), "samples": samples}, tmp_path / "job.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    port = 29500 + (os.getpid() + 7) % 1000
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(HERE / "dp_worker.py"), tiny_model_dir, str(tmp_path / "job.pt"), str(tmp_path / "out.pt")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=False)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_sharded_optimizer_step_equals_the_whole_adamw_step(bf16, batch, tiny_model_dir, tmp_path):
    """shard_optimizer (ZeRO-1) on two processes: the same update and AdamW state as one process's
    unsharded AdamW, each process holding only part of the moments; the consolidated checkpoint dict
    reloads into each process's share.

    Under bf16 the sharded step still equals the whole AdamW on the same two processes exactly (the same
    gradients); against one process only the gradient (its norm) is compared, to bf16 rounding. Adam's
    first step is ~lr · sign(g), so every coordinate whose gradient lies within bf16 rounding noise of 0
    may flip: the updates themselves are not comparable, and the SGD tests above check the gradient sum."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentsd.learn.onpolicy import make_optimizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = OnPolicyConfig(algo="grpo", lora=False, lr=1e-2, weight_decay=0.1, micro_batch=2, max_grad_norm=1.0,
                         shard_optimizer=True, bf16_autocast=bf16)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    samples = build_samples(batch, tokenizer, cfg).samples
    opt = make_optimizer(model, cfg)  # one process: a plain AdamW, shard_optimizer has nothing to shard
    assert isinstance(opt, torch.optim.AdamW)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = learner_step(model, tokenizer, samples, cfg, None, opt)
    ref_update = {n: p.detach() - before[n] for n, p in model.named_parameters()}

    got = _torchrun_step(tiny_model_dir, tmp_path, cfg, samples)
    assert max(float(u.abs().max()) for u in ref_update.values()) > 1e-3
    # Against a whole AdamW on the same two processes (the same gradient sums): equal to rounding.
    for n, u in got["whole_update"].items():
        torch.testing.assert_close(got["update"][n], u, rtol=1e-5, atol=1e-7)
    full, whole = got["full_state"], got["whole_state"]
    assert len(full["state"]) == len(whole["state"]) == len(opt.state_dict()["state"])
    for i, s in whole["state"].items():
        torch.testing.assert_close(full["state"][i]["exp_avg"], s["exp_avg"], rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(full["state"][i]["exp_avg_sq"], s["exp_avg_sq"], rtol=1e-5, atol=1e-12)
    total = sum(p.numel() for p in model.parameters())
    shares = got["state_numel"]
    assert len(shares) == 2 and sum(shares) == total and max(shares) < 0.75 * total  # each holds a part
    if bf16:
        assert got["stats"]["grad_norm"] == pytest.approx(ref["grad_norm"], rel=BF16_STAT_RTOL)
        assert got["stats"]["tokens"] == ref["tokens"]
        return
    # Against one process: Adam's first step is ~lr * sign(g), so where |g| is near eps the float
    # summation order of the two processes' gradients flips a coordinate; all but a few agree.
    close = [torch.isclose(got["update"][n], u, rtol=1e-3, atol=1e-5) for n, u in ref_update.items()]
    assert sum(int((~c).sum()) for c in close) <= 5
    assert got["stats"]["loss"] == pytest.approx(ref["loss"], abs=1e-7)
    assert got["stats"]["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_sharded_params_step_equals_one_process_step(bf16, batch, tiny_model_dir, tmp_path):
    """shard_params (FSDP2 on the decoder layers) on two processes with uneven shares of the batch (the
    lighter process pads with a zero-weight micro-batch): the same update, stats and synced teacher as
    one process; each process holds part of each layer; whole weights, optimizer and teacher state
    round-trip through a checkpoint; generation of different lengths per process works (dp_worker.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = OnPolicyConfig(algo="skill_sd", lora=False, lam=0.5, micro_batch=2, max_grad_norm=1.0,
                         teacher_mode="synced", shard_params=True, bf16_autocast=bf16)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    teacher = make_teacher(model, cfg, skills_for=_skills)
    samples = build_samples(batch, tokenizer, cfg, teacher=teacher).samples[:5]
    assert len(samples) == 5  # strided 3 + 2 turns: 2 micro-batches on one process, 1 on the other
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = learner_step(model, tokenizer, samples, cfg, teacher, torch.optim.SGD(model.parameters(), lr=1.0))
    ref_update = {n: p.detach() - before[n] for n, p in model.named_parameters()}

    got = _torchrun_step(tiny_model_dir, tmp_path, cfg, samples)
    assert max(float(u.abs().max()) for u in ref_update.values()) > 1e-4
    if bf16:
        _assert_bf16_step(got, ref_update, ref, ("loss", "sdl", "kl", "entropy", "grad_norm"))
        teacher_update = {n: got["teacher"][n] - before[n] for n in teacher.state}
        assert_bf16_close(teacher_update, {n: t - before[n] for n, t in teacher.state.items()})
    else:
        for n, u in ref_update.items():
            torch.testing.assert_close(got["update"][n], u, rtol=1e-4, atol=1e-6)
        for k in ("loss", "grpo_loss", "sdl", "kl", "entropy", "tokens", "samples", "grad_norm", "rho_max"):
            assert got["stats"][k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
        for n, t in teacher.state.items():  # synced after the step: the student's new weights
            torch.testing.assert_close(got["teacher"][n], t, rtol=1e-4, atol=1e-6)
    assert got["sharded_names"] and all(".layers." in n for n in got["sharded_names"])
    layer_numel = sum(p.numel() for n, p in model.named_parameters() if n in set(got["sharded_names"]))
    rest = got["total_numel"] - layer_numel
    assert got["total_numel"] == sum(p.numel() for p in model.parameters())
    assert sum(got["param_numel"]) - 2 * rest == layer_numel  # the layers split, the rest replicated
    assert max(got["param_numel"]) - rest <= layer_numel // 2 + 64  # each holds about half of each layer


def test_sharded_params_refuses_what_it_cannot_shard():
    from agentsd.learn.onpolicy import shard_model
    from agentsd.learn.parallel import DataParallel

    two = DataParallel(0, 2)
    with pytest.raises(ValueError, match="lora=false and shard_optimizer=false"):
        shard_model(object(), OnPolicyConfig(shard_params=True, lora=True, shard_optimizer=True), two)
    assert not shard_model(object(), OnPolicyConfig(shard_params=True), None)  # one process: nothing to shard
    assert not shard_model(object(), OnPolicyConfig(shard_params=False, lora=False), two)


def test_name_keyed_optimizer_state_loads_into_a_plain_learner(tiny_model_dir):
    """A shard_params checkpoint's optimizer state (keyed by parameter name) resumes in one process,
    where nothing is sharded; a ZeRO-1 optimizer refuses it with a clear error."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    from transformers import AutoModelForCausalLM

    from agentsd.learn.onpolicy import load_optimizer_state, make_optimizer

    cfg = OnPolicyConfig(lora=False, weight_decay=0.1)
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    opt_a = make_optimizer(a, cfg)
    for i, p in enumerate(a.parameters()):
        p.grad = torch.full_like(p, 0.1 * (i + 1))
    opt_a.step()
    saved = {**get_optimizer_state_dict(a, opt_a, options=StateDictOptions(full_state_dict=True)), "sharded_params": True}
    assert all(isinstance(k, str) for k in saved["state"])
    b = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    opt_b = make_optimizer(b, cfg)
    load_optimizer_state(opt_b, saved, b)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(opt_a.state[pa]["exp_avg_sq"], opt_b.state[pb]["exp_avg_sq"])
    assert [g["weight_decay"] for g in opt_b.param_groups] == [g["weight_decay"] for g in opt_a.param_groups]
    with pytest.raises(ValueError, match="shard_params=true"):
        load_optimizer_state(opt_b, saved)  # no model to map the names onto


def test_accelerate_fsdp_and_deepspeed_configs_map_onto_the_learner_sharding():
    from agentsd.learn.parallel import launcher_sharding

    assert launcher_sharding({}) is None
    assert launcher_sharding({"ACCELERATE_USE_FSDP": "true"}) == "params"
    assert launcher_sharding({"ACCELERATE_USE_FSDP": "true", "FSDP_SHARDING_STRATEGY": "NO_SHARD"}) is None
    for stage, want in (("0", None), ("1", "optimizer"), ("2", "optimizer"), ("3", "params")):
        env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": stage}
        assert launcher_sharding(env) == want, stage
    with pytest.raises(ValueError, match="zero_stage"):
        launcher_sharding({"ACCELERATE_USE_DEEPSPEED": "true"})
