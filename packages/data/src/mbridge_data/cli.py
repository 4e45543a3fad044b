"""The ``mbridge data`` commands: preprocess, corpus, instructions.

Argument parsing only imports the standard library; each command imports what it runs, and none
imports torch or megatron-core, so they start fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import SimpleNamespace


def add_commands(commands) -> None:
    """Add ``data`` and its subcommands to an argparse subparsers object."""
    data = commands.add_parser("data", help="tokenize text into megatron-core datasets; build "
                                            "the embedded corpora")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(handler=lambda args: (data.print_help(), 0)[1])

    pre = sub.add_parser("preprocess", help="jsonl or text files -> PREFIX.bin + PREFIX.idx")
    pre.add_argument("--input", "-i", action="append", required=True, metavar="FILE",
                     help="a .jsonl (one JSON object per line) or text file (one document per "
                          "line); repeat for several")
    pre.add_argument("--output-prefix", "-o", required=True, metavar="PREFIX")
    pre.add_argument("--tokenizer-type", default="HuggingFaceTokenizer",
                     help="GPT2BPETokenizer, HuggingFaceTokenizer, SentencePieceTokenizer or "
                          "NullTokenizer (default: %(default)s)")
    pre.add_argument("--tokenizer-model", help="tokenizer.json, a folder holding one, or a "
                                               "SentencePiece .model")
    pre.add_argument("--vocab-file", help="GPT2BPETokenizer: vocab.json")
    pre.add_argument("--merge-file", help="GPT2BPETokenizer: merges.txt")
    pre.add_argument("--vocab-size", type=int, help="NullTokenizer: vocabulary size")
    pre.add_argument("--json-key", default="text", help="jsonl field holding the text")
    pre.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    pre.add_argument("--no-eod", action="store_true", help="do not append EOD to documents")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(handler=_preprocess)

    corpus = sub.add_parser("corpus", help="build the embedded English corpus, its byte-level "
                                           "BPE tokenizer and its .bin/.idx in OUT_DIR")
    corpus.add_argument("out_dir", metavar="OUT_DIR")
    corpus.add_argument("--vocab-size", type=int, default=2048)
    corpus.add_argument("--workers", type=int, default=2)
    corpus.set_defaults(handler=_corpus)

    inst = sub.add_parser("instructions", help="write the embedded instruction set "
                                               "(training/validation/test.jsonl) to OUT_DIR")
    inst.add_argument("out_dir", metavar="OUT_DIR")
    inst.add_argument("--seed", type=int, default=1234)
    inst.set_defaults(handler=_instructions)


def _stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C so temporary files are removed on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _preprocess(args: argparse.Namespace) -> int:
    from mbridge_data.errors import DataError
    from mbridge_data.preprocess import preprocess
    from mbridge_data.tokenizers import build_tokenizer

    _stop_on_sigterm()
    config = SimpleNamespace(tokenizer_type=args.tokenizer_type,
                             tokenizer_model=args.tokenizer_model, vocab_file=args.vocab_file,
                             merge_file=args.merge_file, vocab_size=args.vocab_size)
    try:
        tokenizer = build_tokenizer(config)
        result = preprocess(args.input, args.output_prefix, tokenizer, json_key=args.json_key,
                            workers=args.workers, append_eod=not args.no_eod,
                            progress=False if args.no_progress else None)
    except DataError as error:
        print(f"mbridge data preprocess: {error}", file=sys.stderr)
        return 2
    print(f"{result.prefix}.bin/.idx: {result.documents:,} documents, {result.tokens:,} tokens "
          f"in {result.seconds:.1f} s ({result.tokens_per_second:,.0f} tokens/s)")
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from mbridge_data.corpus.pretraining import build_corpus

    _stop_on_sigterm()
    corpus = build_corpus(args.out_dir, vocab_size=args.vocab_size, workers=args.workers)
    print(f"{corpus.documents:,} documents, {corpus.characters:,} characters, "
          f"{corpus.tokens:,} tokens (vocab {corpus.vocab_size:,}) from Python {corpus.python}\n"
          f"  blend prefix:    {corpus.prefix}\n  tokenizer_model: {corpus.tokenizer_dir}")
    return 0


def _instructions(args: argparse.Namespace) -> int:
    from mbridge_data.corpus.instructions import write_instructions

    out = write_instructions(args.out_dir, seed=args.seed)
    print(f"dataset_root: {out} (training.jsonl, validation.jsonl, test.jsonl)")
    return 0
