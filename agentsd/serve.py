"""An OpenAI-compatible server over any :class:`~agentsd.policy.base.Policy`.

    agentsd serve smollm2-135m --port 8000      # then: OpenAIPolicy("http://127.0.0.1:8000/v1")

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (non-streaming, ``n=1``) and our
extension ``POST /v1/score`` ({messages, completion_token_ids} -> {logprobs}), which lets a remote
teacher re-score a student's tokens. vLLM's request extensions ``guided_regex``, ``guided_json``,
``top_k`` and ``return_tokens_as_token_ids`` are accepted, so the ``openai`` backend talks to this
server and to vLLM the same way.

Concurrent requests are batched: they wait a few milliseconds in a queue, requests with identical
sampling parameters go to the policy as one ``generate`` call, and that call runs in a worker thread
so the event loop keeps accepting requests meanwhile. One worker thread runs every policy call, so
a policy never sees two calls at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentsd.policy.base import Conversation, Generation, Policy, Sampling

if TYPE_CHECKING:
    import fastapi


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The chat-completions fields we honour; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = None  # vLLM extension; -1 or 0 = off
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = 1
    stream: bool | None = False
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)  # accepted; alternatives are not reported
    response_format: dict[str, Any] | None = None
    guided_regex: str | None = None  # vLLM extension
    guided_json: dict[str, Any] | str | None = None  # vLLM extension
    return_tokens_as_token_ids: bool | None = False  # vLLM extension


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    completion_token_ids: list[int] = Field(min_length=1)


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def _error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def to_sampling(req: ChatRequest, default_max_tokens: int = 256) -> Sampling:
    """Map a chat request onto :class:`Sampling`; raises :class:`APIError` (400) for what we can't do."""
    if req.n not in (None, 1):
        raise APIError(400, "only n=1 is supported", "n")
    if req.stream:
        raise APIError(400, "streaming is not supported", "stream")
    schema: dict[str, Any] | None = None
    rf = req.response_format or {}
    kind = rf.get("type", "text")
    if kind == "json_schema":
        js = rf.get("json_schema") or {}
        if not isinstance(js.get("schema"), dict):
            raise APIError(400, "response_format.json_schema.schema must be an object", "response_format")
        schema = js["schema"]
    elif kind == "json_object":
        schema = {"type": "object"}
    elif kind != "text":
        raise APIError(400, f"unsupported response_format type {kind!r}", "response_format")
    if isinstance(req.guided_json, str):
        try:
            schema = json.loads(req.guided_json)
        except json.JSONDecodeError as e:
            raise APIError(400, f"guided_json is not valid JSON: {e}", "guided_json") from e
    elif req.guided_json is not None:
        schema = req.guided_json
    if schema is not None and req.guided_regex is not None:
        raise APIError(400, "give either a JSON schema or guided_regex, not both", "guided_regex")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    try:
        return Sampling(
            max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=max(0, req.top_k or 0),
            stop=stop,
            seed=req.seed,
            regex=req.guided_regex,
            json_schema=schema,
        )
    except ValidationError as e:
        raise APIError(400, _first_error(e)) from e


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))


class Batcher:
    """Gathers concurrent requests into batched ``policy.generate`` calls on one worker thread."""

    def __init__(self, policy: Policy, max_batch: int = 64, wait_s: float = 0.005) -> None:
        self.policy, self.max_batch, self.wait_s = policy, max_batch, wait_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.pool.shutdown(wait=True)

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run a policy call on the worker thread (serialized with generation)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def generate(self, conv: Conversation, sampling: Sampling) -> Generation:
        assert self.queue is not None, "Batcher.start() runs in the app lifespan"
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((conv, sampling, fut))
        return await fut

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(items) < self.max_batch:
                if not self.queue.empty():  # take what is already waiting, however late
                    items.append(self.queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[tuple[Conversation, Sampling, asyncio.Future]]] = {}
            for it in items:
                if not it[2].done():  # the client may have gone away
                    groups.setdefault(it[1].model_dump_json(), []).append(it)
            for group in groups.values():
                await self._run_group(group)

    async def _run_group(self, group: list[tuple[Conversation, Sampling, asyncio.Future]]) -> None:
        try:
            gens = await self.run(self.policy.generate, [c for c, _, _ in group], group[0][1])
            if len(gens) != len(group):
                raise RuntimeError(f"policy returned {len(gens)} generations for {len(group)} prompts")
        except Exception as e:  # delivered to each waiting request, which answers with an error
            for _, _, fut in group:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, _, fut), g in zip(group, gens, strict=True):
            if not fut.done():
                fut.set_result(g)


def _token_str(tid: int, tokenizer: Any, as_ids: bool) -> str:
    if as_ids or tokenizer is None:
        return f"token_id:{tid}"
    return tokenizer.decode([tid])


def _completion(gen: Generation, req: ChatRequest, model: str, tokenizer: Any) -> dict[str, Any]:
    logprobs = None
    if req.logprobs and gen.token_ids and len(gen.logprobs) == len(gen.token_ids):
        content = []
        for tid, lp in zip(gen.token_ids, gen.logprobs, strict=True):
            tok = _token_str(tid, tokenizer, bool(req.return_tokens_as_token_ids))
            content.append(
                {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")), "top_logprobs": []}
            )
        logprobs = {"content": content}
    n_out = len(gen.token_ids)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "finish_reason": gen.finish_reason,
                "logprobs": logprobs,
            }
        ],
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": n_out,
            "total_tokens": gen.prompt_tokens + n_out,
        },
    }


def _status_for(e: Exception) -> int:
    # Requests the policy can't honour (an unsupported constraint, a prompt too long) are the
    # client's to fix; anything else is ours.
    return 400 if isinstance(e, (ValueError, NotImplementedError)) else 500


def create_app(
    policy: Policy,
    model_name: str,
    max_batch: int = 64,
    batch_wait_ms: float = 5.0,
    default_max_tokens: int = 256,
) -> fastapi.FastAPI:
    """A FastAPI app serving ``policy`` under the model id ``model_name``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    batcher = Batcher(policy, max_batch=max_batch, wait_s=batch_wait_ms / 1000)
    tokenizer = getattr(policy, "tokenizer", None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="agentsd", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(_error_body(e.status, e.message, e.param), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        err = e.errors()[0] if e.errors() else {}
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = f"{loc}: {err.get('msg', 'invalid request')}" if loc else str(err.get("msg", "invalid request"))
        return JSONResponse(_error_body(400, msg, loc or None), status_code=400)

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise APIError(404, f"model {name!r} does not exist; this server serves {model_name!r}", "model")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "agentsd"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> dict[str, Any]:
        check_model(req.model)
        sampling = to_sampling(req, default_max_tokens)
        conv = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            gen = await batcher.generate(conv, sampling)
        except Exception as e:
            raise APIError(_status_for(e), f"{type(e).__name__}: {e}") from e
        return _completion(gen, req, model_name, tokenizer)

    @app.post("/v1/score")
    async def score(req: ScoreRequest) -> dict[str, Any]:
        check_model(req.model)
        conv = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            out = await batcher.run(policy.score, [conv], [req.completion_token_ids])
        except NotImplementedError as e:
            raise APIError(501, str(e)) from e
        except Exception as e:
            raise APIError(_status_for(e), f"{type(e).__name__}: {e}") from e
        return {"object": "score", "model": model_name, "logprobs": [float(x) for x in out[0]]}

    return app


def serve(
    policy: Policy,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``policy`` until interrupted (blocking)."""
    import uvicorn

    app = create_app(policy, model_name or policy.name)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
