"""On-policy learner on the tiny random model with real rollouts: samples, teacher modes, Skill-SD,
gradient accumulation, every algorithm. Real gradient steps; nothing about the model is mocked."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from numutil import BF16_STAT_RTOL, assert_bf16_close
from pydantic import ValidationError

from agentsd.envs import register
from agentsd.learn.onpolicy import (
    REFERENCE_HEADER,
    OnPolicyConfig,
    Teacher,
    build_samples,
    episode_advantages,
    learner_step,
    make_optimizer,
    make_teacher,
    prepare_model,
    reverse_kl,
)
from agentsd.policy.base import Sampling
from agentsd.policy.chat import encode_chat
from agentsd.policy.hf import sequence_logprobs
from agentsd.prompts import Step, build_messages, with_skills
from agentsd.rollout import EnvFactory, OracleActor, PolicyActor, make_tasks, rollout
from agentsd.trajectory import Turn

register("counter", "toyenv:CounterEnv")

SAMPLING = Sampling(temperature=1.0, max_new_tokens=10, seed=0)  # T=1: behaviour log-probs are π_old's


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def fresh(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture
def model(tiny_model_dir):
    """A fresh fp32 copy per test (the weights the rollouts were sampled from): training mutates it."""
    return fresh(tiny_model_dir)


def _rollout(policy, start, n, group_size, skills=None):
    envs = EnvFactory("counter", {"max_steps": 2})
    tasks = make_tasks(envs.cls, "train", n, start=start, group_size=group_size)
    trajs, _ = rollout(envs, PolicyActor(policy, SAMPLING), tasks, batch=len(tasks), skills=skills)
    return trajs


@pytest.fixture(scope="module")
def trajs(tiny_policy):
    """3 tasks x 2 episodes x 2 turns sampled from the tiny model (all invalid answers: equal returns)."""
    return _rollout(tiny_policy, 0, 3, 2)


@pytest.fixture(scope="module")
def held_out(tiny_policy):
    """Other tasks, for measuring the reverse KL on samples never trained on."""
    return _rollout(tiny_policy, 10, 2, 1)


@pytest.fixture(scope="module")
def varied(trajs):
    """The same episodes with different returns within each group (nonzero advantages); one success."""
    out = [t.model_copy(deep=True) for t in trajs]
    for i, t in enumerate(out):
        t.turns[-1].reward = float(i % 3)
    out[0].turns[-1].info["success"] = True
    return out


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    from agentsd.memory import Embedder, Skill, SkillMemory

    with SkillMemory(tmp_path_factory.mktemp("mem"), embedder=Embedder()) as mem:
        mem.add([
            Skill(env="counter", triggers=["the value is below the target"], summary="count up to the target",
                  golden_workflow=["<answer>inc</answer>"], evidence=["t1"]),
            Skill(env="counter", triggers=["the value is above the target"], summary="count down to the target",
                  golden_workflow=["<answer>dec</answer>"], evidence=["t2"]),
        ])
        yield mem


@pytest.fixture(scope="module")
def skills_for(memory):
    from agentsd.memory import SkillMemory

    def retrieve(turn, traj):
        return SkillMemory.render(memory.retrieve(turn.messages[-1]["content"], k=2, env="counter"))

    return retrieve


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def finite(stats):
    return all(math.isfinite(v) for v in stats.values())


# ------------------------------------------------------------------------------------------- prompts


def test_with_skills_rebuilds_the_rollout_system_message():
    past = [Step("Value: 0", "<answer>inc</answer>")]
    for instr in ("Reach the target.", ""):
        plain = build_messages(instr, "Target: 2.", "Value: 1", past, history=1)
        assert with_skills(plain, "- count up") == build_messages(instr, "Target: 2.", "Value: 1", past, 1, "- count up")
        assert with_skills(plain, None) == plain and with_skills(plain, None) is not plain
    bare = with_skills([{"role": "user", "content": "hi"}], "- s")
    assert bare[0] == {"role": "system", "content": "Useful skills from past experience:\n- s"}


# ------------------------------------------------------------------------------------------- samples


def test_samples_keep_exact_token_ids_and_behaviour_logprobs(trajs, tokenizer, model):
    no_ids = trajs[0].model_copy(deep=True)
    no_ids.turns.append(Turn(messages=no_ids.turns[0].messages, response="<answer>inc</answer>"))
    batch = build_samples([*trajs[1:], no_ids], tokenizer)
    assert batch.skipped == 1 and batch.episodes == len(trajs)
    turns = [t for tr in [*trajs[1:], no_ids] for t in tr.turns if t.token_ids]
    assert len(batch) == len(turns)
    for s, turn in zip(batch, turns, strict=True):
        assert s.completion_ids == turn.token_ids and s.old_logprobs == turn.logprobs
        assert s.prompt_ids == encode_chat(tokenizer, turn.messages)
    # token-in, token-out: re-scoring the stored ids under the stored prompt gives the behaviour log-probs
    with torch.no_grad():
        lp, mask = sequence_logprobs(model, [s.prompt_ids for s in batch], [s.completion_ids for s in batch],
                                     pad_id=tokenizer.pad_token_id)
    old = torch.zeros_like(lp)
    for i, s in enumerate(batch):
        old[i, : len(s.old_logprobs)] = torch.tensor(s.old_logprobs)
    torch.testing.assert_close(lp[mask], old[mask], atol=1e-4, rtol=0)


def test_advantages_are_per_episode_and_group_relative(varied, tokenizer):
    batch = build_samples(varied, tokenizer)
    adv = episode_advantages(varied)
    by_traj = {t.id: a for t, a in zip(varied, adv, strict=True)}
    assert all(s.advantage == by_traj[s.traj_id] for s in batch)  # every turn gets its episode's
    for seed in {t.seed for t in varied}:  # groups are tasks: each sums to 0
        assert abs(sum(a for t, a in zip(varied, adv, strict=True) if t.seed == seed)) < 1e-9
    assert any(a != 0 for a in adv)
    assert episode_advantages(varied, reward="success")[0] > 0


def test_teacher_prompt_is_the_student_prompt_plus_retrieved_skills(trajs, tokenizer, model, skills_for):
    teacher = Teacher(model, "frozen", skills_for=skills_for)
    batch = build_samples(trajs, tokenizer, teacher=teacher)
    turn = trajs[0].turns[0]
    s = batch.samples[0]
    assert s.skills and "count" in s.skills and "<memory>" in s.skills
    assert s.teacher_prompt_ids == encode_chat(tokenizer, with_skills(turn.messages, s.skills))
    assert s.completion_ids == turn.token_ids  # the completion is never re-tokenized
    assert "Useful skills from past experience" in tokenizer.decode(s.teacher_prompt_ids)
    assert "Useful skills" not in tokenizer.decode(s.prompt_ids)


# ------------------------------------------------------------------------------------------- teacher


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_identical_teacher_gives_zero_sd_term(bf16, trajs, tokenizer, model):
    """Fresh samples: ρ and the GRPO ratio are 1 in every dtype, since π_old is the learner's own forward.
    The samples were generated in fp32 with a KV cache, so under bf16 the rollout's log-probs differ
    from the learner's: that shows in the mismatch metric, never in ρ."""
    cfg = OnPolicyConfig(algo="skill_sd", lora=False, teacher_mode="live", micro_batch=4, bf16_autocast=bf16)
    batch = build_samples(trajs, tokenizer, cfg)
    teacher = make_teacher(model, cfg)  # live, no skills: the student itself on the same prompt
    stats = learner_step(model, tokenizer, batch.samples, cfg, teacher, make_optimizer(model, cfg))
    assert abs(stats["sdl"]) < 1e-6 and abs(stats["kl"]) < 1e-6 and abs(stats["logratio"]) < 1e-6
    assert abs(stats["rho_mean"] - 1) < 1e-6 and abs(stats["rho_max"] - 1) < 1e-6  # fresh samples: ρ = 1
    assert abs(stats["ratio_mean"] - 1) < 1e-6 and abs(stats["ratio_max"] - 1) < 1e-6 and stats["clip_frac"] == 0
    assert stats["mismatch_tokens"] == stats["tokens"]
    if bf16:  # bf16 rounding against the fp32 rollout: visible in the mismatch, not in ρ
        assert stats["mismatch_abs"] > 1e-4
    else:  # the same weights and dtype: the decoding and full-forward kernels agree to ~1e-5
        assert stats["mismatch_abs"] < 1e-4 and stats["mismatch_out_frac"] == 0


def _shifted(samples, delta, rows=None, token=None):
    """Copies of ``samples`` whose rollout log-probs are moved by ``delta`` (all tokens, or one)."""
    out = [copy.deepcopy(s) for s in samples]
    for i, s in enumerate(out):
        if rows is None or i in rows:
            s.old_logprobs = [lp + (delta if token is None or j == token else 0.0) for j, lp in enumerate(s.old_logprobs)]
    return out


def test_perturbed_rollout_logprob_shows_in_the_mismatch_not_in_rho(varied, tokenizer, tiny_model_dir):
    cfg = OnPolicyConfig(algo="skill_sd", lora=False, lam=0.5, teacher_mode="live", micro_batch=4,
                         max_grad_norm=None, bf16_autocast=False)
    results = []
    for perturb in (False, True):
        model = fresh(tiny_model_dir)
        samples = build_samples(varied, tokenizer, cfg).samples
        if perturb:  # one token's rollout log-prob 0.5 too low: a ratio e^0.5 = 1.65 outside [0.9, 1.1]
            samples = _shifted(samples, -0.5, rows={0}, token=0)
        before = params(model)
        stats = learner_step(model, tokenizer, samples, cfg, make_teacher(model, cfg),
                             torch.optim.SGD(model.parameters(), lr=1.0))
        results.append(({n: p - before[n] for n, p in params(model).items()}, stats))
    (u0, s0), (u1, s1) = results
    n = s0["mismatch_tokens"]
    assert s1["mismatch_abs"] == pytest.approx(s0["mismatch_abs"] + 0.5 / n, abs=1e-5)
    assert s1["mismatch_out_frac"] == pytest.approx(s0["mismatch_out_frac"] + 1 / n)
    for k in ("rho_mean", "rho_max", "ratio_mean", "ratio_max"):
        assert s1[k] == s0[k] == pytest.approx(1.0, abs=1e-6), k
    for k in ("loss", "grpo_loss", "sdl", "grad_norm"):  # without tis_cap the rollout's values are not used
        assert s1[k] == s0[k], k
    assert same(u0, u1)


def test_truncated_importance_sampling_weights_each_token_by_the_capped_ratio(varied, tokenizer, tiny_model_dir):
    """tis_cap: every token's loss terms are scaled by min(π_old / π_rollout, cap). Rollout log-probs
    moved by −log 1.5 on every token give weight 1.5 (under the cap 2), by −log 4 weight 2 (capped): the
    SGD update is that multiple of the uncorrected one (grad_norm too), ρ and the ratios stay 1."""
    cfg = OnPolicyConfig(algo="skill_sd", lora=False, lam=0.5, micro_batch=4, max_grad_norm=None,
                         teacher_mode="frozen", bf16_autocast=False)
    skills = lambda turn, traj: "Skill: count towards the target."  # noqa: E731
    updates = {}
    for name, tis, shift in (("plain", None, 0.0), ("x1.5", 2.0, math.log(1.5)), ("capped", 2.0, math.log(4.0))):
        model = fresh(tiny_model_dir)
        c = cfg.model_copy(update={"tis_cap": tis})
        teacher = make_teacher(model, c, skills_for=skills)
        samples = build_samples(varied, tokenizer, c, teacher=teacher).samples
        # rollout log-probs = the learner's own minus the shift, so every weight is exactly e^shift
        with torch.no_grad():
            lp, _ = sequence_logprobs(model, [s.prompt_ids for s in samples], [s.completion_ids for s in samples],
                                      pad_id=tokenizer.pad_token_id, chunk=c.logprob_chunk)
        for i, s in enumerate(samples):
            s.old_logprobs = [float(x) - shift for x in lp[i, : len(s.completion_ids)]]
        before = params(model)
        stats = learner_step(model, tokenizer, samples, c, teacher, torch.optim.SGD(model.parameters(), lr=1.0))
        updates[name] = ({n: p - before[n] for n, p in params(model).items()}, stats)
    plain, s_plain = updates["plain"]
    assert "tis_mean" not in s_plain and s_plain["sdl"] > 0 and s_plain["grad_norm"] > 0
    for name, factor in (("x1.5", 1.5), ("capped", 2.0)):
        upd, st = updates[name]
        assert st["tis_mean"] == pytest.approx(factor, rel=1e-4)
        assert st["tis_capped_frac"] == (1.0 if name == "capped" else 0.0)
        assert st["rho_mean"] == pytest.approx(1.0, abs=1e-6) and st["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
        assert st["grad_norm"] == pytest.approx(factor * s_plain["grad_norm"], rel=1e-4)
        for n in plain:
            torch.testing.assert_close(upd[n], factor * plain[n], rtol=1e-4, atol=1e-6)


def test_steps_on_one_batch_keep_the_first_steps_old_policy(varied, tokenizer, model):
    """record_old: the first step records π_old on the samples; a second step on them sees ratios ≠ 1
    (the weights moved), while a step on a fresh copy of the samples sees ratio 1 again."""
    cfg = OnPolicyConfig(algo="grpo", lora=False, lr=1e-2, micro_batch=4, bf16_autocast=False)
    samples = build_samples(varied, tokenizer, cfg).samples
    opt = make_optimizer(model, cfg)
    first = learner_step(model, tokenizer, samples, cfg, None, opt, record_old=True)
    assert all(s.prox_logprobs is not None and len(s.prox_logprobs) == len(s.completion_ids) for s in samples)
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    kept = [list(s.prox_logprobs) for s in samples]
    second = learner_step(model, tokenizer, samples, cfg, None, opt, record_old=True)
    assert [s.prox_logprobs for s in samples] == kept  # recorded once
    assert abs(second["ratio_mean"] - 1) > 1e-4 or second["clip_frac"] > 0
    assert second["mismatch_abs"] == pytest.approx(first["mismatch_abs"])  # the same π_old vs the rollout
    again = learner_step(model, tokenizer, build_samples(varied, tokenizer, cfg).samples, cfg, None, opt)
    assert again["ratio_mean"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("mode", ["frozen", "synced", "ema", "live"])
def test_teacher_modes(mode, varied, tokenizer, model):
    """LoRA (the default): the teacher tracks the adapter only, and its weights follow its mode."""
    cfg = OnPolicyConfig(algo="skill_sd", lr=1e-2, micro_batch=4, teacher_mode=mode, sync_every=2, ema_tau=0.5)
    samples = build_samples(varied, tokenizer, cfg).samples[:4]
    net = prepare_model(model, cfg)
    opt = make_optimizer(net, cfg)
    teacher = make_teacher(net, cfg)
    assert mode == "live" or all("lora_" in n for n in teacher.state)
    initial = params(net)
    prompts, comps = [s.prompt_ids for s in samples[:2]], [s.completion_ids for s in samples[:2]]
    for step in range(1, 4):
        before_t = {n: t.clone() for n, t in teacher.state.items()} if teacher.state else None
        stats = learner_step(net, tokenizer, samples, cfg, teacher, opt)
        now = params(net)
        assert not same(now, initial)  # the student moves
        if mode == "frozen":
            assert same(teacher.state, initial) and not stats["teacher_updated"]
        elif mode == "synced":
            assert same(teacher.state, now) == (step % 2 == 0)  # equal right after a sync, not between
            assert stats["teacher_updated"] == (step % 2 == 0)
            if step % 2:
                assert same(teacher.state, before_t)
        elif mode == "ema":
            for n, t in teacher.state.items():
                torch.testing.assert_close(t, 0.5 * before_t[n] + 0.5 * now[n], rtol=0, atol=1e-7)
        else:
            assert teacher.state is None
    # the teacher scores with its own weights; scoring leaves the student's in place
    t_lp = teacher.logprobs(prompts, comps, pad_id=tokenizer.pad_token_id)
    assert same(params(net), now)
    with torch.no_grad():
        s_lp = sequence_logprobs(net, prompts, comps, pad_id=tokenizer.pad_token_id)[0]
    if mode == "live":
        assert torch.equal(t_lp, s_lp)
    else:
        ref = with_weights(net, teacher.state)
        with torch.no_grad():
            torch.testing.assert_close(
                t_lp, sequence_logprobs(ref, prompts, comps, pad_id=tokenizer.pad_token_id)[0], rtol=0, atol=1e-6)
        assert not torch.allclose(t_lp, s_lp)  # synced last copied at step 2, the student moved at step 3
    assert teacher.state_dict()["steps"] == 3


def with_weights(model, state):
    """A copy of ``model`` with ``state`` loaded over the parameters it names."""
    import copy

    ref = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if n in state:
                p.copy_(state[n])
    return ref


def test_full_finetuning_teacher_copies_every_weight(varied, tokenizer, model):
    cfg = OnPolicyConfig(algo="skill_sd", lora=False, lr=1e-3, teacher_mode="synced", sync_every=1)
    teacher = make_teacher(prepare_model(model, cfg), cfg)
    assert set(teacher.state) == {n for n, _ in model.named_parameters()}
    learner_step(model, tokenizer, build_samples(varied, tokenizer, cfg).samples[:4], cfg, teacher,
                 make_optimizer(model, cfg))
    assert teacher.syncs == 1 and same(teacher.state, params(model))
    restored = Teacher(model, "synced")
    restored.load_state_dict(teacher.state_dict())
    assert same(restored.state, teacher.state) and restored.steps == 1


# ------------------------------------------------------------------------------------------- learning


def test_skill_sd_reduces_reverse_kl_to_skill_teacher_on_held_out(trajs, held_out, tokenizer, model, skills_for):
    # A frozen skill-conditioned teacher (retrieved from a SkillMemory) and LoRA, the defaults otherwise.
    # These rollouts all fail alike (zero advantages), so the GRPO term has no gradient and the SD term
    # drives the update (Adam makes the step size independent of λ). The KL is measured exactly (full
    # vocabulary) on other tasks' samples, never trained on.
    cfg = OnPolicyConfig(algo="skill_sd", lr=3e-4, micro_batch=8, teacher_mode="frozen")
    net = prepare_model(model, cfg)
    teacher = make_teacher(net, cfg, skills_for=skills_for)
    train = build_samples(trajs, tokenizer, cfg, teacher=teacher)
    test = build_samples(held_out, tokenizer, cfg, teacher=teacher)
    assert all(s.advantage == 0 for s in train) and all(s.skills for s in test)
    opt = make_optimizer(net, cfg)
    kls = [reverse_kl(net, tokenizer, test.samples, teacher, micro_batch=8)]
    assert kls[0]["kl_full"] > 1e-3 and kls[0]["sdl"] > 0
    for _ in range(2):
        for _ in range(3):
            stats = learner_step(net, tokenizer, train.samples, cfg, teacher, opt)
        kls.append(reverse_kl(net, tokenizer, test.samples, teacher, micro_batch=8))
    full = [k["kl_full"] for k in kls]
    assert full[2] < full[1] < full[0] and full[2] < 0.75 * full[0], kls
    assert kls[2]["sdl"] < kls[0]["sdl"] and stats["kl"] > 0


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_gradient_accumulation_matches_one_big_batch(bf16, varied, tokenizer, tiny_model_dir, skills_for):
    """micro_batch 1 vs the whole batch: the same parameter update (SGD: update = −lr · gradient), to
    fp32 rounding in fp32 and to bf16 rounding under bf16 autocast (tests/numutil.py derives that)."""
    updates = []
    for mb in (1, 16):
        model = fresh(tiny_model_dir)
        cfg = OnPolicyConfig(algo="skill_sd", lora=False, lam=0.5, micro_batch=mb, max_grad_norm=None,
                             teacher_mode="frozen", bf16_autocast=bf16)
        teacher = make_teacher(model, cfg, skills_for=skills_for)
        samples = build_samples(varied, tokenizer, cfg, teacher=teacher).samples
        assert len(samples) <= 16
        before = params(model)
        stats = learner_step(model, tokenizer, samples, cfg, teacher, torch.optim.SGD(model.parameters(), lr=1.0))
        updates.append(({n: p - before[n] for n, p in params(model).items()}, stats))
    (u1, s1), (u2, s2) = updates
    # (the GRPO loss *value* is Σ −A·ratio / n = 0 here: ratio 1 and equal-length episodes; its gradient is not)
    assert s1["sdl"] > 0 and s1["grad_norm"] > 0
    # atol: p_after - p_before itself rounds at ~1 ulp of the weights (~1e-7 for |p| ~ 1); a wrong
    # normalizer would change the updates by a factor (many orders above this)
    biggest = max(float(u.abs().max()) for u in u1.values())
    assert biggest > 1e-3
    if bf16:
        assert_bf16_close(u1, u2)
        for k in ("loss", "grpo_loss", "sdl", "kl", "entropy", "tokens"):
            assert s1[k] == pytest.approx(s2[k], rel=BF16_STAT_RTOL, abs=1e-6), k
        return
    for n in u1:
        torch.testing.assert_close(u1[n], u2[n], rtol=1e-4, atol=1e-6)
    for k in ("loss", "grpo_loss", "sdl", "kl", "entropy", "tokens"):
        assert s1[k] == pytest.approx(s2[k], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("algo", ["grpo", "opd", "skill_sd", "skill_prompt", "sft"])
def test_every_algo_takes_a_finite_step(algo, varied, tokenizer, model, skills_for):
    cfg = OnPolicyConfig(algo=algo, lr=1e-3, micro_batch=4, kl_coef=0.01 if algo == "grpo" else 0.0)
    net = prepare_model(model, cfg)
    teacher = make_teacher(net, cfg, skills_for=skills_for)
    assert (teacher is not None) == (algo in ("opd", "skill_sd"))
    reference = Teacher(net, "frozen") if algo == "grpo" else None
    samples = build_samples(varied, tokenizer, cfg, teacher=teacher).samples
    before = params(net)
    stats = learner_step(net, tokenizer, samples, cfg, teacher, make_optimizer(net, cfg), reference=reference)
    assert stats["stepped"] == 1 and finite(stats), stats
    assert stats["tokens"] > 0 and stats["entropy"] > 0 and stats["step_seconds"] > 0
    if algo == "sft":  # successful episodes only
        assert stats["samples"] == len(varied[0].turns)
    if algo == "opd":  # the frozen initial teacher on the plain prompt is the student: nothing to learn
        assert abs(stats["sdl"]) < 1e-6 and "grpo_loss" not in stats
    else:
        assert not same(params(net), before)
    if algo == "grpo":
        assert "ref_kl" in stats and "sdl" not in stats


def test_opd_with_a_different_fixed_teacher_moves(trajs, tokenizer, model, tiny_model_dir):
    other = fresh(tiny_model_dir)
    with torch.no_grad():
        other.lm_head.weight.mul_(1.5)  # a different (sharper) fixed teacher with the same tokenizer
    cfg = OnPolicyConfig(algo="opd", lr=1e-3)
    net = prepare_model(model, cfg)
    teacher = make_teacher(net, cfg, teacher_model=other)
    samples = build_samples(trajs, tokenizer, cfg, teacher=teacher).samples
    opt = make_optimizer(net, cfg)
    first = learner_step(net, tokenizer, samples, cfg, teacher, opt)
    for _ in range(3):
        last = learner_step(net, tokenizer, samples, cfg, teacher, opt)
    assert first["sdl"] > 0 and last["sdl"] < first["sdl"]
    with pytest.raises(ValueError, match="frozen"):
        Teacher(net, "synced", model=other)


def test_opd_distils_from_the_reference_answer_in_the_teachers_prompt(tiny_policy, tokenizer, model, tiny_model_dir):
    """opd's default context: the env oracle's answer for each turn's state, recorded during the rollout
    and shown to the frozen initial weights (the student never sees it). The teacher then differs from
    the student at the first step, and distillation closes the gap."""
    envs = EnvFactory("counter", {"max_steps": 2})
    tasks = make_tasks(envs.cls, "train", 3, group_size=2)
    recorded, _ = rollout(envs, PolicyActor(tiny_policy, SAMPLING), tasks, batch=len(tasks), reference=True)
    # the reference is the oracle's answer from the state the turn acted in: replay each episode to check
    for t in recorded:
        env = envs()
        env.reset(seed=t.seed)
        for turn in t.turns:
            assert turn.reference == env.oracle_action() and turn.reference
            env.step(turn.response)
    plain, _ = rollout(envs, PolicyActor(tiny_policy, SAMPLING), tasks[:1], batch=1)
    assert all(turn.reference is None for turn in plain[0].turns)

    cfg = OnPolicyConfig(algo="opd", lr=1e-3)
    net = prepare_model(model, cfg)
    teacher = make_teacher(net, cfg, skills_for=lambda turn, traj: "ignored skills")
    assert teacher.mode == "frozen"
    samples = build_samples(recorded, tokenizer, cfg, teacher=teacher).samples
    for s, turn in zip(samples, [u for t in recorded for u in t.turns], strict=True):
        text = tokenizer.decode(s.teacher_prompt_ids)
        assert REFERENCE_HEADER in text and turn.reference in text and "ignored skills" not in text
        assert REFERENCE_HEADER not in tokenizer.decode(s.prompt_ids)
    opt = make_optimizer(net, cfg)
    first = learner_step(net, tokenizer, samples, cfg, teacher, opt)
    for _ in range(3):
        last = learner_step(net, tokenizer, samples, cfg, teacher, opt)
    assert first["sdl"] > 1e-4 and last["sdl"] < first["sdl"] and "grpo_loss" not in first
    # opd_context="none": the plain prompt, i.e. the initial weights' own distribution (loss 0)
    plain_cfg = cfg.model_copy(update={"opd_context": "none"})
    other = prepare_model(fresh(tiny_model_dir), plain_cfg)
    anchor = make_teacher(other, plain_cfg)
    samples = build_samples(recorded, tokenizer, plain_cfg, teacher=anchor).samples
    assert all(s.teacher_prompt_ids is None for s in samples)
    stats = learner_step(other, tokenizer, samples, plain_cfg, anchor, make_optimizer(other, plain_cfg))
    assert abs(stats["sdl"]) < 1e-6


def test_reference_answers_need_an_oracle():
    from agentsd.rollout import oracle_reference

    env = EnvFactory("counter", {"max_steps": 2})()
    env.reset(seed=0)
    assert oracle_reference(env) == env.oracle_action()

    def no_oracle():
        raise NotImplementedError

    env.oracle_action = no_oracle
    with pytest.raises(ValueError, match="oracle_action"):
        oracle_reference(env)


def test_sft_on_demonstrations_and_batches_without_successes(trajs, tokenizer, model):
    envs = EnvFactory("counter", {"max_steps": 2})
    demos, _ = rollout(envs, OracleActor(), make_tasks(envs.cls, "train", 2), batch=2)
    cfg = OnPolicyConfig(algo="sft", lr=1e-3)
    assert len(build_samples(demos, tokenizer, cfg)) == 0  # no token ids: skipped
    batch = build_samples(demos, tokenizer, cfg, retokenize=True)
    assert len(batch) == sum(len(d.turns) for d in demos) and batch.samples[0].completion_ids[-1] == tokenizer.eos_token_id
    net = prepare_model(model, cfg)
    opt = make_optimizer(net, cfg)
    losses = [learner_step(net, tokenizer, batch.samples, cfg, optimizer=opt)["loss"] for _ in range(3)]
    assert losses[-1] < losses[0]
    none = learner_step(net, tokenizer, build_samples(trajs, tokenizer, cfg).samples, cfg, optimizer=opt)
    assert none["stepped"] == 0 and none["tokens"] == 0


def test_skill_prompt_samples_keep_the_student_prompt_with_skills(tiny_policy, tokenizer, model):
    trajs = _rollout(tiny_policy, 20, 1, 2, skills=lambda env, obs: "- count up to the target")
    cfg = OnPolicyConfig(algo="skill_prompt", lr=1e-3)
    samples = build_samples(trajs, tokenizer, cfg).samples
    assert all("count up to the target" in tokenizer.decode(s.prompt_ids) for s in samples)
    net = prepare_model(model, cfg)
    # a teacher given to a GRPO-type algorithm is scored for monitoring only: reported, not in the loss
    monitor = Teacher(net, "live", skills_for=lambda turn, traj: "- count up to the target, always")
    samples = build_samples(trajs, tokenizer, cfg, teacher=monitor).samples
    stats = learner_step(net, tokenizer, samples, cfg, monitor, make_optimizer(net, cfg))
    assert finite(stats) and stats["kl"] > 0 and stats["loss"] == pytest.approx(stats["grpo_loss"])


def test_config_and_argument_errors(trajs, tokenizer, model):
    with pytest.raises(ValidationError):
        OnPolicyConfig(algo="ppo")
    with pytest.raises(ValidationError):
        OnPolicyConfig(bogus=1)
    cfg = OnPolicyConfig(algo="skill_sd", lora=False)
    samples = build_samples(trajs, tokenizer, cfg).samples
    opt = make_optimizer(model, cfg)
    with pytest.raises(ValueError, match="needs a teacher"):
        learner_step(model, tokenizer, samples, cfg, optimizer=opt)
    with pytest.raises(ValueError, match="teacher's prompts"):
        learner_step(model, tokenizer, samples, cfg, Teacher(model, "live", skills_for=lambda t, tr: "x"), opt)
    with pytest.raises(ValueError, match="opd"):
        learner_step(model, tokenizer, samples, cfg.model_copy(update={"algo": "opd"}), Teacher(model, "live"), opt)
    with pytest.raises(ValueError, match="reference"):
        learner_step(model, tokenizer, samples, OnPolicyConfig(algo="grpo", kl_coef=0.1), optimizer=opt)
