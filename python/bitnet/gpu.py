"""GPU models: ``from bitnet.gpu import BitNetGPUModel``.

The CUDA kernels are compiled at run time by NVRTC for the GPU found, and
the package links no CUDA library: on a machine without the NVIDIA driver,
a GPU or NVRTC, loading raises :class:`bitnet.DeviceError` naming which is
missing. This build has no GPU forward pass yet: where the driver, a GPU and
NVRTC are all present, the error says that instead. Use
:class:`bitnet.BitNetModel` (``device="cpu"``) meanwhile.
"""

from __future__ import annotations

from typing import Any

from . import _native
from .model import BitNetModel

__all__ = ["BitNetGPUModel", "cuda_available"]


def cuda_available(device: str = "cuda:0") -> bool:
    """Whether a model can run on ``device`` (False in this build: it has
    no GPU forward pass yet)."""
    return _native.device_error(device) is None


class BitNetGPUModel(BitNetModel):
    """A BitNet model on an NVIDIA GPU, with the same methods as
    :class:`bitnet.BitNetModel`."""

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model: str = "builtin", *, device: str = "cuda:0", **kwargs: Any
    ) -> "BitNetGPUModel":
        """Loads ``model`` on ``device`` (``"cuda[:N]"``); raises
        :class:`bitnet.DeviceError` with one line naming what is missing."""
        if device == "cpu":
            raise ValueError('BitNetGPUModel runs on "cuda[:N]"; use BitNetModel for the CPU')
        native = super().from_pretrained(model, device=device, **kwargs)
        return cls(native._native)
