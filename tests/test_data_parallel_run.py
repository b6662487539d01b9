"""`agentsd run` launched as two data-parallel processes (torchrun, gloo on CPU) on the tiny model:
one run directory, every episode once, the learner stepping in both processes with its AdamW state
sharded (ZeRO-1) or its decoder layers sharded (ZeRO-3, FSDP2), and resume from the gathered checkpoint."""

import json
import os
import subprocess
import sys

import pytest

from agentsd.config import ConfigError, load_config
from agentsd.evolve import run
from agentsd.trajectory import read_jsonl


def _overrides(tmp_path, model_dir):
    return [
        f"output_dir={tmp_path}", f"model.name={model_dir}", "env.kwargs.brief=true",
        "learning.warmstart.episodes=2", "learning.warmstart.batch_size=2", "eval.episodes=3",
        "rollout.batch=4", "rollout.group_size=2", "rollout.max_turns=2", "learning.iterations=1",
        "learning.algo=skill_sd", "memory.enabled=true", "eval.sampling.max_new_tokens=4",
        "rollout.sampling.max_new_tokens=4", "learning.onpolicy.micro_batch=2", "tracking.tensorboard=false",
        "rollout.actor=generate", "memory.guard=false", "eval.meter=4",
    ]


def _launch(tmp_path, model_dir, name, *extra, post=(), env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), **(env_extra or {})}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    port = 29000 + (os.getpid() + len(name)) % 1000
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "agentsd", "run", "--env", "sokoban", "--name", name, *extra, *_overrides(tmp_path, model_dir), *post],
        env=env, capture_output=True, text=True, timeout=600,
    )


def _phases(d):
    return [json.loads(x)["phase"] for x in (d / "metrics.jsonl").read_text().splitlines()]


def test_two_process_run_plays_every_episode_once_and_resumes(tmp_path, tiny_model_dir):
    proc = _launch(tmp_path, tiny_model_dir, "dp", post=["learning.onpolicy.shard_optimizer=true"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    d = tmp_path / "dp"
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_after"]
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    it = next(r for r in recs if r["phase"] == "iter_1")
    assert it["rollout"]["processes"] == 2 and it["rollout"]["episodes"] == 4
    assert it["learn"]["stepped"] == 1 and it["learn"]["samples"] > 0 and "kl" in it["learn"]
    train = list(read_jsonl(d / "trajectories" / "iter_1.jsonl"))
    assert sorted(t.seed for t in train) == sorted([train[0].seed] * 2 + [train[2].seed] * 2)  # 2 groups of 2
    ev = list(read_jsonl(d / "trajectories" / "eval_after.jsonl"))
    assert sorted(t.seed for t in ev) == sorted({t.seed for t in ev}) and len(ev) == 3  # each test task once
    assert (d / "checkpoints" / "iter_1").is_dir() and (d / "memory" / "memory.sqlite").exists()
    assert proc.stdout.count("outputs in") == 1, proc.stdout  # only the main process prints
    # the same config in one process plays the same tasks
    single = run(load_config("sokoban", ["name=single", *_overrides(tmp_path, tiny_model_dir)]), log=lambda *a: None)
    one = list(read_jsonl(single.run_dir / "trajectories" / "iter_1.jsonl"))
    assert sorted(t.seed for t in one) == sorted(t.seed for t in train)
    # the checkpoint holds the whole optimizer state, gathered from both processes' shards
    import torch

    sd = torch.load(d / "checkpoints" / "iter_1" / "learner.pt", map_location="cpu", weights_only=False)
    state = sd["optimizer"]["state"]
    n_params = sum(len(g["params"]) for g in sd["optimizer"]["param_groups"])
    assert len(state) == n_params and all(v is not None and "exp_avg" in v for v in state.values())
    # resume with one more iteration: both processes load their shard of that state and go on
    again = _launch(tmp_path, tiny_model_dir, "dp", "--resume",
                    post=["learning.onpolicy.shard_optimizer=true", "learning.iterations=2"])
    assert again.returncode == 0, again.stderr[-4000:]
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2", "eval_after"]
    it2 = next(json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"iter_2"' in x)
    assert it2["learn"]["stepped"] == 1 and it2["rollout"]["processes"] == 2


def test_two_process_run_with_sharded_parameters_resumes(tmp_path, tiny_model_dir):
    """shard_params (FSDP2 on the decoder layers, full fine-tuning), turned on by an accelerate FSDP
    launch's environment: rollouts with the layers gathered, the LLM summarizer generating with them on
    the main process, learner steps on shards, a checkpoint with the whole weights and the whole
    optimizer state keyed by parameter name, and a resume (asked by the option this time) into one more
    iteration that loads them back into shards."""
    import torch
    from safetensors.torch import load_file

    post = ["learning.onpolicy.lora=false", "learning.onpolicy.lr=1e-3", "memory.summarizer=llm",
            "memory.summarizer_max_new_tokens=16"]
    proc = _launch(tmp_path, tiny_model_dir, "fsdp", post=post, env_extra={"ACCELERATE_USE_FSDP": "true"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "accelerate launch config: sharding with learning.onpolicy.shard_params=true" in proc.stdout
    assert "decoder layers sharded across 2 processes" in proc.stdout
    d = tmp_path / "fsdp"
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_after"]
    it = next(json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"iter_1"' in x)
    assert it["learn"]["stepped"] == 1 and it["rollout"]["processes"] == 2 and "kl" in it["learn"]
    # the meter scores its states on the main process with the sharded layers gathered on every process
    evals = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"kind": "eval"' in x]
    assert len(evals) == 2 and all(e["meter"]["states"] == 4 for e in evals)
    ckpt = d / "checkpoints" / "iter_1"
    sd = torch.load(ckpt / "learner.pt", map_location="cpu", weights_only=False)
    assert sd["optimizer"]["sharded_params"] and sd["adapter"] is None
    weights = load_file(ckpt / "model.safetensors")
    layer = next(k for k in weights if ".layers.0." in k and k.endswith("proj.weight"))
    assert sd["optimizer"]["state"][layer]["exp_avg"].shape == weights[layer].shape  # whole, by name
    assert sd["teacher"]["state"][layer].shape == weights[layer].shape
    again = _launch(tmp_path, tiny_model_dir, "fsdp", "--resume",
                    post=[*post, "learning.onpolicy.shard_params=true", "learning.iterations=2"])
    assert again.returncode == 0, again.stderr[-4000:]
    assert _phases(d) == ["warmstart", "eval_before", "iter_1", "eval_iter_1", "iter_2", "eval_after"]
    # the resumed AdamW state was loaded into the shards and stepped on: its step count goes on from 1 to 2
    assert float(sd["optimizer"]["state"][layer]["step"]) == 1
    sd2 = torch.load(d / "checkpoints" / "iter_2" / "learner.pt", map_location="cpu", weights_only=False)
    assert float(sd2["optimizer"]["state"][layer]["step"]) == 2 and sd2["iteration"] == 2


def test_data_parallel_refuses_what_it_cannot_split(tiny_model_dir):
    from agentsd.config import check_combinations

    cfg = load_config("sokoban", [f"model.name={tiny_model_dir}", "mode=memory", "memory.enabled=true",
                                  "learning.algo=none"])
    check_combinations(cfg)
    with pytest.raises(ConfigError, match="data-parallel"):
        check_combinations(cfg, world=2)
    with pytest.raises(ConfigError, match="learning.onpolicy.lora=false"):
        load_config("sokoban", [f"model.name={tiny_model_dir}", "learning.onpolicy.shard_params=true",
                                "learning.algo=grpo"])
    with pytest.raises(ConfigError, match="learning.algo=rft fine-tunes on the main process"):
        load_config("sokoban", [f"model.name={tiny_model_dir}", "learning.onpolicy.shard_optimizer=true",
                                "learning.algo=rft"])
