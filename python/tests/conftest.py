"""Shared fixtures of the Python package's tests.

The small models the tests need are in the repository's ``fixtures/``.
Tests that need something else (the ``bitnet`` binary, the ``openai``
package) skip with the reason when it is missing, except under CI
(``CI`` set), where a missing prerequisite fails the test instead of
hiding the proof.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

import bitnet

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
DEMO = FIXTURES / "demo-bitnet"

MIT = "Permission is hereby granted, free of charge,"
PROMPTS = [
    MIT,
    'THE SOFTWARE IS PROVIDED "AS IS"',
    "Licensed under the Apache License",
    "Redistribution and use in source and binary forms",
    "x",
]


def missing(what: str) -> None:
    """Skips the test for want of `what`, or fails it under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI")
    pytest.skip(what)


@pytest.fixture(scope="session")
def model() -> bitnet.BitNetModel:
    """The built-in demo model, shared by the tests that do not change it."""
    return bitnet.BitNetModel.from_pretrained("builtin", n_threads=2, n_ctx=512)


@pytest.fixture(scope="session")
def manifest() -> Dict[str, Any]:
    return json.loads((DEMO / "reference" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def bitnet_binary() -> Path:
    """The `bitnet` command built by cargo (`BITNET_BIN`, else the workspace's
    target directory)."""
    candidates = []
    if os.environ.get("BITNET_BIN"):
        candidates.append(Path(os.environ["BITNET_BIN"]))
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    candidates += [target / "release" / "bitnet", target / "debug" / "bitnet"]
    found = shutil.which("bitnet")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file():
            return c
    missing("the bitnet binary (cargo build --release -p bitnet-cli)")
    raise AssertionError("unreachable")
