"""A bounded loopback load test: 64 concurrent streaming clients on the real default model, a
quarter of them hanging up after two chunks. Every other request must finish with the text the
same request gives alone (greedy), and afterwards the engine must hold no request and no KV
block (GET /v1/engine/stats)."""

from __future__ import annotations

import asyncio
import time


MODEL = "default"  # what conftest's server preloads

CLIENTS = 64
MAX_TOKENS = 16
PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write one sentence about the sea.",
    "What is two plus two?",
]


def request(prompt: str) -> dict:
    return dict(model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=0,
                max_tokens=MAX_TOKENS)


async def streamed_text(client, prompt: str, hang_up_after: int | None):
    stream = await client.chat.completions.create(stream=True, **request(prompt))
    text, finish, chunks = "", None, 0
    async for c in stream:
        chunks += 1
        if hang_up_after is not None and chunks >= hang_up_after:
            await stream.close()
            return None
        if c.choices:
            text += c.choices[0].delta.content or ""
            finish = c.choices[0].finish_reason or finish
    return text, finish


def test_concurrent_streams_with_disconnects(server):
    client = server.client(max_retries=0, timeout=900)
    expected = {p: client.chat.completions.create(**request(p)) for p in PROMPTS}

    async def run():
        aclient = server.async_client(max_retries=0, timeout=900)
        jobs = [streamed_text(aclient, PROMPTS[i % len(PROMPTS)], 2 if i % 4 == 3 else None)
                for i in range(CLIENTS)]
        try:
            return await asyncio.gather(*jobs)
        finally:
            await aclient.close()

    start = time.perf_counter()
    results = asyncio.run(run())
    elapsed = time.perf_counter() - start
    done = 0
    for i, result in enumerate(results):
        if i % 4 == 3:
            assert result is None
            continue
        prompt = PROMPTS[i % len(PROMPTS)]
        text, finish = result
        want = expected[prompt].choices[0]
        assert finish == want.finish_reason, prompt
        assert text == want.message.content, f"{prompt!r}: batched {text!r} != alone {want.message.content!r}"
        done += 1
    print(f"\n{CLIENTS} clients ({done} completed, {CLIENTS - done} hung up) in {elapsed:.1f} s")

    deadline = time.time() + 60
    while True:
        models = server.engine_stats()
        busy = [m for m in models if m["stats"]["running"] or m["stats"]["waiting"]
                or m["stats"]["free_blocks"] != m["stats"]["total_blocks"]]
        if models and not busy:
            break
        assert time.time() < deadline, f"engine not idle: {models}"
        time.sleep(0.1)
