"""The vocab-size priority rule, and the Megatron Bridge import paths served by the meta-package."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbridge_config import ConfigError, resolve_vocab_size


@given(tokenizer=st.integers(1, 300_000), divisible=st.sampled_from([1, 64, 128]),
       tp=st.integers(1, 8))
def test_no_model_vocab_derives_and_pads(tokenizer, divisible, tp):
    size, padded = resolve_vocab_size(None, tokenizer, divisible, tp)
    assert padded and size % (divisible * tp) == 0
    assert tokenizer <= size < tokenizer + divisible * tp


@given(tokenizer=st.integers(1, 300_000), extra=st.integers(0, 1000))
def test_a_large_enough_model_vocab_is_kept_unpadded(tokenizer, extra):
    assert resolve_vocab_size(tokenizer + extra, tokenizer, 128, 4) == (tokenizer + extra, False)


@given(tokenizer=st.integers(2, 300_000), short=st.integers(1, 1000))
def test_a_smaller_model_vocab_is_an_error(tokenizer, short):
    with pytest.raises(ConfigError) as info:
        resolve_vocab_size(max(1, tokenizer - short), tokenizer)
    assert info.value.fields == ["model.vocab_size"]


def test_bridge_import_paths():
    from mbridge.data.datasets.packed_sequence import PackedSequenceSpecs
    from mbridge.training.comm_overlap import CommOverlapConfig
    from mbridge.training.config import (
        CheckpointConfig,
        ConfigContainer,
        DistributedDataParallelConfig,
        DistributedInitConfig,
        FinetuningDatasetConfig,
        GPTDatasetConfig,
        LoggerConfig,
        ProfilingConfig,
        SchedulerConfig,
        TrainingConfig,
    )
    from mbridge.training.mixed_precision import MixedPrecisionConfig, bf16_mixed
    from mbridge.training.tokenizers.config import TokenizerConfig

    import mbridge_config

    for cls in (CheckpointConfig, ConfigContainer, DistributedDataParallelConfig,
                DistributedInitConfig, FinetuningDatasetConfig, GPTDatasetConfig, LoggerConfig,
                ProfilingConfig, SchedulerConfig, TrainingConfig, MixedPrecisionConfig,
                TokenizerConfig, CommOverlapConfig, PackedSequenceSpecs):
        assert getattr(mbridge_config, cls.__name__) is cls
    assert bf16_mixed().bf16
