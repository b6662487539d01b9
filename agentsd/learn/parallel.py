"""Data parallelism for the run recipe: N processes (GPUs, or CPU processes), one model replica each.

Launch ``agentsd run`` under accelerate (``accelerate launch --config_file cfg.yaml -m agentsd run ...``)
or torchrun and every process runs the same recipe:

- rollouts: each process plays a contiguous share of the phase's tasks with its own replica and a
  rank-offset sampling seed; the trajectories are gathered on every process in task order;
- on-policy learner: the main process builds the sample batch (it owns the memory the teacher's skills
  come from) and broadcasts it; each process scores and back-propagates its share of the turns, each
  share's loss normalised by the *global* token count; the gradients are summed across processes
  (one all-reduce per parameter group after the backward passes) and every process takes the same
  optimizer step, so the replicas stay identical — the DDP invariant, without wrapping the model
  (the learner calls into the model's body and LM head separately, which a DDP wrapper would bypass);
- warm-start and ``rft`` fine-tuning, memory, checkpoints, metrics and logs: the main process only;
  after SFT its weights are broadcast to the others.

The result equals a single-process learner step on the whole batch up to float summation order
(tests/learn/test_parallel.py checks this with two gloo processes).

Supported process groups: one machine or many, CPU (gloo) or GPU (NCCL) — accelerate's ``NO``,
``MULTI_CPU`` and ``MULTI_GPU`` (DDP) types. Memory is cut within that launch by two options of the
learner's own rather than accelerate's FSDP/DeepSpeed wrappers (the learner calls into the model's body
and LM head separately and swaps teacher weights into the student, which those wrappers do not allow);
an accelerate FSDP or DeepSpeed config turns the matching option on (:func:`launcher_sharding`):

- ``OnPolicyConfig.shard_optimizer``: the AdamW state sharded (ZeRO stage 1,
  :func:`agentsd.learn.onpolicy.make_optimizer`);
- ``OnPolicyConfig.shard_params``: the decoder layers' weights, gradients and AdamW state sharded
  (ZeRO stage 3 by torch FSDP2 ``fully_shard`` on each layer, :func:`shard_layers`): a layer's whole
  weights exist only during its forward and backward passes. The embeddings, final norm and LM head stay
  replicated (their gradients summed as above). Rollouts run with every layer gathered
  (:func:`whole_weights`); every process runs the same number of micro-batches (padded with
  zero-weight ones), since each layer's forward is a collective.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: accelerate distributed types the learner supports: DDP semantics, and FSDP / DeepSpeed configs, whose
#: sharding maps onto the learner's own options (:func:`launcher_sharding`).
SUPPORTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "FSDP", "DEEPSPEED")


def launcher_sharding(environ: Any = None) -> str | None:
    """The sharding an ``accelerate launch`` config asked for, as the learner's option that provides it:
    ``"params"`` (``shard_params``, ZeRO-3) for FSDP (any strategy but NO_SHARD) and DeepSpeed ZeRO stage 3,
    ``"optimizer"`` (``shard_optimizer``, ZeRO-1) for DeepSpeed stages 1 and 2 (stage 2's gradient
    sharding is not done: gradients stay whole), None otherwise. Read from the variables accelerate
    sets for its workers; ValueError for a DeepSpeed launch whose stage is not among them."""
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
        return None if strategy in ("NO_SHARD", "3") else "params"
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        if stage not in ("0", "1", "2", "3"):
            raise ValueError("a DeepSpeed launch without zero_stage in the accelerate config: set zero_stage there, "
                             "or launch as MULTI_GPU with learning.onpolicy.shard_params / shard_optimizer")
        return {"0": None, "1": "optimizer", "2": "optimizer", "3": "params"}[stage]
    return None


def launched_world_size() -> int:
    """Processes of the launch this process belongs to (``WORLD_SIZE`` from accelerate/torchrun), 1 alone."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class DataParallel:
    """This process's place in the process group and the collectives the recipe needs.

    Build it with :meth:`from_launch` (accelerate initialises the process group from the launcher's
    environment) or directly on an initialised ``torch.distributed`` group (tests)."""

    def __init__(self, rank: int, world: int, device: Any = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.rank, self.world, self.device = rank, world, device

    @classmethod
    def from_launch(cls) -> DataParallel | None:
        """The process group of an ``accelerate launch``/``torchrun`` launch; None for a single process."""
        if launched_world_size() <= 1:
            return None
        import torch
        from accelerate import PartialState

        # initialises torch.distributed from the launcher's environment: NCCL on GPUs; without CUDA
        # accelerate must be told it is on CPU (gloo), else it leaves a group it reports as 1 process
        state = PartialState(cpu=not torch.cuda.is_available())
        kind = str(getattr(state.distributed_type, "value", state.distributed_type))
        if kind not in SUPPORTED_TYPES:
            raise ValueError(
                f"accelerate distributed_type {kind!r} is not supported by the agentsd learner: use "
                f"MULTI_GPU or MULTI_CPU (or an FSDP / DeepSpeed config, mapped onto "
                f"learning.onpolicy.shard_params=true, ZeRO-3 with FSDP2 on the decoder layers, or "
                f"learning.onpolicy.shard_optimizer=true, ZeRO-1)"
            )
        return cls(state.process_index, state.num_processes, state.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- work division ------------------------------------------------------------------------------

    def bounds(self, n: int) -> tuple[int, int]:
        """This process's contiguous share ``[lo, hi)`` of ``n`` items (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def share(self, items: Sequence[T]) -> list[T]:
        lo, hi = self.bounds(len(items))
        return list(items[lo:hi])

    def strided(self, items: Sequence[T]) -> list[T]:
        """Every ``world``-th item from this rank's index: balanced shares of a length-sorted list."""
        return list(items[self.rank :: self.world])

    # --- collectives ------------------------------------------------------------------------------------

    def gather(self, mine: Sequence[T]) -> list[T]:
        """Every process's ``mine`` concatenated in rank order, on every process."""
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, list(mine))
        return [x for p in parts for x in p]

    def broadcast(self, obj: T) -> T:
        """The main process's ``obj`` on every process (picklable objects)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, "sum")

    def max(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, "max")

    def _reduce(self, values: Sequence[float], op: str) -> list[float]:
        import torch
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t.tolist()

    def sum_grads(self, params: Iterable[Any]) -> None:
        """Sum the gradients of ``params`` across processes in place (a missing gradient counts as 0),
        flattened into one buffer per dtype and device: one all-reduce each. Sharded parameters
        (:func:`shard_layers`) are skipped: FSDP reduce-scatters their gradients in the backward pass."""
        import torch
        import torch.distributed as dist

        groups: dict[tuple[Any, Any], list[Any]] = {}
        for p in params:
            if is_sharded(p):
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
        for (_dtype, _device), ps in sorted(groups.items(), key=lambda kv: str(kv[0])):
            flat = torch.cat([p.grad.reshape(-1) for p in ps])
            comm = flat.to(self._comm_device()) if flat.device != self._comm_device() else flat
            dist.all_reduce(comm, op=dist.ReduceOp.SUM)
            flat = comm.to(flat.device)
            off = 0
            for p in ps:
                n = p.grad.numel()
                p.grad.copy_(flat[off : off + n].view_as(p.grad))
                off += n

    def broadcast_params(self, model: Any) -> None:
        """Overwrite every process's parameters and buffers with the main process's (after SFT there)."""
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                comm = t.data.to(self._comm_device())
                dist.broadcast(comm, src=0)
                if comm is not t.data:
                    t.data.copy_(comm)

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def _comm_device(self) -> Any:
        """gloo reduces CPU tensors, NCCL CUDA ones."""
        import torch
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# --- parameter sharding (FSDP2 on the decoder layers) -----------------------------------------------------


def is_sharded(t: Any) -> bool:
    """Whether ``t`` is a DTensor (a parameter :func:`shard_layers` sharded, or its gradient or state)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without distributed support
        return False
    return isinstance(t, DTensor)


def has_sharded_params(model: Any) -> bool:
    """Whether ``model`` (None: no) has parameters :func:`shard_layers` sharded."""
    return model is not None and any(is_sharded(p) for p in model.parameters())


def decoder_layers(model: Any) -> Any:
    """The ``ModuleList`` of a causal LM's decoder layers (``model.model.layers`` for Llama-style models,
    found through the body :func:`agentsd.policy.hf.split_lm_head` returns); ValueError without one."""
    import torch

    from agentsd.policy.hf import split_lm_head

    parts = split_lm_head(model)
    layers = getattr(parts[0], "layers", None) if parts is not None else None
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise ValueError(f"{type(model).__name__}: no decoder layer list to shard (shard_params needs a "
                         f"*ForCausalLM whose decoder has .layers)")
    return layers


def shard_layers(model: Any, dp: DataParallel) -> int:
    """Shard each decoder layer's parameters across the ``dp.world`` processes with FSDP2 ``fully_shard``
    (in place; returns the number of layers). Each process then holds 1/N of each layer's weights,
    gradients and (an optimizer built afterwards) AdamW moments; a layer's forward all-gathers its
    weights and frees them after (its backward gathers them again and reduce-scatters the gradients,
    summed, not averaged: the learner normalises by the global token count). Everything outside the
    layers stays a replica. Every process must run the layers the same number of times (collectives)."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (dp.world,))
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
        layer.set_gradient_divide_factor(1.0)  # sum the gradients
        layer.set_force_sum_reduction_for_comms(True)  # gloo has no pre-multiplied sum
    return len(layers)


def _fsdp_modules(model: Any) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextmanager
def whole_weights(model: Any) -> Iterator[Any]:
    """Every sharded layer of ``model`` gathered whole for the block, so each process can run the model
    on its own (rollouts of different lengths, generation). Entering is a collective (all-gathers); on
    exit the layers are sharded again. A model without sharded layers passes through."""
    mods = _fsdp_modules(model) if has_sharded_params(model) else []
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield model
    finally:
        for m in mods:
            m.reshard()
            m.set_reshard_after_forward(True, recurse=False)


def clip_sharded_grad_norm_(params: Sequence[Any], max_norm: float | None) -> float:
    """The global L2 norm of the gradients of ``params`` (sharded ones counted once over all their shards,
    replicated ones once), then, with ``max_norm``, every gradient scaled as ``clip_grad_norm_`` does.
    A collective when any parameter is sharded."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    local = [g.to_local() for g in grads if is_sharded(g)]
    whole = [g for g in grads if not is_sharded(g)]
    zero = torch.zeros((), dtype=torch.float32, device=(local or whole)[0].device if grads else "cpu")

    def sq_norm(g: Any) -> Any:
        return torch.linalg.vector_norm(g, dtype=torch.float32).square()

    sq = sum((sq_norm(g) for g in local), zero)
    if local:
        comm = sq.to("cpu") if dist.get_backend() != "nccl" else sq
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        sq = comm.to(sq.device)
    sq = sq + sum((sq_norm(g) for g in whole), zero)
    norm = float(sq.sqrt())
    scale = 1.0 if max_norm is None else min(1.0, max_norm / (norm + 1e-6))  # as clip_grad_norm_
    if scale < 1.0:
        for g in local + whole:
            g.mul_(scale)
    return norm


def merge_rollout_stats(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One phase's rollout statistics from each process's: counts and busy seconds summed, wall time the
    slowest process's, throughput over that wall time."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, Any] = {}
    for k in ("episodes", "turns", "tokens"):
        out[k] = sum(int(p.get(k, 0)) for p in parts)
    for k in ("act_seconds", "env_seconds"):
        out[k] = round(sum(float(p.get(k, 0.0)) for p in parts), 3)
    wall = max(float(p.get("wall_seconds", 0.0)) for p in parts)
    out["wall_seconds"] = round(wall, 3)
    out["tokens_per_s"] = round(out["tokens"] / wall, 1) if wall > 0 else 0.0
    out["mean_batch"] = round(sum(float(p.get("mean_batch", 0.0)) for p in parts) / len(parts), 2)
    out["processes"] = len(parts)
    return out
