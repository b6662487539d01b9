"""One process of tests/learn/test_parallel.py's data-parallel learner check (run under torchrun).

argv: model_dir samples.pt out.pt. Every process takes one learner step on the same samples with
``dp``; rank 0 saves the parameter update and the stats. With ``cfg.shard_optimizer`` the step is taken
by the sharded AdamW (ZeRO-1) and rank 0 also saves each rank's share of the optimizer state and the
consolidated state dict; every rank checks that loading that dict into a fresh sharded optimizer gives
back its own share."""

import copy
import sys

import torch

from agentsd.learn.onpolicy import (
    OnPolicyConfig,
    learner_step,
    make_optimizer,
    make_teacher,
    optimizer_state_dict,
)
from agentsd.learn.parallel import DataParallel


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, samples_path, out_path = sys.argv[1:4]
    dp = DataParallel.from_launch()
    assert dp is not None and dp.world == 2, "launch with torchrun --nproc_per_node 2"
    job = torch.load(samples_path, weights_only=False)
    cfg = OnPolicyConfig(**job["cfg"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    teacher = make_teacher(model, cfg)  # the samples carry the teacher's prompts already
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, cfg, dp) if cfg.shard_optimizer else torch.optim.SGD(model.parameters(), lr=1.0)
    stats = learner_step(model, tokenizer, job["samples"], cfg, teacher, opt, dp=dp)
    update = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    out = {"update": update, "stats": stats}
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
    checksum = dp.max([float(sum(float(p.double().sum()) for p in model.parameters()))])[0]
    mine = float(sum(float(p.double().sum()) for p in model.parameters()))
    assert mine == checksum, f"rank {dp.rank} drifted: {mine} vs {checksum}"
    dp.barrier()


if __name__ == "__main__":
    main()
