"""The embedded instruction set: small tasks with one verifiable answer, generated from a seed.

Arithmetic, reversing and spelling words, counting letters, successors: a fine-tuned model can be
scored by exact match before and after training (``accuracy``). Written in the fine-tuning
layout ``training.jsonl`` / ``validation.jsonl`` / ``test.jsonl`` of {"input", "output"} records;
no prompt appears in two splits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mbridge_data.atomic import write_text_atomic

WORDS = (
    "apple river stone cloud tiger garden window pencil rocket silver yellow planet bridge "
    "candle forest marble orange pepper summer winter dragon castle button carpet python "
    "number letter object module string integer function method thread socket buffer parser "
    "random simple little monkey violet coffee guitar island jungle kettle lemon mirror "
    "needle ocean pirate quartz rabbit saddle turtle umbrella valley wizard zebra anchor "
    "basket cactus dolphin engine falcon galaxy harbor igloo jacket koala ladder meadow"
).split()

SPLITS = {"training": 2000, "validation": 200, "test": 200}


def _add(r: random.Random):
    a, b = r.randint(0, 99), r.randint(0, 99)
    return f"What is {a} + {b}?", str(a + b)


def _sub(r: random.Random):
    a, b = sorted((r.randint(0, 99), r.randint(0, 99)), reverse=True)
    return f"What is {a} - {b}?", str(a - b)


def _mul(r: random.Random):
    a, b = r.randint(2, 12), r.randint(2, 12)
    return f"What is {a} * {b}?", str(a * b)


def _reverse(r: random.Random):
    w = r.choice(WORDS)
    return f"Reverse the word '{w}'.", w[::-1]


def _upper(r: random.Random):
    w = r.choice(WORDS)
    return f"Write '{w}' in capital letters.", w.upper()


def _count(r: random.Random):
    w = r.choice(WORDS)
    return f"How many letters are in '{w}'?", str(len(w))


def _next(r: random.Random):
    n = r.randint(0, 998)
    return f"What number comes after {n}?", str(n + 1)


TASKS: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    _add, _sub, _mul, _reverse, _upper, _count, _next)


def generate(seed: int = 1234, sizes: dict[str, int] = SPLITS) -> dict[str, list[dict]]:
    """{split: records}; tasks drawn evenly at random; prompts unique across all splits."""
    r = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, size in sizes.items():
        records = []
        attempts = 0
        while len(records) < size:
            attempts += 1
            if attempts > size * 200:
                raise ValueError(f"cannot draw {size} distinct {split} prompts")
            prompt, answer = r.choice(TASKS)(r)
            if prompt not in seen:
                seen.add(prompt)
                records.append({"input": prompt, "output": answer})
        out[split] = records
    return out


def write_instructions(out_dir: str | Path, seed: int = 1234,
                       sizes: dict[str, int] = SPLITS) -> Path:
    """Write ``OUT/{training,validation,test}.jsonl``: a FinetuningDatasetConfig.dataset_root."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, records in generate(seed, sizes).items():
        write_text_atomic(out / f"{split}.jsonl",
                          "".join(json.dumps(rec) + "\n" for rec in records))
    return out


def normalize(answer: str) -> str:
    """The part of an answer that is compared: its first line, stripped (case matters)."""
    lines = answer.strip().splitlines()
    return lines[0].strip() if lines else ""


def exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference answer (after ``normalize``)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return 0.0
    return sum(map(exact_match, predictions, references)) / len(references)


def evaluate(generate_answer: Callable[[str], str], records: Iterable[dict]) -> float:
    """Exact-match accuracy of ``generate_answer(prompt)`` over records of {"input", "output"}."""
    records = list(records)
    return accuracy([generate_answer(r["input"]) for r in records],
                    [r["output"] for r in records])
