"""Shared fixtures. Tests never touch the network: the hub is forced offline before anything imports it."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Tests that load the real embedded model are marked ``@pytest.mark.integration`` (declared in
# pyproject.toml). They run by default; ``pytest -m "not integration"`` skips them.


@pytest.fixture(scope="session")
def embedded_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded SmolLM2 as a local safetensors dir, converted at most once per machine.

    Uses ``$AGENTSD_CACHE`` when set, else an existing ``~/.cache/agentsd`` cache, else pytest's own
    cache dir (``.pytest_cache``, or a temp dir without it), so repeated local runs skip the ~15 s GGUF conversion without the
    test suite writing into the home directory.
    """
    from agentsd.policy.embedded import cache_is_valid, default_cache_dir, gguf_path, resolve_model

    cache: Path | None = None
    home = default_cache_dir()
    if not os.environ.get("AGENTSD_CACHE") and not cache_is_valid(home / "smollm2-135m", gguf_path("smollm2-135m")):
        pytest_cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
        cache = Path(pytest_cache.mkdir("agentsd-models")) if pytest_cache else tmp_path_factory.mktemp("models")
    return resolve_model("smollm2-135m", cache_dir=cache)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: str) -> str:
    """A tiny random Llama with the real SmolLM2 tokenizer (loads in well under a second)."""
    from agentsd.policy.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), vocab_source=embedded_model_dir)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir: str):
    """HFPolicy on the tiny model in fp32 without autocast, so numeric comparisons can be tight."""
    from agentsd.policy.hf import HFPolicy

    return HFPolicy(tiny_model_dir, dtype="float32", autocast=False, name="tiny")


@pytest.fixture(scope="session")
def embedder():
    """One real embedder (all-MiniLM-L6-v2; onnx when available) shared by the memory tests."""
    from agentsd.memory import Embedder

    return Embedder()
