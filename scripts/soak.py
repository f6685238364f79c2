#!/usr/bin/env python3
"""Soak test of `bitnet serve`: many streaming clients for minutes.

Starts the server on a free loopback port, then runs CLIENTS threads for
DURATION seconds. Each thread loops over requests made with the real
`openai` package:

* most are good requests (streamed chat or text completions, random length),
  read to the end: every one must succeed;
* some disconnect mid-stream (the client closes the response after a few
  chunks): the server must free the slot and go on;
* some are bad (malformed JSON, a wrong type, an out-of-range value, an
  unknown route, sent raw): each must get a 4xx in OpenAI's shape.

Meanwhile the server's resident memory is sampled every second. The report:
good requests and failures, latency p50/p99, time to first token p50/p99,
tokens/s, and RSS after warm-up against the end (growth must stay < 5 %).
Exit status 1 if any good request failed, a bad one got anything but a 4xx,
or RSS grew 5 % or more.

    python3 scripts/soak.py --model ../shared/fixtures/tiny-bitnet --duration 300 --clients 32
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.good = 0
        self.failed: list[str] = []
        self.disconnects = 0
        self.bad = 0
        self.bad_wrong: list[str] = []
        self.latency: list[float] = []
        self.ttft: list[float] = []
        self.tokens = 0


BAD_BODIES = [
    (b"{not json", "/v1/chat/completions"),
    (json.dumps({"model": "x", "prompt": "hi", "max_tokens": "ten"}).encode(), "/v1/completions"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}).encode(), "/v1/chat/completions"),
    (json.dumps({"messages": []}).encode(), "/v1/chat/completions"),
    (json.dumps({"prompt": "hi"}).encode(), "/v1/nowhere"),
]

PROMPTS = [
    "Permission is hereby granted, free of charge,",
    "The quick brown fox",
    "Once upon a time",
    "Explain neural networks",
    "What is machine learning?",
]


def client_loop(base: str, deadline: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    client = openai.OpenAI(base_url=base + "/v1", api_key="soak", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    while time.time() < deadline:
        roll = rng.random()
        if roll < 0.1:
            body, path = rng.choice(BAD_BODIES)
            req = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=60)
                with stats.lock:
                    stats.bad_wrong.append(f"{path}: 2xx for {body[:40]!r}")
            except urllib.error.HTTPError as e:
                payload = e.read()
                ok = 400 <= e.code < 500 and b'"error"' in payload
                with stats.lock:
                    stats.bad += 1
                    if not ok:
                        stats.bad_wrong.append(f"{path}: {e.code} {payload[:80]!r}")
            except Exception as e:  # noqa: BLE001 - reported
                with stats.lock:
                    stats.bad_wrong.append(f"{path}: {e!r}")
            continue
        disconnect = roll < 0.25
        max_tokens = rng.randint(8, 64)
        t0 = time.time()
        first = None
        n = 0
        try:
            if rng.random() < 0.5:
                stream = client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": rng.choice(PROMPTS)}],
                    max_tokens=max_tokens,
                    stream=True,
                    temperature=0.8,
                )
                pieces = (c.choices[0].delta.content for c in stream if c.choices)
            else:
                stream = client.completions.create(
                    model=model, prompt=rng.choice(PROMPTS), max_tokens=max_tokens, stream=True
                )
                pieces = (c.choices[0].text for c in stream if c.choices)
            for piece in pieces:
                if piece and first is None:
                    first = time.time()
                n += 1
                if disconnect and n >= 3:
                    stream.close()
                    break
            with stats.lock:
                if disconnect:
                    stats.disconnects += 1
                else:
                    stats.good += 1
                    stats.tokens += n
                    stats.latency.append(time.time() - t0)
                    if first is not None:
                        stats.ttft.append(first - t0)
        except Exception as e:  # noqa: BLE001 - reported
            with stats.lock:
                stats.failed.append(repr(e)[:200])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin")
    p.add_argument("--bitnet-bin", default=str(ROOT / "target/release/bitnet"))
    p.add_argument("--duration", type=float, default=300)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=float, default=60)
    a = p.parse_args()

    server = subprocess.Popen(
        [a.bitnet_bin, "serve", "-m", a.model, "--port", "0", "-t", str(a.threads), "-c", "512",
         "--parallel", str(a.parallel), "--queue", str(4 * a.clients)],
        stderr=subprocess.PIPE, text=True,
    )
    assert server.stderr is not None
    base = None
    for line in server.stderr:
        m = re.search(r"on (http://[\d.:]+)", line)
        if m:
            base = m.group(1)
            break
    if base is None:
        print("the server did not start", file=sys.stderr)
        return 1
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    stats = Stats()
    start = time.time()
    deadline = start + a.duration
    threads = [threading.Thread(target=client_loop, args=(base, deadline, stats, i)) for i in range(a.clients)]
    for t in threads:
        t.start()
    rss: list[tuple[float, float]] = []
    while any(t.is_alive() for t in threads):
        rss.append((time.time() - start, rss_mib(server.pid)))
        time.sleep(1)
    for t in threads:
        t.join()
    server.send_signal(2)
    server.wait(timeout=60)

    after_warmup = [r for t, r in rss if t >= a.warmup] or [r for _, r in rss]
    base_rss, end_rss, peak = after_warmup[0], statistics.mean(r for _, r in rss[-5:]), max(r for _, r in rss)
    growth = 100 * (end_rss / base_rss - 1)
    elapsed = time.time() - start
    print(f"server: {a.model}, {a.parallel} slots, {a.threads} threads; {a.clients} clients for {a.duration:.0f} s "
          f"(CPU: {os.cpu_count()} cores)")
    print(f"good requests: {stats.good} ok, {len(stats.failed)} failed; "
          f"disconnects mid-stream: {stats.disconnects}; bad requests: {stats.bad} answered 4xx, "
          f"{len(stats.bad_wrong)} wrong")
    print(f"latency p50 {percentile(stats.latency, 50):.2f} s, p99 {percentile(stats.latency, 99):.2f} s; "
          f"time to first token p50 {percentile(stats.ttft, 50):.2f} s, p99 {percentile(stats.ttft, 99):.2f} s; "
          f"{stats.tokens / elapsed:.1f} streamed chunks/s")
    print(f"RSS after {a.warmup:.0f} s warm-up {base_rss:.1f} MiB, at the end {end_rss:.1f} MiB "
          f"({growth:+.2f} %), peak {peak:.1f} MiB")
    for f in (stats.failed + stats.bad_wrong)[:10]:
        print("  ", f)
    return 0 if not stats.failed and not stats.bad_wrong and growth < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
