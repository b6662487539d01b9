"""The diagnostic summarizer on real Sokoban episodes, and guardrails that veto the same mistake."""

from agentsd.envs import make
from agentsd.memory import DiagnosticSummarizer, Guardrail, Skill, SkillMemory, verify
from agentsd.policy.base import Generation
from agentsd.rollout import EnvFactory, OracleActor, Task, rollout

# goal (1,1); the player right of it pushes the box Right into the non-goal corner (1,4): a deadlock
CORNER_RIGHT = "######\n#.@$ #\n#    #\n#    #\n######"
# mirrored mistake in another layout: pushing Left into the corner (1,1)
CORNER_LEFT = "######\n# $@.#\n#    #\n#    #\n######"


class Scripted:
    """Plays fixed answers (one list per task, in order)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers

    def act(self, prompts, envs):
        return [Generation(text=self.answers.pop(0)) for _ in prompts]


def _play(level, answers, seed=0, actor=None):
    envs = EnvFactory("sokoban", {"level": level})
    trajs, _ = rollout(envs, actor or Scripted(list(answers)), [Task(seed, "train")], batch=1, max_turns=len(answers) or 30)
    return trajs[0]


def test_deadlock_becomes_an_executable_guardrail_that_vetoes_the_same_move(tmp_path, embedder):
    traj = _play(CORNER_RIGHT, ["<answer>Right</answer>"])
    assert traj.turns[0].info["diagnosis"]["failure_type"] == "deadlock_corner"
    res = DiagnosticSummarizer().summarize([traj])
    (g,) = [e for e in res.entries if isinstance(e, Guardrail)]
    assert g.failure_type == "deadlock_corner" and g.scope == "step"
    assert g.risk_predicate is not None and g.risk_predicate.name == "push_into_dead_square"
    assert g.evidence == [traj.id] and "[" not in g.root_cause  # no coordinates in the text
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.add(res.entries)
        hit = mem.retrieve("Push the 1 box onto the 1 target.", k=1, kind="guardrail", env="sokoban")[0].entry
        env = make("sokoban", level=CORNER_RIGHT)
        env.reset(seed=0)
        before = env.render_xsb()
        assert hit.check(env, "<answer>Right</answer>")  # the same mistake is vetoed before it runs
        assert not hit.check(env, "<answer>Down</answer>")
        assert env.render_xsb() == before  # checking does not move anything
        assert mem.stats()["executable_guardrails"] == 1


def test_same_mistake_in_other_levels_is_one_entry_with_support(tmp_path, embedder):
    a = _play(CORNER_RIGHT, ["<answer>Right</answer>"])
    b = _play(CORNER_LEFT, ["<answer>Left</answer>"])
    c = _play(CORNER_RIGHT, ["<answer>Right</answer>"])
    entries = DiagnosticSummarizer().summarize([a, b, c]).entries
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        rep = mem.add(entries)
        assert len(rep.added) == 1 and len(rep.merged) == 2
        (g,) = mem.entries()
        assert g.support == 3 and set(g.evidence) == {a.id, b.id, c.id}


def test_success_becomes_a_verifiable_skill(tmp_path):
    traj = _play(CORNER_RIGHT, [], actor=OracleActor())
    assert traj.success
    res = DiagnosticSummarizer().summarize([traj])
    (s,) = [e for e in res.entries if isinstance(e, Skill)]
    assert s.verification is not None and s.verification.name == "solved"
    assert s.golden_workflow == ["Down", "Right x2", "Up", "Left x2"]
    assert "num_boxes = 1" in s.preconditions and s.triggers[0].startswith("Push the 1 box")
    env = make("sokoban", level=CORNER_RIGHT)
    env.reset(seed=0)
    assert verify(s, env) is False
    for m in ("Down", "Right", "Right", "Up", "Left", "Left"):
        env.step(f"<answer>{m}</answer>")
    assert verify(s, env) is True


def test_recovered_mistakes_and_format_errors(tmp_path):
    traj = _play(CORNER_RIGHT, ["I think up", "<answer>Up</answer>", "<answer>Down</answer>"])
    kinds = {e.failure_type: e for e in DiagnosticSummarizer().summarize([traj]).entries}
    assert set(kinds) == {"invalid_format", "wall_bump"}
    assert kinds["invalid_format"].risk_predicate.name == "invalid_format"
    env = make("sokoban", level=CORNER_RIGHT)
    env.reset(seed=0)
    assert kinds["invalid_format"].check(env, "no answer here")
    assert not kinds["invalid_format"].check(env, "<answer>Down</answer>")


def test_a_forged_success_flag_plants_no_skill():
    traj = _play(CORNER_RIGHT, ["<answer>Down</answer>"])
    traj.turns[-1].info["success"] = True  # the record claims success; the env does not reproduce it
    res = DiagnosticSummarizer().summarize([traj])
    assert not [e for e in res.entries if isinstance(e, Skill)]
    assert res.rejected and "replay" in res.rejected[0][1]


def test_unknown_env_gives_text_only_entries():
    traj = _play(CORNER_RIGHT, ["<answer>Right</answer>"])
    traj.env = "not-registered"
    (g,) = DiagnosticSummarizer().summarize([traj]).entries
    assert g.risk_predicate is None and g.failure_type == "deadlock_corner" and g.scope == "subgoal"


def test_summarizing_off_thread_gives_the_same_entries():
    from agentsd.memory import summarize_async

    traj = _play(CORNER_RIGHT, ["<answer>Up</answer>", "<answer>Right</answer>"])
    fut = summarize_async(DiagnosticSummarizer(), [traj])
    sync = DiagnosticSummarizer().summarize([traj])
    got = fut.result(timeout=60)
    assert [e.content_hash() for e in got.entries] == [e.content_hash() for e in sync.entries]


def test_different_wrong_words_give_one_format_guardrail(tmp_path, embedder):
    a = _play(CORNER_RIGHT, ["<answer>closed</answer>"])
    b = _play(CORNER_RIGHT, ["<answer>correct</answer>"])
    entries = DiagnosticSummarizer().summarize([a, b]).entries
    assert all("closed" not in e.root_cause and "correct" not in e.root_cause for e in entries)
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.add(entries)
        (g,) = mem.entries()
        assert g.failure_type == "invalid_format" and g.support == 2


def test_the_same_mistake_under_different_tasks_is_one_guardrail(tmp_path, embedder):
    envs = EnvFactory("craft", {"tier": "wood"})
    tasks = [Task(seed, "train") for seed in range(6)]
    trajs, _ = rollout(envs, Scripted(["<answer>dance</answer>"] * 6), tasks, batch=1, max_turns=1)
    assert len({t.meta["task"] for t in trajs}) >= 2  # several different tasks
    entries = DiagnosticSummarizer().summarize(trajs).entries
    with SkillMemory(tmp_path / "m", embedder=embedder) as mem:
        mem.add(entries)
        (g,) = mem.entries()
        assert g.failure_type == "invalid_format" and g.support == 6 and g.env == "craft"
