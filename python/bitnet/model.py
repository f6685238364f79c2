"""``BitNetModel``: load a 1.58-bit model and generate text with it."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import _native, _openai
from .errors import DeviceError

__all__ = ["BitNetModel"]

#: How long one wait for the engine lasts before Python gets control back
#: (so Ctrl-C is seen within a token).
_POLL_SECONDS = 0.02

Prompt = Union[str, Sequence[int]]
Message = Dict[str, Any]


def _check_device(device: str) -> None:
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda:0', not {device!r}")
    if device == "cpu":
        return
    if not re.fullmatch(r"cuda(:\d+)?|gpu", device):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda[:N]'")
    # The native check names what is missing: the NVIDIA driver, the GPU,
    # NVRTC, or (where all are there) the GPU forward pass of this build.
    why = _native.device_error(device)
    if why is not None:
        raise DeviceError(f"cannot use device {device!r}: {why}")


def _int_or_none(name: str, value: Any, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer or None, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if value < low or value > high or (low_open and value == low):
        left = "(" if low_open else "["
        raise ValueError(f"{name} must be in {left}{low}, {high}], not {value}")
    return float(value)


def _sampling(
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    seed: Optional[int],
    stop: Union[None, str, Sequence[str]],
) -> Dict[str, Any]:
    """The sampling options, checked, as ``_native.Model.submit`` takes them.
    ``temperature <= 0`` is greedy; ``seed`` of None (or -1) is random."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or math.isnan(temperature):
        raise ValueError(f"temperature must be a number, not {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = all tokens), not {top_k!r}")
    if seed == -1:
        seed = None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ValueError(f"seed must be an integer in [0, 2**64) or None, not {seed!r}")
    if stop is None:
        stops: List[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    else:
        stops = list(stop)
        if not all(isinstance(s, str) for s in stops):
            raise ValueError(f"stop must be a string or a list of strings, not {stop!r}")
    return dict(
        temperature=max(float(temperature), 0.0),
        top_k=top_k,
        top_p=_number("top_p", top_p, 0.0, 1.0, low_open=True),
        min_p=_number("min_p", min_p, 0.0, 1.0),
        repeat_penalty=_number("repeat_penalty", repeat_penalty, 0.0, math.inf, low_open=True),
        seed=seed,
        stop=stops,
    )


def _max_tokens(value: Any) -> Optional[int]:
    """None or a negative count: until the end of text or of the context."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_tokens must be an integer or None, not {value!r}")
    return value if value >= 0 else None


class _Run:
    """One generation on the engine thread: its text pieces, then its end."""

    def __init__(self, stream: "_native.Stream") -> None:
        self._stream = stream
        self.outcome: Optional[Dict[str, Any]] = None

    def pieces(self) -> Iterator[str]:
        """The text as it becomes final. Leaving early (``break``, an
        exception, Ctrl-C) cancels the generation."""
        try:
            while True:
                event = self._stream.next(_POLL_SECONDS)
                if event is None:
                    continue
                kind, value = event
                if kind == "text":
                    yield value
                else:
                    self.outcome = value
                    return
        finally:
            if self.outcome is None:
                self._stream.cancel()

    def text(self) -> str:
        return "".join(self.pieces())

    def cancel(self) -> None:
        self._stream.cancel()


class BitNetModel:
    """A 1.58-bit (ternary) language model on the CPU.

    Load one with :meth:`from_pretrained`, then call :meth:`generate`,
    :meth:`generate_batch`, :meth:`chat`, or the llama-cpp-python-style
    :meth:`create_completion` and :meth:`create_chat_completion`.

    Example::

        from bitnet import BitNetModel
        model = BitNetModel.from_pretrained("builtin")
        print(model.generate("Permission is hereby granted,", max_tokens=30, temperature=0))

    One engine thread per model runs every generation — from any number of
    Python threads, and every prompt of a :meth:`generate_batch` — through
    shared forward passes (continuous batching). The GIL is released while
    the model works, and Ctrl-C stops a generation within a token.
    """

    def __init__(self, native: "_native.Model") -> None:
        """Wraps a loaded native model; use :meth:`from_pretrained`."""
        self._native = native
        self._metadata: Optional[Dict[str, Any]] = None

    # -- loading -----------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model: str = "builtin",
        *,
        n_threads: Optional[int] = None,
        n_ctx: int = 4096,
        kv_type: str = "f16",
        kernel: Optional[str] = None,
        device: str = "cpu",
        n_parallel: int = 8,
        n_batch: int = 512,
        progress: bool = True,
    ) -> "BitNetModel":
        """Loads a model.

        Args:
            model: a GGUF file, a Hugging Face model directory
                (``config.json`` + safetensors), a Hub repo id such as
                ``microsoft/bitnet-b1.58-2B-4T-gguf`` (downloaded once into the
                standard Hugging Face cache, with a progress bar), a short
                name (``bitnet-b1.58-2b``, ``bitnet-b1.58-2B-4T``), or
                ``"builtin"``: the small demo model inside the package.
            n_threads: compute threads (None: all CPUs).
            n_ctx: context size in tokens (0: the model's training context,
                at most 4096).
            kv_type: KV cache precision, ``"f16"``, ``"f32"`` or ``"q8"``.
            kernel: ``"scalar"``, ``"avx2"``, ``"avxvnni"`` or ``"avx512"`` to force a kernel
                level (None: ``BITNET_KERNEL``, else the best this CPU has).
            device: ``"cpu"`` or ``"cuda[:N]"``. A GPU raises
                :class:`bitnet.DeviceError` with one line naming what is
                missing (the NVIDIA driver, the GPU, NVRTC); on a machine
                with all three, that this build has no GPU forward pass yet.
            n_parallel: sequences decoded together (each gets its own KV
                cache when first needed).
            n_batch: prompt tokens per forward pass.
            progress: show download progress bars.

        Raises:
            FileNotFoundError: ``model`` is a path that does not exist.
            bitnet.ModelLoadError: the files are damaged or unsupported.
            bitnet.DownloadError: the Hub could not provide the model.
            ValueError: an argument is out of range.
        """
        _check_device(device)
        if not isinstance(model, str):
            model = str(model)  # a pathlib.Path
        n_threads = _int_or_none("n_threads", n_threads, 1)
        ctx = _int_or_none("n_ctx", n_ctx, 0)
        _int_or_none("n_parallel", n_parallel, 1)
        _int_or_none("n_batch", n_batch, 1)
        native = _native.Model(
            model,
            n_threads=n_threads,
            n_ctx=ctx or None,
            kv_type=kv_type,
            kernel=kernel,
            n_parallel=n_parallel,
            n_batch=n_batch,
            progress=progress,
        )
        return cls(native)

    def close(self) -> None:
        """Stops the model's engine thread; later calls raise
        :class:`bitnet.BitNetError`."""
        self._native.close()

    def __enter__(self) -> "BitNetModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"BitNetModel({self._native.name!r}, architecture={self.architecture!r}, "
            f"n_ctx={self.n_ctx}, kernel={self.kernel!r}, n_threads={self.n_threads})"
        )

    # -- properties ----------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Context size in tokens."""
        return self._native.n_ctx

    @property
    def n_vocab(self) -> int:
        """Vocabulary size (columns of :meth:`logits`)."""
        return self._native.n_vocab

    @property
    def n_threads(self) -> int:
        """Compute threads."""
        return self._native.n_threads

    @property
    def kernel(self) -> str:
        """The kernel level in use: ``"scalar"``, ``"avx2"``, ``"avxvnni"`` or ``"avx512"``."""
        return self._native.kernel

    @property
    def architecture(self) -> str:
        """The architecture as GGUF names it (``bitnet-b1.58``, ``bitnet``, ``llama``)."""
        return self._native.architecture

    @property
    def name(self) -> str:
        """The model's file, directory, or ``builtin:demo-bitnet``."""
        return self._native.name

    @property
    def metadata(self) -> Dict[str, Any]:
        """The model file's metadata: the GGUF key-value pairs (arrays longer
        than 64 items, such as the vocabulary, left out), or the Hugging Face
        ``config.json``."""
        if self._metadata is None:
            self._metadata = json.loads(self._native.metadata_json) or {}
        return dict(self._metadata)

    # -- tokens --------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = False) -> List[int]:
        """Token ids of ``text``, with BOS first if ``add_bos`` and the model has
        one; ``special`` parses special-token text such as ``<|eot_id|>``."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, not {type(text).__name__}")
        return self._native.tokenize(text, add_bos, special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """The text of token ids (special tokens dropped unless ``special``)."""
        return self._native.detokenize(_ids(ids), special)

    def logits(self, ids: Sequence[int]) -> "Any":
        """Logits at every position of ``ids``: a ``numpy.float32`` array of
        shape ``[len(ids), n_vocab]``; row ``i`` predicts the token after
        ``ids[i]``."""
        return self._native.logits(_ids(ids))

    def perplexity(self, text: str, n_ctx: Optional[int] = None) -> float:
        """Perplexity of ``text`` as llama-perplexity measures it: the text is
        cut into windows of ``n_ctx - 1`` tokens (default: the model's
        context), each run as BOS + window, every window token scored."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, not {type(text).__name__}")
        return self._native.perplexity(text, _int_or_none("n_ctx", n_ctx, 2))

    def embed(self, texts: Union[str, Sequence[str]]) -> "Any":
        """Embeddings of ``texts`` from a BitNet embedding model
        (bitnet-embedding-0.6b, -270m): L2-normalised vectors as a
        ``numpy.float32`` array ``[len(texts), dim]``, or ``[dim]`` for one
        string. Texts are batched together in the forward passes.

        Raises:
            ValueError: the model is a language model (it has no embedding
                pooling), or a text is empty.
            bitnet.ContextLengthError: a text is longer than the context.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in batch):
            raise ValueError("texts must be a string or a list of strings")
        if not self._native.is_embedding:
            raise ValueError(f"{self.name} is a language model, not an embedding model; use generate()")
        vectors = self._native.embed(batch)
        return vectors[0] if single else vectors

    @property
    def is_embedding(self) -> bool:
        """Whether this is an embedding model (:meth:`embed`) rather than a
        language model (:meth:`generate`)."""
        return self._native.is_embedding

    # -- generation ------------------------------------------------------------

    def _prompt_ids(self, prompt: Prompt) -> List[int]:
        if isinstance(prompt, str):
            return self._native.tokenize(prompt, True, True)
        if isinstance(prompt, (list, tuple)) or hasattr(prompt, "__array__"):
            return _ids(prompt)
        raise ValueError(f"prompt must be a string or a list of token ids, not {type(prompt).__name__}")

    def _start(self, ids: List[int], max_tokens: Any, options: Dict[str, Any]) -> _Run:
        return _Run(self._native.submit(ids, max_tokens=_max_tokens(max_tokens), **options))

    def generate(
        self,
        prompt: Prompt,
        max_tokens: Optional[int] = 100,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[None, str, Sequence[str]] = None,
        stream: bool = False,
        ignore_eos: bool = False,
    ) -> Union[str, Iterator[str]]:
        """Continues ``prompt`` and returns the new text (without the prompt).

        Args:
            prompt: text (BOS is added if the model uses one) or token ids.
            max_tokens: most tokens to generate (None or -1: until the end of
                text or of the context; always capped by the context).
            temperature: 0 is greedy decoding (argmax); higher is more random.
            top_k, top_p, min_p: llama.cpp's sampling filters (0, 1.0 and 0.0
                turn them off).
            repeat_penalty: penalise the last 64 tokens (1.0 = off).
            seed: seed of the sampler (None: a fresh one each call).
            stop: strings that end the text (not included).
            stream: return an iterator of text pieces as they become final
                instead of the whole text; leaving it early stops generation.
            ignore_eos: go on past end-of-text tokens (as llama.cpp's
                ``--ignore-eos``).

        Raises:
            bitnet.ContextLengthError: the prompt leaves no room in the context.
            ValueError: an argument is out of range.
            KeyboardInterrupt: Ctrl-C (generation stops within a token).
        """
        options = _sampling(temperature, top_k, top_p, min_p, repeat_penalty, seed, stop)
        options["ignore_eos"] = bool(ignore_eos)
        run = self._start(self._prompt_ids(prompt), max_tokens, options)
        return run.pieces() if stream else run.text()

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        max_tokens: Optional[int] = 100,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[None, str, Sequence[str]] = None,
        ignore_eos: bool = False,
    ) -> List[str]:
        """Generates a continuation of every prompt, all together: each
        forward pass serves every live sequence (continuous batching, up to
        ``n_parallel`` at once), so the results equal one :meth:`generate` per
        prompt (exactly, for greedy decoding or a given ``seed``) and arrive
        faster in aggregate. Takes :meth:`generate`'s options; returns the new
        texts in prompt order."""
        if isinstance(prompts, (str, bytes)):
            raise ValueError("prompts must be a list of prompts, not one string")
        options = _sampling(temperature, top_k, top_p, min_p, repeat_penalty, seed, stop)
        options["ignore_eos"] = bool(ignore_eos)
        ids = [self._prompt_ids(p) for p in prompts]
        runs: List[_Run] = []
        try:
            for prompt_ids in ids:
                runs.append(self._start(prompt_ids, max_tokens, options))
            return [run.text() for run in runs]
        finally:
            for run in runs:
                if run.outcome is None:
                    run.cancel()

    def chat(
        self,
        messages: Union[str, Sequence[Message]],
        max_tokens: Optional[int] = None,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        seed: Optional[int] = None,
        stop: Union[None, str, Sequence[str]] = None,
        stream: bool = False,
    ) -> Union[str, Iterator[str]]:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content":
        ...}, ...]``, or one user message as a string), through the model's
        chat template. Takes :meth:`generate`'s options; ``max_tokens`` None
        runs until the end of the turn."""
        options = _sampling(temperature, top_k, top_p, min_p, repeat_penalty, seed, stop)
        run = self._start(self._chat_ids(messages), max_tokens, options)
        return run.pieces() if stream else run.text()

    def _chat_ids(self, messages: Union[str, Sequence[Message]]) -> List[int]:
        pairs = _openai.chat_pairs(messages)
        if not self._native.has_chat_template:
            from .errors import BitNetError

            raise BitNetError(f"the model {self.name} has no chat template")
        rendered = self._native.render_chat(pairs, True)
        return self._native.tokenize(rendered, True, True)

    # -- llama-cpp-python / OpenAI shapes ---------------------------------------

    def create_completion(
        self,
        prompt: Prompt,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        stop: Union[None, str, Sequence[str]] = None,
        stream: bool = False,
        seed: Optional[int] = None,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
        echo: bool = False,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """A text completion as an OpenAI ``text_completion`` dict (or, with
        ``stream=True``, an iterator of its chunks), with llama-cpp-python's
        arguments and defaults. ``echo`` puts the prompt before the text."""
        options = _sampling(temperature, top_k, top_p, min_p, repeat_penalty, seed, stop)
        ids = self._prompt_ids(prompt)
        run = self._start(ids, max_tokens, options)
        prefix = (prompt if isinstance(prompt, str) else self.detokenize(ids)) if echo else ""
        shape = _openai.Completion(self._model_id())
        if stream:
            return shape.chunks(run, prefix)
        return shape.whole(run, prefix)

    __call__ = create_completion

    def create_chat_completion(
        self,
        messages: Sequence[Message],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        stream: bool = False,
        stop: Union[None, str, Sequence[str]] = None,
        seed: Optional[int] = None,
        max_tokens: Optional[int] = None,
        repeat_penalty: float = 1.0,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """A chat reply as an OpenAI ``chat.completion`` dict (or, with
        ``stream=True``, an iterator of ``chat.completion.chunk`` dicts), with
        llama-cpp-python's arguments and defaults."""
        options = _sampling(temperature, top_k, top_p, min_p, repeat_penalty, seed, stop)
        run = self._start(self._chat_ids(messages), max_tokens, options)
        shape = _openai.ChatCompletion(self._model_id())
        if stream:
            return shape.chunks(run)
        return shape.whole(run)

    def _model_id(self) -> str:
        """The model's name in OpenAI objects (as ``bitnet serve`` names it)."""
        path = self._native.path
        if path is None:
            return "demo-bitnet"
        base = path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
        return base[:-5] if base.endswith(".gguf") else base

    # -- serving ------------------------------------------------------------------

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        parallel: int = 4,
        queue: int = 64,
        model_name: Optional[str] = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        """Serves this model over HTTP until Ctrl-C, in this process: the same
        server as ``bitnet serve`` (OpenAI API under ``/v1``, ``POST
        /generate``, ``/health``, ``/metrics``), with its own ``parallel``
        slots."""
        _native.serve(
            self._native,
            host=host,
            port=port,
            parallel=parallel,
            queue=queue,
            model_name=model_name or self._model_id(),
            shutdown_timeout=shutdown_timeout,
        )


def _ids(ids: Any) -> List[int]:
    """Token ids as a list of Python ints (from a list, tuple or array)."""
    if isinstance(ids, (str, bytes)):
        raise ValueError("expected token ids, not a string")
    try:
        out = [int(i) for i in ids]
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected a sequence of token ids: {e}") from None
    for original, value in zip(ids, out):
        if isinstance(original, float) and original != value:
            raise ValueError(f"token id {original!r} is not an integer")
    return out
