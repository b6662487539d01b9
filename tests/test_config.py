import pytest

from agentsd.config import ConfigError, RunConfig, build_config, load_config, shipped_configs


def test_every_shipped_config_loads():
    shipped = shipped_configs()
    assert "sokoban" in shipped
    for name in shipped:
        cfg = load_config(name)
        assert isinstance(cfg, RunConfig)


def test_dotted_overrides_are_typed():
    cfg = load_config("sokoban", ["rollout.batch=16", "env.kwargs.difficulty=medium", "eval.sampling.temperature=0.5"])
    assert cfg.rollout.batch == 16
    assert cfg.env.kwargs["difficulty"] == "medium"
    assert cfg.eval.sampling.temperature == 0.5


@pytest.mark.parametrize(
    ("override", "named", "hint"),
    [
        ("rollout.bach=16", "rollout.bach", "batch"),
        ("evaal.episodes=3", "evaal", "eval"),
        ("rollout.sampling.temprature=1", "rollout.sampling.temprature", "temperature"),
        ("learning.warmstart.epoch=1", "learning.warmstart.epoch", "epochs"),
    ],
)
def test_unknown_key_names_key_and_nearest(override, named, hint):
    with pytest.raises(ConfigError) as e:
        load_config("sokoban", [override])
    msg = str(e.value)
    assert repr(named) in msg and repr(hint) in msg


def test_bad_value_names_key():
    with pytest.raises(ConfigError, match="rollout.batch"):
        load_config("sokoban", ["rollout.batch=zero"])
    with pytest.raises(ConfigError, match="learning.algo"):
        build_config({"learning": {"algo": "magic"}})


def test_override_syntax_and_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config("sokoban", ["rollout.batch"])
    with pytest.raises(ConfigError, match="no config"):
        load_config("sokobn")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(top))


def test_onpolicy_section_reaches_the_learner_config():
    """Every learner option of the config file's section is copied into OnPolicyConfig with the same
    default; only the run-level options stay behind."""
    from agentsd.config import OnPolicySection, load_config, onpolicy_config
    from agentsd.learn.onpolicy import OnPolicyConfig

    sec, lrn = OnPolicySection.model_fields, OnPolicyConfig.model_fields
    assert set(sec) - set(lrn) == {"steps_per_iteration", "teacher_model"}  # used by the run, not the step
    for k in set(sec) & set(lrn):
        assert sec[k].default == lrn[k].default, k
    cfg = load_config("sokoban", ["learning.onpolicy.lam=0.01", "learning.onpolicy.teacher_mode=ema",
                                  "learning.onpolicy.logprob_chunk=64"])
    oc = onpolicy_config(cfg.learning.onpolicy, algo="grpo", seed=3)
    assert (oc.lam, oc.teacher_mode, oc.logprob_chunk, oc.algo, oc.seed) == (0.01, "ema", 64, "grpo", 3)
    # the learner's bf16 autocast: its own setting, else the model's, else (None) the hardware's choice
    assert oc.bf16_autocast is None and oc.tis_cap is None
    assert onpolicy_config(cfg.learning.onpolicy, model_autocast=False).bf16_autocast is False
    forced = load_config("sokoban", ["learning.onpolicy.bf16_autocast=true", "learning.onpolicy.tis_cap=2"])
    oc = onpolicy_config(forced.learning.onpolicy, model_autocast=False)
    assert oc.bf16_autocast is True and oc.tis_cap == 2.0
