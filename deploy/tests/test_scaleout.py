"""Scale-out on one machine: two `bitnet serve` replicas behind HAProxy with
health checks. Under load, one replica is killed with SIGKILL and later
restarted: only the requests in flight on it fail, none once the balancer
has marked it down, and traffic returns to it after the restart.

Needs `haproxy` (Debian's package; CI installs it) and the `bitnet` binary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str:
    path = Path(os.environ.get("BITNET_BIN", ROOT / "target/release/bitnet"))
    if not path.is_file():
        missing("the bitnet binary (cargo build --release -p bitnet-cli)")
    return str(path)


def get(url: str, timeout: float = 5) -> Tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_replica(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary(), "serve", "-m", "builtin", "--port", str(port), "-t", "1", "-c", "256", "--parallel", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if get(f"http://127.0.0.1:{port}/health", 1)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"replica on {port} did not start")


class HAProxy:
    def __init__(self, port: int, backends: Dict[str, int], workdir: Path) -> None:
        self.socket = workdir / "haproxy.sock"
        cfg = workdir / "haproxy.cfg"
        servers = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in backends.items())
        cfg.write_text(
            f"""global
    stats socket {self.socket} level admin
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    # A connection refused by a dead replica goes to the other one.
    retries 2
    option redispatch
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
{servers}
"""
        )
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def status(self, server: str) -> str:
        data = b""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.socket))
                s.sendall(b"show stat\n")
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return "?"  # not started yet
        for line in data.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "replicas" and fields[1] == server:
                return fields[17]
        return "?"

    def wait_status(self, server: str, want: str, timeout: float = 20) -> float:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.status(server).startswith(want):
                return time.time()
            time.sleep(0.02)
        raise AssertionError(f"{server} never became {want} (is {self.status(server)})")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


Record = Tuple[float, float, Optional[int], str]


def load(url: str, stop: threading.Event, records: List[Record], lock: threading.Lock) -> None:
    body = json.dumps({"prompt": "Permission is hereby granted,", "max_tokens": 24, "temperature": 0}).encode()
    while not stop.is_set():
        t0 = time.time()
        req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = json.loads(r.read())["choices"][0]["text"]
                status, note = r.status, text
        except urllib.error.HTTPError as e:
            status, note = e.code, e.read()[:100].decode(errors="replace")
        except Exception as e:  # noqa: BLE001 - a failed request, recorded
            status, note = None, repr(e)[:100]
        with lock:
            records.append((t0, time.time(), status, note))


def test_a_replica_killed_under_load() -> None:
    if shutil.which("haproxy") is None:
        missing("haproxy (apt-get install haproxy)")
    ports = {"a": free_port(), "b": free_port()}
    replicas = {name: start_replica(p) for name, p in ports.items()}
    front = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        lb = HAProxy(front, ports, Path(tmp))
        try:
            lb.wait_status("a", "UP")
            lb.wait_status("b", "UP")
            records: List[Record] = []
            lock = threading.Lock()
            stop = threading.Event()
            clients = [threading.Thread(target=load, args=(f"http://127.0.0.1:{front}", stop, records, lock)) for _ in range(6)]
            for c in clients:
                c.start()
            time.sleep(2)
            killed_at = time.time()
            replicas["a"].send_signal(signal.SIGKILL)
            replicas["a"].wait()
            # Connections the kernel queued for the dying process until it
            # was gone were in flight on it too.
            dead_at = time.time()
            down_at = lb.wait_status("a", "DOWN")
            time.sleep(2)
            replicas["a"] = start_replica(ports["a"])
            up_at = lb.wait_status("a", "UP")
            time.sleep(2)
            stop.set()
            for c in clients:
                c.join(60)
            # Traffic came back: the restarted replica served requests.
            metrics = get(f"http://127.0.0.1:{ports['a']}/metrics")[1].decode()
            served = sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("bitnet_requests_total")
            )
        finally:
            lb.stop()
            for r in replicas.values():
                r.kill()
                r.wait()

    expected = records[0][3]
    failed = [r for r in records if r[2] != 200]
    wrong = [r for r in records if r[2] == 200 and r[3] != expected]
    in_flight = [r for r in records if r[0] < dead_at and r[1] > killed_at]
    after_down = [r for r in records if r[0] > down_at]
    print(
        f"\nscale-out: {len(records)} requests, {len(failed)} failed, {len(in_flight)} in flight at the kill; "
        f"marked down {down_at - killed_at:.2f} s after SIGKILL; {len(after_down)} requests after that; "
        f"back up {up_at - down_at:.2f} s after being marked down; restarted replica served {served:.0f}"
    )
    assert not wrong, wrong[:3]
    # Only requests that were in flight when the replica died failed.
    for r in failed:
        assert r[0] < dead_at and r[1] > killed_at, f"failed outside the kill: {r}"
    assert len(failed) <= len(in_flight)
    assert all(r[2] == 200 for r in after_down)
    assert len(after_down) > 10
    assert served > 0
