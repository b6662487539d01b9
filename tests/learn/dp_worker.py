"""One process of tests/learn/test_parallel.py's data-parallel learner check (run under torchrun).

argv: model_dir samples.pt out.pt. Every process takes one learner step on the same samples with
``dp``; rank 0 saves the parameter update and the stats. With ``cfg.shard_optimizer`` the step is taken
by the sharded AdamW (ZeRO-1) and rank 0 also saves each rank's share of the optimizer state and the
consolidated state dict; every rank checks that loading that dict into a fresh sharded optimizer gives
back its own share. With ``cfg.shard_params`` the decoder layers are sharded (FSDP2) before the step
(plain SGD, as without sharding), and the worker also checks the checkpoint round trips (whole weights,
the optimizer and teacher state back into fresh shards) and generation of different lengths per rank
with the layers gathered."""

import copy
import sys

import torch

from agentsd.learn.onpolicy import (
    OnPolicyConfig,
    learner_step,
    load_optimizer_state,
    make_optimizer,
    make_teacher,
    model_state_dict,
    optimizer_state_dict,
    shard_model,
)
from agentsd.learn.parallel import DataParallel, is_sharded, whole_weights


def _whole(t):
    return (t.full_tensor() if is_sharded(t) else t).detach()


def sharded_checks(model, tokenizer, cfg, dp, teacher, opt, out) -> None:
    """shard_params: what each rank holds, and the checkpoint and rollout paths of a sharded model."""
    from transformers import AutoModelForCausalLM

    params = dict(model.named_parameters())
    total = sum(_whole(p).numel() for p in params.values())
    local = sum(p.to_local().numel() if is_sharded(p) else p.numel() for p in params.values())
    out["param_numel"] = dp.gather([local])
    out["total_numel"] = total
    out["sharded_names"] = sorted(n for n, p in params.items() if is_sharded(p))
    # whole weights (a collective) equal every rank's view of them
    full = dp.broadcast(model_state_dict(model, dp))
    assert all(torch.equal(full[n], _whole(p).cpu()) for n, p in params.items()), "model_state_dict differs"
    # optimizer and teacher state: saved whole, loaded into a fresh sharded model's shards
    osd = dp.broadcast(optimizer_state_dict(opt, dp, model))
    tsd = teacher.state_dict() if teacher is not None else None
    fresh = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
    fresh.load_state_dict(full)
    assert shard_model(fresh, cfg, dp)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=1.0, momentum=0.9)
    opt_m = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)  # a state to round-trip
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt_m.step()  # momentum buffers = ones; the weights move (no longer compared)
    msd = dp.broadcast(optimizer_state_dict(opt_m, dp, model))
    for p in fresh.parameters():
        p.grad = torch.zeros_like(p)
    opt2.step()  # creates the state to load into
    load_optimizer_state(opt2, msd, fresh)
    for p in fresh.parameters():
        buf = opt2.state[p]["momentum_buffer"]
        assert torch.equal(_whole(buf), torch.ones_like(_whole(buf))), "optimizer state lost on reload"
    out["optimizer_keys"] = sorted(osd["state"]) if osd.get("state") else []
    # an id-keyed state (a run saved without shard_params) converts into the sharded model's optimizer
    plain = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
    plain_opt = torch.optim.SGD(plain.parameters(), lr=1.0, momentum=0.9)
    for i, p in enumerate(plain.parameters()):
        p.grad = torch.full_like(p, float(i))
    plain_opt.step()
    fresh.zero_grad(set_to_none=True)  # as in a resumed run (torch initialises the state it loads into)
    opt3 = torch.optim.SGD(fresh.parameters(), lr=1.0, momentum=0.9)
    load_optimizer_state(opt3, plain_opt.state_dict(), fresh)
    for i, p in enumerate(fresh.parameters()):  # same parameter order as the plain model's
        assert torch.equal(_whole(opt3.state[p]["momentum_buffer"]), torch.full(p.shape, float(i))), i
    if tsd is not None:
        t2 = make_teacher(fresh, cfg)
        t2.load_state_dict(tsd)
        for n, t in t2.state.items():
            assert torch.equal(_whole(t).cpu(), tsd["state"][n]), f"teacher weight {n} lost on reload"
    # rollouts: each rank generates a different number of tokens with the layers gathered
    with whole_weights(model), torch.no_grad():
        ids = torch.tensor([[1, 2, 3]])
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2 + 5 * dp.rank,
                             min_new_tokens=2 + 5 * dp.rank, do_sample=False, pad_token_id=0)
    assert gen.shape[1] == 3 + 2 + 5 * dp.rank
    assert all(is_sharded(p) for n, p in model.named_parameters() if n in out["sharded_names"])


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, samples_path, out_path = sys.argv[1:4]
    dp = DataParallel.from_launch()
    assert dp is not None and dp.world == 2, "launch with torchrun --nproc_per_node 2"
    job = torch.load(samples_path, weights_only=False)
    cfg = OnPolicyConfig(**job["cfg"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert shard_model(model, cfg, dp) == cfg.shard_params
    teacher = make_teacher(model, cfg)  # the samples carry the teacher's prompts already
    opt = make_optimizer(model, cfg, dp) if cfg.shard_optimizer else torch.optim.SGD(model.parameters(), lr=1.0)
    stats = learner_step(model, tokenizer, job["samples"], cfg, teacher, opt, dp=dp)
    update = {n: _whole(p) - before[n] for n, p in model.named_parameters()}
    out = {"update": update, "stats": stats}
    if teacher is not None and teacher.state is not None:
        out["teacher"] = {n: _whole(t) for n, t in teacher.state.items()}
    if cfg.shard_params:
        sharded_checks(model, tokenizer, cfg, dp, teacher, opt, out)
    if cfg.shard_optimizer:
        def share(o):  # this rank's optimizer state: (param shape, exp_avg) of the parameters it owns
            return [(tuple(p.shape), s["exp_avg"].clone()) for g in o.optim.param_groups for p in g["params"]
                    for s in [o.optim.state[p]] if s]

        mine = share(opt)
        out["state_numel"] = dp.gather([sum(t.numel() for _, t in mine)])
        full = optimizer_state_dict(opt, dp)
        out["full_state"] = full
        # the same step with a whole AdamW on every process (same gradient sums): what sharding must equal
        whole_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        whole_cfg = cfg.model_copy(update={"shard_optimizer": False})
        whole = make_optimizer(whole_model, whole_cfg, dp)
        learner_step(whole_model, tokenizer, job["samples"], whole_cfg, make_teacher(whole_model, whole_cfg), whole, dp=dp)
        out["whole_update"] = {n: p.detach() - before[n] for n, p in whole_model.named_parameters()}
        out["whole_state"] = whole.state_dict()
        again = make_optimizer(model, cfg, dp)
        again.load_state_dict(copy.deepcopy(dp.broadcast(full)))  # it Nones other ranks' entries in place
        assert [s for s, _ in share(again)] == [s for s, _ in mine]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(share(again), mine, strict=True)), "reload lost state"
    if dp.is_main:
        torch.save(out, out_path)
    # the replicas must stay identical: every rank's parameter sum equals the largest one
    mine = float(sum(float(_whole(p).double().sum()) for p in model.parameters()))
    checksum = dp.max([mine])[0]
    assert mine == checksum, f"rank {dp.rank} drifted: {mine} vs {checksum}"
    dp.barrier()


if __name__ == "__main__":
    main()
