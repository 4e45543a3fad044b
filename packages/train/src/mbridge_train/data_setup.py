"""Tokenizer, datasets and data iterators for a run, from cfg.tokenizer and cfg.dataset."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import mbridge_data
from mbridge_config import FinetuningDatasetConfig, GPTDatasetConfig, TokenizerConfig
from mbridge_config.errors import ConfigError


def build_tokenizer(cfg):
    """The run's tokenizer (setup then settles the model's vocab size from it:
    ``ConfigContainer.resolve_vocab_size``).

    Pretraining data is already token ids, so without ``cfg.tokenizer`` a GPT dataset gets a
    NullTokenizer of the model's vocabulary (as Megatron Bridge's examples assume). That is
    refused where the dataset needs the real end-of-document id (``eod_mask_loss``,
    ``reset_position_ids``, ``reset_attention_mask``) and for fine-tuning data, which is text.
    """
    config = cfg.tokenizer
    if config is None:
        if cfg.dataset is None:
            return None
        needs_eod = [name for name in ("eod_mask_loss", "reset_position_ids",
                                       "reset_attention_mask")
                     if getattr(cfg.dataset, name, False)]
        if isinstance(cfg.dataset, GPTDatasetConfig) and cfg.model.vocab_size and not needs_eod:
            config = TokenizerConfig(tokenizer_type="NullTokenizer",
                                     vocab_size=cfg.model.vocab_size)
        else:
            why = (f"dataset.{needs_eod[0]} needs the data's end-of-document id" if needs_eod
                   else "the dataset needs one" if cfg.model.vocab_size
                   else "model.vocab_size is None, so it must come from a tokenizer")
            raise ConfigError(f"is None: {why}; set e.g. TokenizerConfig(tokenizer_type="
                              "'HuggingFaceTokenizer', tokenizer_model=...)", field="tokenizer")
    return mbridge_data.build_tokenizer(config)


def sample_counts(cfg) -> list[int]:
    """[train, valid, test] samples the datasets must provide for the whole run."""
    train = cfg.train
    gbs = train.global_batch_size
    iters = train.train_iters or 0
    eval_iters = train.eval_iters or 0
    evaluations = (iters // train.eval_interval + 1) if train.eval_interval else 1
    return [iters * gbs, evaluations * eval_iters * gbs, eval_iters * gbs]


def build_datasets(cfg, tokenizer):
    """(train, valid, test) datasets for the config's dataset type."""
    if isinstance(cfg.dataset, FinetuningDatasetConfig):
        return mbridge_data.build_finetuning_datasets(cfg.dataset, tokenizer,
                                                      vocab_size=cfg.model.vocab_size)
    return mbridge_data.build_pretraining_datasets(cfg.dataset, tokenizer, sample_counts(cfg),
                                                   vocab_size=cfg.model.vocab_size)


def build_iterators(cfg, datasets, train_state, data_parallel_rank: int,
                    data_parallel_size: int, model_chunks: int = 1):
    """(train, valid, test) iterators for this rank, resuming training and validation at the
    samples they consumed (the test set is read once, at the end, from its start).

    Validation and test loop endlessly (each evaluation takes eval_iters batches). With
    virtual pipeline stages every model chunk needs the same batches: each iterator is then a
    list of ``model_chunks`` tees of one loader.
    """
    mbs = cfg.train.micro_batch_size
    iterators = []
    for index, dataset in enumerate(datasets):

        def loader(consumed: int, dataset=dataset):
            return mbridge_data.build_dataloader(
                dataset, cfg.dataset, mbs, consumed_samples=consumed,
                data_parallel_rank=data_parallel_rank, data_parallel_size=data_parallel_size,
                seed=cfg.rng.seed)

        if dataset is None:
            iterators.append(None)
            continue
        if index == 0:
            _check_long_enough(cfg, dataset, data_parallel_size)
            iterator = iter(loader(train_state.consumed_train_samples))
        else:
            start = train_state.consumed_valid_samples if index == 1 else 0
            iterator = _endless(loader, _position(cfg, dataset, start, data_parallel_size))
        iterators.append(list(itertools.tee(iterator, model_chunks)) if model_chunks > 1
                         else iterator)
    return tuple(iterators)


def _check_long_enough(cfg, dataset, data_parallel_size: int) -> None:
    """One ordered pass ("single") over too small a training set would stop mid-run."""
    if cfg.dataset.dataloader_type not in (None, "single"):
        return
    needed = (cfg.train.train_iters or 0) * cfg.train.global_batch_size
    usable = len(dataset) // (cfg.train.micro_batch_size * data_parallel_size) * (
        cfg.train.micro_batch_size * data_parallel_size)
    if usable < needed:
        raise ConfigError(f"'single' reads the {len(dataset)} training samples once, but "
                          f"{cfg.train.train_iters} iterations x global batch "
                          f"{cfg.train.global_batch_size} need {needed}; use 'cyclic' (reshuffled "
                          "epochs) or fewer iterations", field="dataset.dataloader_type")


def _position(cfg, dataset, consumed: int, data_parallel_size: int) -> int:
    """Where an endless pass over ``dataset`` stands after ``consumed`` samples: "single"
    passes restart from 0 after their last full global micro-batch; "cyclic" counts epochs
    itself."""
    if cfg.dataset.dataloader_type not in (None, "single") or not consumed:
        return consumed
    per_pass = len(dataset) // (cfg.train.micro_batch_size * data_parallel_size) * (
        cfg.train.micro_batch_size * data_parallel_size)
    return consumed % per_pass if per_pass else 0


def _endless(loader, start: int = 0) -> Iterator:
    """Batches of ``loader(start)``, then of ``loader(0)`` again and again."""
    consumed = start
    while True:
        yielded = False
        for batch in loader(consumed):
            yielded = True
            yield batch
        if not yielded:
            return
        consumed = 0
