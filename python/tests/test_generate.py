"""Generation through the Python API equals the engine's own: the `bitnet`
binary's greedy text, the transformers reference's logits and perplexity,
batched and streamed variants, sampling with a seed, and concurrent threads."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import bitnet
from conftest import DEMO, MIT, PROMPTS


def test_greedy_generate_equals_bitnet_run(model: bitnet.BitNetModel, bitnet_binary: Path) -> None:
    for prompt in PROMPTS[:3]:
        out = subprocess.run(
            [str(bitnet_binary), "run", "-p", prompt, "-n", "40", "--temp", "0", "-t", "2", "--output-format", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        want = json.loads(out.stdout)
        got = model.generate(prompt, max_tokens=40, temperature=0)
        assert got == want["text"], prompt
        assert model.tokenize(prompt, special=True) == want["prompt_token_ids"]


def test_greedy_continuation_matches_the_reference(model: bitnet.BitNetModel, manifest: dict) -> None:
    mit = next(p for p in manifest["prompts"] if p["name"] == "mit")
    assert model.tokenize(mit["text"]) == mit["input_ids"]
    text = model.generate(mit["text"], max_tokens=len(mit["greedy_new_ids"]), temperature=0)
    assert text == model.detokenize(mit["greedy_new_ids"])
    assert text == mit["greedy_text"]


def test_logits_equal_the_transformers_reference() -> None:
    ref = np.load(DEMO / "reference" / "mit.all_logits.npy")
    with bitnet.BitNetModel.from_pretrained(str(DEMO), kv_type="f32", n_ctx=256) as m:
        ids = m.tokenize(MIT)
        logits = m.logits(ids)
    assert isinstance(logits, np.ndarray)
    assert logits.dtype == np.float32
    assert logits.shape == ref.shape == (len(ids), m.n_vocab)
    diff = float(np.abs(logits - ref).max())
    assert diff < 1e-4, diff
    # Every row predicts the next token: greedy ids are the argmaxes.
    assert list(np.argmax(logits[-1:], axis=1)) == [int(np.argmax(ref[-1]))]


def test_perplexity_equals_the_reference() -> None:
    want = json.loads((DEMO / "perplexity.json").read_text())["perplexity"]
    text = (DEMO / "valid.txt").read_text()
    # The reference keeps keys and values in f32 (the Rust test's bound).
    m = bitnet.BitNetModel.from_pretrained("builtin", kv_type="f32", n_ctx=256)
    got = m.perplexity(text, n_ctx=256)
    assert abs(got - want) / want < 1e-6, (got, want)


def test_generate_batch_equals_one_generate_per_prompt(model: bitnet.BitNetModel) -> None:
    for options in ({"temperature": 0}, {"temperature": 0.8, "seed": 7}):
        batch = model.generate_batch(PROMPTS, max_tokens=24, **options)
        single = [model.generate(p, max_tokens=24, **options) for p in PROMPTS]
        assert batch == single
        assert len(set(batch)) > 1


def test_streamed_pieces_join_to_the_text(model: bitnet.BitNetModel) -> None:
    whole = model.generate(MIT, max_tokens=60, temperature=0)
    pieces = list(model.generate(MIT, max_tokens=60, temperature=0, stream=True))
    assert len(pieces) > 10
    assert "".join(pieces) == whole
    # Leaving early stops the generation.
    stream = model.generate(MIT, max_tokens=400, temperature=0, ignore_eos=True, stream=True)
    first = next(stream)
    assert whole.startswith(first)
    stream.close()


def test_seeded_sampling_is_reproducible(model: bitnet.BitNetModel) -> None:
    a = model.generate(MIT, max_tokens=30, temperature=1.0, seed=123)
    b = model.generate(MIT, max_tokens=30, temperature=1.0, seed=123)
    c = model.generate(MIT, max_tokens=30, temperature=1.0, seed=124)
    assert a == b
    assert a != c


def test_stop_strings_and_limits(model: bitnet.BitNetModel) -> None:
    whole = model.generate(MIT, max_tokens=40, temperature=0)
    cut = model.generate(MIT, max_tokens=40, temperature=0, stop="copy")
    assert whole.startswith(cut) and "copy" in whole and "copy" not in cut
    assert model.generate(MIT, max_tokens=0, temperature=0) == ""
    # A max_tokens beyond the context is capped by it.
    small = bitnet.BitNetModel.from_pretrained("builtin", n_ctx=20)
    assert len(small.tokenize(small.generate(MIT, max_tokens=1000, temperature=0, ignore_eos=True), add_bos=False)) <= 8


def test_concurrent_threads_share_the_engine(model: bitnet.BitNetModel) -> None:
    want = {p: model.generate(p, max_tokens=30, temperature=0) for p in PROMPTS}
    got: dict = {}
    errors: list = []

    def worker(prompt: str) -> None:
        try:
            for _ in range(3):
                got.setdefault(prompt, []).append(model.generate(prompt, max_tokens=30, temperature=0))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for p in PROMPTS:
        assert got[p] == [want[p]] * 3


def test_chat_uses_the_template(model: bitnet.BitNetModel) -> None:
    messages = [{"role": "user", "content": "What is the MIT licence?"}]
    reply = model.chat(messages, max_tokens=20, temperature=0)
    again = model.chat("What is the MIT licence?", max_tokens=20, temperature=0)
    assert reply == again
    assert isinstance(reply, str) and reply


def test_properties(model: bitnet.BitNetModel) -> None:
    assert model.n_ctx == 512
    assert model.n_vocab == 4096
    assert model.n_threads == 2
    assert model.kernel in bitnet.kernels_available()
    assert model.architecture == "bitnet-b1.58"
    assert model.metadata["hidden_size"] == 256
    gguf = bitnet.BitNetModel.from_pretrained(str(DEMO / "gguf" / "demo-bitnet-i2_s.gguf"), n_ctx=64)
    md = gguf.metadata
    assert md["general.architecture"] == "bitnet-b1.58"
    assert "tokenizer.ggml.tokens" not in md  # the vocabulary is left out
    assert gguf.generate(MIT, max_tokens=20, temperature=0) == model.generate(MIT, max_tokens=20, temperature=0)


@pytest.mark.parametrize("kernel", bitnet.kernels_available())
def test_every_kernel_level_gives_the_same_text(kernel: str, model: bitnet.BitNetModel) -> None:
    forced = bitnet.BitNetModel.from_pretrained("builtin", kernel=kernel, n_ctx=128)
    assert forced.kernel == kernel
    assert forced.generate(MIT, max_tokens=30, temperature=0) == model.generate(MIT, max_tokens=30, temperature=0)


def test_tokenize_roundtrip(model: bitnet.BitNetModel) -> None:
    text = "Copyright (c) <year> <copyright holders> — naïve café"
    ids = model.tokenize(text)
    assert ids[0] == model.tokenize("")[0]  # BOS
    assert model.detokenize(ids) == text
    assert model.tokenize(text, add_bos=False) == ids[1:]
    assert model.tokenize(text.encode()) == ids
