"""One process of tests/learn/test_parallel.py's data-parallel learner check (run under torchrun).

argv: model_dir samples.pt out.pt. Every process takes one learner step on the same samples with
``dp``; rank 0 saves the parameter update and the stats."""

import sys

import torch

from agentsd.learn.onpolicy import OnPolicyConfig, learner_step, make_teacher
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
    stats = learner_step(model, tokenizer, job["samples"], cfg, teacher,
                         torch.optim.SGD(model.parameters(), lr=1.0), dp=dp)
    update = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    if dp.is_main:
        torch.save({"update": update, "stats": stats}, out_path)
    # the replicas must stay identical: every rank's parameter sum equals the largest one
    checksum = dp.max([float(sum(float(p.double().sum()) for p in model.parameters()))])[0]
    mine = float(sum(float(p.double().sum()) for p in model.parameters()))
    assert mine == checksum, f"rank {dp.rank} drifted: {mine} vs {checksum}"
    dp.barrier()


if __name__ == "__main__":
    main()
