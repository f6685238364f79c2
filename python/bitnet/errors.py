"""The exceptions the ``bitnet`` package raises.

Everything the package raises on purpose is one of these, ``FileNotFoundError``
(a model path that does not exist), ``ValueError`` (an argument out of range)
or ``KeyboardInterrupt`` (Ctrl-C during a long call). A Rust panic never
escapes: it arrives as :class:`BitNetError` with "internal error" in its
message.
"""

from __future__ import annotations

__all__ = [
    "BitNetError",
    "ModelLoadError",
    "DownloadError",
    "ContextLengthError",
    "DeviceError",
]


class BitNetError(Exception):
    """Base class of the errors of the ``bitnet`` package."""


class ModelLoadError(BitNetError):
    """The model's files could not be loaded: a corrupt or truncated file, an
    unknown tensor type, shapes that disagree, or a model the engine does not
    support. The message names the file, tensor or field."""


class DownloadError(BitNetError):
    """The model could not be fetched from the Hugging Face Hub (not found,
    gated, offline and not cached, or the connection failed)."""


class ContextLengthError(BitNetError, ValueError):
    """The prompt does not fit in the model's context (``n_ctx``)."""


class DeviceError(BitNetError):
    """The requested device cannot be used (no GPU, no driver, or a build
    without that backend)."""
