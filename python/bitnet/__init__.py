"""Fast, lossless inference for 1.58-bit (ternary) LLMs on the CPU.

::

    from bitnet import BitNetModel
    model = BitNetModel.from_pretrained("bitnet-b1.58-2b")
    output = model.generate("Explain quantum computing in simple terms:", max_tokens=100)

:class:`BitNetModel` loads GGUF files (I2_S, TL1, TL2, TQ1_0, TQ2_0), Hugging
Face checkpoints, Hub repos (downloaded into the standard cache) or the small
built-in demo model (``"builtin"``, no download). Its methods follow
llama-cpp-python's: ``generate``, ``generate_batch``, ``chat``,
``create_completion``, ``create_chat_completion``, ``tokenize``,
``detokenize``, ``logits``, ``perplexity``. ``python -m bitnet serve`` runs
the OpenAI-compatible HTTP server.
"""

from __future__ import annotations

from ._native import __version__, kernels_available
from .errors import BitNetError, ContextLengthError, DeviceError, DownloadError, ModelLoadError
from .model import BitNetModel

__all__ = [
    "BitNetModel",
    "BitNetError",
    "ContextLengthError",
    "DeviceError",
    "DownloadError",
    "ModelLoadError",
    "kernels_available",
    "__version__",
]
