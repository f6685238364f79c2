"""How much Python costs, and what batching gains.

Runs, on one model file, alternating in one process tree:

* ``bitnet run`` (the binary, its own timings of prompt and generation) and
  ``BitNetModel.generate(stream=True)`` (wall time as the caller sees it) on
  the same prompt and token count: the Python overhead per token;
* ``generate_batch`` of N prompts against a loop of ``generate`` over the same
  prompts: aggregate tokens/s, wall time including prompt processing.

Usage (a BitNet b1.58 2B-4T-shaped file made by the engine's example):

    cargo run --release -p bitnet-engine --example random_gguf -- 2b4t /tmp/2b4t.gguf f16 ../shared/fixtures/tiny-bitnet
    python python/benches/generate.py --model /tmp/2b4t.gguf --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import bitnet

PROMPTS = [
    "Explain quantum computing in simple terms:",
    "What is machine learning?",
    "Explain neural networks",
    "Write a haiku about the sea.",
    "List three uses of copper.",
    "Why is the sky blue?",
    "Summarise the plot of Hamlet.",
    "How do vaccines work?",
    "What is a ternary weight?",
    "Describe a CPU cache.",
    "Translate 'good morning' into French.",
    "What is 17 times 23?",
    "Name a prime number above 100.",
    "Who wrote Don Quixote?",
    "What does HTTP stand for?",
    "Give a synonym for 'rapid'.",
]


def binary_time(binary: Path, model: str, threads: int, n: int) -> float:
    """Seconds `bitnet run` spends on the prompt and `n` tokens (its own
    timings, without loading)."""
    out = subprocess.run(
        [str(binary), "run", "-m", model, "-p", PROMPTS[0], "-n", str(n), "--temp", "0", "--ignore-eos",
         "-t", str(threads), "--output-format", "json"],
        capture_output=True, text=True, check=True,
    )
    t = json.loads(out.stdout)["timings"]
    assert t["predicted_n"] == n
    return (t["prompt_ms"] + t["predicted_ms"]) / 1e3


def python_time(m: bitnet.BitNetModel, n: int) -> float:
    """Seconds `generate` takes for the same prompt and `n` tokens, as the
    caller sees them (tokenising, queueing, every piece through Python)."""
    t0 = time.perf_counter()
    pieces = list(m.generate(PROMPTS[0], n, temperature=0, ignore_eos=True, stream=True))
    elapsed = time.perf_counter() - t0
    assert pieces
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bitnet-bin", default=str(Path(__file__).resolve().parents[2] / "target/release/bitnet"))
    a = p.parse_args()

    m = bitnet.BitNetModel.from_pretrained(a.model, n_threads=a.threads, n_ctx=1024, n_parallel=a.batch)
    print(f"{m!r}")
    python_time(m, 8)  # warm-up

    times_bin, times_py = [], []
    for _ in range(a.repeats):
        times_bin.append(binary_time(Path(a.bitnet_bin), a.model, a.threads, a.tokens))
        times_py.append(python_time(m, a.tokens))
    b, q = statistics.median(times_bin), statistics.median(times_py)
    print(f"prompt + {a.tokens} tokens, median: bitnet run {b:.3f} s ({', '.join(f'{t:.3f}' for t in times_bin)}), "
          f"python generate {q:.3f} s ({', '.join(f'{t:.3f}' for t in times_py)}); "
          f"python overhead {1e3 * (q - b) / a.tokens:+.2f} ms per token ({100 * (q / b - 1):+.2f} %)")

    prompts = PROMPTS[: a.batch]
    loop_rates, batch_rates = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for prompt in prompts:
            m.generate(prompt, a.tokens, temperature=0, ignore_eos=True)
        loop_rates.append(len(prompts) * a.tokens / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        m.generate_batch(prompts, a.tokens, temperature=0, ignore_eos=True)
        batch_rates.append(len(prompts) * a.tokens / (time.perf_counter() - t0))
    lo, ba = statistics.median(loop_rates), statistics.median(batch_rates)
    print(f"{len(prompts)} prompts x {a.tokens} tokens: loop of generate {lo:.2f} tok/s "
          f"({', '.join(f'{r:.2f}' for r in loop_rates)}), generate_batch {ba:.2f} tok/s "
          f"({', '.join(f'{r:.2f}' for r in batch_rates)}): {ba / lo:.2f}x")


if __name__ == "__main__":
    main()
