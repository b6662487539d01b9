"""AGENTSD_BF16 (agentsd.hardware.bf16_forced): one machine can take the other machines' numerics path.
With it set, every ``auto`` choice follows it: the HF backend's weight dtype and autocast, the learners'
bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from agentsd.hardware import BF16_ENV, bf16_forced, bf16_is_fast


@pytest.mark.parametrize(("value", "want"), [("1", True), ("true", True), ("ON", True), ("0", False),
                                             ("false", False), ("off", False)])
def test_the_variable_forces_the_path(monkeypatch, value, want):
    monkeypatch.setenv(BF16_ENV, value)
    assert bf16_forced() is want and bf16_is_fast("cpu") is want


def test_unset_or_auto_asks_the_hardware(monkeypatch):
    monkeypatch.delenv(BF16_ENV, raising=False)
    native = bf16_is_fast("cpu")
    monkeypatch.setenv(BF16_ENV, "auto")
    assert bf16_forced() is None and bf16_is_fast("cpu") is native
    monkeypatch.setenv(BF16_ENV, "")
    assert bf16_forced() is None


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="AGENTSD_BF16='maybe'"):
        bf16_is_fast("cpu")


@pytest.mark.parametrize("forced", ["1", "0"])
def test_auto_choices_follow_it(monkeypatch, tiny_model_dir, forced):
    from agentsd.learn.sft import _use_bf16
    from agentsd.policy.hf import HFPolicy

    monkeypatch.setenv(BF16_ENV, forced)
    on = forced == "1"
    policy = HFPolicy(tiny_model_dir)  # dtype="auto", autocast=None
    assert policy.autocast is on
    assert next(policy.model.parameters()).dtype == (torch.bfloat16 if on else torch.float32)
    assert _use_bf16(None, torch.device("cpu")) is on
    assert _use_bf16(False, torch.device("cpu")) is False  # an explicit setting wins over the variable
