"""Entry builders shared by the memory tests."""


def guardrail(text="never push a box into a corner", ft="deadlock_corner", evidence=("t1",), **kw):
    from agentsd.memory import Guardrail

    base = dict(
        env="sokoban", triggers=["a box stands next to a wall"], summary=text, failure_type=ft,
        root_cause="the box cannot leave a corner", risk_pattern="pushing a box onto a dead square",
        forbidden="pushing a box into a non-goal corner", evidence=list(evidence),
    )
    base.update(kw)
    return Guardrail(**base)


def skill(summary="push the box right onto the target", steps=("Right", "Right"), evidence=("t9",), **kw):
    from agentsd.memory import Skill

    base = dict(
        env="sokoban", triggers=["one box left of its target"], summary=summary,
        golden_workflow=list(steps), evidence=list(evidence),
    )
    base.update(kw)
    return Skill(**base)
