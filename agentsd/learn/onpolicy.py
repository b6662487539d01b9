"""On-policy learning from rollouts: GRPO, OPD, Skill-SD, skills-in-the-student-prompt and SFT, one step
at a time, all from the same :class:`~agentsd.trajectory.Trajectory` batches.

    cfg = OnPolicyConfig(algo="skill_sd")
    net = prepare_model(policy.model, cfg)                        # LoRA-wrapped (or the model itself)
    opt = make_optimizer(net, cfg)
    teacher = make_teacher(net, cfg, skills_for=lambda turn, traj: mem.render(mem.retrieve(...)))
    batch = build_samples(trajectories, policy.tokenizer, cfg, teacher=teacher)
    stats = learner_step(net, policy.tokenizer, batch.samples, cfg, teacher=teacher, optimizer=opt)

Samples (:func:`build_samples`)
-------------------------------
Every turn with token ids is one sample: the prompt is ``encode_chat(tokenizer, turn.messages)`` (the
exact prompt the student acted under), the completion is ``turn.token_ids`` as generated (token-in,
token-out: never re-tokenized), ``old_logprobs`` are ``turn.logprobs`` (the rollout engine's). Every
turn of an episode gets its episode's advantage, group-relative (:func:`~agentsd.learn.losses.grpo_advantages`)
over the episodes of the batch with the same task (env, seed). Turns without token ids (scripted or
oracle actors) are skipped and counted, except with ``retokenize=True`` (``sft`` on demonstrations),
where their response is tokenized as :func:`agentsd.learn.sft.tokenize_example` does.

π_old: the learner's own log-probs, not the rollout engine's
----------------------------------------------------------
The rollout engine (KV-cache decoding, another batch shape, bf16, vLLM on a GPU) computes log-probs
with other kernels than the learner's full forward, so its log-probs differ from the learner's for the
same weights and tokens: the trainer/inference mismatch. Used as π_old they would make the GRPO ratio
and the SDL weight ρ = π_θ / π_old drift from 1 on fresh samples (measured: ρ 1.0005 under bf16). So
π_old is the learner's own forward at the step's starting weights: the student pass's detached
log-probs (no extra forward; exactly ρ = 1 in value on the first step, in every dtype). With
``record_old=True`` the first step records them on the samples (``Sample.prox_logprobs``) and later
steps on the same batch (``steps_per_iteration`` > 1) keep using them, as PPO's old policy. The
rollout's log-probs only measure the mismatch (``mismatch_abs``: mean |log π_old − log π_rollout|,
``mismatch_out_frac``: tokens whose ratio π_old / π_rollout lies outside [0.9, 1.1]) and, with
``tis_cap``, correct for it by truncated importance sampling: each token's GRPO and SDL terms are
weighted by sg(min(π_old / π_rollout, tis_cap)) (the samples came from π_rollout, not π_old). For
these to mean what they say, roll out at temperature 1 without top-k/top-p.

Teacher (:class:`Teacher`)
--------------------------
The student's own weights, lagged per ``mode``: ``synced`` (hard copy every ``sync_every`` learner
steps; the default), ``ema`` (θ_t ← τ θ_t + (1 − τ) θ_s after every step), ``frozen`` (the weights at
construction), ``live`` (the student itself, no copy). Only the trainable parameters are kept (with
LoRA: the adapter, a few MB, never a second model); to score, they are swapped into the student's
parameters for the duration of a no-grad forward pass and swapped back. Its prompt is the student's
with ``skills_for(turn, traj)`` added to the system message (:func:`agentsd.prompts.with_skills`, the
format rollouts use); the student's exact completion ids are re-scored under it.

Algorithms (``OnPolicyConfig.algo``), one optimizer step per :func:`learner_step`
-----------------------------------------------------------------------------------
- ``grpo``: clipped policy gradient with group-relative advantages (+ ``kl_coef`` · k3 to a frozen
  ``reference`` when ``kl_coef`` > 0).
- ``skill_sd``: GRPO + ``lam`` · SDL, SDL the importance-weighted k3 reverse KL to the skill-conditioned
  teacher (:func:`~agentsd.learn.losses.skill_sd_loss`).
- ``opd``: vanilla on-policy (self-)distillation with *fixed* privileged information, the baseline
  Skill-SD compares against: the SDL term alone (weight 1, no reward, no GRPO term) to a ``frozen``
  teacher (the initial weights, or a separate fixed model ``teacher_model`` with the same tokenizer)
  whose prompt holds, with ``opd_context="reference"`` (the default), the ground truth for the turn's
  state: the env oracle's answer, recorded during the rollout (``Turn.reference``, see
  :func:`reference_for`), under :data:`REFERENCE_HEADER`, no skills. With ``opd_context="none"`` the
  teacher sees the plain prompt; with the student's own initial weights it then equals the student at
  the start (loss and gradient 0: a KL anchor that moves nothing until the student drifts).
- ``skill_prompt``: skills in the *student's* prompt, the paper's weaker baseline. The rollout side puts
  them there (the ``skills`` hook of :func:`agentsd.rollout.rollout`); since samples keep the exact
  prompt the student acted under, for the learner this is plain GRPO on those samples.
- ``sft``: cross-entropy on the turns of successful episodes only (rejection-sampling fine-tuning;
  warm-start on demonstrations with ``retokenize=True``).

Every loss is normalized by the real completion tokens of the whole batch, so micro-batches
(``micro_batch`` samples per forward) change memory, not the update. Per micro-batch the teacher's
log-probs are computed first without grad, then the student's with grad; :func:`sequence_logprobs`
projects only the completion positions and keeps just the sampled tokens' log-probs, ``logprob_chunk``
positions at a time (checkpointed), so at most one (micro_batch, logprob_chunk, V) logits tensor exists
at a time, in the backward pass too (``logprob_chunk=None``: one (micro_batch, T, V) tensor). The
teacher's (no-grad) pass runs the prompt prefix its rows share once (``teacher_share_prefix``): its
prompts are the student's plus a skills block in the system message, so the shared system message is
most of the extra length. The model runs in eval mode (no dropout).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentsd.learn.losses import grpo_advantages, grpo_loss, reverse_kl_full, skill_sd_loss
from agentsd.learn.parallel import clip_sharded_grad_norm_, has_sharded_params, is_sharded
from agentsd.learn.sft import LLAMA_PROJ, _optimizer, _param_groups, _use_bf16, _wrap_lora, tokenize_example
from agentsd.policy.chat import encode_chat
from agentsd.policy.hf import (
    completion_hidden,
    eval_mode,
    pad_sequences,
    positions_from_mask,
    sequence_logprobs,
    split_lm_head,
)
from agentsd.prompts import REFERENCE_HEADER, SKILLS_HEADER, with_skills
from agentsd.trajectory import Trajectory, Turn

if TYPE_CHECKING:
    import torch

    from agentsd.learn.parallel import DataParallel

Algo = Literal["grpo", "opd", "skill_sd", "skill_prompt", "sft"]
TeacherMode = Literal["synced", "ema", "frozen", "live"]
SkillsFor = Callable[[Turn, Trajectory], "str | None"]
#: algorithms whose loss needs a teacher
TEACHER_ALGOS = ("skill_sd", "opd")
#: the header of opd's privileged block in the teacher's system message


def reference_for(turn: Turn, traj: Trajectory) -> str | None:
    """opd's privileged context for one turn: the env oracle's answer for the state the student acted
    in, recorded by ``rollout(..., reference=True)`` (None when it was not recorded or the oracle had no
    answer; that turn's teacher then sees the plain prompt)."""
    return turn.reference


class OnPolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algo: Algo = "skill_sd"
    lr: float = Field(2e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    #: weight of the SDL term in skill_sd (0.001 was best in Skill-SD; 0.01 was unstable)
    lam: float = Field(0.001, ge=0.0)
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    eps_high: float = Field(0.28, ge=0.0)
    #: GRPO's k3 penalty to a frozen reference (needs ``reference=`` in learner_step); 0 = none
    kl_coef: float = Field(0.0, ge=0.0)
    #: truncate the SDL importance weight ρ at this value (see skill_sd_loss); None = no truncation
    rho_clip: float | None = Field(None, gt=0.0)
    #: truncated importance sampling of the rollout/learner mismatch: every token's loss terms (GRPO and
    #: SDL) are weighted by sg(min(π_old / π_rollout, tis_cap)), π_old the learner's own log-prob at the
    #: step's starting weights and π_rollout the rollout engine's; None = no correction (see learner_step)
    tis_cap: float | None = Field(None, gt=0.0)
    micro_batch: int = Field(4, ge=1)
    #: project the LM head onto the vocabulary this many completion positions at a time (checkpointed:
    #: at most micro_batch × logprob_chunk × V logits exist at once, in forward and backward); None =
    #: all completion positions of a micro-batch in one (micro_batch, T, V) tensor
    logprob_chunk: int | None = Field(128, ge=1)
    #: teacher/reference scoring (no grad): run the prompt prefix the micro-batch's rows share (system
    #: message, instructions, skills) once and reuse its KV cache (fp32 only; see sequence_logprobs)
    teacher_share_prefix: bool = True
    teacher_mode: TeacherMode = "synced"
    sync_every: int = Field(4, ge=1)  # synced: learner steps between hard copies (1 behaves as live)
    #: opd's teacher prompt: "reference" adds the env oracle's answer for the turn's state (fixed
    #: privileged ground truth, the paper's vanilla OPD); "none" = the plain prompt
    opd_context: Literal["reference", "none"] = "reference"
    ema_tau: float = Field(0.99, ge=0.0, le=1.0)
    #: the episode score advantages are computed from
    reward: Literal["return", "success"] = "return"
    scale_advantages: bool = True  # divide by the group's std
    lora: bool = True
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # inert here: learner_step runs in eval mode
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_PROJ))
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    #: bf16 autocast; None = where the hardware runs bf16 natively (see agentsd.learn.sft)
    bf16_autocast: bool | None = None
    seed: int = 0  # LoRA initialization
    #: CPU: have glibc return freed activations to the OS (agentsd.hardware.compact_cpu_heap), so peak
    #: memory tracks live tensors (skill_sd 1.00x GRPO's peak instead of 1.39x) at a CPU cost (measured
    #: 1.4-1.8x CPU seconds per step: fresh pages for every large block); off = glibc's default heap
    compact_cpu_heap: bool = False
    #: Data-parallel launches: shard the AdamW state across the processes (ZeRO stage 1, torch's
    #: ZeroRedundancyOptimizer): each keeps its share of the moments and updates those parameters, then
    #: they are broadcast. Gradients and parameters stay whole on every process (see make_optimizer).
    shard_optimizer: bool = False
    #: Data-parallel launches, full fine-tuning: shard the decoder layers' weights, gradients and AdamW
    #: state across the processes (ZeRO stage 3 with torch FSDP2, :func:`agentsd.learn.parallel.shard_layers`;
    #: call :func:`shard_model` before building the optimizer and teacher). Not with LoRA (its trainable
    #: state is already small) or shard_optimizer (redundant). The teacher scores without
    #: teacher_share_prefix then: its prefix pass runs a data-dependent number of forwards, and each
    #: sharded layer's forward is a collective.
    shard_params: bool = False


# ------------------------------------------------------------------------------------------- samples


@dataclass
class Sample:
    """One turn as the learner sees it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    old_logprobs: list[float] | None  # the rollout engine's (behaviour) log-probs; None = unknown
    advantage: float = 0.0
    episode_return: float = 0.0
    success: bool = False
    group: Hashable = None  # (env, seed): the advantage group
    traj_id: str = ""
    turn: int = 0
    #: the teacher's prompt (the student's plus skills); None when built without a skills teacher
    teacher_prompt_ids: list[int] | None = None
    skills: str | None = None
    #: π_old as the learner computes it (its own forward at the weights the batch was sampled with),
    #: recorded by the first ``learner_step(..., record_old=True)`` on this sample; None = not yet
    prox_logprobs: list[float] | None = None


@dataclass
class SampleBatch:
    samples: list[Sample] = field(default_factory=list)
    skipped: int = 0  # turns without token ids
    episodes: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(s.completion_ids) for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


def episode_advantages(
    trajectories: Sequence[Trajectory], reward: str = "return", scale: bool = True
) -> list[float]:
    """Group-relative advantage of each episode; groups are episodes of the same task (env, seed)."""
    if reward not in ("return", "success"):
        raise ValueError(f"reward must be 'return' or 'success', not {reward!r}")
    if not trajectories:
        return []
    scores = [t.total_reward if reward == "return" else float(t.success) for t in trajectories]
    groups = [(t.env, t.seed) for t in trajectories]
    return [float(a) for a in grpo_advantages(scores, groups, scale=scale)]


def build_samples(
    trajectories: Sequence[Trajectory],
    tokenizer: Any,
    cfg: OnPolicyConfig | None = None,
    *,
    teacher: Teacher | None = None,
    retokenize: bool = False,
) -> SampleBatch:
    """Samples from ``trajectories`` (see the module docstring). With a ``teacher`` that has
    ``skills_for``, each sample also gets the teacher's prompt ids (the student's prompt with the
    skills). ``retokenize`` keeps turns without token ids by tokenizing their response + EOS (for
    ``sft`` on demonstrations; such samples have no old log-probs)."""
    cfg = cfg or OnPolicyConfig()
    trajs = list(trajectories)
    advs = episode_advantages(trajs, cfg.reward, cfg.scale_advantages)
    batch = SampleBatch(episodes=len(trajs))
    for traj, adv in zip(trajs, advs, strict=True):
        ret, success = traj.total_reward, traj.success
        for k, turn in enumerate(traj.turns):
            if turn.token_ids:
                prompt = encode_chat(tokenizer, turn.messages)
                completion = list(turn.token_ids)
                if turn.logprobs and len(turn.logprobs) != len(turn.token_ids):
                    raise ValueError(
                        f"trajectory {traj.id} turn {k}: {len(turn.logprobs)} log-probs for "
                        f"{len(turn.token_ids)} token ids"
                    )
                old = list(turn.logprobs) if turn.logprobs else None
            elif retokenize:
                ids, n_prompt = tokenize_example(tokenizer, turn.messages, turn.response)
                prompt, completion, old = ids[:n_prompt], ids[n_prompt:], None
            else:
                batch.skipped += 1
                continue
            sample = Sample(prompt, completion, old, adv, ret, success, (traj.env, traj.seed), traj.id, k)
            if teacher is not None and teacher.skills_for is not None:
                skills = teacher.skills_for(turn, traj)
                sample.skills = skills or None
                sample.teacher_prompt_ids = (
                    encode_chat(tokenizer, with_skills(turn.messages, skills, teacher.header)) if skills else prompt
                )
            batch.samples.append(sample)
    return batch


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)


def _padded(rows: Sequence[Sequence[float]], width: int, like: torch.Tensor) -> torch.Tensor:
    """(B, width) float tensor of ``rows`` right-padded with 0, on ``like``'s device."""
    import torch

    out = torch.zeros((len(rows), width), dtype=torch.float32, device=like.device)
    for i, r in enumerate(rows):
        if r:
            out[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.float32)
    return out


# ------------------------------------------------------------------------------------------- teacher


class Teacher:
    """A lagged copy of the student's trainable weights (see the module docstring), or a separate fixed
    model (``model=``, frozen only). Build it after LoRA wrapping (``prepare_model``): the parameters
    that require grad at construction are the ones it tracks.

    :meth:`update` after every optimizer step applies the mode (learner_step calls it);
    :meth:`scoring` yields the model with the teacher's weights in place, for no-grad forward passes.
    """

    def __init__(
        self,
        student: Any,
        mode: TeacherMode = "synced",
        *,
        sync_every: int = 1,
        ema_tau: float = 0.99,
        skills_for: SkillsFor | None = None,
        model: Any = None,
        header: str = SKILLS_HEADER,
    ) -> None:
        if mode not in ("synced", "ema", "frozen", "live"):
            raise ValueError(f"teacher mode must be synced, ema, frozen or live, not {mode!r}")
        if sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")
        if not 0.0 <= ema_tau <= 1.0:
            raise ValueError(f"ema_tau must be in [0, 1], got {ema_tau}")
        if model is not None and mode != "frozen":
            raise ValueError("a separate teacher model is fixed: use mode='frozen'")
        self.student = student
        self.mode = mode
        self.sync_every = sync_every
        self.ema_tau = ema_tau
        self.skills_for = skills_for
        self.header = header  # the title of the skills_for block in the teacher's system message
        self.external = model
        self.steps = 0  # learner steps seen
        self.syncs = 0  # hard copies made after construction
        self._params = {n: p for n, p in student.named_parameters() if p.requires_grad}
        self.state: dict[str, torch.Tensor] | None = None
        if mode != "live" and model is None:
            if not self._params:
                raise ValueError("the student has no trainable parameters to track")
            self.state = {n: p.detach().clone() for n, p in self._params.items()}

    @property
    def model(self) -> Any:
        return self.external if self.external is not None else self.student

    def sync(self) -> None:
        """Hard copy of the student's current weights (no-op for live and a separate model)."""
        if self.state is None:
            return
        import torch

        with torch.no_grad():
            for n, t in self.state.items():
                t.copy_(self._params[n])
        self.syncs += 1

    def update(self) -> bool:
        """Apply the mode after one learner step; True when the teacher's weights changed."""
        import torch

        self.steps += 1
        if self.state is None or self.mode == "frozen":
            return False
        if self.mode == "synced":
            if self.steps % self.sync_every == 0:
                self.sync()
                return True
            return False
        with torch.no_grad():  # ema
            for n, t in self.state.items():
                t.mul_(self.ema_tau).add_(self._params[n].detach(), alpha=1.0 - self.ema_tau)
        return True

    @contextmanager
    def scoring(self) -> Iterator[Any]:
        """The model with the teacher's weights, in eval mode, under no_grad.

        The teacher's tensors are swapped into the student's parameters (``param.data``: no copy) and
        swapped back on exit, so no student graph may be alive across it: learner_step scores with the
        teacher before the student's forward pass. Do not nest it inside an autocast context that also
        runs the student: autocast caches casts of leaf weights for the whole context.
        """
        import torch

        model = self.model
        swapped = self.state is not None
        if swapped:
            self._swap()
        try:
            with torch.no_grad(), eval_mode(model):
                yield model
        finally:
            if swapped:
                self._swap()

    def _swap(self) -> None:
        assert self.state is not None
        import torch

        for n, t in self.state.items():
            p = self._params[n]
            if is_sharded(p):  # FSDP gathers from its own shard storage: exchange values, not tensors
                with torch.no_grad():
                    tmp = p.detach().clone()
                    p.copy_(t)
                    t.copy_(tmp)
            else:
                p.data, self.state[n] = t, p.data

    def logprobs(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        *,
        pad_id: int,
        bf16: bool = False,
        chunk: int | None = None,
        share_prefix: bool = False,
    ) -> torch.Tensor:
        """(B, T) log-probs of the completions' exact ids under the teacher, detached (``chunk`` and
        ``share_prefix``: see :func:`~agentsd.policy.hf.sequence_logprobs`)."""
        import torch

        with self.scoring() as model:
            device = next(model.parameters()).device
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                lp, _ = sequence_logprobs(model, prompt_ids, completion_ids, pad_id=pad_id, chunk=chunk,
                                          share_prefix=share_prefix)
        return lp.detach()

    def state_dict(self) -> dict[str, Any]:
        """Mode, counters and the tracked weights (for checkpoints), whole: with sharded parameters
        (``shard_params``) the shards are gathered, a collective every process must call."""
        state = None
        if self.state is not None:
            state = {n: (t.full_tensor() if is_sharded(t) else t).detach().cpu().clone() for n, t in self.state.items()}
        return {"mode": self.mode, "steps": self.steps, "syncs": self.syncs, "state": state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if sd["mode"] != self.mode:
            raise ValueError(f"checkpoint teacher mode {sd['mode']!r}, this teacher is {self.mode!r}")
        self.steps, self.syncs = int(sd["steps"]), int(sd["syncs"])
        if self.state is not None:
            import torch

            if set(sd["state"]) != set(self.state):
                raise ValueError("checkpoint teacher weights do not match the student's trainable parameters")
            with torch.no_grad():
                for n, t in self.state.items():
                    src = sd["state"][n]
                    if is_sharded(t):  # every process holds the whole tensor: keep this one's shard
                        from torch.distributed.tensor import distribute_tensor

                        src = distribute_tensor(src.to(t.device, t.dtype), t.device_mesh, t.placements,
                                                src_data_rank=None)
                    t.copy_(src)


# ------------------------------------------------------------------------------------------- setup


def prepare_model(model: Any, cfg: OnPolicyConfig) -> Any:
    """The model to train: LoRA-wrapped (peft, seeded by ``cfg.seed``) when ``cfg.lora``, else itself.
    An already PEFT-wrapped model is returned as it is. On CPU with ``cfg.compact_cpu_heap`` it also
    sets up glibc to release freed memory (:func:`agentsd.hardware.compact_cpu_heap`)."""
    import torch

    device = next(model.parameters()).device
    if cfg.compact_cpu_heap and device.type == "cpu":
        from agentsd.hardware import compact_cpu_heap

        compact_cpu_heap()
    if not cfg.lora or hasattr(model, "peft_config"):
        return model
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        return _wrap_lora(model, cfg)  # type: ignore[arg-type]  # reads the same lora_* fields


def shard_model(model: Any, cfg: OnPolicyConfig, dp: DataParallel | None) -> bool:
    """With ``cfg.shard_params`` in a launch of N > 1 processes, shard the decoder layers in place
    (:func:`agentsd.learn.parallel.shard_layers`) and return True; otherwise leave the model alone. Call
    it after :func:`prepare_model` and before :func:`make_optimizer` and :func:`make_teacher`. Raises
    ValueError for the combinations ``shard_params`` does not support."""
    if not cfg.shard_params or dp is None or dp.world <= 1:
        return False
    bad = [name for name, on in (("lora", cfg.lora), ("shard_optimizer", cfg.shard_optimizer)) if on]
    if bad:
        raise ValueError(f"shard_params does not go with {', '.join(bad)}: set {' and '.join(b + '=false' for b in bad)} "
                         f"(LoRA's trainable state is small already: use plain data parallelism or shard_optimizer)")
    from agentsd.learn.parallel import shard_layers

    shard_layers(model, dp)
    return True


def make_optimizer(model: Any, cfg: OnPolicyConfig, dp: DataParallel | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, no weight decay on 1-D ones (as in SFT).

    With ``cfg.shard_optimizer`` in a data-parallel launch of N > 1 processes, the AdamW state is sharded
    (ZeRO stage 1, :class:`torch.distributed.optim.ZeroRedundancyOptimizer`): each process holds the
    moments of about 1/N of the parameters and updates only those, then broadcasts them. For full
    fine-tuning in fp32 that is 8 + 8/N bytes per parameter instead of 16 (weights and gradients stay
    whole: :func:`learner_step` sums whole gradients). The step equals the unsharded one. Checkpoints:
    :func:`optimizer_state_dict`. With ``cfg.shard_params`` the model's layers are sharded already
    (:func:`shard_model`) and a plain AdamW over them keeps moments for the local shards only."""
    if not (cfg.shard_optimizer and dp is not None and dp.world > 1):
        return _optimizer(model, cfg)  # type: ignore[arg-type]  # reads lr and weight_decay
    import torch
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(_param_groups(model, cfg.weight_decay), optimizer_class=torch.optim.AdamW,
                                   lr=cfg.lr)


def optimizer_state_dict(
    optimizer: torch.optim.Optimizer, dp: DataParallel | None = None, model: Any = None
) -> dict[str, Any] | None:
    """The optimizer's full state dict for a checkpoint. A sharded optimizer (``shard_optimizer``) or the
    optimizer of a sharded ``model`` (``shard_params``; then keyed by parameter name) first gathers every
    process's shard on the main process (a collective: call it on every process); the others get None.
    :func:`load_optimizer_state` takes the full dict on every process (each keeps its shard)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    if isinstance(optimizer, ZeroRedundancyOptimizer):
        optimizer.consolidate_state_dict(to=0)
        return optimizer.state_dict() if dp is None or dp.is_main else None
    if has_sharded_params(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        sd = get_optimizer_state_dict(model, optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {**sd, "sharded_params": True} if dp is None or dp.is_main else None
    return optimizer.state_dict()


def load_optimizer_state(optimizer: torch.optim.Optimizer, sd: dict[str, Any], model: Any = None) -> None:
    """Load a dict from :func:`optimizer_state_dict` (the full one, on every process) into ``optimizer``
    over ``model``'s parameters. The two layouts convert: a name-keyed state (saved with
    ``shard_params``) loads into a plain or sharded model's optimizer, and an id-keyed one (saved without)
    into a sharded model's, matched through the parameter order of the optimizer's groups (the same
    :func:`make_optimizer` built both). A ZeRO-1 optimizer (``shard_optimizer``) takes only id-keyed state."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    by_name = bool(sd.get("sharded_params"))
    if not by_name and not has_sharded_params(model):
        optimizer.load_state_dict(sd)
        return
    if isinstance(optimizer, ZeroRedundancyOptimizer) or model is None:
        raise ValueError("this optimizer state was saved with shard_params=true: resume with shard_params=true, "
                         "or without shard_optimizer")
    sd = {k: v for k, v in sd.items() if k != "sharded_params"}
    if not by_name:  # id-keyed: the k-th id of the saved groups is the k-th parameter of ours
        name_of = {id(p): n for n, p in model.named_parameters()}
        names = [name_of[id(p)] for g in optimizer.param_groups for p in g["params"]]
        ids = [i for g in sd["param_groups"] for i in g["params"]]
        if len(ids) != len(names):
            raise ValueError(f"the checkpoint's optimizer has {len(ids)} parameters, this learner {len(names)}")
        key = dict(zip(ids, names, strict=True))
        sd = {"state": {key[i]: v for i, v in sd["state"].items()},
              "param_groups": [{**g, "params": [key[i] for i in g["params"]]} for g in sd["param_groups"]]}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, sd, options=StateDictOptions(full_state_dict=True))


def model_state_dict(model: Any, dp: DataParallel | None = None) -> dict[str, Any] | None:
    """The whole weights of a model with sharded layers, on the main process (CPU tensors; None on the
    others; a collective), or None for a model without sharded parameters (save it as it is)."""
    if not has_sharded_params(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if dp is None or dp.is_main else None


def make_teacher(
    model: Any, cfg: OnPolicyConfig, skills_for: SkillsFor | None = None, *, teacher_model: Any = None
) -> Teacher | None:
    """The teacher ``cfg.algo`` needs: None for grpo, skill_prompt and sft; for opd a frozen teacher
    without skills (``skills_for`` is ignored) that sees each turn's reference answer
    (``cfg.opd_context="reference"``, :func:`reference_for`) or the plain prompt (``"none"``), with
    ``teacher_model`` (a separate fixed model with the same tokenizer) instead of the student's initial
    weights when given; for skill_sd ``cfg.teacher_mode`` with ``skills_for``."""
    if cfg.algo == "opd":
        context = reference_for if cfg.opd_context == "reference" else None
        return Teacher(model, "frozen", model=teacher_model, skills_for=context, header=REFERENCE_HEADER)
    if cfg.algo == "skill_sd":
        if teacher_model is not None:
            raise ValueError("skill_sd's teacher is the student's own weights")
        return Teacher(model, cfg.teacher_mode, sync_every=cfg.sync_every, ema_tau=cfg.ema_tau,
                       skills_for=skills_for)
    return None


# ------------------------------------------------------------------------------------------- learner


class _Stats:
    """Token-weighted means and maxima over micro-batches."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}

    def mean(self, stats: dict[str, float], keys: Sequence[str], weight: float) -> None:
        for k in keys:
            self.sums[k] = self.sums.get(k, 0.0) + stats[k] * weight

    def max(self, name: str, value: float) -> None:
        self.maxes[name] = max(self.maxes.get(name, -math.inf), value)


def _old_logprobs(ch: Sequence[Sample], lp: torch.Tensor, record: bool) -> torch.Tensor:
    """(B, T) π_old of a micro-batch: each sample's recorded ``prox_logprobs``, else this pass's own
    detached log-probs (this step's starting weights are π_old), recorded on the sample with ``record``."""
    import torch

    fresh = lp.detach()
    have = [s.prox_logprobs is not None for s in ch]
    if record:
        for r, s in enumerate(ch):
            if s.prox_logprobs is None:
                s.prox_logprobs = fresh[r, : len(s.completion_ids)].tolist()
    if not any(have):
        return fresh
    stored = _padded([s.prox_logprobs or [] for s in ch], lp.shape[1], lp)
    return torch.where(torch.tensor(have, device=lp.device)[:, None], stored, fresh)


class _Mismatch:
    """The rollout engine's log-probs against the learner's π_old, over the tokens that have both:
    sums of |Δ log p| and of tokens whose ratio π_old / π_rollout lies outside [0.9, 1.1], and the
    truncated importance weights (``tis_cap``)."""

    KEYS = ("tokens", "abs", "out", "tis_sum", "tis_capped")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)

    def add(self, ch: Sequence[Sample], old: torch.Tensor, mask: torch.Tensor, tis_cap: float | None
            ) -> torch.Tensor | None:
        """Accumulate one micro-batch; returns its (B, T) TIS weights (None without ``tis_cap``)."""
        import torch

        rollout = _padded([s.old_logprobs or [] for s in ch], old.shape[1], old)
        known = torch.tensor([bool(s.old_logprobs) for s in ch], device=old.device)[:, None] & mask
        delta = torch.where(known, old - rollout, torch.zeros((), device=old.device))  # log π_old − log π_rollout
        ratio = delta.exp()
        self.sums["tokens"] += float(known.sum())
        self.sums["abs"] += float(delta.abs().sum())
        self.sums["out"] += float((known & ((ratio < 0.9) | (ratio > 1.1))).sum())
        if tis_cap is None:
            return None
        weights = ratio.clamp(max=tis_cap)  # 1 where the rollout's log-prob is unknown (delta 0)
        self.sums["tis_sum"] += float((weights * known).sum())
        self.sums["tis_capped"] += float((known & (ratio > tis_cap)).sum())
        return weights

    def reduce(self, dp: DataParallel) -> None:
        self.sums = dict(zip(self.KEYS, dp.sum([self.sums[k] for k in self.KEYS]), strict=True))

    def stats(self, tis_cap: float | None) -> dict[str, float]:
        n = self.sums["tokens"]
        out = {"mismatch_tokens": n, "mismatch_abs": self.sums["abs"] / n if n else 0.0,
               "mismatch_out_frac": self.sums["out"] / n if n else 0.0}
        if tis_cap is not None:
            out.update(tis_mean=self.sums["tis_sum"] / n if n else 1.0,
                       tis_capped_frac=self.sums["tis_capped"] / n if n else 0.0)
        return out


def learner_step(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Sample],
    cfg: OnPolicyConfig,
    teacher: Teacher | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    reference: Teacher | None = None,
    dp: DataParallel | None = None,
    record_old: bool = False,
) -> dict[str, float]:
    """One optimizer step of ``cfg.algo`` on ``samples`` (see the module docstring), then the teacher's
    update. ``model`` is the one being trained (from :func:`prepare_model`); ``reference`` a frozen
    teacher for GRPO's ``kl_coef`` penalty (scored on the student's plain prompt). A teacher given to
    ``grpo`` or ``skill_prompt`` is scored for monitoring only (its stats are reported, it is not in the
    loss: one extra no-grad forward pass).

    Returns stats: ``loss``, ``grpo_loss``, ``sdl`` (the SDL value; in the loss for skill_sd with
    weight ``lam``, alone for opd), ``kl`` (mean k3 reverse-KL estimate to the teacher at the sampled
    tokens), ``logratio``, ``rho_mean``/``rho_max``/``rho_clip_frac`` (the SDL importance weight),
    ``clip_frac``/``ratio_mean``/``ratio_max`` (GRPO), ``ref_kl``, ``entropy`` (mean −log π_θ of the
    sampled tokens, an entropy estimate), ``tokens``, ``samples``, ``grad_norm``, ``teacher_seconds``,
    ``step_seconds``, ``tokens_per_s``, ``teacher_updated``, ``stepped``, and the rollout/learner
    mismatch (see the module docstring): ``mismatch_abs``, ``mismatch_out_frac``, ``mismatch_tokens``
    (tokens with rollout log-probs), with ``tis_cap`` also ``tis_mean`` and ``tis_capped_frac``.
    Teacher keys are absent without a teacher, GRPO keys for opd and sft, mismatch keys for sft. A
    batch with no tokens to train on (e.g. sft without a successful episode) takes no step
    (``stepped`` 0).

    π_old is the learner's own forward at the step's starting weights (ρ and the GRPO ratio are 1 in
    value on fresh samples), or each sample's ``prox_logprobs`` when recorded: ``record_old=True``
    records them on the samples that have none, for further steps on the same batch.

    ``dp``: data parallelism (:mod:`agentsd.learn.parallel`). Every process passes the same ``samples``;
    each scores and back-propagates every ``world``-th turn of the length-sorted batch, the gradients
    are summed across processes before clipping, and every process steps identically. Stats are the
    whole batch's.
    """
    import torch

    if optimizer is None:
        raise ValueError("learner_step needs an optimizer (make_optimizer(model, cfg))")
    algo = cfg.algo
    if algo in TEACHER_ALGOS and teacher is None:
        raise ValueError(f"{algo} needs a teacher (make_teacher(model, cfg, ...))")
    if algo == "opd" and teacher is not None and teacher.mode != "frozen":
        raise ValueError("opd's teacher is fixed: a frozen Teacher (make_teacher)")
    if cfg.kl_coef > 0 and algo != "sft" and reference is None:
        raise ValueError("kl_coef > 0 needs a reference (a frozen Teacher without skills)")
    t0 = time.perf_counter()

    used = [s for s in samples if s.success] if algo == "sft" else list(samples)
    used = [s for s in used if s.completion_ids]
    n_tokens = sum(len(s.completion_ids) for s in used)
    out: dict[str, float] = {"samples": float(len(used)), "tokens": float(n_tokens), "stepped": 0.0}
    if n_tokens == 0:
        out.update(loss=0.0, step_seconds=time.perf_counter() - t0)
        return out
    score_teacher = teacher is not None and algo != "sft"
    if score_teacher and teacher.skills_for is not None and any(s.teacher_prompt_ids is None for s in used):
        raise ValueError("samples lack the teacher's prompts: build them with build_samples(..., teacher=teacher)")

    device = next(model.parameters()).device
    bf16 = _use_bf16(cfg.bf16_autocast, device)
    pad_id = _pad_id(tokenizer)
    # Similar lengths together: less padding. The result does not depend on the order.
    used.sort(key=lambda s: len(s.prompt_ids) + len(s.completion_ids))
    mine = dp.strided(used) if dp is not None else used
    chunks = [mine[i : i + cfg.micro_batch] for i in range(0, len(mine), cfg.micro_batch)]
    real = len(chunks)
    sharded = dp is not None and has_sharded_params(model)
    share_prefix = cfg.teacher_share_prefix and not sharded
    if sharded:
        # Each sharded layer's forward and backward are collectives: every process runs as many
        # micro-batches as the busiest one, the extra ones with zero weight.
        n_max = int(dp.max([float(real)])[0])
        chunks += [used[:1]] * (n_max - real)

    # 1. Teacher (and reference) log-probs first, without grad: the teacher swaps its weights into the
    #    student's parameters, which must not happen while a student graph is alive. Only (B, T) kept.
    tt = time.perf_counter()
    t_lps: list[torch.Tensor | None] = [None] * len(chunks)
    r_lps: list[torch.Tensor | None] = [None] * len(chunks)
    for i, ch in enumerate(chunks):
        comps = [s.completion_ids for s in ch]
        if score_teacher:
            prompts = [s.teacher_prompt_ids or s.prompt_ids for s in ch]
            t_lps[i] = teacher.logprobs(prompts, comps, pad_id=pad_id, bf16=bf16, chunk=cfg.logprob_chunk,
                                        share_prefix=share_prefix)
        if reference is not None and cfg.kl_coef > 0 and algo != "sft":
            r_lps[i] = reference.logprobs([s.prompt_ids for s in ch], comps, pad_id=pad_id, bf16=bf16,
                                          chunk=cfg.logprob_chunk, share_prefix=share_prefix
                                          ).to(device)
    teacher_seconds = time.perf_counter() - tt

    # 2. Student passes with grad, each micro-batch's loss scaled by 1 / (tokens of the whole batch).
    acc = _Stats()
    mismatch = _Mismatch()
    loss_total = pg_total = sdl_total = 0.0
    ent_sum = 0.0
    use_pg = algo in ("grpo", "skill_sd", "skill_prompt")
    with eval_mode(model):
        for i, (ch, t_lp, r_lp) in enumerate(zip(chunks, t_lps, r_lps, strict=True)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                lp, mask = sequence_logprobs(
                    model, [s.prompt_ids for s in ch], [s.completion_ids for s in ch], pad_id=pad_id,
                    chunk=cfg.logprob_chunk,
                )
            if i >= real:  # a padding micro-batch (sharded layers): same passes, zero gradient
                (lp.sum() * 0.0).backward()
                continue
            n_ch = float(mask.sum())
            ent_sum += float(-(lp.detach() * mask).sum())
            if algo == "sft":
                loss = -(lp * mask).sum() / n_tokens
            else:
                old = _old_logprobs(ch, lp, record_old)
                weights = mismatch.add(ch, old, mask, cfg.tis_cap)
                loss = lp.new_zeros(())
                if use_pg:
                    adv = torch.tensor([s.advantage for s in ch], dtype=torch.float32, device=lp.device)
                    pg, pgs = grpo_loss(
                        lp, old, adv, mask, eps_low=cfg.eps_low, eps_high=cfg.eps_high,
                        ref_logp=r_lp, kl_coef=cfg.kl_coef if r_lp is not None else 0.0, normalizer=n_tokens,
                        token_weights=weights,
                    )
                    loss = loss + pg
                    pg_total += float(pg.detach())
                    acc.mean(pgs, ("clip_frac", "ratio_mean", "kl"), n_ch)
                    acc.max("ratio_max", pgs["ratio_max"])
                if t_lp is not None:
                    t_lp = t_lp.to(lp.device)  # a separate teacher model may live elsewhere
                    sdl, sds = skill_sd_loss(lp, t_lp, old, mask, rho_clip=cfg.rho_clip, normalizer=n_tokens,
                                             token_weights=weights)
                    sdl_total += float(sdl.detach())
                    if algo == "skill_sd":
                        loss = loss + cfg.lam * sdl
                    elif algo == "opd":
                        loss = loss + sdl
                    acc.mean(sds, ("k3", "logratio", "rho_mean", "rho_clip_frac"), n_ch)
                    acc.max("rho_max", sds["rho_max"])
            loss.backward()
            loss_total += float(loss.detach())

    if dp is not None:
        dp.sum_grads(p for p in model.parameters() if p.requires_grad)
        teacher_seconds = dp.max([teacher_seconds])[0]
        loss_total, pg_total, sdl_total, ent_sum = dp.sum([loss_total, pg_total, sdl_total, ent_sum])
        sum_keys = ("clip_frac", "ratio_mean", "kl", "k3", "logratio", "rho_mean", "rho_clip_frac")
        acc.sums = dict(zip(sum_keys, dp.sum([acc.sums.get(k, 0.0) for k in sum_keys]), strict=True))
        max_keys = ("ratio_max", "rho_max")
        acc.maxes = dict(zip(max_keys, dp.max([acc.maxes.get(k, -math.inf) for k in max_keys]), strict=True))
        mismatch.reduce(dp)
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    if any(is_sharded(p) for p in params):
        grad_norm = clip_sharded_grad_norm_(params, cfg.max_grad_norm)
    elif cfg.max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    updated = teacher.update() if teacher is not None and algo != "sft" else False

    out.update(loss=loss_total, entropy=ent_sum / n_tokens, grad_norm=grad_norm, stepped=1.0)
    if algo != "sft":
        out.update(mismatch.stats(cfg.tis_cap))
    if use_pg:
        out.update(grpo_loss=pg_total, clip_frac=acc.sums["clip_frac"] / n_tokens,
                   ratio_mean=acc.sums["ratio_mean"] / n_tokens, ratio_max=acc.maxes["ratio_max"])
        if reference is not None and cfg.kl_coef > 0:
            out["ref_kl"] = acc.sums["kl"] / n_tokens
    if score_teacher:
        out.update(sdl=sdl_total, kl=acc.sums["k3"] / n_tokens, logratio=acc.sums["logratio"] / n_tokens,
                   rho_mean=acc.sums["rho_mean"] / n_tokens, rho_max=acc.maxes["rho_max"],
                   rho_clip_frac=acc.sums["rho_clip_frac"] / n_tokens, teacher_seconds=teacher_seconds,
                   teacher_updated=float(updated))
    seconds = time.perf_counter() - t0
    out.update(step_seconds=seconds, tokens_per_s=n_tokens / seconds if seconds > 0 else 0.0)
    return out


# ------------------------------------------------------------------------------------------- evaluation


def _vocab_logprobs(
    model: Any, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, V) log-softmax at each completion position (the layout of sequence_logprobs) and the mask."""
    import torch

    device = next(model.parameters()).device
    comp_len = torch.tensor([len(c) for c in completion_ids], dtype=torch.long, device=device)
    width = int(comp_len.max())
    ids, attn = pad_sequences([list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)],
                              pad_id, "left", device)
    length = ids.shape[1]
    j = torch.arange(width, device=device)[None, :]
    cols = (length - comp_len[:, None] + j).clamp(max=length - 1)  # (B, T)
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions_from_mask(attn),
                logits_to_keep=cols - 1, use_cache=False)
    return out.logits.float().log_softmax(-1), j < comp_len[:, None]


def _targets(comps: Sequence[Sequence[int]], shape: torch.Size, device: torch.device) -> torch.Tensor:
    import torch

    targets = torch.zeros(shape, dtype=torch.long, device=device)
    for r, c in enumerate(comps):
        targets[r, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
    return targets


def _chunkable(model: Any, teacher: Teacher) -> bool:
    """Whether reverse_kl can apply the student's and the teacher's LM heads chunk by chunk: both have a
    plain head (split_lm_head) and the teacher does not swap head weights into the student."""
    parts = split_lm_head(model)
    if parts is None or split_lm_head(teacher.model) is None:
        return False
    if teacher.external is not None or teacher.state is None:
        return True
    head_params = {id(p) for p in parts[1].parameters()}
    return not any(id(teacher._params[n]) in head_params for n in teacher.state)


def _chunked_vocab_kl(
    model: Any,
    teacher: Teacher,
    prompts: Sequence[Sequence[int]],
    t_prompts: Sequence[Sequence[int]],
    comps: Sequence[Sequence[int]],
    pad_id: int,
    chunk: int,
    bf16: bool,
    n_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """reverse_kl's full-vocabulary KL (normalized by ``n_tokens``) and the sampled tokens' student and
    teacher log-probs (B, T) and mask, with the heads applied ``chunk`` positions at a time."""
    import torch

    device = next(model.parameters()).device
    with teacher.scoring() as tm, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        t_h, _, _, t_head = completion_hidden(tm, t_prompts, comps, pad_id=pad_id)  # (B, T, H)
    with torch.no_grad(), eval_mode(model), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        s_h, targets, mask, s_head = completion_hidden(model, prompts, comps, pad_id=pad_id)
        kl = torch.zeros((), device=device)
        s_parts, t_parts = [], []
        for lo in range(0, mask.shape[1], chunk):
            cols = slice(lo, lo + chunk)
            s_v = s_head(s_h[:, cols]).float().log_softmax(-1)  # (B, C, V)
            t_v = t_head(t_h[:, cols]).float().log_softmax(-1).to(device)
            kl_c, _ = reverse_kl_full(s_v, t_v, mask[:, cols], normalizer=n_tokens)
            kl = kl + kl_c
            tg = targets[:, cols, None]
            s_parts.append(s_v.gather(-1, tg).squeeze(-1))
            t_parts.append(t_v.gather(-1, tg).squeeze(-1))
            del s_v, t_v
    return kl, torch.cat(s_parts, 1), torch.cat(t_parts, 1), mask


def reverse_kl(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Sample],
    teacher: Teacher,
    *,
    micro_batch: int = 4,
    bf16: bool = False,
    chunk: int | None = 128,
) -> dict[str, float]:
    """Held-out measure of how far the student is from the teacher on ``samples`` (no grad, no step).

    ``kl_full``: the exact reverse KL(π_θ ‖ π_teacher) over the whole vocabulary at every completion
    position (student on its prompt, teacher on its own), token mean; ``sdl``: the ρ-weighted k3
    estimate learner_step optimizes; ``k3``: its unweighted mean.

    Memory: the exact KL needs both full distributions at the same positions. With ``chunk`` the student's
    and the teacher's LM-head inputs (B, T, H) are computed first (the teacher's under its weights), then
    both heads are applied ``chunk`` positions at a time, so two (micro_batch, chunk, V) log-prob tensors
    exist at once instead of two (micro_batch, T, V). That needs the teacher and the student to share the
    LM head's weights (LoRA without ``lm_head`` in its targets) or the teacher to be a separate model;
    when the teacher swaps head weights (full fine-tuning), or a model has no plain LM head, or
    ``chunk=None``, both (micro_batch, T, V) tensors are built at once.
    """
    import torch

    if not samples:
        return {"kl_full": 0.0, "sdl": 0.0, "k3": 0.0, "tokens": 0.0}
    pad_id = _pad_id(tokenizer)
    n_tokens = sum(len(s.completion_ids) for s in samples)
    device = next(model.parameters()).device
    chunked = chunk is not None and _chunkable(model, teacher)
    kl_sum = sdl_sum = k3_sum = 0.0
    for i in range(0, len(samples), micro_batch):
        ch = samples[i : i + micro_batch]
        comps = [s.completion_ids for s in ch]
        t_prompts = [s.teacher_prompt_ids or s.prompt_ids for s in ch]
        if chunked:
            assert chunk is not None
            kl, s_lp, t_lp, mask = _chunked_vocab_kl(model, teacher, [s.prompt_ids for s in ch], t_prompts,
                                                     comps, pad_id, chunk, bf16, n_tokens)
        else:
            with teacher.scoring() as tm, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                t_v, mask = _vocab_logprobs(tm, t_prompts, comps, pad_id)
            t_v, mask = t_v.to(device), mask.to(device)
            with torch.no_grad(), eval_mode(model), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                s_v, _ = _vocab_logprobs(model, [s.prompt_ids for s in ch], comps, pad_id)
            kl, _ = reverse_kl_full(s_v, t_v, mask, normalizer=n_tokens)
            targets = _targets(comps, mask.shape, device)
            s_lp = s_v.gather(-1, targets[..., None]).squeeze(-1)
            t_lp = t_v.gather(-1, targets[..., None]).squeeze(-1)
            del s_v, t_v
        old = _padded([s.old_logprobs or [] for s in ch], mask.shape[1], s_lp)
        known = torch.tensor([s.old_logprobs is not None for s in ch], device=device)[:, None]
        old = torch.where(known, old, s_lp)
        sdl, sds = skill_sd_loss(s_lp, t_lp, old, mask, normalizer=n_tokens)
        kl_sum += float(kl)
        sdl_sum += float(sdl)
        k3_sum += sds["k3"] * float(mask.sum()) / n_tokens
    return {"kl_full": kl_sum, "sdl": sdl_sum, "k3": k3_sum, "tokens": float(n_tokens)}
