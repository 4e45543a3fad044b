"""The embedded instruction set: small tasks with one verifiable answer, generated from a seed.

Word-list tasks (repeat, first and last word, swap, reverse the order, count the words) and
number tasks (successor, larger of two, double, sum). Every prompt is a new combination, so a
held-out prompt can only be answered by the skill, not from memory; tasks on the letters of a
word are left out because a subword model never sees letters (its answers were guesses). A
fine-tuned model is scored by exact match before and after training (``accuracy``,
``accuracy_by_task``). Written in the
fine-tuning layout ``training.jsonl`` / ``validation.jsonl`` / ``test.jsonl`` of
{"input", "output", "task"} records; every task appears in every split, and no prompt appears in
two splits.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
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

SPLITS = {"training": 8000, "validation": 300, "test": 300}


def _words(r: random.Random, low: int, high: int) -> str:
    return " ".join(r.sample(WORDS, r.randint(low, high)))


def _repeat(r: random.Random):
    ws = _words(r, 2, 3)
    return f"Repeat {ws}.", ws


def _first(r: random.Random):
    ws = _words(r, 3, 4)
    return f"What is the first word of {ws}?", ws.split()[0]


def _last(r: random.Random):
    ws = _words(r, 3, 4)
    return f"What is the last word of {ws}?", ws.split()[-1]


def _swap(r: random.Random):
    a, b = r.sample(WORDS, 2)
    return f"Swap {a} {b}.", f"{b} {a}"


def _reverse(r: random.Random):
    ws = _words(r, 3, 3)
    return f"Reverse the order of {ws}.", " ".join(reversed(ws.split()))


def _count(r: random.Random):
    ws = _words(r, 1, 6)
    return f"How many words are in {ws}?", str(len(ws.split()))


def _next(r: random.Random):
    n = r.randint(0, 998)
    return f"What number comes after {n}?", str(n + 1)


def _add(r: random.Random):
    a, b = r.randint(0, 99), r.randint(0, 99)
    return f"What is {a} + {b}?", str(a + b)


def _larger(r: random.Random):
    a, b = r.sample(range(100), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b))


def _double(r: random.Random):
    n = r.randint(0, 499)
    return f"What is twice {n}?", str(2 * n)


TASKS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "repeat": _repeat, "first": _first, "last": _last, "swap": _swap, "reverse": _reverse,
    "count": _count, "next": _next, "add": _add, "larger": _larger, "double": _double}


def generate(seed: int = 1234, sizes: dict[str, int] = SPLITS) -> dict[str, list[dict]]:
    """{split: records}, each split shuffled; prompts unique across all splits.

    Every task gets an equal share of every split. The held-out splits are drawn first, so a task
    with few distinct prompts (the one-word tasks have one per word) is short in training, never
    in validation or test; other tasks make up the training shortfall.
    """
    r = random.Random(seed)
    seen: set[str] = set()
    by_split: dict[str, list[dict]] = defaultdict(list)
    order = sorted(sizes, key=lambda split: split == "training")  # held-out splits first
    for split in order:
        size = sizes[split]
        quotas = [size // len(TASKS) + (i < size % len(TASKS)) for i in range(len(TASKS))]
        shortfall = 0
        for (name, task), quota in zip(TASKS.items(), quotas):
            drawn = _draw(r, task, quota, seen)
            shortfall += quota - len(drawn)
            by_split[split] += [{"input": p, "output": a, "task": name} for p, a in drawn]
        open_tasks = dict(TASKS)
        while shortfall > 0 and open_tasks:  # round-robin over tasks that still have prompts
            for name, task in list(open_tasks.items()):
                drawn = _draw(r, task, 1, seen) if shortfall > 0 else []
                if not drawn:
                    open_tasks.pop(name)
                    continue
                shortfall -= 1
                by_split[split] += [{"input": p, "output": a, "task": name} for p, a in drawn]
        if shortfall > 0:
            raise ValueError(f"cannot draw {size} distinct {split} prompts")
    out = {}
    for split in sizes:
        records = by_split[split]
        r.shuffle(records)
        out[split] = records
    return out


def _draw(r: random.Random, task, count: int, seen: set[str]) -> list[tuple[str, str]]:
    """Up to ``count`` prompts of ``task`` not in ``seen`` (gives up after many repeats)."""
    drawn, misses = [], 0
    while len(drawn) < count and misses < 200:
        prompt, answer = task(r)
        if prompt in seen:
            misses += 1
            continue
        seen.add(prompt)
        drawn.append((prompt, answer))
        misses = 0
    return drawn


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


def accuracy_by_task(predictions: Sequence[str], records: Sequence[dict]) -> dict[str, float]:
    """{task: exact-match accuracy} over records carrying a "task" name ("all" for every one)."""
    if len(predictions) != len(records):
        raise ValueError(f"{len(predictions)} predictions for {len(records)} records")
    hits: dict[str, list[bool]] = defaultdict(list)
    for prediction, record in zip(predictions, records):
        hit = exact_match(prediction, record["output"])
        hits[record.get("task", "all")].append(hit)
        if "task" in record:
            hits["all"].append(hit)
    return {task: sum(v) / len(v) for task, v in sorted(hits.items())}
