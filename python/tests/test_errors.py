"""Bad input raises the documented exception with a message that names the
problem; no Rust panic reaches Python."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

import bitnet
import bitnet.gpu
from bitnet.gpu import BitNetGPUModel
from conftest import DEMO, MIT


def test_missing_paths_are_file_not_found(tmp_path: Path) -> None:
    for spec in [str(tmp_path / "missing.gguf"), "./nope/model.gguf", str(tmp_path / "a" / "b")]:
        with pytest.raises(FileNotFoundError) as e:
            bitnet.BitNetModel.from_pretrained(spec)
        assert "no such file" in str(e.value)


def test_damaged_files_are_model_load_errors(tmp_path: Path) -> None:
    good = (DEMO / "gguf" / "demo-bitnet-i2_s.gguf").read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + os.urandom(4000))
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello")
    for path in (truncated, garbage, not_gguf):
        with pytest.raises(bitnet.ModelLoadError) as e:
            bitnet.BitNetModel.from_pretrained(str(path))
        assert path.name in str(e.value)
        assert isinstance(e.value, bitnet.BitNetError)
    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (hf / name).write_bytes((DEMO / name).read_bytes())
    (hf / "config.json").write_text("{not json")
    with pytest.raises(bitnet.ModelLoadError, match="config.json"):
        bitnet.BitNetModel.from_pretrained(str(hf))


def test_prompt_longer_than_the_context(model: bitnet.BitNetModel) -> None:
    long = " ".join(["Permission"] * 600)
    with pytest.raises(bitnet.ContextLengthError, match="512") as e:
        model.generate(long, max_tokens=4)
    assert isinstance(e.value, ValueError)
    with pytest.raises(bitnet.ContextLengthError):
        model.create_chat_completion([{"role": "user", "content": long}])
    with pytest.raises(bitnet.ContextLengthError):
        model.logits(list(range(1, 600)))


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"repeat_penalty": 0}, "repeat_penalty"),
        ({"seed": -5}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"stop": [1, 2]}, "stop"),
        ({"max_tokens": "ten"}, "max_tokens"),
    ],
)
def test_bad_sampling_options_are_value_errors(model: bitnet.BitNetModel, options: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        model.generate(MIT, **options)


def test_bad_arguments_are_value_errors(model: bitnet.BitNetModel) -> None:
    with pytest.raises(ValueError, match="kv_type"):
        bitnet.BitNetModel.from_pretrained("builtin", kv_type="f8")
    with pytest.raises(ValueError, match="kernel `sse9`"):
        bitnet.BitNetModel.from_pretrained("builtin", kernel="sse9")
    with pytest.raises(ValueError, match="n_threads"):
        bitnet.BitNetModel.from_pretrained("builtin", n_threads=0)
    with pytest.raises(ValueError, match="device"):
        bitnet.BitNetModel.from_pretrained("builtin", device="tpu")
    with pytest.raises(ValueError, match="out of range"):
        model.detokenize([model.n_vocab])
    with pytest.raises(ValueError, match="out of range"):
        model.logits([-1])
    with pytest.raises(ValueError, match="token ids"):
        model.logits([])
    with pytest.raises(ValueError, match="prompt"):
        model.generate(3.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        model.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError, match="messages"):
        model.chat([])
    with pytest.raises(ValueError, match="prompts"):
        model.generate_batch("one string")


def _has_libcuda() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_cuda_names_what_is_missing_in_one_line() -> None:
    # Without the NVIDIA driver (CI, CPU machines) the error names it; with
    # one, it names the missing GPU or NVRTC, or this build's missing GPU
    # forward pass.
    if _has_libcuda():
        expected = "no CUDA device|NVRTC not found|no GPU forward pass|need sm_80"
    else:
        expected = "no CUDA driver: libcuda.so.1 not found"
    for load in (
        lambda: bitnet.BitNetModel.from_pretrained("builtin", device="cuda:0"),
        lambda: BitNetGPUModel.from_pretrained("bitnet-b1.58-2b", device="cuda:0"),
        lambda: BitNetGPUModel.from_pretrained("builtin", device="cuda"),
    ):
        with pytest.raises(bitnet.DeviceError, match=expected) as e:
            load()
        assert "\n" not in str(e.value)
        assert str(e.value).startswith("cannot use device 'cuda")
    assert not bitnet.gpu.cuda_available()
    with pytest.raises(ValueError, match="unknown device"):
        BitNetGPUModel.from_pretrained("builtin", device="cuda:x")


def test_offline_hub_id_not_in_cache_is_a_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(bitnet.DownloadError, match="offline"):
        bitnet.BitNetModel.from_pretrained("bitnet-b1.58-2b")


def test_a_closed_model_refuses_work() -> None:
    m = bitnet.BitNetModel.from_pretrained("builtin", n_ctx=64)
    m.close()
    with pytest.raises(bitnet.BitNetError):
        m.generate(MIT, max_tokens=5)
