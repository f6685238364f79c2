"""Ctrl-C (KeyboardInterrupt) stops a long generation within a token and
leaves the model usable."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import pytest

import bitnet
from conftest import MIT


@pytest.fixture(autouse=True)
def sigint_raises() -> None:
    """A process started in the background by a non-interactive shell
    inherits SIGINT ignored, and Python then leaves it so: interrupt_main()
    would do nothing. Install Python's own handler for these tests."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def wait_idle(model: bitnet.BitNetModel, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if model._native.running == 0:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("stream", [False, True])
def test_keyboard_interrupt_stops_generation(stream: bool) -> None:
    # The scalar kernels and a long context make this generation take many
    # seconds; the interrupt comes after a fraction of one.
    model = bitnet.BitNetModel.from_pretrained("builtin", kernel="scalar", n_ctx=32768, n_threads=1)
    pieces = []
    timer = threading.Timer(0.3, _thread.interrupt_main)
    t0 = time.time()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        result = model.generate(MIT, max_tokens=None, temperature=0, ignore_eos=True, stream=stream)
        for piece in result if stream else [result]:
            pieces.append(piece)
    raised_after = time.time() - t0
    assert raised_after < 2.0, raised_after
    # The engine dropped the sequence at its next step.
    assert wait_idle(model, 1.0)
    # And the model still works.
    assert model.generate(MIT, max_tokens=8, temperature=0)
    if stream:
        assert pieces, "the stream yielded text before the interrupt"


def test_a_full_generation_takes_longer_than_the_interrupt() -> None:
    """The premise of the test above: without Ctrl-C the same generation
    runs for more than 3 s. A token never costs less than an earlier one (the
    attention grows), so the whole takes at least 64 times its first 1/64."""
    model = bitnet.BitNetModel.from_pretrained("builtin", kernel="scalar", n_ctx=32768, n_threads=1)
    n = len(model.tokenize(MIT))
    t0 = time.time()
    model.generate(MIT, max_tokens=(32768 - n) // 64, temperature=0, ignore_eos=True)
    assert 64 * (time.time() - t0) > 3.0
