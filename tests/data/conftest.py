"""Shared data for the mbridge-data tests: the embedded corpus (built once per session) and a
small HuggingFace tokenizer trained here."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    from mbridge_data.corpus.pretraining import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), progress=False)


@pytest.fixture(scope="session")
def corpus_tokenizer(corpus):
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    return HuggingFaceTokenizer(corpus.tokenizer_dir)


@pytest.fixture(scope="session")
def small_hf_dir(tmp_path_factory):
    """A byte-level BPE tokenizer.json trained in the test session on a few sentences."""
    from mbridge_data.corpus.bpe import save_tokenizer, train_byte_level_bpe

    texts = ["The quick brown fox jumps over the lazy dog.",
             "Pack my box with five dozen liquor jugs!",
             "def f(x):\n    return x * 2  # doubles"] * 20
    return save_tokenizer(train_byte_level_bpe(texts, vocab_size=400, min_frequency=1),
                          tmp_path_factory.mktemp("hf") / "tok")


def write_jsonl(path, records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return str(path)
