"""Drills: plain text that exercises the skills the instruction set asks for, for pretraining.

A small model pretrained on English prose alone cannot copy from its context after a few hundred
steps (no induction heads form), and a LoRA fine-tune cannot build that circuit either: it
learns the answer format and guesses. Real pretraining data teaches such skills through the
structure it contains (lists, tables, counting, code); the drills are that structure in small:
word lists said again, backwards, with their first, last and number of words, counting runs,
sums, doubles and comparisons, each in its own wording, never in the instruction set's. The
instruction fine-tune then only has to map a question onto a skill the model already has, which
is what fine-tuning does for large models too.

Held out: no drill uses the word list or the numbers of a validation or test prompt (``exclude``),
so a test question is new to the model in both its wording and its content.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Iterable

from mbridge_data.corpus.instructions import WORDS

Drill = Callable[[random.Random], tuple[str, tuple]]


def _word_list(r: random.Random) -> tuple[str, ...]:
    return tuple(r.sample(WORDS, r.randint(1, 6)))


def _about_a_list(say: Callable[[str, tuple[str, ...]], str]) -> Drill:
    """A drill on a random word list: ``say(list as text, words)`` is its line."""

    def drill(r):
        ws = _word_list(r)
        return say(" ".join(ws), ws), ws

    return drill


_said_again = _about_a_list(lambda text, ws: f"{text}, once more: {text}")
_backwards = _about_a_list(lambda text, ws: f"{text}, backwards: {' '.join(reversed(ws))}")
_ends = _about_a_list(lambda text, ws: f"{text} starts with {ws[0]} and ends with {ws[-1]}")
_length = _about_a_list(lambda text, ws: f"{text} is {len(ws)} words long")


def _counting(r):
    n = r.randint(0, 995)
    return " ".join(str(n + i) for i in range(r.randint(2, 5))), ()


def _sum(r):
    a, b = r.randint(0, 99), r.randint(0, 99)
    return f"{a} plus {b} makes {a + b}", (a, b)


def _twice(r):
    n = r.randint(0, 499)
    return f"{n} and {n} make {2 * n}", (n,)


def _compare(r):
    a, b = r.sample(range(100), 2)
    return f"of {a} and {b} the larger is {max(a, b)}", (a, b)


# Copying is what takes a small model longest to learn, so its drills come twice as often.
DRILLS: tuple[Drill, ...] = (_said_again, _said_again, _backwards, _backwards, _ends, _length,
                             _counting, _sum, _twice, _compare)


def content(prompt: str) -> tuple:
    """What a prompt is about: its words of ``WORDS`` in order, else its numbers."""
    words = tuple(w for w in re.findall(r"[a-z]+", prompt) if w in _WORD_SET)
    return words or tuple(int(n) for n in re.findall(r"\d+", prompt))


def held_out_contents(records: Iterable[dict]) -> set[tuple]:
    """The contents of instruction records (their "input"), for ``drill_documents(exclude=)``."""
    return {content(record["input"]) for record in records}


_WORD_SET = frozenset(WORDS)


def drill_documents(count: int = 6000, per_document: int = 8, seed: int = 99,
                    exclude: Collection[tuple] = ()) -> list[str]:
    """``count`` documents of ``per_document`` drills each, one per line; a drill whose
    content (word list or numbers) is in ``exclude`` is drawn again."""
    r = random.Random(seed)
    excluded = set(exclude)
    out = []
    for _ in range(count):
        lines = []
        while len(lines) < per_document:
            text, content = r.choice(DRILLS)(r)
            if content not in excluded:
                lines.append(text)
        out.append("\n".join(lines))
    return out
