"""Data for the spec examples: a small English corpus (Python's pydoc topics) tokenized by a BPE
trained here, the embedded instruction set, and a runner for an example script on CPU ranks."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory):
    """{"prefix", "tokenizer", "sft"}: a blend prefix, a tokenizer folder and a dataset_root."""
    from mbridge_data.corpus.bpe import save_tokenizer, train_byte_level_bpe
    from mbridge_data.corpus.instructions import write_instructions
    from mbridge_data.corpus.stdlib_text import reference_topics
    from mbridge_data.preprocess import preprocess
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    root = tmp_path_factory.mktemp("e2e_data")
    # Paragraphs as documents: >= 500 of them, so the spec's default split "949,50,1" leaves
    # the test split a document.
    texts = [p for topic in reference_topics() for p in topic.split("\n\n") if len(p) > 80]
    if len(texts) < 600:  # some distributions strip pydoc's topics
        texts = [f"{m.__doc__} ({i})" for i, m in enumerate((os, runpy, pytest, Path) * 150)]
    save_tokenizer(train_byte_level_bpe(texts, vocab_size=1024), root / "tokenizer")
    (root / "docs.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    preprocess(root / "docs.txt", root / "docs_text_document",
               HuggingFaceTokenizer(str(root / "tokenizer")), workers=1, progress=False)
    sft = write_instructions(root / "sft", sizes={"training": 200, "validation": 40,
                                                  "test": 40})
    return {"prefix": str(root / "docs_text_document"), "tokenizer": str(root / "tokenizer"),
            "sft": str(sft)}


def _run_example(rank, world_size, name, env):
    from mbridge_train import entry_points

    os.environ.update(env)
    histories = []

    def recording(run, forward_step_func, _train=entry_points.train):
        finished = _train(run, forward_step_func)
        histories.append(finished.history)
        return finished

    entry_points.train = recording  # this forked rank only
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return {"histories": histories, "result": namespace.get("RESULT")}


def run_example(name: str, world_size: int, **env: str) -> list[dict]:
    """Run ``examples/<name>`` as ``__main__`` on ``world_size`` forked CPU ranks (what torchrun
    would start). Per rank: the history of every training run the script made, and the
    script's module-level ``RESULT`` if it sets one."""
    from multirank import run_ranks

    return run_ranks(_run_example, world_size, name, {k: str(v) for k, v in env.items()})
