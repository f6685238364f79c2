"""OpenAI-shaped results (as llama-cpp-python returns them) and chat
message checking."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Sequence, Tuple, Union

if TYPE_CHECKING:
    from .model import _Run

_ids = itertools.count(1)

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def chat_pairs(messages: Union[str, Sequence[Dict[str, Any]]]) -> List[Tuple[str, str]]:
    """``(role, content)`` pairs of OpenAI chat messages, checked: a string is
    one user message; content may be a string, None, or a list of text parts."""
    if isinstance(messages, str):
        return [("user", messages)]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    pairs = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', not {type(m).__name__}")
        role = m.get("role")
        if role not in _ROLES:
            raise ValueError(
                f"messages[{i}]['role'] is {role!r}: expected system, developer, user, assistant or tool"
            )
        content = m.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise ValueError(f"messages[{i}]['content'][{j}] must be a text part: {{'type': 'text', 'text': ...}}")
                parts.append(part["text"])
            text = "".join(parts)
        else:
            raise ValueError(f"messages[{i}]['content'] must be a string or a list of text parts")
        pairs.append((_ROLES[role], text))
    return pairs


def _usage(outcome: Dict[str, Any]) -> Dict[str, int]:
    p, c = outcome["prompt_tokens"], outcome["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class Completion:
    """``text_completion`` objects for one model."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"cmpl-{next(_ids)}-{time.time_ns() % 10**9}"
        self.created = int(time.time())

    def _object(self, text: str, finish: Any) -> Dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }

    def whole(self, run: "_Run", prefix: str) -> Dict[str, Any]:
        text = prefix + run.text()
        assert run.outcome is not None
        out = self._object(text, run.outcome["finish_reason"])
        out["usage"] = _usage(run.outcome)
        return out

    def chunks(self, run: "_Run", prefix: str) -> Iterator[Dict[str, Any]]:
        if prefix:
            yield self._object(prefix, None)
        for piece in run.pieces():
            yield self._object(piece, None)
        assert run.outcome is not None
        last = self._object("", run.outcome["finish_reason"])
        last["usage"] = _usage(run.outcome)
        yield last


class ChatCompletion:
    """``chat.completion`` objects and chunks for one model."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{next(_ids)}-{time.time_ns() % 10**9}"
        self.created = int(time.time())

    def _head(self, kind: str) -> Dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, run: "_Run") -> Dict[str, Any]:
        text = run.text()
        assert run.outcome is not None
        out = self._head("chat.completion")
        out["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": run.outcome["finish_reason"],
            }
        ]
        out["usage"] = _usage(run.outcome)
        return out

    def _chunk(self, delta: Dict[str, Any], finish: Any) -> Dict[str, Any]:
        out = self._head("chat.completion.chunk")
        out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return out

    def chunks(self, run: "_Run") -> Iterator[Dict[str, Any]]:
        yield self._chunk({"role": "assistant", "content": ""}, None)
        for piece in run.pieces():
            yield self._chunk({"content": piece}, None)
        assert run.outcome is not None
        last = self._chunk({}, run.outcome["finish_reason"])
        last["usage"] = _usage(run.outcome)
        yield last
