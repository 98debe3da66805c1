"""The `wanlean` command (also `python -m wanlean`).

    wanlean label VIDEO_FILE     print the AI-generated-content (AIGC) label in a video's metadata
    wanlean prep FILE [--out OUT] [--text-encoder FILE] [--method extractive] [--target-ratio 0.7]
                      [--keep "a, b"] [--max-tokens 512] [--tail-tokens -1] [--model FOLDER_OR_ID]

`prep` reads prompts (one per line, or JSONL with a "prompt" field), normalises, compresses and truncates
each one with the same core as the nodes, writes JSONL (the result and its report fields) to --out or
FILE.prepped.jsonl beside the input, and prints a summary.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .prompt import compress, truncate
from .errors import WanLeanError
from .tokens import WAN_TEXT_LEN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanlean", description="WanLean prompt tools for Wan2.2 (umT5 tokens).")
    parser.add_argument("--version", action="version", version=f"wanlean {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    prep = commands.add_parser(
        "prep",
        help="normalise, compress and truncate a file of prompts; write JSONL and print a summary",
        description="Prepare a file of prompts for Wan2.2: normalise -> compress -> truncate, with a report per prompt.",
    )
    prep.add_argument("file", metavar="FILE", help="prompts, one per line, or JSONL with a \"prompt\" field")
    prep.add_argument("--out", help="where to write the JSONL (default: FILE.prepped.jsonl beside FILE, its extension replaced; '-' for standard output)")
    prep.add_argument("--text-encoder", metavar="FILE", help="umT5 text-encoder .safetensors (or tokenizer folder) for exact counts; default: the estimate")
    prep.add_argument("--method", choices=compress.METHODS, default="extractive", help="compression method (default: extractive, no model)")
    prep.add_argument("--model", help="model folder or Hugging Face id for token-classifier / summarize")
    prep.add_argument("--target-ratio", type=float, default=compress.RATIO_DEFAULT,
                      help=f"share of umT5 tokens to keep, {compress.RATIO_MIN}-{compress.RATIO_MAX} (default {compress.RATIO_DEFAULT}; 1 = no compression)")
    prep.add_argument("--keep", default="", help="comma-separated words never to drop, for every prompt")
    prep.add_argument("--max-tokens", type=int, default=WAN_TEXT_LEN, help="token budget, </s> included (default 512)")
    prep.add_argument("--tail-tokens", type=int, default=truncate.AUTO_TAIL, help="tokens kept from the end when cutting (default -1: 3/8 of --max-tokens)")
    label = commands.add_parser(
        "label",
        help="print the AI-generated-content label (AIGC metadata) of a saved video",
        description="Read a video file's container metadata and print its AIGC entry (GB 45438-2025 implicit label).",
    )
    label.add_argument("video", metavar="VIDEO_FILE", help="a video file, e.g. one saved by ComfyUI's SaveVideo")
    return parser


def _label(path: str) -> int:
    """`wanlean label VIDEO_FILE`: 0 and the entry as JSON, 1 when the file has none, 2 for an error."""
    import json
    import os

    from .video.label import METADATA_KEY, read_label

    if not os.path.isfile(path):
        print(f"wanlean label: error: VIDEO_FILE: '{path}' is not a file.", file=sys.stderr)
        return 2
    try:
        entry = read_label(path)
    except WanLeanError as exc:
        print(f"wanlean label: error: {exc}", file=sys.stderr)
        return 2
    if entry is None:
        print(f"{path}: no {METADATA_KEY} label in its metadata (not labelled as AI-generated content).")
        return 1
    print(json.dumps({METADATA_KEY: entry}, ensure_ascii=False, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "label":
        return _label(args.video)
    if args.command != "prep":
        parser.print_help()
        return 2
    from .prompt.prep import PrepSettings, prep_file

    settings = PrepSettings(
        method=args.method, target_ratio=args.target_ratio, keep=args.keep, max_tokens=args.max_tokens,
        tail_tokens=args.tail_tokens, model=args.model,
    )
    try:
        truncate.tail_budget(args.max_tokens, args.tail_tokens)
        summary = prep_file(args.file, args.out, args.text_encoder, settings, stream=sys.stdout)
    except WanLeanError as exc:
        print(f"wanlean prep: error: {exc}", file=sys.stderr)
        return 2
    print(summary.text(), file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
