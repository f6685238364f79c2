"""``python -m bitnet``: serve a model over HTTP, or generate once.

    python -m bitnet serve --model MODEL --host 127.0.0.1 --port 8080
    python -m bitnet run --model MODEL --prompt "Once upon a time" -n 50
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import BitNetError, BitNetModel


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bitnet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("-m", "--model", default="builtin", help="GGUF file, HF directory, Hub repo id, or builtin")
        q.add_argument("-t", "--threads", type=int, default=None, help="compute threads (default: all CPUs)")
        q.add_argument("-c", "--ctx-size", type=int, default=4096, help="context size in tokens")
        q.add_argument("--kv-type", default="f16", choices=["f16", "f32", "q8"])

    s = sub.add_parser("serve", help="the OpenAI-compatible HTTP server (as `bitnet serve`)")
    model_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--parallel", type=int, default=4, help="sequences decoded together")
    s.add_argument("--alias", default=None, help="the model name clients see")

    r = sub.add_parser("run", help="generate a continuation of a prompt")
    model_args(r)
    r.add_argument("-p", "--prompt", required=True)
    r.add_argument("-n", "--max-tokens", type=int, default=100)
    r.add_argument("--temp", type=float, default=0.8)
    r.add_argument("--seed", type=int, default=None)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model = BitNetModel.from_pretrained(
            args.model, n_threads=args.threads, n_ctx=args.ctx_size, kv_type=args.kv_type
        )
        if args.command == "serve":
            try:
                model.serve(args.host, args.port, parallel=args.parallel, model_name=args.alias)
            except KeyboardInterrupt:
                return 0  # Ctrl-C is how a server is stopped; it has drained
        else:
            for piece in model.generate(
                args.prompt, args.max_tokens, temperature=args.temp, seed=args.seed, stream=True
            ):
                print(piece, end="", flush=True)
            print()
    except KeyboardInterrupt:
        return 130
    except (BitNetError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
