#!/usr/bin/env bash
# Builds the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the
# repository's fixtures and, when present, the shared fixtures. Nothing
# generated here is committed; regression inputs live in fuzz/regressions/.
set -euo pipefail
cd "$(dirname "$0")"
root=..
shared="${BITNET_SHARED_FIXTURES:-$root/../shared/fixtures}"
mkdir -p corpus/{gguf_parse,gguf_model,hf_checkpoint,tokenizer_json,chat_template,http_body}

for f in "$root"/fixtures/*/gguf/*.gguf "$shared"/tl-formats/*.gguf; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .gguf)
    cp "$f" "corpus/gguf_model/$name"
    # The parser's corpus: headers and tables without most of the data.
    head -c 65536 "$f" > "corpus/gguf_parse/$name.head"
    cp "$f" "corpus/gguf_parse/$name"
done

for dir in "$root"/fixtures/demo-bitnet "$root"/fixtures/small-bitnet; do
    name=$(basename "$dir")
    { cat "$dir/config.json"; printf '\0'; cat "$dir/model.safetensors"; } > "corpus/hf_checkpoint/$name"
    { cat "$dir/tokenizer.json"; printf '\0'; cat "$dir/tokenizer_config.json"; } > "corpus/tokenizer_json/$name"
done

python3 - "$root" "$shared" <<'PY'
import json, pathlib, sys
root, shared = map(pathlib.Path, sys.argv[1:3])
configs = list(root.glob("fixtures/*/tokenizer_config.json")) + list(shared.glob("*/tokenizer_config.json"))
for i, path in enumerate(configs):
    template = json.loads(path.read_text()).get("chat_template")
    if isinstance(template, str):
        (pathlib.Path("corpus/chat_template") / f"{path.parent.name}-{i}").write_text(template)
PY
# Request bodies: a byte for the endpoint (0 chat, 1 completions,
# 2 /generate), then the JSON.
python3 - <<'PY'
import json, pathlib
out = pathlib.Path("corpus/http_body")
schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
          "age": {"type": "integer", "minimum": 0}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["name"], "additionalProperties": False}
bodies = [
    (0, {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
         "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"], "logprobs": True, "top_logprobs": 3, "n": 2, "seed": 1}),
    (0, {"messages": [{"role": "user", "content": "JSON"}], "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}),
    (0, {"messages": [{"role": "user", "content": "any JSON"}], "response_format": {"type": "json_object"}, "stream": True, "stream_options": {"include_usage": True}}),
    (1, {"prompt": "Once upon", "max_tokens": 16, "logprobs": 2, "grammar": 'root ::= ("yes" | "no") [0-9]{1,3} ws\nws ::= [ \t]*'}),
    (1, {"prompt": [1, 2, 3], "max_completion_tokens": 4, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "json_schema": schema}),
    (2, {"prompt": "Hello", "max_tokens": 50, "grammar": "%llguidance {}\nstart: /[a-z]+/ \" \" NUMBER\n%import common.NUMBER"}),
    (2, {"prompt": ["one"], "temperature": 0, "stop": "."}),
]
for i, (which, body) in enumerate(bodies):
    (out / f"seed-{i}").write_bytes(bytes([which]) + json.dumps(body).encode())
PY
for t in corpus/*; do echo "$t: $(ls "$t" | wc -l) inputs"; done
