"""VLLMPolicy: an in-process ``vllm.LLM`` as a :class:`Policy`, with weight reloads after learner steps.

GPU only, optional (``pip install agentsd[vllm]``); nothing here imports vllm until a policy is built,
so this module imports (and its pure helpers run) anywhere.

    policy = VLLMPolicy("smollm2-135m", gpu_memory_utilization=0.3)      # or load_policy("vllm:...")
    gens = policy.generate(batch, Sampling(max_new_tokens=32))          # token ids + behaviour log-probs
    ...                                                                  # learner_step(net, ...) on a HF copy
    policy.sync_from(net)                                                # push the updated weights

Generation is token-in, token-out like :class:`~agentsd.policy.hf.HFPolicy`: prompts are encoded with
:func:`~agentsd.policy.chat.encode_chat` and sent as ``prompt_token_ids``; each completion keeps vLLM's
token ids and the log-prob of each sampled token. For those to be the behaviour log-probs (the
distribution actually sampled from, after temperature / top-k / top-p), the engine is built with
``logprobs_mode="processed_logprobs"`` where the installed vLLM has that option; older versions report
the raw model log-probs, which equal them only at temperature 1 without top-k/top-p.

Weight reload (:meth:`VLLMPolicy.load_weights`): ``LLM.apply_model(fn)`` runs ``fn(model)`` on the
model inside every worker (vLLM >= 0.9; V1 engines in a separate process pickle ``fn`` and the tensors
it carries, which needs ``VLLM_ALLOW_INSECURE_SERIALIZATION=1``), and ``model.load_weights(weights=...)``
takes ``(name, tensor)`` pairs with Hugging Face parameter names, handling vLLM's fused qkv / gate_up
layouts and tied embeddings itself. Older engines without ``apply_model`` are reached through
``llm.llm_engine.model_executor.driver_worker.model_runner.model``. The prefix cache is reset afterwards:
cached KV blocks were computed with the old weights. A LoRA learner's adapter is merged into full weights
first (:func:`merged_hf_weights`); the learner's own model is left as it was.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from agentsd.policy.base import Conversation, Generation, Policy, Sampling

INSTALL_HINT = "vllm backend needs a GPU and `pip install agentsd[vllm]`"


def _import_vllm() -> Any:
    """The vllm module, or an ImportError that says what to do."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)
    try:
        return importlib.import_module("vllm")
    except Exception as e:  # a broken install (e.g. no CUDA runtime) fails at import
        raise ImportError(f"{INSTALL_HINT} (importing vllm failed: {e})") from e


def sampling_kwargs(sampling: Sampling) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments for ``sampling`` (one completion, the sampled token's
    log-prob). Stop strings end the completion and stay in its text, as in HFPolicy; EOS stays in the
    token ids (learners must see the model choose to stop)."""
    if sampling.regex is not None or sampling.json_schema is not None:
        raise NotImplementedError("constrained decoding (regex / json_schema) is not wired for the vllm backend")
    kw: dict[str, Any] = {
        "n": 1,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1,  # vLLM: -1 = all tokens (0 in newer versions)
        "logprobs": 0,  # 0 = only the sampled token's log-prob
        "skip_special_tokens": True,
    }
    if sampling.stop:
        kw["stop"] = list(sampling.stop)
        kw["include_stop_str_in_output"] = True
    if sampling.seed is not None:
        kw["seed"] = sampling.seed
    return kw


def generation_from_output(output: Any, prompt_tokens: int) -> Generation:
    """A :class:`Generation` from one vLLM ``CompletionOutput`` (``token_ids``, ``text``, ``logprobs``:
    one ``{token_id: Logprob}`` dict per generated token, ``finish_reason``)."""
    ids = [int(t) for t in output.token_ids]
    logprobs: list[float] = []
    for tok, entry in zip(ids, output.logprobs or [], strict=False):
        lp = entry[tok] if tok in entry else None
        if lp is None:
            raise ValueError(f"vLLM returned no log-prob for sampled token {tok}")
        logprobs.append(float(getattr(lp, "logprob", lp)))
    if output.logprobs is not None and len(logprobs) != len(ids):
        raise ValueError(f"{len(logprobs)} log-probs for {len(ids)} tokens")
    reason = "length" if output.finish_reason == "length" else "stop"
    return Generation(text=output.text, token_ids=ids, logprobs=logprobs, prompt_tokens=prompt_tokens,
                      finish_reason=reason)


def merged_hf_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """``(name, tensor)`` pairs of ``model``'s full weights under Hugging Face names, for
    ``vllm``'s ``model.load_weights``.

    A PEFT (LoRA) model is merged for the duration (``merge_adapter``), its ``base_model.model.`` prefix
    and ``.base_layer`` infixes dropped and adapter tensors skipped; it is unmerged again afterwards, even
    if the consumer stops early. Tensors are detached copies, so later training does not change them.
    """
    import torch

    peft = hasattr(model, "peft_config") and hasattr(model, "merge_adapter")
    if peft:
        model.merge_adapter()
    try:
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if peft:
                    if "lora_" in name or "modules_to_save" in name:
                        continue
                    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
                yield name, t.detach().clone()
    finally:
        if peft:
            model.unmerge_adapter()


class VLLMPolicy(Policy):
    """``vllm.LLM`` behind the :class:`Policy` interface (see the module docstring).

    ``model``: an embedded model name, a local model dir or a hub id; ``llm_kwargs`` go to ``vllm.LLM``
    (e.g. ``gpu_memory_utilization``, ``max_model_len``, ``tensor_parallel_size``). ``device``,
    ``autocast`` and ``cache_dir`` are accepted for run-config compatibility; ``max_batch`` caps the
    requests per ``generate`` call sent at once (vLLM schedules within it).
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_batch: int = 256,
        name: str | None = None,
        cache_dir: str | None = None,
        device: str | None = None,
        autocast: bool | None = None,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        from agentsd.policy.embedded import resolve_model

        del device, autocast  # vLLM picks its device and kernels
        path = resolve_model(model, cache_dir)
        fields = {f.name for f in dataclasses.fields(vllm.EngineArgs)} if hasattr(vllm, "EngineArgs") else set()
        if "logprobs_mode" in fields:
            llm_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        self._vllm = vllm
        self.llm = vllm.LLM(model=path, dtype=dtype, seed=seed, enable_prefix_caching=enable_prefix_caching,
                            **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_batch = max_batch
        self.name = name or model
        self.weight_version = 0  # load_weights calls so far
        self.tokens_generated = 0

    def encode(self, messages: Conversation) -> list[int]:
        from agentsd.policy.chat import encode_chat

        return encode_chat(self.tokenizer, messages)

    def generate(self, batch: list[Conversation], sampling: Sampling | None = None) -> list[Generation]:
        sampling = sampling or Sampling()
        params = self._vllm.SamplingParams(**sampling_kwargs(sampling))
        prompts = [self.encode(m) for m in batch]
        out: list[Generation] = []
        for lo in range(0, len(prompts), self.max_batch):
            chunk = prompts[lo : lo + self.max_batch]
            results = self.llm.generate([{"prompt_token_ids": p} for p in chunk], params, use_tqdm=False)
            out.extend(generation_from_output(r.outputs[0], len(p)) for r, p in zip(results, chunk, strict=True))
        self.tokens_generated += sum(len(g.token_ids) for g in out)
        return out

    def load_weights(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Push new weights (Hugging Face names; a state dict or ``(name, tensor)`` pairs) into the engine,
        then drop the prefix cache. A subset is fine: only the given tensors are replaced."""
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)

        def _load(model: Any) -> int:
            model.load_weights(weights=iter(items))
            return len(items)

        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(_load)
        else:  # vLLM < 0.9 (V0 engine, single worker)
            _load(self.llm.llm_engine.model_executor.driver_worker.model_runner.model)
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()
        self.weight_version += 1

    def sync_from(self, model: Any) -> None:
        """Push a learner's current weights (a transformers model, LoRA-wrapped or not: merged first)."""
        self.load_weights(merged_hf_weights(model))

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        del llm
