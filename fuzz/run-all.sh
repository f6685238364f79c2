#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) with the limits the README
# states: no input may take over 10 s or allocate over 2 GiB at once, and the
# process may not grow past 2 GiB (6 GiB for the whole-model targets, whose
# in-memory corpus of model files is most of it). Builds the seed corpora
# first. Exits non-zero on the first target that finds a crash, a timeout or
# an out-of-memory.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# FUZZ_SEED=N fixes libFuzzer's random seed: from the same corpus, a run then
# tries the same inputs in the same order, so CI's short runs (from the
# seed corpora, FUZZ_SEED=1) are repeatable, and a longer run here with the
# same seed has tried everything CI's will. Without it every run explores
# anew (the long runs the README reports).
#
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them (no sanitizer: `-s none`; libFuzzer's coverage guidance and the
# limits still apply).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf_parse gguf_model hf_checkpoint tokenizer_json chat_template http_body)
fi
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
./seed-corpora.sh
for t in "${targets[@]}"; do cargo fuzz build -s none --release "$t" 2>&1 | tail -1; done
for t in "${targets[@]}"; do
    rm -rf "artifacts/$t"
    mkdir -p "artifacts/$t"
    # Regression inputs (every input that ever failed) join the corpus.
    if [ -d "regressions/$t" ]; then cp regressions/"$t"/* "corpus/$t/" 2>/dev/null || true; fi
    echo "== $t for ${seconds}s"
    # Whole model files are seeds: let inputs be as long as the largest,
    # except for the container parser, whose 64 KiB header seeds hold what
    # it reads (1 MiB keeps tensor ranges in reach).
    max_len=$(find "corpus/$t" -type f -printf '%s\n' | sort -n | tail -1)
    max_len=$(( ${max_len:-4096} > 4096 ? ${max_len:-4096} : 4096 ))
    [ "$t" = gguf_parse ] && max_len=1048576
    # No allocation may exceed 2 GiB. libFuzzer keeps its corpus in memory:
    # for the targets whose inputs are whole multi-MB model files it alone
    # outgrows 2 GiB in minutes, so their process may hold 6 GiB.
    rss=2048
    case "$t" in gguf_model | hf_checkpoint) rss=6144 ;; esac
    cargo fuzz run -s none --release "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss" -malloc_limit_mb=2048 \
        -max_len="$max_len" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+.*(DONE|INITED)|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|.*deadly signal|.*panicked at.*|.*timeout|.*out-of-memory)" || true
    if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/timeout-*" >/dev/null \
        || compgen -G "artifacts/$t/oom-*" >/dev/null || compgen -G "artifacts/$t/leak-*" >/dev/null; then
        echo "$t: failing inputs in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
