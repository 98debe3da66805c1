"""The `wanlean` command (also `python -m wanlean`).

    wanlean label VIDEO_FILE     print the AI-generated-content (AIGC) label in a video's metadata
    wanlean batch PROMPTS --workflow W.json --server URL [--server URL ...] [--download DIR] [--ledger FILE]
    wanlean prep FILE [--out OUT] [--text-encoder FILE] [--method extractive] [--target-ratio 0.7]
                      [--keep "a, b"] [--max-tokens 512] [--tail-tokens -1] [--model FOLDER_OR_ID] [--log [PATH]]
    wanlean stats [--db PATH] [--since TIME] [--source NAME]   summary of a prompt log, with a text histogram

`prep` reads prompts (one per line, or JSONL with a "prompt" field), normalises, compresses and truncates
each one with the same core as the nodes, writes JSONL (the result and its report fields) to --out or
FILE.prepped.jsonl beside the input, and prints a summary.

`batch` fills each prompt into a workflow saved from ComfyUI and runs them over one or more ComfyUI
servers (HTTP API), with a resumable ledger (PROMPTS.batch.jsonl); see wanlean/batch/.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .prompt import compress, truncate
from .errors import WanLeanError
from .tokens import WAN_TEXT_LEN

# The CLI's prompt log when --log is given without a path, and the one `wanlean stats` reads by default.
DEFAULT_LOG = os.path.join("~", ".wanlean", "prompt_log.sqlite3")


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
    prep.add_argument("--log", nargs="?", const=DEFAULT_LOG, metavar="PATH",
                      help=f"also record each prompt in a prompt log (SQLite); --log alone: {DEFAULT_LOG}. Default: no log")
    stats = commands.add_parser(
        "stats",
        help="summarise a prompt log: token percentiles, over 512, tokens saved, anomalies, a text histogram",
        description="Print the summary of a prompt log (the one ComfyUI keeps in user/wanlean/prompt_log.sqlite3, "
                    "or one written by wanlean prep --log).",
    )
    stats.add_argument("--db", default=DEFAULT_LOG, metavar="PATH", help=f"the prompt log (default: {DEFAULT_LOG})")
    stats.add_argument("--since", help="only prompts since an ISO time (2026-01-31T12:00:00Z) or this many seconds ago")
    stats.add_argument("--source", help="only prompts from this source (WanLeanTokenCount, WanLeanSampler, prep, ...)")
    label = commands.add_parser(
        "label",
        help="print the AI-generated-content label (AIGC metadata) of a saved video",
        description="Read a video file's container metadata and print its AIGC entry (GB 45438-2025 implicit label).",
    )
    label.add_argument("video", metavar="VIDEO_FILE", help="a video file, e.g. one saved by ComfyUI's SaveVideo")
    batch = commands.add_parser(
        "batch",
        help="run a file of prompts through a saved ComfyUI workflow over one or more ComfyUI servers",
        description="Fill each prompt into a workflow saved from ComfyUI and queue them over the servers. "
                    "A ledger (PROMPTS.batch.jsonl) makes a re-run resume. Exit codes: 0 all done, 1 some failed "
                    "or not run, 2 bad input, 130 interrupted.",
    )
    batch.add_argument("prompts", metavar="PROMPTS", help="prompts, one per line, or JSONL with \"prompt\" and optional seed, negative, width, height, frames, steps")
    batch.add_argument("--workflow", required=True, metavar="W.json", help="a workflow saved from ComfyUI (Save or Export (API)) with a WanLeanSampler or a node titled [prompt]")
    batch.add_argument("--server", action="append", required=True, metavar="URL", help="a ComfyUI server, e.g. http://127.0.0.1:8188; repeat for more")
    batch.add_argument("--download", metavar="DIR", help="also download each job's output files into DIR (as lineNNNN_<name>)")
    batch.add_argument("--ledger", metavar="FILE", help="the job ledger (default: PROMPTS.batch.jsonl beside PROMPTS, its extension replaced)")
    batch.add_argument("--max-pending", type=int, default=2, help="jobs queued per server at a time (default 2: the next one waits there, ready)")
    batch.add_argument("--timeout", type=float, default=5.0, help="seconds a server has to answer at the start (default 5)")
    batch.add_argument("--no-progress-bar", action="store_true", help="plain status lines instead of a tqdm bar")
    return parser


def _batch(args) -> int:
    from .batch.command import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BatchOptions, run_batch

    options = BatchOptions(
        prompts=args.prompts, workflow=args.workflow, servers=args.server, download=args.download, ledger=args.ledger,
        max_pending=args.max_pending, connect_timeout=args.timeout, use_tqdm=not args.no_progress_bar,
    )
    try:
        return run_batch(options).exit_code
    except WanLeanError as exc:
        print(f"wanlean batch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("wanlean batch: interrupted. The ledger is consistent; jobs already queued keep running on their servers. "
              "Run the same command again to resume (finished jobs are not run again).", file=sys.stderr)
        return EXIT_INTERRUPTED


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
    if args.command == "batch":
        return _batch(args)
    if args.command == "stats":
        return _stats(args)
    if args.command != "prep":
        parser.print_help()
        return 2
    from .prompt.prep import PrepSettings, prep_file

    settings = PrepSettings(
        method=args.method, target_ratio=args.target_ratio, keep=args.keep, max_tokens=args.max_tokens,
        tail_tokens=args.tail_tokens, model=args.model,
    )
    entries = []
    try:
        truncate.tail_budget(args.max_tokens, args.tail_tokens)
        summary = prep_file(args.file, args.out, args.text_encoder, settings, stream=sys.stdout,
                            on_prepared=(lambda record, tok: entries.append(_prep_entry(record, tok, args.max_tokens)))
                            if args.log else None)
    except WanLeanError as exc:
        print(f"wanlean prep: error: {exc}", file=sys.stderr)
        return 2
    text = summary.text()
    if args.log:
        text += "\n" + _log_entries(os.path.expanduser(args.log), entries)
    print(text, file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def _prep_entry(record: dict, tokenizer, max_tokens: int):
    from .prompt_log.row import PromptEntry

    before, after = record["tokens_before"], record["tokens_after"]
    return PromptEntry("prep", record["prompt"], after, tokenizer.exact, max_tokens,
                       tokens_before=before if before != after else None)


def _log_entries(path: str, entries: list) -> str:
    """Write the prep rows in one transaction; the line the summary gets."""
    from .prompt_log.row import make_row
    from .prompt_log.store import PromptLog

    store = PromptLog(path)
    usual = store.usual_length()
    stored = store.add_many([make_row(entry, True, usual) for entry in entries])
    store.close()
    if stored != len(entries):
        return f"prompt log: NOT written to {path} (see the warning above)"
    return f"prompt log: {stored} prompts added to {path} (wanlean stats --db {path})"


def _stats(args) -> int:
    """`wanlean stats`: 0 and the summary, 2 for a bad option or an unreadable log."""
    from .prompt_log import stats
    from .prompt_log.store import PromptLog

    path = os.path.expanduser(args.db)
    if not os.path.isfile(path):
        print(f"wanlean stats: error: --db: '{path}' does not exist. Give a prompt log: ComfyUI keeps one in "
              "user/wanlean/prompt_log.sqlite3; wanlean prep --log writes one.", file=sys.stderr)
        return 2
    try:
        since, source = stats.parse_since(args.since), stats.check_source(args.source)
        summary = stats.summarize(PromptLog(path), since, source)
    except WanLeanError as exc:
        print(f"wanlean stats: error: {exc}", file=sys.stderr)
        return 2
    print(stats.render_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
