import json

import pytest

from agentsd.envs import make, register
from agentsd.policy.base import Generation, Policy, Sampling
from agentsd.rollout import EnvFactory, OracleActor, PolicyActor, make_tasks, rollout
from agentsd.trajectory import read_jsonl

register("counter", "toyenv:CounterEnv")


class Scripted(Policy):
    """Answers from a fixed cycle of texts; records batch sizes. (Real HF generation is tested with
    the tiny model in test_rollout_hf.py.)"""

    name = "scripted"

    def __init__(self, texts):
        self.texts = texts
        self.calls = []

    def generate(self, batch, sampling=None):
        self.calls.append(len(batch))
        i = len(self.calls) - 1
        t = self.texts[i % len(self.texts)]
        return [Generation(text=t, token_ids=[1, 2], logprobs=[-0.5, -0.1]) for _ in batch]


def test_make_tasks_disjoint_and_grouped():
    cls = EnvFactory("counter").cls
    train = make_tasks(cls, "train", 10, group_size=3)
    test = make_tasks(cls, "test", 10)
    assert len(train) == 30 and {t.group for t in train} == {0, 1, 2}
    assert not {t.seed for t in train} & {t.seed for t in test}
    with pytest.raises(ValueError):
        make_tasks(cls, "test", 5000)


def test_oracle_rollout_solves_and_writes_jsonl(tmp_path):
    envs = EnvFactory("counter")
    tasks = make_tasks(envs.cls, "test", 7)
    out = tmp_path / "t.jsonl"
    trajs, stats = rollout(envs, OracleActor(), tasks, batch=3, out_path=out)
    assert [t.seed for t in trajs] == [t.seed for t in tasks]
    assert all(t.success for t in trajs)
    back = list(read_jsonl(out))
    assert sorted(b.id for b in back) == sorted(t.id for t in trajs)
    # the batch shrinks only at the tail: slots are refilled while tasks remain
    assert stats.batch_sizes[0] == 3 and max(stats.batch_sizes) == 3
    assert stats.episodes == 7


def test_policy_rollout_records_tokens_and_invalid_steps(tmp_path):
    envs = EnvFactory("counter", {"max_steps": 4})
    pol = Scripted(["garbage", "<answer>dec</answer>"])
    trajs, stats = rollout(envs, PolicyActor(pol, Sampling()), make_tasks(envs.cls, "train", 4), batch=4)
    t = trajs[0]
    assert len(t.turns) == 4 and t.turns[-1].truncated
    assert not t.turns[0].info["action_is_valid"] and t.turns[0].reward == -1.0
    assert t.turns[0].token_ids == [1, 2] and t.turns[0].logprobs == [-0.5, -0.1]
    assert pol.calls == [4, 4, 4, 4]
    # the prompt after an invalid answer says so
    assert "not a valid action" in t.turns[1].messages[-1]["content"]
    assert stats.tokens == 2 * 16


def test_history_window_and_max_turns():
    envs = EnvFactory("counter", {"max_steps": 50})
    pol = Scripted(["<answer>dec</answer>"])
    trajs, _ = rollout(envs, PolicyActor(pol, Sampling()), make_tasks(envs.cls, "train", 1), max_turns=5, history=2)
    t = trajs[0]
    assert len(t.turns) == 5 and t.turns[-1].truncated
    roles = [m["role"] for m in t.turns[4].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_partial_jsonl_is_readable(tmp_path):
    envs = EnvFactory("counter")
    out = tmp_path / "t.jsonl"
    rollout(envs, OracleActor(), make_tasks(envs.cls, "train", 3), out_path=out)
    with open(out, "a") as f:
        f.write('{"id": "half')  # a kill mid-write
    assert len(list(read_jsonl(out))) == 3
    lines = out.read_text().splitlines()
    assert all(json.loads(x) for x in lines[:3])


def test_check_env_on_toy_env():
    from gymnasium.utils.env_checker import check_env

    check_env(make("counter"), skip_render_check=True)
