"""``openai`` backend: a policy served by any OpenAI-compatible chat-completions server.

    policy = OpenAIPolicy("http://127.0.0.1:8000/v1")        # vLLM, `agentsd serve`, or api.openai.com

One request per conversation, sent concurrently (bounded by ``max_concurrency``). Token ids and
behaviour log-probs come back only where the server reports them:

- log-probs: requested with ``logprobs=True``. vLLM reports the *raw* model log-probs unless the
  server runs with ``--logprobs-mode processed_logprobs``; ``agentsd serve`` reports the sampled
  distribution's log-probs.
- token ids: requested with vLLM's ``return_tokens_as_token_ids`` extension (tokens come back as
  ``"token_id:123"``); ``agentsd serve`` supports it too. Servers without it leave ids empty: we never
  re-tokenize text to fake ids, since that would not be the tokens the model sampled.

Constraints: ``Sampling.json_schema`` uses the standard ``response_format`` json_schema;
``Sampling.regex`` uses vLLM's ``guided_regex`` extension (server-specific: plain OpenAI rejects it).
``score`` works only against ``agentsd serve`` (its ``/v1/score`` extension); the chat API has no
way to score given tokens.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentsd.policy.base import Conversation, Generation, Policy, Sampling

# Parameters we send but can live without: a server that rejects one (400 naming it) gets the
# request again without it. Constraints (guided_regex, response_format) are never dropped silently.
_OPTIONAL = ("return_tokens_as_token_ids", "top_k", "seed", "logprobs")


class OpenAIServerError(RuntimeError):
    """A request to an OpenAI-compatible server failed (connection, timeout or HTTP error)."""


class OpenAIPolicy(Policy):
    """Policy over an OpenAI-compatible server at ``base_url`` (e.g. ``http://host:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        name: str | None = None,
        max_retries: int = 2,
    ) -> None:
        from openai import OpenAI

        self.base_url = base_url.rstrip("/")
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.max_concurrency = max(1, max_concurrency)
        self._model = model
        self._dropped: set[str] = set()
        self._max_tokens_key = "max_tokens"
        self.name = name or f"openai:{model or self.base_url}"

    # -- model id -------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The served model id; the first one ``/v1/models`` lists when none was given."""
        if self._model is None:
            page = self._call(lambda: self.client.models.list(), "/models")
            ids = [m.id for m in page.data]
            if not ids:
                raise OpenAIServerError(f"{self.base_url}/models lists no models")
            self._model = ids[0]
        return self._model

    # -- generation -----------------------------------------------------------------------------

    def generate(self, batch: list[Conversation], sampling: Sampling | None = None) -> list[Generation]:
        s = sampling or Sampling()
        if not batch:
            return []
        _ = self.model  # resolve once, before the threads race to do it
        if len(batch) == 1:
            return [self._one(batch[0], s)]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batch))) as pool:
            return list(pool.map(lambda c: self._one(c, s), batch))

    def _request(self, conv: Conversation, s: Sampling) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": conv,
            "temperature": s.temperature,
            "top_p": s.top_p,
            self._max_tokens_key: s.max_new_tokens,
            "logprobs": True,
        }
        extra: dict[str, Any] = {"return_tokens_as_token_ids": True}
        if s.stop:
            kw["stop"] = s.stop
        if s.seed is not None:
            kw["seed"] = s.seed
        if s.top_k:
            extra["top_k"] = s.top_k  # vLLM extension
        if s.json_schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "action", "schema": s.json_schema},
            }
        if s.regex is not None:
            extra["guided_regex"] = s.regex  # vLLM extension; `agentsd serve` accepts it too
        for k in self._dropped:
            kw.pop(k, None)
            extra.pop(k, None)
        kw["extra_body"] = extra
        return kw

    def _one(self, conv: Conversation, s: Sampling) -> Generation:
        import openai

        # Each retry drops one parameter the server rejected, so this loop is bounded.
        for _ in range(len(_OPTIONAL) + 2):
            kw = self._request(conv, s)
            try:
                resp = self.client.chat.completions.create(**kw)
                break
            except openai.BadRequestError as e:
                if not self._adapt(str(e)):
                    raise self._error(e, "/chat/completions") from e
            except openai.OpenAIError as e:
                raise self._error(e, "/chat/completions") from e
        else:
            raise OpenAIServerError(f"{self.base_url}/chat/completions keeps rejecting the request")
        return _parse(resp)

    def _adapt(self, msg: str) -> bool:
        """Learn from a 400 that names a parameter we can change; True if the request should be retried."""
        if self._max_tokens_key == "max_tokens" and "max_completion_tokens" in msg:
            self._max_tokens_key = "max_completion_tokens"  # newer OpenAI models reject max_tokens
            return True
        for k in _OPTIONAL:
            if k in msg and k not in self._dropped:
                self._dropped.add(k)
                return True
        return False

    # -- scoring --------------------------------------------------------------------------------

    def score(self, prompts: list[Conversation], completions: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs via ``agentsd serve``'s ``/v1/score`` extension (other servers: an error)."""
        import openai

        def one(pc: tuple[Conversation, list[int]]) -> list[float]:
            body = {"model": self.model, "messages": pc[0], "completion_token_ids": list(pc[1])}
            try:
                out = self.client.post("/score", body=body, cast_to=object)
            except openai.NotFoundError as e:
                raise NotImplementedError(
                    f"{self.base_url} has no /score endpoint: the OpenAI chat API cannot score given "
                    "tokens; serve the model with `agentsd serve` or use the hf backend"
                ) from e
            except openai.OpenAIError as e:
                raise self._error(e, "/score") from e
            return [float(x) for x in out["logprobs"]]

        pairs = list(zip(prompts, completions, strict=True))
        if len(pairs) <= 1:
            return [one(pc) for pc in pairs]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(pairs))) as pool:
            return list(pool.map(one, pairs))

    def close(self) -> None:
        self.client.close()

    # -- errors ---------------------------------------------------------------------------------

    def _call(self, fn: Any, path: str) -> Any:
        import openai

        try:
            return fn()
        except openai.OpenAIError as e:
            raise self._error(e, path) from e

    def _error(self, e: Exception, path: str) -> OpenAIServerError:
        import openai

        url = f"{self.base_url}{path}"
        if isinstance(e, openai.APITimeoutError):
            return OpenAIServerError(f"timed out waiting for {url}")
        if isinstance(e, openai.APIConnectionError):
            return OpenAIServerError(f"cannot connect to {url} (is the server running?)")
        if isinstance(e, openai.APIStatusError):
            return OpenAIServerError(f"{url} returned HTTP {e.status_code}: {_message(e)}")
        return OpenAIServerError(f"{url}: {e}")


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]).splitlines()[0]
        if isinstance(err, str):
            return err.splitlines()[0]
    return str(getattr(e, "message", e)).splitlines()[0]


def _parse(resp: Any) -> Generation:
    choice = resp.choices[0]
    text = choice.message.content or ""
    ids: list[int] = []
    lps: list[float] = []
    content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
    if content:
        lps = [float(t.logprob) for t in content]
        ids = [i for i in (_token_id(t.token) for t in content) if i is not None]
        if len(ids) != len(content):
            ids = []  # the server ignored return_tokens_as_token_ids: report no ids rather than guess
    usage = getattr(resp, "usage", None)
    return Generation(
        text=text,
        token_ids=ids,
        logprobs=lps,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        finish_reason="length" if choice.finish_reason == "length" else "stop",
    )


def _token_id(token: str) -> int | None:
    if token.startswith("token_id:"):
        try:
            return int(token[len("token_id:") :])
        except ValueError:
            return None
    return None
