"""The package's surface: every public name is documented, the stubs cover
the native module, and the seed examples' names exist."""

from __future__ import annotations

import inspect
import pydoc
from pathlib import Path

import bitnet
import bitnet.gpu
from bitnet import _native


def test_every_public_name_has_a_docstring() -> None:
    for name in bitnet.__all__:
        obj = getattr(bitnet, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            assert (obj.__doc__ or "").strip(), name
    for name, member in inspect.getmembers(bitnet.BitNetModel):
        if name.startswith("_") and name != "__call__":
            continue
        assert (member.__doc__ or "").strip(), f"BitNetModel.{name}"
    assert bitnet.gpu.BitNetGPUModel.__doc__


def test_help_reads_well() -> None:
    text = pydoc.render_doc(bitnet.BitNetModel, renderer=pydoc.plaintext)
    for needle in ["from_pretrained", "generate_batch", "create_chat_completion", "continuous batching"]:
        assert needle in text
    signature = str(inspect.signature(bitnet.BitNetModel.from_pretrained))
    assert "model: 'str' = 'builtin'" in signature
    assert "n_ctx: 'int' = 4096" in signature
    gen = inspect.signature(bitnet.BitNetModel.generate).parameters
    assert gen["max_tokens"].default == 100
    assert [gen[k].default for k in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty")] == [
        0.8,
        40,
        0.95,
        0.05,
        1.0,
    ]


def test_stubs_cover_the_native_module() -> None:
    stub = (Path(bitnet.__file__).parent / "_native.pyi").read_text()
    assert (Path(bitnet.__file__).parent / "py.typed").exists()
    for cls in (_native.Model, _native.Stream):
        assert f"class {cls.__name__}" in stub
        for name in dir(cls):
            if not name.startswith("_"):
                assert f"def {name}(" in stub, f"{cls.__name__}.{name} missing from _native.pyi"
    for name in ("serve", "kernels_available", "device_error"):
        assert f"def {name}(" in stub


def test_the_readme_example_runs_as_written(capsys) -> None:  # type: ignore[no-untyped-def]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- ci: python-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert isinstance(scope["output"], str) and scope["output"]
    assert len(scope["outputs"]) == 2 and all(isinstance(o, str) for o in scope["outputs"])
    printed = capsys.readouterr().out
    assert printed.startswith(" free of charge, to any person obtaining a copy")
