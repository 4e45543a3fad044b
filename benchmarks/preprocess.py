"""Preprocessing throughput: `mbridge_data.preprocess` vs the straightforward single process.

The baseline is what a first implementation does (and what megatron-core's own tool does with
one worker): for each jsonl line, ``json.loads``, the HuggingFace tokenizer's per-document
``encode``, then ``IndexedDatasetBuilder.add_item`` + ``end_document``. Both tokenize with the
same tokenizer (the embedded byte-level BPE, vocab 8192) and must produce identical files.

Input: ~100 MB of jsonl built from the embedded stdlib corpus: paragraphs shuffled into
documents of 1-8 paragraphs, so the text is real English prose and code but not one repetition.

    uv run python benchmarks/preprocess.py [--mb 100] [--repeats 3] [--workers N]

Writes benchmarks/results/preprocess-<device>.json and .md (device: cpuN = N CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def make_input(corpus_jsonl: Path, out: Path, megabytes: float, seed: int = 0) -> int:
    paragraphs = []
    for line in corpus_jsonl.read_text().splitlines():
        paragraphs += [p for p in json.loads(line)["text"].split("\n\n") if p.strip()]
    r = random.Random(seed)
    target, written = int(megabytes * 1e6), 0
    with open(out, "w") as f:
        while written < target:
            doc = "\n\n".join(r.choice(paragraphs) for _ in range(r.randint(1, 8)))
            line = json.dumps({"text": doc}) + "\n"
            f.write(line)
            written += len(line.encode())
    return written


def baseline(path: Path, prefix: Path, tokenizer_json: Path, eod: int) -> int:
    # Imported before timing starts (see main): only the work is timed, not torch's import.
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    tokens = 0
    with open(path) as f:
        for line in f:
            text = json.loads(line)["text"]
            if not text:
                continue
            ids = tok.encode(text).ids + [eod]
            builder.add_item(torch.tensor(ids, dtype=torch.int64))
            builder.end_document()
            tokens += len(ids)
    builder.finalize(f"{prefix}.idx")
    return tokens


def ours(path: Path, prefix: Path, tokenizer_dir: Path, workers: int | None) -> int:
    from mbridge_data.preprocess import preprocess
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    return preprocess(path, prefix, HuggingFaceTokenizer(str(tokenizer_dir)), workers=workers,
                      progress=False).tokens


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn(*args)
    return time.perf_counter() - start, tokens


def summary(seconds: list[float], tokens: int) -> dict:
    median = statistics.median(seconds)
    return {"seconds": seconds, "median_s": median, "min_s": min(seconds), "max_s": max(seconds),
            "tokens": tokens, "tokens_per_s": tokens / median}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--device", default=None, help="results name (default: cpuN)")
    args = parser.parse_args()

    import megatron.core.datasets.indexed_dataset  # noqa: F401  (both paths pay no import)
    import torch  # noqa: F401

    from mbridge_data.corpus.pretraining import build_corpus
    from mbridge_data.preprocess import preprocess  # noqa: F401
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="mbridge-preprocess-bench-"))
    corpus = build_corpus(work / "corpus", progress=False)
    data = work / "input.jsonl"
    size = make_input(work / "corpus" / "corpus.jsonl", data, args.mb)
    eod = HuggingFaceTokenizer(corpus.tokenizer_dir).eod
    tokenizer_json = Path(corpus.tokenizer_dir) / "tokenizer.json"
    print(f"input: {size / 1e6:.1f} MB of jsonl in {work}", file=sys.stderr)

    load_before = os.getloadavg()
    base_s, ours_s, base_tokens, our_tokens = [], [], 0, 0
    for i in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        t, base_tokens = timed(baseline, data, work / "baseline", tokenizer_json, eod)
        base_s.append(t)
        t, our_tokens = timed(ours, data, work / "ours", Path(corpus.tokenizer_dir), args.workers)
        ours_s.append(t)
        print(f"repeat {i + 1}: baseline {base_s[-1]:.2f} s, ours {ours_s[-1]:.2f} s",
              file=sys.stderr)
    for suffix in (".bin", ".idx"):
        same = (work / f"baseline{suffix}").read_bytes() == (work / f"ours{suffix}").read_bytes()
        if not same:
            print(f"outputs differ: baseline{suffix} vs ours{suffix}", file=sys.stderr)
            return 1

    cpus = len(os.sched_getaffinity(0))
    device = args.device or f"cpu{cpus}"
    result = {
        "device": device, "cpus": cpus, "input_bytes": size, "repeats": args.repeats,
        "workers": args.workers or cpus, "identical_output": True,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "baseline": summary(base_s, base_tokens), "ours": summary(ours_s, our_tokens),
    }
    result["speedup"] = result["baseline"]["median_s"] / result["ours"]["median_s"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"preprocess-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        "| path | median s | min-max s | tokens/s | speedup |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("baseline", "per-document encode + IndexedDatasetBuilder (1 process)"),
                        ("ours", f"mbridge_data.preprocess ({result['workers']} workers)")):
        s = result[name]
        speed = result["speedup"] if name == "ours" else 1.0
        rows.append(f"| {label} | {s['median_s']:.2f} | {s['min_s']:.2f}-{s['max_s']:.2f} | "
                    f"{s['tokens_per_s']:,.0f} | {speed:.2f}x |")
    table = "\n".join(rows)
    (RESULTS / f"preprocess-{device}.md").write_text(
        f"# Preprocessing {size / 1e6:.0f} MB of jsonl on {cpus} CPU cores\n\n"
        f"{base_tokens:,} tokens (embedded byte-level BPE, vocab 8192), {args.repeats} repeats, "
        f"identical .bin/.idx from both paths. 1-minute load average before/after: "
        f"{result['load_average_before_after'][0]:.1f}/{result['load_average_before_after'][1]:.1f}"
        " (other processes on the machine slow both paths alike; runs are interleaved).\n\n"
        + table + "\n\n"
        "Command: `uv run python benchmarks/preprocess.py " + " ".join(sys.argv[1:]) + "`\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
