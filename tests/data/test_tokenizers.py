"""Tokenizers: exact round trips on random text, one interface, the config's files, clear errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbridge_data.errors import DataError
from mbridge_config.vocab import resolve_vocab_size
from mbridge_data.tokenizers import build_tokenizer
from mbridge_data.tokenizers.null import NullTokenizer

TEXT = st.text(max_size=200)


def cfg(**fields):
    return SimpleNamespace(**fields)


@given(TEXT)
def test_null_tokenizer_round_trips_any_text(text):
    tok = NullTokenizer()
    ids = tok.tokenize(text)
    assert all(0 <= i < 256 for i in ids) and tok.eod == 256 and tok.vocab_size == 257
    assert tok.detokenize(ids) == text
    assert tok.detokenize(ids + [tok.eod]) == text  # EOD is not text


@given(TEXT)
def test_corpus_bpe_round_trips_any_text(corpus_tokenizer, text):
    ids = corpus_tokenizer.tokenize(text)
    assert all(0 <= i < corpus_tokenizer.vocab_size for i in ids)
    assert corpus_tokenizer.detokenize(ids) == text


@given(st.lists(TEXT, max_size=8))
def test_hf_tokenizer_round_trips_and_batches_like_single(small_hf_dir, texts):
    tok = build_tokenizer(cfg(tokenizer_type="HuggingFaceTokenizer",
                              tokenizer_model=str(small_hf_dir)))
    batch = tok.tokenize_batch(texts)
    assert batch == [tok.tokenize(t) for t in texts]
    assert [tok.detokenize(ids) for ids in batch] == texts


def test_corpus_tokenizer_interface(corpus_tokenizer):
    tok = corpus_tokenizer
    assert tok.vocab_size == 2048
    assert tok.detokenize([tok.eod]) == "<|endoftext|>" and tok.pad != tok.eod and tok.pad >= 0
    assert tok.eos == tok.eod and tok.bos is None
    # Trained on English: common words are single tokens (spaces are tokens of their own).
    text = "The function returns the value of the object."
    assert len(tok.tokenize(text)) == 2 * len(text.split())


def test_gpt2_bpe_from_vocab_and_merges_matches_the_tokenizer_json(corpus, corpus_tokenizer,
                                                                   tmp_path):
    corpus_tokenizer.backend.model.save(str(tmp_path))  # writes vocab.json + merges.txt
    tok = build_tokenizer(cfg(tokenizer_type="GPT2BPETokenizer",
                              vocab_file=str(tmp_path / "vocab.json"),
                              merge_file=str(tmp_path / "merges.txt")))
    text = "Return the list of arguments, e.g. f(x, *args) -> [x, …] 🙂"
    assert tok.tokenize(text) == corpus_tokenizer.tokenize(text)
    assert tok.detokenize(tok.tokenize(text)) == text
    assert tok.eod == corpus_tokenizer.eod and tok.vocab_size == corpus_tokenizer.vocab_size


def test_sentencepiece_tokenizer(tmp_path):
    import sentencepiece as spm

    lines = [f"sentence number {i} about rivers, stones and clouds." for i in range(200)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(tmp_path / "m"),
                                   vocab_size=60, model_type="bpe", minloglevel=2)
    tok = build_tokenizer(cfg(tokenizer_type="Llama2Tokenizer",
                              tokenizer_model=str(tmp_path / "m.model")))
    ids = tok.tokenize("sentence number 7 about rivers.")
    assert tok.detokenize(ids) == "sentence number 7 about rivers."
    assert tok.vocab_size == 60 and tok.eod == 2 and tok.bos == 1 and tok.pad == -1
    assert tok.tokenize_batch(["a b", "stones"]) == [tok.tokenize("a b"), tok.tokenize("stones")]


def test_tokenizers_pickle_for_worker_processes(small_hf_dir):
    import pickle

    tok = build_tokenizer(cfg(tokenizer_type="HuggingFaceTokenizer",
                              tokenizer_model=str(small_hf_dir / "tokenizer.json")))
    copy = pickle.loads(pickle.dumps(tok))
    assert copy.tokenize("lazy dog") == tok.tokenize("lazy dog") and copy.eod == tok.eod
    null = pickle.loads(pickle.dumps(NullTokenizer(300, 299, 298)))
    assert (null.vocab_size, null.eod, null.pad) == (300, 299, 298)


def test_tokenizer_config_json_names_the_special_tokens(small_hf_dir, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text((small_hf_dir / "tokenizer.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": "<|pad|>"}, "pad_token": "<|endoftext|>"}))
    tok = build_tokenizer(cfg(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(folder)))
    assert tok.detokenize([tok.eod]) == "<|pad|>" and tok.detokenize([tok.pad]) == "<|endoftext|>"


def test_vocab_size_priority_follows_the_spec(corpus_tokenizer):
    from mbridge_config.errors import ConfigError

    # The model's vocab size is None: the tokenizer's, padded to 128 x TP.
    assert resolve_vocab_size(None, NullTokenizer().vocab_size, 128, 1) == (384, True)
    assert resolve_vocab_size(None, NullTokenizer().vocab_size, 128, 4) == (512, True)
    assert resolve_vocab_size(None, corpus_tokenizer.vocab_size, 128, 2) == (2048, True)
    # Set: used as is (no padding), but never below the tokenizer's.
    assert resolve_vocab_size(300, NullTokenizer().vocab_size, 128, 4) == (300, False)
    with pytest.raises(ConfigError, match="model.vocab_size"):
        resolve_vocab_size(2000, corpus_tokenizer.vocab_size)


@pytest.mark.parametrize("fields, message", [
    (dict(tokenizer_type="GPT2BPETokenizer", vocab_file=None, merge_file="m"),
     "tokenizer.vocab_file: GPT2BPETokenizer needs it"),
    (dict(tokenizer_type="GPT2BPETokenizer", vocab_file="/nope/vocab.json", merge_file="/x"),
     "tokenizer.vocab_file: /nope/vocab.json does not exist"),
    (dict(tokenizer_type="HuggingFaceTokenizer", tokenizer_model="meta-llama/Llama-3-8B"),
     "not a local directory or tokenizer.json"),
    (dict(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=None), "needs a local"),
    (dict(tokenizer_type="SentencePieceTokenizer", tokenizer_model="/nope.model"),
     "/nope.model does not exist"),
    (dict(tokenizer_type="TikTokenizer"), "'TikTokenizer' is not supported"),
    (dict(tokenizer_type="NullTokenizer", vocab_size=100), "needs >= 257"),
    (dict(tokenizer_type="NullTokenizer", vocab_size=300, null_tokenizer_eod_id=5),
     "null_tokenizer_eod_id"),
])
def test_bad_tokenizer_configs_say_what_is_wrong(fields, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        build_tokenizer(cfg(**fields))
    assert "\n" not in str(info.value)


def test_directory_without_tokenizer_json_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="no tokenizer.json"):
        build_tokenizer(cfg(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(tmp_path)))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        build_tokenizer(cfg(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(tmp_path)))


def test_builds_from_the_real_tokenizer_config(small_hf_dir):
    from mbridge_config import TokenizerConfig

    tok = build_tokenizer(TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                                          tokenizer_model=str(small_hf_dir)))
    assert tok.detokenize(tok.tokenize("jumps over")) == "jumps over"
    import mbridge.training.tokenizers.tokenizer as shim

    assert shim.build_tokenizer is build_tokenizer
