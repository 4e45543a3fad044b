"""The learning-rate schedule on resume (mbridge_train.optim.reconcile_scheduler): a longer
run stretches what train_iters derives, in one line; anything else is one ConfigError naming
the fields and both ways out; a user's explicit choice is left to megatron."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbridge_config.errors import ConfigError
from mbridge_train.optim import reconcile_scheduler

GBS = 4


def _state(iters: int, lr: float = 3e-3, warmup: int = 1) -> dict:
    return {"max_lr": lr, "min_lr": 0.0, "lr_warmup_steps": warmup * GBS, "num_steps": 8,
            "lr_decay_style": "cosine", "lr_decay_steps": iters * GBS, "start_wd": 0.1,
            "end_wd": 0.1, "wd_incr_style": "constant", "wd_incr_steps": iters * GBS}


def _cfg(iters, decay=None, wd=None, override=False, keep=False):
    sched = SimpleNamespace(lr_decay_iters=decay, lr_warmup_fraction=None, wd_incr_steps=wd,
                            override_opt_param_scheduler=override,
                            use_checkpoint_opt_param_scheduler=keep)
    return SimpleNamespace(scheduler=sched,
                           train=SimpleNamespace(train_iters=iters, global_batch_size=GBS))


def _now(state):
    return SimpleNamespace(state_dict=lambda: dict(state))


@given(st.integers(2, 500), st.integers(1, 500))
def test_a_longer_run_stretches_the_schedule_and_a_shorter_one_is_refused(saved, more):
    said = []
    cfg, progress = _cfg(saved + more), {"step": 2, "consumed_train_samples": 2 * GBS}
    got = reconcile_scheduler(cfg, _now(_state(saved + more)), _state(saved), said.append,
                              progress)
    assert got == {**_state(saved), "lr_decay_steps": (saved + more) * GBS,
                   "wd_incr_steps": (saved + more) * GBS}
    assert len(said) == 1 and f"train.train_iters {saved} -> {saved + more}" in said[0]
    with pytest.raises(ConfigError) as error:  # the other way round: not an extension
        reconcile_scheduler(_cfg(saved), _now(_state(saved)), _state(saved + more), said.append)
    assert "scheduler.lr_decay_iters (from train.train_iters)" in str(error.value)
    assert len(said) == 1


@pytest.mark.parametrize("cfg, now, saved, progress, fields", [
    (_cfg(8), _state(8, lr=1e-3), _state(8), None, ["optimizer.lr"]),
    (_cfg(8), _state(8, warmup=2), _state(4, warmup=1), None, ["scheduler.lr_warmup_iters"]),
    (_cfg(8, decay=8), _state(8), _state(4), None, ["scheduler.lr_decay_iters: 16"]),
    (_cfg(8), _state(8), _state(4), {"step": 2, "consumed_train_samples": 16},  # batch changed
     ["scheduler.lr_decay_iters"]),
])
def test_any_other_change_names_the_fields_and_both_ways_out(cfg, now, saved, progress, fields):
    with pytest.raises(ConfigError) as error:
        reconcile_scheduler(cfg, _now(now), saved, lambda line: None, progress)
    message = str(error.value)
    assert "\n" not in message and "scheduler.override_opt_param_scheduler" in message
    assert "scheduler.use_checkpoint_opt_param_scheduler" in message
    for field in fields:
        assert field in message, (field, message)


@pytest.mark.parametrize("choice", [dict(override=True), dict(keep=True)])
def test_an_explicit_choice_is_left_to_megatron(choice):
    saved = _state(4)
    assert reconcile_scheduler(_cfg(8, **choice), _now(_state(8, lr=1e-3)), saved) is saved
