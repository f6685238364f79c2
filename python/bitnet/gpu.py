"""GPU models: ``from bitnet.gpu import BitNetGPUModel``.

This build of bitnet has no CUDA backend yet: the class exists so that code
written for the GPU variant imports, and loading says plainly why it cannot
run. Use :class:`bitnet.BitNetModel` (``device="cpu"``) meanwhile.
"""

from __future__ import annotations

from typing import Any

from .errors import DeviceError
from .model import BitNetModel, NO_CUDA

__all__ = ["BitNetGPUModel", "cuda_available"]


def cuda_available() -> bool:
    """Whether this build can run models on an NVIDIA GPU (it cannot yet)."""
    return False


class BitNetGPUModel(BitNetModel):
    """A BitNet model on an NVIDIA GPU, with the same methods as
    :class:`bitnet.BitNetModel`. Loading raises :class:`bitnet.DeviceError`
    in this build, which has no CUDA backend."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model: str = "builtin", *, device: str = "cuda:0", **kwargs: Any
    ) -> "BitNetGPUModel":
        """Would load ``model`` on ``device``; raises :class:`bitnet.DeviceError`
        because this build has no CUDA backend."""
        raise DeviceError(f"cannot use device {device!r}: {NO_CUDA}")
