"""Every config check lives in validate(), every derivation in finalize(): what validate() lets
through, set-up builds without a ConfigError, and building never writes into the config
(issue 17: five homes of checks disagreed, and builders edited the config they read)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from multirank import run_ranks
from tiny_run import config

from mbridge_config import CommOverlapConfig, ConfigError


def _problems(cfg, world_size=1) -> dict[str, str]:
    try:
        cfg.finalize().validate(world_size)
    except ConfigError as error:
        return dict(error.problems)
    return {}


def test_unsupported_checkpoint_settings_are_refused_by_validate():
    """Was accepted by validate() and refused later by checkpointing.check_supported."""
    for field, value in [("non_persistent_ckpt_type", "local"), ("ckpt_format", "torch")]:
        problems = _problems(config(checkpoint={field: value}))
        assert f"checkpoint.{field}" in problems, problems
        assert "not supported" in problems[f"checkpoint.{field}"]
    assert "checkpoint.async_save" not in _problems(config(checkpoint={"async_save": True}))


def test_tp_comm_overlap_gets_one_answer():
    """validate() said "needs TP>1 and SP"; a user who fixed that was told by preflight that it
    is not supported at all. Now one rule says it, whatever the layout."""
    for tp, sp in [(1, False), (2, True)]:
        cfg = config(tensor_model_parallel_size=tp, sequence_parallel=sp)
        cfg.comm_overlap = CommOverlapConfig(tp_comm_overlap=True)
        problems = _problems(cfg, world_size=tp)
        assert "not supported" in problems["comm_overlap.tp_comm_overlap"], problems


@pytest.mark.parametrize("warmup, refused", [(3, False), (4, True), (5, True)])
def test_warmup_must_be_shorter_than_decay_in_validate(warmup, refused):
    """warm-up == decay passed validate() (``>``) and failed after the model was built."""
    cfg = config(train={"train_iters": 4})
    cfg.scheduler.lr_warmup_iters = warmup
    assert ("scheduler.lr_warmup_iters" in _problems(cfg)) == refused


def test_finalize_derives_what_the_optimizer_builder_used_to_write():
    cfg = config().finalize()
    assert cfg.optimizer.min_lr == 0.0
    assert (cfg.optimizer.bf16, cfg.optimizer.fp16) == (cfg.model.bf16, cfg.model.fp16)
    assert cfg.optimizer.params_dtype == cfg.model.params_dtype


def test_resolve_vocab_size_is_the_containers():
    cfg = config()  # vocab_size None on the model: the tokenizer's, padded
    assert cfg.model.vocab_size is None
    cfg.resolve_vocab_size(300)
    assert (cfg.model.vocab_size, cfg.model.should_pad_vocab) == (384, True)
    with pytest.raises(ConfigError, match="model.vocab_size"):
        cfg.resolve_vocab_size(1000)  # now fixed at 384: a bigger tokenizer does not fit


_CHOICES = st.fixed_dictionaries({
    "train_iters": st.integers(1, 3),
    "micro_batch_size": st.sampled_from([1, 2]),
    "global_batch_size": st.sampled_from([2, 4, 6]),
    "warmup": st.tuples(st.just("iters"), st.integers(0, 4))
    | st.tuples(st.just("fraction"), st.sampled_from([0.0, 0.3, 0.9, 1.0])),
    "lr_decay_iters": st.none() | st.integers(1, 5),
    "lr_decay_style": st.sampled_from(["constant", "linear", "cosine", "WSD"]),
    "min_lr": st.none() | st.sampled_from([0.0, 1e-4]),
    "eval_interval": st.none() | st.integers(1, 2),
    "save_interval": st.none() | st.sampled_from([1, 2]),
    "most_recent_k": st.sampled_from([-1, 1]),
    "vocab_size": st.none() | st.sampled_from([256, 300, 512]),
})


def _apply(cfg, choice, directory):
    train, sched = cfg.train, cfg.scheduler
    train.train_iters = choice["train_iters"]
    train.micro_batch_size = choice["micro_batch_size"]
    train.global_batch_size = choice["global_batch_size"]
    train.eval_interval = choice["eval_interval"]
    kind, warmup = choice["warmup"]
    sched.lr_warmup_iters = warmup if kind == "iters" else 0
    sched.lr_warmup_fraction = warmup if kind == "fraction" else None
    sched.lr_decay_iters = choice["lr_decay_iters"]
    sched.lr_decay_style = choice["lr_decay_style"]
    if choice["lr_decay_style"] == "WSD":
        sched.lr_wsd_decay_iters = 1
    cfg.optimizer.min_lr = choice["min_lr"]
    ckpt = cfg.checkpoint
    ckpt.save = str(directory)
    ckpt.save_interval = choice["save_interval"]
    ckpt.most_recent_k = choice["most_recent_k"]
    cfg.model.vocab_size = choice["vocab_size"]


def _settle(cfg) -> str:
    """The config as set-up should leave it: finalized, vocab resolved (NullTokenizer(300))."""
    cfg.finalize()
    cfg.resolve_vocab_size(300)
    return cfg.to_yaml()


def _valid_configs_set_up_and_train_without_changing_them(rank, world, tmp):
    import itertools

    from mbridge_train.gpt_step import forward_step
    from mbridge_train.training import setup, teardown, train

    counter = itertools.count()
    outcomes = {"ran": 0}

    @settings(max_examples=8, database=None,
              suppress_health_check=[HealthCheck.filter_too_much])
    @given(choice=_CHOICES)
    def check(choice):
        cfg = config()
        _apply(cfg, choice, tmp / f"run{next(counter)}")
        assume(not _problems(cfg))
        expected = _settle(cfg)
        try:
            run = train(setup(cfg), forward_step)  # no ConfigError may escape set-up
        finally:
            teardown()
        assert cfg.to_yaml() == expected  # builders and hooks left nothing behind
        assert not any(callable(getattr(cfg.model, name, None)) for name in (
            "grad_scale_func", "finalize_model_grads_func", "no_sync_func", "timers"))
        assert run.state.train_state.step == choice["train_iters"]
        outcomes["ran"] += 1

    check()
    return outcomes


@pytest.mark.multiproc
def test_what_validate_accepts_sets_up_and_trains_and_leaves_the_config_unchanged(tmp_path):
    ((outcomes,),) = [run_ranks(_valid_configs_set_up_and_train_without_changing_them, 1,
                                tmp_path)]
    assert outcomes["ran"] >= 5  # enough accepted examples to mean something
