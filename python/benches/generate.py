"""How much Python costs, and what batching gains.

Runs, on one model file, alternating in one process tree:

* ``bitnet run`` (the binary) and ``BitNetModel.generate(stream=True)``:
  decoding tokens/s of each, measured between the first and the last token
  (prompt processing excluded from both), and the Python overhead per token;
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


def binary_rate(binary: Path, model: str, threads: int, n: int) -> float:
    out = subprocess.run(
        [str(binary), "run", "-m", model, "-p", PROMPTS[0], "-n", str(n), "--temp", "0", "--ignore-eos",
         "-t", str(threads), "--output-format", "json"],
        capture_output=True, text=True, check=True,
    )
    t = json.loads(out.stdout)["timings"]
    # The first generated token comes from the prompt's logits: n tokens take
    # n - 1 forward passes after it.
    return (t["predicted_n"] - 1) * 1e3 / t["predicted_ms"]


def python_rate(m: bitnet.BitNetModel, n: int) -> float:
    stamps = [time.perf_counter() for _ in m.generate(PROMPTS[0], n, temperature=0, ignore_eos=True, stream=True)]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


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
    python_rate(m, 8)  # warm-up

    rates_bin, rates_py = [], []
    for _ in range(a.repeats):
        rates_bin.append(binary_rate(Path(a.bitnet_bin), a.model, a.threads, a.tokens))
        rates_py.append(python_rate(m, a.tokens))
    b, q = statistics.mean(rates_bin), statistics.mean(rates_py)
    print(f"decode, {a.tokens} tokens: bitnet run {b:.2f} tok/s ({', '.join(f'{r:.2f}' for r in rates_bin)}), "
          f"python generate {q:.2f} tok/s ({', '.join(f'{r:.2f}' for r in rates_py)}); "
          f"python overhead {100 * (b / q - 1):+.2f} %")

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
    lo, ba = statistics.mean(loop_rates), statistics.mean(batch_rates)
    print(f"{len(prompts)} prompts x {a.tokens} tokens: loop of generate {lo:.2f} tok/s "
          f"({', '.join(f'{r:.2f}' for r in loop_rates)}), generate_batch {ba:.2f} tok/s "
          f"({', '.join(f'{r:.2f}' for r in batch_rates)}): {ba / lo:.2f}x")


if __name__ == "__main__":
    main()
