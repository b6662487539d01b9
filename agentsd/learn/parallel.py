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
``MULTI_CPU`` and ``MULTI_GPU`` (DDP) types. FSDP and DeepSpeed shard parameters across processes,
which the teacher's weight swap and the in-process rollouts do not support: they are refused with a
clear error rather than run wrong. The optimizer state can be sharded (ZeRO stage 1,
``OnPolicyConfig.shard_optimizer``; see :func:`agentsd.learn.onpolicy.make_optimizer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: accelerate distributed types the learner supports (DDP semantics, full replicas).
SUPPORTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU")


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
                f"accelerate distributed_type {kind!r} is not supported by the agentsd learner: use DDP "
                f"(distributed_type MULTI_GPU or MULTI_CPU); FSDP/DeepSpeed shard the parameters, which the "
                f"in-process rollouts and the teacher's weight swap need whole. To cut optimizer memory, set "
                f"learning.onpolicy.shard_optimizer=true (ZeRO-1: AdamW state sharded across the processes)"
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
        flattened into one buffer per dtype and device: one all-reduce each."""
        import torch
        import torch.distributed as dist

        groups: dict[tuple[Any, Any], list[Any]] = {}
        for p in params:
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
