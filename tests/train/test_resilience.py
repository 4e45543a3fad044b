"""The callback replacements in the loop: the exit signal, the data-parallel weight-hash check,
manual garbage collection, collective stop decisions and megatron-core's experimental flag."""

from __future__ import annotations

import os
import signal

import pytest
from multirank import run_ranks

import tiny_run


@pytest.fixture(scope="module", autouse=True)
def _warm():
    tiny_run.preload()


# ----------------------------------------------------------------------------- exit signal


def _sigterm_run(rank, world, tmp):
    from mbridge.training.gpt_step import forward_step
    from mbridge_train import training

    saves = tiny_run.SaveRecorder()
    training.save = saves
    sent = []

    def step(state, data_iterator, model, return_schedule_plan=False):
        if state.train_state.step == 2 and not sent:  # during step 3's first micro-batch
            os.kill(os.getpid(), signal.SIGTERM)
            sent.append(True)
        return forward_step(state, data_iterator, model)

    cfg = tiny_run.config(train=dict(train_iters=8, exit_signal_handler=True, eval_interval=4,
                                     eval_iters=1),
                          checkpoint=dict(save=tmp))
    run, text = tiny_run.pretrain_captured(cfg, step)
    return dict(history=run.history, saves=saves.steps, text=text,
                handler_after=signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)


@pytest.mark.multiproc
def test_sigterm_finishes_the_step_saves_and_stops(tmp_path):
    (result,) = run_ranks(_sigterm_run, 1, str(tmp_path))
    assert [h["step"] for h in result["history"]] == [1, 2, 3]  # no test evaluation either
    assert result["saves"] == [3]
    assert " SIGTERM received: stopping after step 3, saving a checkpoint" in result["text"]
    assert result["handler_after"]  # the default handler is back


# ----------------------------------------------------------------------------- weight hashes


def _hash_check(rank, world):
    import torch
    from mbridge.training.gpt_step import forward_step
    from mbridge_train.resilience import WeightMismatchError, check_weight_hashes
    from mbridge_train.training import setup, teardown, train

    cfg = tiny_run.config(train=dict(train_iters=2,
                                     check_weight_hash_across_dp_replicas_interval=1))
    run = setup(cfg)
    try:
        train(run, forward_step)  # checked after each step: equal replicas pass
        names = [n for n, _ in run.model[0].named_parameters()]
        params = dict(run.model[0].named_parameters())
        if rank == 1:
            with torch.no_grad():
                params[names[3]].add_(1e-3)
                params[names[5]].add_(1e-3)
        try:
            check_weight_hashes(run.model, step=2)
        except WeightMismatchError as error:
            return names[3].removeprefix("module."), str(error)
        return None
    finally:
        teardown()


@pytest.mark.multiproc
def test_weight_hash_check_names_the_first_differing_parameter():
    results = run_ranks(_hash_check, 2)
    for name, message in results:  # every rank fails, with the same message
        assert message == (f"weight hash check at step 2: parameter '{name}' differs between "
                           "data-parallel replicas (2 versions: rank 0; rank 1)")
    assert results[0] == results[1]


# ----------------------------------------------------------------------------- manual GC


def _manual_gc_run(rank, world):
    import gc

    from mbridge.training.gpt_step import forward_step
    from mbridge_train import garbage

    collects, enabled_during = [], []

    class CountingGC:
        disable, enable, isenabled = gc.disable, gc.enable, gc.isenabled

        @staticmethod
        def collect():
            collects.append(1)
            return gc.collect()

    garbage.gc = CountingGC

    def step(state, data_iterator, model, return_schedule_plan=False):
        enabled_during.append(gc.isenabled())
        return forward_step(state, data_iterator, model)

    cfg = tiny_run.config(train=dict(train_iters=6, manual_gc=True, manual_gc_interval=2,
                                     manual_gc_eval=True, eval_interval=3, eval_iters=1))
    tiny_run.pretrain_captured(cfg, step)
    return len(collects), set(enabled_during), gc.isenabled()


@pytest.mark.multiproc
def test_manual_gc_disables_the_collector_and_collects_on_schedule():
    ((collects, enabled_during, enabled_after),) = run_ranks(_manual_gc_run, 1)
    # steps 2, 4, 6 + before and after the validations at 3 and 6 and the final test run
    assert collects == 3 + 2 * 3
    assert enabled_during == {False} and enabled_after


# ----------------------------------------------------------------------------- stop decisions


def _any_rank(rank, world):
    from mbridge_train.resilience import any_rank

    return any_rank(rank == 1), any_rank(False)


@pytest.mark.multiproc
def test_stop_decisions_are_taken_by_all_ranks_together():
    assert run_ranks(_any_rank, 2) == [(True, False), (True, False)]


# ----------------------------------------------------------------------------- experimental


def test_enable_megatron_core_experimental_sets_the_flag_and_round_trips(tmp_path):
    from megatron.core.config import is_experimental_enabled, set_experimental_flag

    from mbridge_config import ConfigContainer
    from mbridge_train import preflight

    cfg = tiny_run.config(dist=dict(enable_megatron_core_experimental=True))
    assert not tiny_run.config().dist.enable_megatron_core_experimental  # the default
    try:
        set_experimental_flag(False)
        preflight.run(tiny_run.config())
        assert not is_experimental_enabled()
        preflight.run(cfg)
        assert is_experimental_enabled()
    finally:
        set_experimental_flag(False)
    cfg.to_yaml(tmp_path / "run.yaml")
    loaded = ConfigContainer.from_yaml(tmp_path / "run.yaml")
    assert loaded.dist.enable_megatron_core_experimental is True
