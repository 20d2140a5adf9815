"""``mmdps tiny-model``: write a tiny random-weight model (:mod:`mmdps.models.tiny`) to a folder, offline.

    mmdps tiny-model --arch qwen2.5-vl --out /tmp/tiny-vl
"""

from __future__ import annotations

import argparse

from mmdps.models.tiny import ARCHS, TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_tiny_model


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, choices=ARCHS, help="model class (qwen2 is text-only)")
    parser.add_argument("--out", required=True, help="folder to write the model to")
    parser.add_argument("--hidden-size", type=int, default=64, help="language model width (default 64)")
    parser.add_argument("--num-layers", type=int, default=2, help="language model layers (default 2)")
    parser.add_argument("--num-heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--vocab", choices=("bpe", "byte"), default="bpe",
                        help="tokenizer: BPE trained offline (default) or 270 byte-level tokens")
    parser.add_argument("--vocab-size", type=int, default=4000, help="BPE vocabulary size (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the tokenizer (default 0)")
    parser.add_argument("--min-pixels", type=int, default=TINY_MIN_PIXELS,
                        help=f"image processor lower bound (default {TINY_MIN_PIXELS} = 56*56)")
    parser.add_argument("--max-pixels", type=int, default=TINY_MAX_PIXELS,
                        help=f"image processor upper bound (default {TINY_MAX_PIXELS} = 112*112)")


def run(args: argparse.Namespace) -> int:
    out = build_tiny_model(args.arch, args.out, hidden_size=args.hidden_size, num_layers=args.num_layers,
                           num_heads=args.num_heads, vocab=args.vocab, vocab_size=args.vocab_size, seed=args.seed,
                           min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    print(f"wrote a tiny {args.arch} model to {out}")
    return 0
