"""`cortex serve` with the real default model (SmolLM2-135M-Instruct), driven by the official
`openai` Python client: the text must make sense here, not only the protocol."""

from __future__ import annotations

import time

import openai
import pytest

MODEL = "default"  # what conftest's server preloads

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def answer(client, messages=QUESTION, **kw):
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, messages=messages, **kw)


def test_capital_of_france(client):
    r = answer(client)
    choice = r.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODEL
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_text_equals_the_whole_answer(client):
    whole = answer(client).choices[0].message.content
    chunks = list(answer(client, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert "Paris" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens > 0


def test_completions_endpoint(client):
    kw = dict(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0)
    r = client.completions.create(**kw)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    text = r.choices[0].text
    assert text.strip() and r.choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert streamed == text


def test_stop_string_ends_the_text_before_it(client):
    full = answer(client).choices[0].message.content
    assert "Paris" in full
    r = answer(client, stop=["Paris"])
    assert r.choices[0].message.content == full[: full.index("Paris")]
    assert r.choices[0].finish_reason == "stop"
    r = answer(client, stop=["nothing like this", " of "])
    assert r.choices[0].message.content == full[: full.index(" of ")]


def test_max_tokens_ends_with_length(client):
    r = answer(client, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    r = answer(client, max_completion_tokens=2)
    assert r.usage.completion_tokens == 2


def test_seed_reproduces_sampling(client):
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Write a short poem about the sea."}],
              temperature=1.0, max_tokens=24)
    a = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    assert a == b
    others = {client.chat.completions.create(seed=s, **kw).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) >= 2, "different seeds always gave the same text"


def test_prompt_tokens_count_the_templated_prompt(client, server):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(server.home / "models" / "SmolLM2-135M-Instruct"))
    messages = [{"role": "system", "content": "You are terse."}, *QUESTION]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    r = answer(client, messages=messages, max_tokens=4)
    assert r.usage.prompt_tokens == len(ids)


def test_logprobs(client):
    r = answer(client, logprobs=True, top_logprobs=3, max_tokens=6)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 6
    for t in content:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob, abs=1e-4)
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_model_list(client):
    ids = {m.id for m in client.models.list()}
    assert {"default", "SmolLM2-135M-Instruct"} <= ids
    assert client.models.retrieve("SmolLM2-135M-Instruct").owned_by == "cortexstream"


def test_bad_requests_raise_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        answer(client, temperature=-1)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        answer(client, n=2)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert e.value.body["code"] == "model_not_found"
    # SmolLM2's context is 8192 tokens
    with pytest.raises(openai.BadRequestError) as e:
        answer(client, messages=[{"role": "user", "content": "hello " * 9000}])
    assert e.value.body["code"] == "context_length_exceeded"
    assert "Paris" in answer(client).choices[0].message.content


def test_api_key(keyed_server):
    with pytest.raises(openai.AuthenticationError):
        keyed_server.client(api_key="wrong", max_retries=0).models.list()
    c = keyed_server.client(max_retries=0, timeout=600)
    assert {m.id for m in c.models.list()} >= {"SmolLM2-135M-Instruct"}
    r = c.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0)
    assert "Paris" in r.choices[0].message.content


def _ttft(client, messages):
    start = time.perf_counter()
    first = None
    usage = None
    text = ""
    for c in answer(client, messages=messages, stream=True, stream_options={"include_usage": True}, max_tokens=40):
        if c.choices and c.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if c.choices:
            text += c.choices[0].delta.content or ""
        if c.usage:
            usage = c.usage
    return first, text, usage


def test_second_turn_reuses_the_cached_prompt(client):
    system = ("You are a geography tutor. " + "Answer briefly and precisely, in one sentence. " * 12).strip()
    turn1 = [{"role": "system", "content": system}, *QUESTION]
    ttft1, reply, usage1 = _ttft(client, turn1)
    turn2 = [*turn1, {"role": "assistant", "content": reply}, {"role": "user", "content": "And of Italy?"}]
    ttft2, _, usage2 = _ttft(client, turn2)
    print(f"\nTTFT turn 1: {ttft1 * 1000:.0f} ms ({usage1.prompt_tokens} prompt tokens, "
          f"{usage1.prompt_tokens_details.cached_tokens} cached); turn 2: {ttft2 * 1000:.0f} ms "
          f"({usage2.prompt_tokens} prompt tokens, {usage2.prompt_tokens_details.cached_tokens} cached)")
    assert usage2.prompt_tokens > usage1.prompt_tokens
    assert usage2.prompt_tokens_details.cached_tokens > 0
