"""Talks to a running `bitnet serve` with the official `openai` package.

Usage: openai_client.py BASE_URL EXPECTATIONS_JSON

EXPECTATIONS_JSON holds the model name and the greedy texts the engine
produces alone for the prompts below (computed by the Rust test that starts
the server). Exits non-zero on the first failure; prints "N passed, 0 failed".
"""

import json
import sys

import openai
from openai import OpenAI

base_url, expectations_path = sys.argv[1], sys.argv[2]
with open(expectations_path) as f:
    want = json.load(f)
model = want["model"]
client = OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=300)
passed = 0


def check(name, cond, detail=""):
    global passed
    if not cond:
        print(f"FAIL {name}: {detail}", file=sys.stderr)
        sys.exit(1)
    passed += 1
    print(f"ok {name}")


# /v1/models
ids = [m.id for m in client.models.list().data]
check("models.list", model in ids, ids)

# Chat, whole.
chat_messages = [{"role": "user", "content": want["chat_prompt"]}]
r = client.chat.completions.create(
    model=model, messages=chat_messages, temperature=0, max_tokens=want["chat_max_tokens"]
)
check("chat text", r.choices[0].message.content == want["chat_text"], repr(r.choices[0].message.content))
check("chat role", r.choices[0].message.role == "assistant")
check("chat finish_reason", r.choices[0].finish_reason == want["chat_finish"], r.choices[0].finish_reason)
check("chat usage", r.usage.prompt_tokens == want["chat_prompt_tokens"]
      and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
check("chat id", r.id.startswith("chatcmpl-") and r.object == "chat.completion", r.id)

# Chat, streamed with usage.
stream = client.chat.completions.create(
    model=model,
    messages=chat_messages,
    temperature=0,
    max_completion_tokens=want["chat_max_tokens"],
    stream=True,
    stream_options={"include_usage": True},
)
text, finish, usage, n_chunks = "", None, None, 0
for chunk in stream:
    n_chunks += 1
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        text += choice.delta.content or ""
        finish = choice.finish_reason or finish
check("chat stream text", text == want["chat_text"], repr(text))
check("chat stream finish", finish == want["chat_finish"], finish)
check("chat stream usage", usage is not None and usage.prompt_tokens == want["chat_prompt_tokens"], usage)
check("chat stream chunks", n_chunks >= 3, n_chunks)

# Completions, whole and streamed.
r = client.completions.create(
    model=model, prompt=want["text_prompt"], temperature=0, max_tokens=want["text_max_tokens"]
)
check("completion text", r.choices[0].text == want["text_text"], repr(r.choices[0].text))
check("completion finish", r.choices[0].finish_reason == want["text_finish"], r.choices[0].finish_reason)
text = ""
for chunk in client.completions.create(
    model=model, prompt=want["text_prompt"], temperature=0, max_tokens=want["text_max_tokens"], stream=True
):
    for choice in chunk.choices:
        text += choice.text
check("completion stream text", text == want["text_text"], repr(text))

# Seeded sampling is reproducible.
a = client.completions.create(model=model, prompt=want["text_prompt"], temperature=1.0, seed=7, max_tokens=4)
b = client.completions.create(model=model, prompt=want["text_prompt"], temperature=1.0, seed=7, max_tokens=4)
check("seed", a.choices[0].text == b.choices[0].text, (a.choices[0].text, b.choices[0].text))
r = client.chat.completions.create(
    model=model, messages=chat_messages, temperature=0.7, top_p=0.9, max_tokens=4,
    presence_penalty=0.5, frequency_penalty=0.5, stop=["\n\n"],
)
check("sampling fields accepted", r.choices[0].finish_reason in ("stop", "length"), r)

# Log-probabilities (greedy: the sampled token is the most likely one).
r = client.chat.completions.create(
    model=model, messages=chat_messages, temperature=0, max_tokens=want["chat_max_tokens"],
    logprobs=True, top_logprobs=2,
)
content = r.choices[0].logprobs.content
check("chat logprobs count", len(content) == r.usage.completion_tokens, (len(content), r.usage))
check("chat logprobs spell the text", "".join(t.token for t in content) == r.choices[0].message.content,
      [t.token for t in content])
check("chat top_logprobs", all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
                               and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6
                               and t.top_logprobs[1].logprob <= t.logprob <= 0 for t in content), content)
r = client.completions.create(
    model=model, prompt=want["text_prompt"], temperature=0, max_tokens=want["text_max_tokens"], logprobs=3
)
lp = r.choices[0].logprobs
check("completion logprobs", "".join(lp.tokens) == r.choices[0].text
      and len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
      and all(len(m) == 3 and tok in m for m, tok in zip(lp.top_logprobs, lp.tokens)), lp)

# n > 1: independent samples, the prompt counted once.
r = client.chat.completions.create(
    model=model, messages=chat_messages, temperature=1.0, seed=3, max_tokens=4, n=3
)
check("n=3 choices", [c.index for c in r.choices] == [0, 1, 2], r.choices)
check("n=3 usage", r.usage.prompt_tokens == want["chat_prompt_tokens"], r.usage)
texts = {}
for chunk in client.chat.completions.create(
    model=model, messages=chat_messages, temperature=1.0, seed=3, max_tokens=4, n=3, stream=True
):
    for choice in chunk.choices:
        texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
check("n=3 streamed like whole", [texts[i] for i in range(3)] == [c.message.content for c in r.choices],
      (texts, [c.message.content for c in r.choices]))

# Structured output: the client's own parse() with a pydantic model sends a
# strict json_schema response_format; every choice must parse into it.
from typing import Literal  # noqa: E402

from pydantic import BaseModel, Field  # noqa: E402


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)
    licence: Literal["MIT", "BSD", "GPL"]


r = client.chat.completions.parse(
    model=model, messages=chat_messages, temperature=1.0, seed=4, max_tokens=80, n=2, response_format=Person
)
check("parse() json_schema", len(r.choices) == 2 and all(
    c.finish_reason == "stop" and isinstance(c.message.parsed, Person) for c in r.choices),
    [c.message.content for c in r.choices])
r = client.chat.completions.create(
    model=model, messages=chat_messages, temperature=1.0, max_tokens=120, response_format={"type": "json_object"}
)
content = r.choices[0].message.content
# A random-weight model may write one endless key; a finished answer parses.
check("json_object", content.startswith("{") and (
    r.choices[0].finish_reason == "length" or isinstance(json.loads(content), dict)), content)

# Any model name is served (as by llama-server) and echoed.
r = client.chat.completions.create(
    model="gpt-3.5-turbo", messages=chat_messages, temperature=0, max_tokens=want["chat_max_tokens"]
)
check("any model name", r.model == "gpt-3.5-turbo" and r.choices[0].message.content == want["chat_text"], r)

# Errors come back as the client's typed exceptions.
def raises(name, exc, **kwargs):
    try:
        client.chat.completions.create(**kwargs)
    except exc as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(name, "message" in body and "type" in body, body)
        return
    except Exception as e:  # noqa: BLE001
        check(name, False, f"wrong exception {type(e).__name__}: {e}")
    check(name, False, "no exception")


raises("empty messages", openai.BadRequestError, model=model, messages=[])
raises("n=0", openai.BadRequestError, model=model, messages=chat_messages, n=0)
raises("top_logprobs without logprobs", openai.BadRequestError, model=model, messages=chat_messages,
       top_logprobs=2)
raises("max_tokens beyond context", openai.BadRequestError, model=model, messages=chat_messages, max_tokens=10**7)
raises("bad temperature", openai.BadRequestError, model=model, messages=chat_messages, temperature=7)
try:
    client.chat.completions.create(model=model, messages=chat_messages, max_tokens="ten")
    check("type error message", False, "no exception")
except openai.BadRequestError as e:
    check("type error message", e.body.get("message") ==
          "Invalid type for 'max_tokens': expected an integer, but got a string instead.", e.body)

print(f"{passed} passed, 0 failed")
