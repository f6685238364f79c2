"""`BitNetModel.embed` on the tiny BitNet embedding models (Qwen3 and Gemma3
backbones) of fixtures/embed: the vectors of their PyTorch reference, from
the Hugging Face files and from bitnet.cpp's I2_S GGUF."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bitnet
from conftest import FIXTURES


# The Gemma3 fixture's GGUF carries a vocabulary that bitnet.cpp's converter
# rewrote for its tiny byte-level tokenizer, which cannot spell every byte of
# these texts; the model crate checks that file from token ids instead.
@pytest.mark.parametrize("backbone, form", [("qwen3", "hf"), ("qwen3", "gguf"), ("gemma3", "hf")])
def test_embeddings_match_the_reference(backbone: str, form: str) -> None:
    d = FIXTURES / "embed" / backbone
    reference = json.loads((d / "reference.json").read_text())
    path = d if form == "hf" else d / f"{backbone}-i2_s.gguf"
    m = bitnet.BitNetModel.from_pretrained(str(path), n_ctx=0)
    assert m.is_embedding
    texts = [t["text"] for t in reference["texts"]]
    vectors = m.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape[0] == len(texts)
    key = "embedding" if form == "hf" else "gguf_embedding"
    for v, t in zip(vectors, reference["texts"]):
        want = np.asarray(t[key], dtype=np.float64)
        cosine = float(v.astype(np.float64) @ want / (np.linalg.norm(v) * np.linalg.norm(want)))
        assert 1 - cosine < 1e-4, (t["text"], 1 - cosine)
        assert abs(float(np.linalg.norm(v)) - 1) < 1e-5
    one = m.embed(texts[0])
    assert one.shape == (vectors.shape[1],)
    assert np.array_equal(one, m.embed([texts[0]])[0])


def test_a_language_model_does_not_embed(model: bitnet.BitNetModel) -> None:
    assert not model.is_embedding
    with pytest.raises(ValueError, match="not an embedding model"):
        model.embed("hello")
