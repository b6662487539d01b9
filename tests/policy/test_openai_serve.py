"""`agentsd serve` (a real uvicorn server on loopback) talked to through the `openai` backend."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves endpoint annotations here
from fastapi.responses import JSONResponse
from servutil import running

from agentsd.policy.base import Generation, Policy, Sampling
from agentsd.policy.chat import encode_chat
from agentsd.policy.openai_backend import OpenAIPolicy, OpenAIServerError, _parse
from agentsd.serve import APIError, ChatRequest, create_app, to_sampling

CONVS = [
    [{"role": "user", "content": "Push the box. Which way?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where is the goal?"}],
]


class Counting(Policy):
    """Delegates to a policy and records the size of every generate batch."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name, self.batches = inner, "tiny", []
        self.tokenizer = inner.tokenizer

    def generate(self, batch, sampling=None) -> list[Generation]:
        self.batches.append(len(batch))
        return self.inner.generate(batch, sampling)

    def score(self, prompts, completions):
        return self.inner.score(prompts, completions)


@pytest.fixture(scope="module")
def served(tiny_policy):
    policy = Counting(tiny_policy)
    with running(create_app(policy, "tiny")) as url:
        yield url, policy


@pytest.fixture
def client(served):
    url, _ = served
    c = OpenAIPolicy(url, timeout=60, max_retries=0)
    yield c
    c.close()


def test_models_and_generation_with_token_ids_and_logprobs(served, client, tiny_policy):
    assert client.model == "tiny"  # picked from /v1/models
    gens = client.generate(CONVS, Sampling(max_new_tokens=8, temperature=1.0, seed=0))
    assert len(gens) == 2
    for conv, g in zip(CONVS, gens, strict=True):
        assert g.token_ids and len(g.logprobs) == len(g.token_ids)
        assert g.prompt_tokens == len(encode_chat(tiny_policy.tokenizer, conv))
        assert g.text == tiny_policy.tokenizer.decode(g.token_ids, skip_special_tokens=True)
    # Behaviour log-probs at temperature 1 are the model's own: re-scoring the ids gives them back.
    scored = tiny_policy.score(CONVS, [g.token_ids for g in gens])
    for g, s in zip(gens, scored, strict=True):
        assert g.logprobs == pytest.approx(s, abs=1e-4)
    # ...and so does the server's /v1/score extension.
    remote = client.score(CONVS, [g.token_ids for g in gens])
    for r, s in zip(remote, scored, strict=True):
        assert r == pytest.approx(s, abs=1e-5)


def test_greedy_equals_direct_generation(client, tiny_policy):
    s = Sampling(max_new_tokens=12, temperature=0.0)
    remote = client.generate(CONVS[:1], s)[0]
    local = tiny_policy.generate(CONVS[:1], s)[0]
    assert (remote.text, remote.token_ids, remote.finish_reason) == (
        local.text,
        local.token_ids,
        local.finish_reason,
    )
    assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-5)


def test_concurrent_requests_are_batched(served):
    url, policy = served
    client = OpenAIPolicy(url, max_concurrency=8, max_retries=0)
    policy.batches.clear()
    convs = [[{"role": "user", "content": f"Task {i}: which way?"}] for i in range(8)]
    gens = client.generate(convs, Sampling(max_new_tokens=4, temperature=0.0))
    client.close()
    assert len(gens) == 8 and all(g.token_ids for g in gens)
    assert sum(policy.batches) == 8
    assert max(policy.batches) > 1, policy.batches
    # Each answer is that request's own: the same as generating it alone.
    alone = policy.inner.generate(convs[3:4], Sampling(max_new_tokens=4, temperature=0.0))[0]
    assert gens[3].token_ids == alone.token_ids


def test_token_strings_are_decoded_unless_ids_are_asked_for(served, tiny_policy):
    url, _ = served
    body = {"model": "tiny", "messages": CONVS[0], "max_tokens": 6, "temperature": 0, "logprobs": True}
    plain = httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()
    ids = httpx.post(
        f"{url}/chat/completions", json=body | {"return_tokens_as_token_ids": True}, timeout=60
    ).json()
    as_ids = [int(t["token"].removeprefix("token_id:")) for t in ids["choices"][0]["logprobs"]["content"]]
    decoded = [t["token"] for t in plain["choices"][0]["logprobs"]["content"]]
    assert decoded == [tiny_policy.tokenizer.decode([i]) for i in as_ids]
    choice = plain["choices"][0]
    assert plain["object"] == "chat.completion" and choice["message"]["role"] == "assistant"
    assert plain["usage"]["completion_tokens"] == len(as_ids)
    assert plain["usage"]["total_tokens"] == plain["usage"]["prompt_tokens"] + len(as_ids)


@pytest.mark.parametrize(
    "patch, param",
    [
        ({"n": 2}, "n"),
        ({"stream": True}, "stream"),
        ({"temperature": -1}, "temperature"),
        ({"messages": []}, "messages"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
    ],
)
def test_bad_requests_get_400(served, patch, param):
    url, _ = served
    body = {"model": "tiny", "messages": CONVS[0], "max_tokens": 4} | patch
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (
        err["type"] == "invalid_request_error"
        and err["message"]
        and param in (err["param"] or err["message"])
    )


def test_not_json_gets_400(served):
    url, _ = served
    r = httpx.post(
        f"{url}/chat/completions",
        content=b"{not json",
        timeout=60,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "error" in r.json()


def test_errors_name_the_url(served):
    url, _ = served
    with pytest.raises(OpenAIServerError, match=rf"^{url}/chat/completions returned HTTP 404: .*'nope'"):
        OpenAIPolicy(url, model="nope", max_retries=0).generate(CONVS[:1])
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(OpenAIServerError, match=rf"^cannot connect to {dead}/chat/completions") as e:
        OpenAIPolicy(dead, model="m", max_retries=0).generate(CONVS[:1])
    assert "\n" not in str(e.value)


def test_constrained_generation_through_the_server(client):
    regex = r"<answer>(Up|Down|Left|Right)</answer>"
    g = client.generate(CONVS[:1], Sampling(max_new_tokens=16, temperature=1.0, seed=0, regex=regex))[0]
    import re

    assert re.fullmatch(regex, g.text), g.text


def test_request_mapping_to_sampling():
    req = ChatRequest.model_validate(
        {
            "messages": CONVS[0],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "stop": "</answer>",
            "temperature": 0,
            "top_k": -1,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "object"}},
            },
        }
    )
    s = to_sampling(req)
    assert (s.max_new_tokens, s.stop, s.temperature, s.top_k) == (7, ["</answer>"], 0.0, 0)
    assert s.json_schema == {"type": "object"} and s.regex is None
    assert to_sampling(ChatRequest(messages=CONVS[0], guided_regex="a+")).regex == "a+"
    with pytest.raises(APIError):
        to_sampling(ChatRequest(messages=CONVS[0], guided_regex="a+", guided_json={"type": "object"}))


def test_client_adapts_to_a_plain_openai_server():
    """A server without our extensions: it rejects return_tokens_as_token_ids, reports logprobs with
    text tokens, and has no /score. The client drops the parameter, keeps the logprobs, reports no
    ids (never guesses them) and says scoring is unsupported."""
    app = FastAPI()
    seen: list[dict] = []

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "m1", "object": "model"}, {"id": "m2", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body)
        if "return_tokens_as_token_ids" in body:
            msg = "Unrecognized request argument supplied: return_tokens_as_token_ids"
            return JSONResponse({"error": {"message": msg, "type": "invalid_request_error"}}, status_code=400)
        lp = {
            "content": [{"token": t, "logprob": -0.5, "bytes": None, "top_logprobs": []} for t in ("Up", "!")]
        }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "Up!"},
            "finish_reason": "length",
            "logprobs": lp,
        }
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    with running(app) as url:
        client = OpenAIPolicy(url, max_retries=0)
        g = client.generate(CONVS[:1], Sampling(max_new_tokens=2))[0]
        g2 = client.generate(CONVS[:1], Sampling(max_new_tokens=2))[0]
        with pytest.raises(NotImplementedError, match="cannot score"):
            client.score(CONVS[:1], [[1, 2]])
        client.close()
    assert client.model == "m1"
    assert (g.text, g.token_ids, g.logprobs, g.finish_reason, g.prompt_tokens) == (
        "Up!",
        [],
        [-0.5, -0.5],
        "length",
        3,
    )
    assert g2 == g
    assert len(seen) == 3 and "return_tokens_as_token_ids" not in seen[-1]  # learned once, then remembered
    assert seen[-1]["max_tokens"] == 2 and seen[-1]["logprobs"] is True


def test_parse_without_logprobs():
    from openai.types.chat import ChatCompletion

    resp = ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
        }
    )
    assert _parse(resp) == Generation(text="hi")


def test_load_policy_openai_spec_accepts_run_config_settings(served):
    from agentsd.policy import load_policy

    url, _ = served
    # evolve.run passes the model section's local settings to every backend
    p = load_policy(f"openai:{url}#tiny", dtype="bfloat16", device="cpu", max_batch=4, cache_dir=None)
    assert isinstance(p, OpenAIPolicy)
    out = p.generate(CONVS[:1], Sampling(max_new_tokens=4, temperature=0))
    assert len(out) == 1 and out[0].token_ids
    p.close()
