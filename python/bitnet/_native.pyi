"""Type stubs of the native module (Rust, built by maturin)."""

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

def kernels_available() -> List[str]: ...

class Model:
    def __init__(
        self,
        model: str,
        *,
        n_threads: Optional[int] = None,
        n_ctx: Optional[int] = None,
        kv_type: str = "f16",
        kernel: Optional[str] = None,
        n_parallel: int = 8,
        n_batch: int = 512,
        progress: bool = True,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Optional[str]: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def kernel(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def metadata_json(self) -> str: ...
    @property
    def stop_ids(self) -> List[int]: ...
    @property
    def bos_id(self) -> Optional[int]: ...
    @property
    def has_chat_template(self) -> bool: ...
    @property
    def running(self) -> int: ...
    @property
    def queued(self) -> int: ...
    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> List[int]: ...
    def detokenize(self, ids: List[int], special: bool = False) -> str: ...
    def render_chat(self, messages: List[Tuple[str, str]], add_generation_prompt: bool = True) -> str: ...
    def logits(self, ids: List[int]) -> npt.NDArray[np.float32]: ...
    def perplexity(self, text: str, n_ctx: Optional[int] = None) -> float: ...
    def submit(
        self,
        ids: List[int],
        *,
        max_tokens: Optional[int],
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        seed: Optional[int],
        stop: List[str],
        ignore_eos: bool = False,
    ) -> Stream: ...
    def close(self) -> None: ...

class Stream:
    @property
    def n_prompt(self) -> int: ...
    def next(self, timeout: float) -> Optional[Tuple[str, Union[str, Dict[str, Any]]]]: ...
    def cancel(self) -> None: ...

def serve(
    model: Model,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    parallel: int = 4,
    queue: int = 64,
    model_name: Optional[str] = None,
    shutdown_timeout: float = 30.0,
) -> None: ...
