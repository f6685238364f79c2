#!/usr/bin/env bash
# Builds the fuzz targets' seed corpora (fuzz/corpus/<target>/) from the
# repository's fixtures and, when present, the shared fixtures. Nothing
# generated here is committed; regression inputs live in fuzz/regressions/.
set -euo pipefail
cd "$(dirname "$0")"
root=..
shared="${BITNET_SHARED_FIXTURES:-$root/../shared/fixtures}"
mkdir -p corpus/{gguf_parse,gguf_model,hf_checkpoint,tokenizer_json,chat_template}

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
for t in corpus/*; do echo "$t: $(ls "$t" | wc -l) inputs"; done
