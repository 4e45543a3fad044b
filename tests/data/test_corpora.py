"""The embedded data sets: built offline, deterministic, usable as they are."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mbridge_data.corpus import drills, instructions
from mbridge_data.corpus.pretraining import load_corpus
from mbridge_data.errors import DataError
from mbridge_data.indexed import check_indexed_pair


def test_pretraining_corpus_is_english_text_with_its_tokenizer_and_dataset(corpus,
                                                                           corpus_tokenizer):
    assert corpus.documents > 1000 and corpus.characters > 1_000_000
    docs, _ = check_indexed_pair(corpus.prefix)
    assert docs == corpus.documents
    first = json.loads(Path(corpus.root, "corpus.jsonl").read_text().splitlines()[0])["text"]
    assert sum(w in first.split() for w in ("the", "a", "of", "is", "to")) >= 1
    # Compression a trained BPE gives on English with spaces as their own tokens: ~2.3
    # characters per token (the space tokens are about every other one).
    assert corpus.characters / (corpus.tokens - corpus.documents) > 2
    assert load_corpus(corpus.root) == corpus and corpus.drills == 12000


def test_load_corpus_says_how_to_build_it(tmp_path):
    with pytest.raises(DataError, match="mbridge data corpus"):
        load_corpus(tmp_path)


def test_instruction_set_is_deterministic_disjoint_and_correct(tmp_path):
    out = instructions.write_instructions(tmp_path / "a")
    again = instructions.write_instructions(tmp_path / "b")
    for split, size in instructions.SPLITS.items():
        text = (out / f"{split}.jsonl").read_text()
        assert text == (again / f"{split}.jsonl").read_text()
        assert len(text.splitlines()) == size
    data = instructions.generate()
    prompts = [r["input"] for records in data.values() for r in records]
    assert len(prompts) == len(set(prompts))  # no test prompt was seen in training
    for record in (r for records in data.values() for r in records):
        assert record["output"] == solve(record["input"])
    assert instructions.generate(seed=1) != data
    for split, records in data.items():  # every task in every split, evenly where it can be
        counts = Counter(r["task"] for r in records)
        assert set(counts) == set(instructions.TASKS)
        if split != "training":
            assert set(counts.values()) == {len(records) // len(instructions.TASKS)}


def test_accuracy_by_task():
    records = [{"input": "a", "output": "1", "task": "x"}, {"input": "b", "output": "2",
                                                            "task": "y"},
               {"input": "c", "output": "3", "task": "y"}]
    assert instructions.accuracy_by_task(["1", "2", "0"], records) == {
        "all": 2 / 3, "x": 1.0, "y": 0.5}


def solve(prompt: str) -> str:
    """An independent solver: the answers must be what the question asks."""
    import re

    if m := re.fullmatch(r"What is (\d+) \+ (\d+)\?", prompt):
        return str(int(m[1]) + int(m[2]))
    if m := re.fullmatch(r"What is twice (\d+)\?", prompt):
        return str(2 * int(m[1]))
    if m := re.fullmatch(r"Which is larger, (\d+) or (\d+)\?", prompt):
        return str(max(int(m[1]), int(m[2])))
    if m := re.fullmatch(r"What number comes after (\d+)\?", prompt):
        return str(int(m[1]) + 1)
    if m := re.fullmatch(r"Repeat ([a-z ]+)\.", prompt):
        return m[1]
    if m := re.fullmatch(r"Swap (\w+) (\w+)\.", prompt):
        return f"{m[2]} {m[1]}"
    if m := re.fullmatch(r"Reverse the order of ([a-z ]+)\.", prompt):
        return " ".join(m[1].split()[::-1])
    if m := re.fullmatch(r"How many words are in ([a-z ]+)\?", prompt):
        return str(len(m[1].split()))
    if m := re.fullmatch(r"What is the (first|last) word of ([a-z ]+)\?", prompt):
        return m[2].split()[0 if m[1] == "first" else -1]
    raise AssertionError(prompt)


def _drilled(line: str) -> tuple:
    """What a drill line is about, parsed independently of drills.content."""
    import re

    if m := re.match(r"([a-z ]+?)(?:,| starts with| is \d)", line):
        return tuple(m[1].split())
    if m := re.match(r"(\d+) plus (\d+) makes|of (\d+) and (\d+) the", line):
        return tuple(int(n) for n in m.groups() if n is not None)
    if m := re.match(r"(\d+) and \1 make", line):
        return (int(m[1]),)
    return ("counting",)


def test_drills_hold_out_what_the_held_out_prompts_ask():
    data = instructions.generate()
    held_out = drills.held_out_contents(data["validation"] + data["test"])
    documents = drills.drill_documents(500, exclude=held_out)
    assert documents == drills.drill_documents(500, exclude=held_out)
    lines = [line for doc in documents for line in doc.splitlines()]
    assert len(lines) == 500 * 8
    assert not {_drilled(line) for line in lines} & held_out
    # without the exclusion some drills would be about held-out lists or numbers
    assert {_drilled(line) for doc in drills.drill_documents(500)
            for line in doc.splitlines()} & held_out
    # every skill is drilled
    assert all(any(marker in line for line in lines) for marker in (
        "once more:", "backwards:", "starts with", "words long", " plus ", " make ", "larger"))


def test_scoring_is_exact_match_on_the_first_line():
    assert instructions.accuracy(["82", " 82\nmore text", "81", "ABC"], ["82", "82", "82", "abc"]
                                 ) == 0.5
    records = instructions.generate(sizes={"test": 50})["test"]
    assert instructions.evaluate(solve, records) == 1.0
    assert instructions.evaluate(lambda prompt: "0", records) < 0.2
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        instructions.accuracy(["a", "b"], ["a"])
