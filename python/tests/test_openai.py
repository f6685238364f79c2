"""OpenAI shapes: the dicts of create_completion / create_chat_completion
parse as the `openai` package's own types, and the real `openai` client talks
to `python -m bitnet serve` and gets the text `generate` gives."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

import bitnet
from conftest import FIXTURES, MIT, missing


@pytest.fixture(scope="module")
def openai():  # type: ignore[no-untyped-def]
    try:
        import openai
    except ImportError:
        missing("the openai package (pip install openai)")
    return openai


def test_completion_dicts_are_openai_completions(model: bitnet.BitNetModel, openai) -> None:  # type: ignore[no-untyped-def]
    from openai.types import Completion

    whole = model.create_completion(MIT, max_tokens=20, temperature=0)
    parsed = Completion.model_validate(whole)
    assert parsed.object == "text_completion"
    assert parsed.choices[0].text == model.generate(MIT, max_tokens=20, temperature=0)
    assert parsed.choices[0].finish_reason == "length"
    assert parsed.usage is not None and parsed.usage.completion_tokens == 20
    assert parsed.usage.prompt_tokens == len(model.tokenize(MIT))
    assert model(MIT, max_tokens=20, temperature=0)["choices"][0]["text"] == parsed.choices[0].text
    echoed = model.create_completion(MIT, max_tokens=20, temperature=0, echo=True)
    assert echoed["choices"][0]["text"] == MIT + parsed.choices[0].text

    chunks = list(model.create_completion(MIT, max_tokens=20, temperature=0, stream=True))
    for c in chunks:
        # OpenAI streams completions as `Completion` objects whose
        # finish_reason is null until the last one (the client builds them
        # without validation); every other field must validate.
        final = {**c, "choices": [{**c["choices"][0], "finish_reason": c["choices"][0]["finish_reason"] or "stop"}]}
        Completion.model_validate(final)
    assert "".join(c["choices"][0]["text"] for c in chunks) == parsed.choices[0].text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_chat_dicts_are_openai_chat_completions(model: bitnet.BitNetModel, openai) -> None:  # type: ignore[no-untyped-def]
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is a licence?"}]},
    ]
    whole = model.create_chat_completion(messages, max_tokens=16, temperature=0)
    parsed = ChatCompletion.model_validate(whole)
    assert parsed.choices[0].message.role == "assistant"
    reply = parsed.choices[0].message.content
    assert reply == model.chat(messages, max_tokens=16, temperature=0)
    chunks = list(model.create_chat_completion(messages, max_tokens=16, temperature=0, stream=True))
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == reply


@pytest.fixture(scope="module")
def server(openai) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """`python -m bitnet serve` on a free port; yields its base URL."""
    yield from _serve("builtin")


def _serve(model: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitnet", "serve", "--model", model, "--port", "0", "-t", "2", "-c", "512"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = None
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"on (http://[\d.:]+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "".join(lines)
    yield url
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, rest
    assert "server stopped" in rest


def test_the_openai_client_against_python_m_bitnet_serve(server: str, model: bitnet.BitNetModel, openai) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    want = model.generate(MIT, max_tokens=24, temperature=0)
    completion = client.completions.create(model="demo-bitnet", prompt=MIT, max_tokens=24, temperature=0)
    assert completion.choices[0].text == want
    assert completion.usage.completion_tokens == 24
    stream = client.chat.completions.create(
        model="demo-bitnet",
        messages=[{"role": "user", "content": "What is a licence?"}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == model.chat("What is a licence?", max_tokens=16, temperature=0)
    assert [m.id for m in client.models.list()] == ["demo-bitnet"]


def test_the_openai_client_embeds_through_the_server(openai) -> None:  # type: ignore[no-untyped-def]
    """`client.embeddings.create` gives the vectors `BitNetModel.embed`
    gives, both when the client asks for base64 and decodes it itself (its
    default) and as floats."""
    import numpy as np

    path = str(FIXTURES / "embed" / "qwen3")
    texts = [t["text"] for t in json.loads((FIXTURES / "embed" / "qwen3" / "reference.json").read_text())["texts"]]
    want = bitnet.BitNetModel.from_pretrained(path, n_ctx=512).embed(texts)
    serving = _serve(path)
    url = next(serving)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        for encoding in (openai.NOT_GIVEN, "float"):
            result = client.embeddings.create(model="embed", input=texts, encoding_format=encoding)
            got = np.asarray([d.embedding for d in result.data], dtype=np.float32)
            assert got.shape == want.shape
            assert np.abs(got - want).max() < 1e-6, encoding
            assert result.usage.prompt_tokens > len(texts)
    finally:
        next(serving, None)
