"""Run data set-up decisions: which tokenizer a run gets, and refusing a too-short single pass."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mbridge_config import (ConfigError, FinetuningDatasetConfig, GPTDatasetConfig,
                            MockGPTDatasetConfig, TokenizerConfig, TrainingConfig)
from mbridge_train import data_setup


def _cfg(dataset, tokenizer=None, vocab_size=1000):
    model = SimpleNamespace(vocab_size=vocab_size, make_vocab_size_divisible_by=128,
                            tensor_model_parallel_size=1, should_pad_vocab=False)
    return SimpleNamespace(model=model, dataset=dataset, tokenizer=tokenizer,
                           train=TrainingConfig(micro_batch_size=2, global_batch_size=4,
                                                train_iters=10))


def test_token_id_data_without_a_tokenizer_gets_a_null_tokenizer_of_the_model_vocab():
    for dataset in (GPTDatasetConfig(sequence_length=8, blend=["x"]),
                    MockGPTDatasetConfig(sequence_length=8)):
        cfg = _cfg(dataset)
        tokenizer = data_setup.build_tokenizer(cfg)
        assert tokenizer.vocab_size == 1000 and cfg.model.vocab_size == 1000


@pytest.mark.parametrize("dataset, vocab, words", [
    (GPTDatasetConfig(sequence_length=8, blend=["x"], eod_mask_loss=True), 1000,
     "eod_mask_loss needs the data's end-of-document id"),
    (GPTDatasetConfig(sequence_length=8, blend=["x"]), None, "model.vocab_size is None"),
    (FinetuningDatasetConfig(seq_length=8, dataset_root="x"), 1000, "the dataset needs one"),
])
def test_a_missing_tokenizer_is_refused_where_it_matters(dataset, vocab, words):
    with pytest.raises(ConfigError, match=words) as error:
        data_setup.build_tokenizer(_cfg(dataset, vocab_size=vocab))
    assert error.value.fields == ["tokenizer"]


def test_building_the_tokenizer_leaves_the_config_alone():
    """The vocab-size derivation is ConfigContainer.resolve_vocab_size's (called by setup), not
    a side effect of a builder (issue 17: builders wrote into the config they read)."""
    cfg = _cfg(MockGPTDatasetConfig(sequence_length=8),
               TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=300), vocab_size=None)
    assert data_setup.build_tokenizer(cfg).vocab_size == 300
    assert (cfg.model.vocab_size, cfg.model.should_pad_vocab) == (None, False)


def test_fine_tuning_cycles_by_default_and_a_short_single_pass_is_refused():
    assert FinetuningDatasetConfig(seq_length=8).dataloader_type == "cyclic"
    single = _cfg(FinetuningDatasetConfig(seq_length=8, dataloader_type="single"))
    with pytest.raises(ConfigError, match="need 40") as error:
        data_setup._check_long_enough(single, range(39), data_parallel_size=1)
    assert error.value.fields == ["dataset.dataloader_type"]
    data_setup._check_long_enough(single, range(40), data_parallel_size=1)
    cyclic = _cfg(FinetuningDatasetConfig(seq_length=8))
    data_setup._check_long_enough(cyclic, range(3), data_parallel_size=1)
