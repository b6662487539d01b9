"""Run configuration: pydantic models loaded from YAML plus dotted command-line overrides.

    cfg = load_config("sokoban", overrides=["rollout.batch=16", "env.kwargs.difficulty=medium"])

Unknown or mistyped keys are an error that names the key and the nearest valid one; nothing is
silently ignored (torchtune's rule).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentsd.planner.config import PlannerConfig
from agentsd.policy.base import Sampling


class ConfigError(ValueError):
    """A config problem, with a one-line message meant for the user."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EnvConfig(Strict):
    name: str = "sokoban"
    #: Keyword arguments for the env constructor (e.g. difficulty, max_steps).
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(Strict):
    #: Embedded name (smollm2-135m), a local HF directory, a hub id, or openai:http://host:port/v1[#model].
    name: str = "smollm2-135m"
    #: Weight dtype. auto: bf16 where bf16 is native (CUDA, AVX512-BF16/AMX CPUs), else fp32 — emulated
    #: bf16 measured ~6x slower than fp32 for generation on this project's 2-core AMD EPYC machines.
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    #: bf16 autocast of forward passes; None = the backend decides (on only where bf16 is native).
    autocast: bool | None = None
    device: str = "cpu"
    max_batch: int = Field(32, ge=1)
    #: Where converted embedded models are cached (default ~/.cache/agentsd or $AGENTSD_CACHE).
    cache_dir: str | None = None


class RolloutConfig(Strict):
    #: Episodes collected per iteration (train) — also the number run concurrently in lockstep.
    batch: int = Field(32, ge=1)
    #: Rollouts per task seed (G) for group-relative baselines.
    group_size: int = Field(1, ge=1)
    #: Hard cap on turns per episode (the env's own max_steps usually ends it first).
    max_turns: int = Field(30, ge=1)
    #: Previous (observation, answer) pairs kept in the prompt.
    history: int = Field(0, ge=0)
    #: First train seed index of iteration 1 (later iterations follow on); null = right after the
    #: warm-start demos. Set it when starting from another run's warm-started checkpoint, so the
    #: iterations do not revisit the levels it was trained on.
    train_start: int | None = Field(None, ge=0)
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=24, temperature=1.0))
    #: How the policy acts in train and eval rollouts: ``generate`` (free text, sampled token by
    #: token) or ``candidates`` (envs with a finite action set: every ``action_candidates()`` entry is
    #: scored and the best taken, or one sampled at the sampling temperature; see
    #: :class:`agentsd.rollout.CandidateActor`). Envs without candidates generate either way.
    actor: Literal["generate", "candidates"] = "generate"


class MemoryConfig(Strict):
    """Skill memory built from train-split trajectories after each collecting phase."""

    enabled: bool = False
    #: Memory directory; default ``<run dir>/memory``.
    dir: str | None = None
    #: A Chroma server (``http://host:port``) instead of the embedded index under ``dir``.
    url: str | None = None
    namespace: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: ``diagnostic`` (deterministic, no model) or ``llm`` (the run's policy, or ``summarizer_model``).
    summarizer: Literal["diagnostic", "llm"] = "diagnostic"
    summarizer_model: str | None = None
    #: Generation budget of the llm summarizer per trajectory (a skill plus a guardrail is ~450 tokens).
    summarizer_max_new_tokens: int = Field(512, ge=16)
    #: A sentence-transformers model directory; default: the packaged all-MiniLM-L6-v2.
    embedding_model: str | None = None
    embedding_backend: Literal["auto", "onnx", "torch"] = "auto"
    merge_threshold: float = Field(0.95, gt=0.0, le=1.0)
    retire_floor: int = Field(-3, le=0)
    stale_after: int = Field(3, ge=1)
    #: Also summarize the warm-start oracle demonstrations (train seeds) into skills.
    from_warmstart: bool = True
    #: With ``rollout.actor=candidates``: drop each turn's candidates that an executable guardrail of
    #: the memory forbids in the current state (train and eval rollouts; when every candidate is
    #: forbidden none is dropped). What the run's failures taught acts on every later move. Off, with a
    #: note in the log, where it cannot act (see :func:`guard_off`).
    guard: bool = False


class WarmstartConfig(Strict):
    #: Oracle demonstration episodes on train seeds (0 disables warm-start).
    episodes: int = Field(16, ge=0)
    lora: bool = True
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(1, ge=1)
    #: Examples per optimizer step; run as micro-batches of ``micro_batch`` (gradient accumulation).
    batch_size: int = Field(16, ge=1)
    #: CPU training is fastest at small micro-batches (measured: 4 rows ~170 tok/s, 16 rows ~110).
    micro_batch: int = Field(4, ge=1)


class OnPolicySection(Strict):
    """The on-policy learner (``agentsd.learn.onpolicy.OnPolicyConfig``) for grpo, opd, skill_sd,
    skill_prompt and sft."""

    lr: float = Field(2e-5, gt=0.0)
    #: weight of the SDL term in skill_sd (0.001 was best in Skill-SD; 0.01 was unstable)
    lam: float = Field(0.001, ge=0.0)
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    eps_high: float = Field(0.28, ge=0.0)
    #: GRPO's k3 penalty to the frozen initial weights (0 = none)
    kl_coef: float = Field(0.0, ge=0.0)
    #: truncate the SDL importance weight at this value; null = no truncation
    rho_clip: float | None = Field(None, gt=0.0)
    #: truncated importance sampling of the rollout/learner mismatch: each token's GRPO and SDL terms
    #: weighted by min(π_old / π_rollout, tis_cap) (π_old: the learner's own log-prob); null = none
    tis_cap: float | None = Field(None, gt=0.0)
    #: the learner's bf16 autocast; null = model.autocast (and where that is null too, on only where
    #: bf16 is native: AVX512-BF16/AMX CPUs, GPUs; AGENTSD_BF16=1|0 overrides that detection)
    bf16_autocast: bool | None = None
    #: samples (turns) per forward pass; the update does not depend on it
    micro_batch: int = Field(4, ge=1)
    #: skill_sd teacher: synced (hard copy every sync_every steps), ema, frozen, live
    teacher_mode: Literal["synced", "ema", "frozen", "live"] = "synced"
    sync_every: int = Field(4, ge=1)
    ema_tau: float = Field(0.99, ge=0.0, le=1.0)
    #: LoRA adapters (rank 16) instead of full fine-tuning
    lora: bool = True
    #: episode score the group-relative advantages come from
    reward: Literal["return", "success"] = "return"
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    #: learner steps (each on the whole iteration batch) per iteration
    steps_per_iteration: int = Field(1, ge=1)
    #: LM head applied this many completion positions at a time (checkpointed); null = all at once.
    logprob_chunk: int | None = Field(128, ge=1)
    #: The teacher's scoring runs the prompt prefix a micro-batch shares (system, skills) once; fp32 only.
    teacher_share_prefix: bool = True
    #: opd only: the teacher's prompt holds the env oracle's answer for each turn's state (reference: fixed
    #: privileged ground truth, recorded during train rollouts; needs env.oracle_action) or nothing (none)
    opd_context: Literal["reference", "none"] = "reference"
    #: opd only: a separate fixed teacher (local model dir or embedded name, same tokenizer); null = the
    #: student's initial weights (with opd_context=none that teacher equals the student at the start: a
    #: KL anchor that moves nothing until the student drifts)
    teacher_model: str | None = None
    #: CPU, memory-tight runs: glibc returns freed activations to the OS, so peak memory tracks live
    #: tensors (skill_sd's peak 1.00x GRPO's instead of 1.39x) but a step costs ~1.4-1.8x the CPU time;
    #: MALLOC_*_THRESHOLD_ in the environment win
    compact_cpu_heap: bool = False
    #: multi-process launches: ZeRO-1, each process keeps 1/N of the AdamW moments (full fine-tuning:
    #: 16 -> 8 + 8/N bytes per parameter); no effect in one process
    shard_optimizer: bool = False
    #: multi-process launches, full fine-tuning (lora=false): ZeRO-3 with torch FSDP2, the decoder layers'
    #: weights, gradients and AdamW state split across the processes; no effect in one process
    shard_params: bool = False


def onpolicy_config(section: OnPolicySection, *, model_autocast: bool | None = None, **extra: Any):
    """The learner's :class:`agentsd.learn.onpolicy.OnPolicyConfig` from the config file's section: every
    field the two share is copied (so a new learner option needs no plumbing here), ``extra`` sets the
    rest (``algo``, ``seed``). The learner's ``bf16_autocast`` is the section's, or where that is unset
    the model's ``autocast`` (``model_autocast``; None leaves the choice to the hardware)."""
    from agentsd.learn.onpolicy import OnPolicyConfig

    shared = OnPolicySection.model_fields.keys() & OnPolicyConfig.model_fields.keys()
    fields = {k: getattr(section, k) for k in shared}
    if fields["bf16_autocast"] is None:
        fields["bf16_autocast"] = model_autocast
    return OnPolicyConfig(**fields, **extra)


class SkillsSection(Strict):
    """Retrieval from the run's skill memory for skill_sd (teacher prompt) and skill_prompt (student prompt)."""

    k: int = Field(3, ge=1)
    budget_tokens: int | None = Field(200, ge=1)


#: algorithms run by agentsd.learn.onpolicy
ONPOLICY_ALGOS = ("sft", "grpo", "opd", "skill_sd", "skill_prompt")


class LearningConfig(Strict):
    #: none: collect only; rft: fine-tune (agentsd.learn.sft) on this iteration's successful train
    #: episodes; sft, grpo, opd, skill_sd, skill_prompt: one on-policy learner step per iteration
    #: (agentsd.learn.onpolicy; settings in ``onpolicy``).
    algo: Literal["none", "rft", "sft", "grpo", "opd", "skill_sd", "skill_prompt"] = "rft"
    iterations: int = Field(2, ge=0)
    #: rft's learning rate (the on-policy algorithms use ``onpolicy.lr``)
    lr: float = Field(5e-4, gt=0)
    warmstart: WarmstartConfig = Field(default_factory=WarmstartConfig)
    onpolicy: OnPolicySection = Field(default_factory=OnPolicySection)
    skills: SkillsSection = Field(default_factory=SkillsSection)


class EvalConfig(Strict):
    episodes: int = Field(32, ge=1)
    sampling: Sampling = Field(default_factory=lambda: Sampling(max_new_tokens=24, temperature=0.0))
    #: episodes run at once in an evaluation; null = ``rollout.batch``
    batch: int | None = Field(None, ge=1)
    #: also evaluate after every ``every``-th iteration (phase ``eval_iter_<k>``): a learning curve.
    #: 0: only before the first and after the last iteration.
    every: int = Field(0, ge=0)
    #: score this many held-out oracle states (test tasks) with the learnability meter at every
    #: evaluation (P(oracle action), top-1, top share; ``agentsd.learnability``); 0 = off. Needs an env
    #: with finite action candidates and an oracle.
    meter: int = Field(0, ge=0)


class BackendConfig(Strict):
    """Where rollouts run: in the driver process (``local``) or on Ray actors (``ray``, needs
    ``pip install 'agentsd[ray]'``; see docs/scaling.md)."""

    kind: Literal["local", "ray"] = "local"
    workers: int = Field(2, ge=1)
    #: None: a local Ray; "auto" or "ray://host:10001": join a cluster.
    address: str | None = None
    #: CPUs of a local Ray (None: all).
    num_cpus: int | None = Field(None, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    #: with kind=local: run the environments on this many Ray actors, apart from generation (the policy
    #: stays in the driver; e.g. apps code sandboxes in their own processes or nodes). 0 = in-process.
    env_workers: int = Field(0, ge=0)


class TrackingConfig(Strict):
    """Experiment tracking of every phase record (see agentsd.tracking). W&B and MLflow are optional
    installs, imported only when enabled."""

    #: TensorBoard event files in ``<run dir>/tb`` (``tensorboard --logdir runs``).
    tensorboard: bool = True
    wandb: bool = False
    mlflow: bool = False
    #: W&B project / MLflow experiment, W&B entity, MLflow server, run name (default: the run's name).
    project: str = "agentsd"
    entity: str | None = None
    mlflow_tracking_uri: str | None = None
    run_name: str | None = None


class RunConfig(Strict):
    name: str = "sokoban"
    seed: int = 0
    output_dir: str = "runs"
    #: How the run evolves after warm-start: ``distill`` (weights: learning.algo on plain rollouts),
    #: ``memory`` (no weight update: the planner loop on train seeds grows the memory, evaluation runs the
    #: planner on test seeds with memory frozen), ``both`` (learning.algo trains the student on plain
    #: rollouts; evaluation runs that student inside the planner).
    mode: Literal["distill", "memory", "both"] = "distill"
    env: EnvConfig = Field(default_factory=EnvConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# --- loading -------------------------------------------------------------------------------------


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every YAML shipped in agentsd.configs (run configs at the top level)."""
    root = resources.files("agentsd.configs")
    out = {}
    for item in root.iterdir():
        if item.name.endswith((".yaml", ".yml")):
            out[item.name.rsplit(".", 1)[0]] = Path(str(item))
    return out


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_fields


def _nearest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f" (valid: {', '.join(sorted(options))})"


def _check_keys(data: Any, model: type[BaseModel], prefix: str = "") -> None:
    """Walk raw data against the model tree so an unknown key is reported with its full dotted path."""
    if not isinstance(data, dict):
        return
    fields = _fields(model)
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix + str(key)!r}{_nearest(str(key), list(fields))}")
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(value, ann, prefix + key + ".")


def _parse_value(text: str) -> Any:
    # YAML gives ints, floats, bools, null, lists and dicts from one string: rollout.batch=16, x=[1,2]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place; also returned)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        path, _, raw = item.partition("=")
        keys = path.strip().split(".")
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = _parse_value(raw)
    return data


def _format_validation(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"bad config value for {loc!r}: {e['msg']}"


def guard_off(cfg: RunConfig, *, world: int = 1) -> str | None:
    """Why ``memory.guard`` does not act in this run (None: it does, or it is not asked for). It is a
    no-op, not an error, where there is nothing to mask with or to mask, so that the shipped Sokoban
    config (guard on) still runs with ``memory.enabled=false``, ``rollout.actor=generate`` or a launch."""
    if not cfg.memory.guard:
        return None
    if cfg.mode != "distill":
        return f"mode={cfg.mode}: the planner vetoes with the guardrails itself"
    if cfg.rollout.actor != "candidates":
        return "rollout.actor=generate: no candidates to mask"
    if not cfg.memory.enabled:
        return "memory.enabled=false: no guardrails to mask with"
    if world > 1:
        return f"only the main process of a data-parallel launch ({world} processes) holds the memory"
    return None


def check_combinations(cfg: RunConfig, *, world: int = 1) -> None:
    """Settings that are valid alone but not together; raises ConfigError. ``world``: processes of a
    data-parallel launch (torchrun / accelerate launch)."""
    algo = cfg.learning.algo
    if cfg.backend.env_workers and cfg.backend.kind == "ray":
        raise ConfigError("backend.env_workers is for kind=local (Ray rollout workers already own their environments)")
    if world > 1 and (cfg.backend.kind == "ray" or cfg.backend.env_workers or cfg.mode != "distill"
                      or algo == "skill_prompt"):
        raise ConfigError(
            f"a data-parallel launch ({world} processes) runs mode=distill with plain rollouts in every process: "
            "backend.kind=ray, the planner (mode=memory|both) and learning.algo=skill_prompt (memory read "
            "during rollouts, which only the main process holds) are not supported there"
        )
    op = cfg.learning.onpolicy
    sharding = [k for k in ("shard_params", "shard_optimizer") if getattr(op, k)]
    if sharding and algo not in ONPOLICY_ALGOS:
        raise ConfigError(
            f"learning.onpolicy.{sharding[0]} shards the on-policy learner (learning.algo="
            f"{'|'.join(ONPOLICY_ALGOS)}); learning.algo={algo} fine-tunes on the main process only"
        )
    if op.shard_params and (op.lora or op.shard_optimizer):
        raise ConfigError(
            "learning.onpolicy.shard_params shards full fine-tuning's weights: set learning.onpolicy.lora=false "
            "and leave learning.onpolicy.shard_optimizer=false (the sharded parameters' AdamW state is sharded "
            "with them)"
        )
    # rollout.actor and memory.guard shape plain rollouts; the planner (mode=memory|both) proposes its
    # own actions and vetoes them with the same guardrails, so there they are not used.
    plain = cfg.mode == "distill"
    if plain and cfg.rollout.actor == "candidates" and cfg.backend.kind == "ray":
        raise ConfigError(
            "rollout.actor=candidates scores candidates with the run's local model: it needs backend.kind=local "
            "(set rollout.actor=generate for Ray rollout workers)"
        )
    if cfg.mode in ("memory", "both") and not cfg.memory.enabled:
        raise ConfigError(f"mode={cfg.mode} runs the planner over the run's memory: set memory.enabled=true")
    if cfg.mode == "memory" and algo not in ("none", "rft"):
        raise ConfigError(
            f"mode=memory updates no weights after warm-start, so learning.algo={algo} would not run: "
            "use mode=both to train and plan, or learning.algo=none"
        )
    if cfg.backend.kind == "ray" and cfg.mode != "distill" and cfg.memory.summarizer == "llm":
        raise ConfigError(
            "backend.kind=ray runs the planner on the workers, whose reflect node would need the driver's LLM "
            "summarizer: use memory.summarizer=diagnostic with the planner on Ray"
        )
    if algo in ("skill_sd", "skill_prompt") and not cfg.memory.enabled:
        raise ConfigError(f"learning.algo={algo} retrieves skills from the run's memory: set memory.enabled=true")
    if algo in ("grpo", "opd", "skill_sd", "skill_prompt"):
        s = cfg.rollout.sampling
        if s.temperature != 1.0 or s.top_k != 0 or s.top_p != 1.0:
            raise ConfigError(
                f"learning.algo={algo} needs rollout.sampling.temperature=1 with top_k=0 and top_p=1 (got "
                f"temperature={s.temperature}, top_k={s.top_k}, top_p={s.top_p}): the recorded behaviour "
                "log-probs must be those of the plain distribution the learner scores"
            )
        if s.regex is not None or s.json_schema is not None:
            raise ConfigError(f"learning.algo={algo} cannot learn from constrained rollouts (rollout.sampling.regex/json_schema)")
    if cfg.learning.onpolicy.teacher_model is not None and algo != "opd":
        raise ConfigError(f"learning.onpolicy.teacher_model is opd's fixed teacher; learning.algo={algo} does not use it")
    if cfg.model.name.startswith(("openai:", "vllm:")) and algo in ONPOLICY_ALGOS:
        raise ConfigError(f"learning.algo={algo} trains the model in-process: model.name must be a local model (hf)")


def build_config(data: dict[str, Any]) -> RunConfig:
    _check_keys(data, RunConfig)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err)) from None
    check_combinations(cfg)
    return cfg


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {str(path)!r}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping at the top level")
    return data


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a shipped config by name (``sokoban``) or a YAML path, then apply dotted overrides."""
    data: dict[str, Any] = {}
    if name_or_path:
        shipped = shipped_configs()
        if name_or_path in shipped:
            data = read_yaml(shipped[name_or_path])
        elif Path(name_or_path).exists():
            data = read_yaml(name_or_path)
        else:
            raise ConfigError(
                f"no config {name_or_path!r}: not a shipped config{_nearest(name_or_path, list(shipped))} "
                "and not a file"
            )
    apply_overrides(data, list(overrides or []))
    return build_config(data)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
