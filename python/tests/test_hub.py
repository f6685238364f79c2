"""Loading by Hub repo id, against a local server that speaks the Hugging
Face Hub's protocol (file listing, HEAD with etag and commit, GET): the file
lands in the standard cache, loads, and is used offline afterwards; the seed
examples' short names resolve to microsoft/bitnet-b1.58-2B-4T-gguf."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import bitnet
from conftest import DEMO, MIT

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Repos of files, served as the Hub serves them."""

    def __init__(self, repos: Dict[str, Dict[str, bytes]]) -> None:
        self.repos = repos
        self.requests: List[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _file(self) -> bytes | None:
                for repo, files in hub.repos.items():
                    for rev in ("main", COMMIT):
                        prefix = f"/{repo}/resolve/{rev}/"
                        if self.path.startswith(prefix):
                            return files.get(self.path[len(prefix):])
                return None

            def _head(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
                hub.requests.append("HEAD " + self.path)
                body = self._file()
                if body is None:
                    self.send_error(404)
                    return
                self._head(body)

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append("GET " + self.path)
                for repo, files in hub.repos.items():
                    if self.path == f"/api/models/{repo}/revision/main":
                        info = json.dumps({"sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(info)))
                        self.end_headers()
                        self.wfile.write(info)
                        return
                body = self._file()
                if body is None:
                    self.send_error(404)
                    return
                self._head(body)
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    gguf = (DEMO / "gguf" / "demo-bitnet-i2_s.gguf").read_bytes()
    files = {"README.md": b"# demo\n", "ggml-model-i2_s.gguf": gguf}
    fake = FakeHub({"test-org/demo-gguf": files, "microsoft/bitnet-b1.58-2B-4T-gguf": files})
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    yield fake
    fake.close()


def test_a_repo_id_is_downloaded_into_the_cache_and_used_offline(
    hub: FakeHub, tmp_path: Path, model: bitnet.BitNetModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = bitnet.BitNetModel.from_pretrained("test-org/demo-gguf", n_ctx=128, progress=False)
    cached = tmp_path / "hf" / "hub" / "models--test-org--demo-gguf" / "snapshots" / COMMIT / "ggml-model-i2_s.gguf"
    assert cached.is_file()
    assert m._native.path == str(cached)
    assert m.generate(MIT, max_tokens=16, temperature=0) == model.generate(MIT, max_tokens=16, temperature=0)
    assert any(r.startswith("GET /test-org/demo-gguf/resolve/") and r.endswith("/ggml-model-i2_s.gguf") for r in hub.requests)
    # Offline, the cached copy loads without a request.
    before = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = bitnet.BitNetModel.from_pretrained("test-org/demo-gguf", n_ctx=128)
    assert again.generate(MIT, max_tokens=16, temperature=0) == model.generate(MIT, max_tokens=16, temperature=0)
    assert len(hub.requests) == before


@pytest.mark.parametrize("name", ["bitnet-b1.58-2b", "bitnet-b1.58-2B-4T"])
def test_seed_short_names_resolve_to_the_official_repo(hub: FakeHub, name: str) -> None:
    m = bitnet.BitNetModel.from_pretrained(name, n_ctx=64, progress=False)
    assert "models--microsoft--bitnet-b1.58-2B-4T-gguf" in (m._native.path or "")
    assert any("/api/models/microsoft/bitnet-b1.58-2B-4T-gguf/revision/main" in r for r in hub.requests)


def test_a_repo_that_does_not_exist_is_a_download_error(hub: FakeHub) -> None:
    with pytest.raises(bitnet.DownloadError, match="no-such/repo"):
        bitnet.BitNetModel.from_pretrained("no-such/repo", progress=False)
