"""The training loop shared by pretrain() and finetune(): set up, train, evaluate, save.

Everything heavy is megatron-core's (model chunks, DDP, optimizer, scheduler, the
forward/backward schedule, dist checkpointing); this module wires it to the ConfigContainer
and the forward-step contract, and decides when to log, evaluate, save and stop.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from mbridge_train import (async_saves, checkpointing, cpu_precision, data_setup, distributed,
                           loggers, loss_curve, preflight, profiling)
from mbridge_train.distributed import initialize_distributed, is_last_rank_logger
from mbridge_train.forward_contract import schedule_step
from mbridge_train.garbage import ManualGC
from mbridge_train.loss_contract import LM_LOSS, reduce_reported
from mbridge_train.optim import build_optimizer, build_scheduler
from mbridge_train.reporting import Reporter
from mbridge_train.resilience import ExitSignal, any_rank, check_weight_hashes
from mbridge_train.state import GlobalState
from mbridge_train.step_checks import StepChecks, ddp_grad_check_error
from mbridge_train.watchdog import HangWatchdog


@dataclass
class Run:
    """What setup() builds; train() drives it."""

    state: GlobalState
    model: list
    optimizer: Any
    scheduler: Any
    train_iterator: Any
    valid_iterator: Any
    test_iterator: Any
    history: list[dict] = field(default_factory=list)
    """One dict per logged step (step, lr, grad_norm, step_time_s, losses) and per evaluation
    (step, split, losses); the loss-curve plot takes its validation points from here."""
    world_size: int = 1
    logging_rank: bool = False
    """Whether this rank prints and logs (``distributed.is_last_rank_logger``): set by train()."""
    hooks: dict[str, Any] = field(default_factory=dict)
    """Model-config attributes megatron's schedule reads during a call (grad_scale_func, timers,
    ...), set only for the duration of each call (``_scheduled``)."""
    checks: StepChecks | None = None
    """The ``rerun_state_machine`` checks every training step passes before it is applied."""


def setup(cfg, *, training_mode: str = "pretrain") -> Run:
    """Finalize and validate the config, start the process groups, build tokenizer, model,
    optimizer, scheduler and data, and resume from a checkpoint when one is configured."""
    from megatron.core import parallel_state as ps
    from megatron.core.num_microbatches_calculator import (
        destroy_num_microbatches_calculator, init_num_microbatches_calculator)
    from megatron.core.timers import Timers

    # Sizes that do not fit the world are reported on every rank before any collective.
    world_size = distributed.world_size()
    cfg.finalize()
    cfg.validate(world_size)
    initialize_distributed(cfg.dist)
    checkpointing.new_run()
    cpu_precision.configure(cfg)
    preflight.run(cfg)
    state = GlobalState(cfg=cfg)
    state.timers = Timers(cfg.logger.timing_log_level, cfg.logger.timing_log_option)
    provider = cfg.model
    if not ps.model_parallel_is_initialized():
        provider.initialize_model_parallel(seed=cfg.rng.seed)
    else:  # the caller set up the process groups (lazy_init)
        _seed(cfg.rng.seed)
    dp_size = ps.get_data_parallel_world_size()
    destroy_num_microbatches_calculator()
    init_num_microbatches_calculator(torch.distributed.get_rank(), None,
                                     cfg.train.global_batch_size, cfg.train.micro_batch_size,
                                     dp_size)
    state.tokenizer = data_setup.build_tokenizer(cfg)
    if state.tokenizer is not None:
        cfg.resolve_vocab_size(state.tokenizer.vocab_size)

    model = provider.provide_distributed_model(
        ddp_config=cfg.ddp, pre_wrap_hook=_peft_hook(cfg),
        data_parallel_random_init=cfg.rng.data_parallel_random_init)
    # Weights first: the optimizer's main parameters copy the model's when it is built.
    # A PEFT run always starts from its base model; its own checkpoints hold the adapters.
    resume_from = checkpointing.start(cfg.checkpoint, cfg.train.train_iters)
    if training_mode == "finetune" and cfg.checkpoint.pretrained_checkpoint and (
            resume_from is None or cfg.peft is not None):
        checkpointing.load_pretrained_weights(cfg.checkpoint.pretrained_checkpoint, model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    hooks = _schedule_hooks(model, optimizer, cfg)
    if resume_from is not None:  # before the iterators: they resume at the consumed samples
        checkpointing.load_checkpoint(state, model, optimizer, scheduler, resume_from)

    datasets = data_setup.build_datasets(cfg, state.tokenizer)
    iterators = data_setup.build_iterators(
        cfg, datasets, state.train_state, ps.get_data_parallel_rank(), dp_size,
        model_chunks=len(model))
    # With a loss scaler megatron's optimizer skips steps with non-finite gradients itself.
    checks = StepChecks(cfg, loss_scaled=bool(cfg.optimizer.fp16 or cfg.optimizer.loss_scale))
    return Run(state, model, optimizer, scheduler, *iterators, world_size=world_size,
               hooks=hooks, checks=checks)


def _seed(seed: int) -> None:
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def _peft_hook(cfg) -> Callable | None:
    if cfg.peft is None:
        return None

    def apply(chunks):
        return cfg.peft(chunks, training=True)

    return apply


def _schedule_hooks(model: list, optimizer, cfg) -> dict[str, Any]:
    """What megatron's schedule reads from the model config: loss scaling, gradient
    finalisation (DP/SP/embedding all-reduces), DDP's sync switches, timers."""
    from megatron.core.distributed import finalize_model_grads

    def per_chunk(method: str):
        funcs = [getattr(chunk, method) for chunk in model]
        return funcs[0] if len(funcs) == 1 else funcs

    hooks = {"grad_scale_func": optimizer.scale_loss,
             "finalize_model_grads_func": finalize_model_grads, "timers": None}
    if cfg.ddp.overlap_grad_reduce:
        hooks["no_sync_func"] = per_chunk("no_sync")
        if cfg.dist.align_grad_reduce:
            hooks["grad_sync_func"] = per_chunk("start_grad_sync")
    if cfg.ddp.overlap_param_gather and cfg.ddp.align_param_gather:
        hooks["param_sync_func"] = per_chunk("start_param_sync")
    return hooks


@contextmanager
def _scheduled(run: Run):
    """The run's hooks on the model config for one schedule call, the old values back after:
    the config stays configuration (its YAML never sees a callable)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.utils import get_model_config

    config = get_model_config(run.model[0])
    saved = {name: getattr(config, name, None) for name in run.hooks}
    for name, value in run.hooks.items():
        setattr(config, name, value)
    try:
        yield get_forward_backward_func()
    finally:
        for name, value in saved.items():
            setattr(config, name, value)


# ----------------------------------------------------------------------------- one step


def num_microbatches() -> int:
    from megatron.core.num_microbatches_calculator import get_num_microbatches

    return get_num_microbatches()


def train_step(run: Run, forward_step: Callable) -> tuple[dict[str, float], float | None, bool]:
    """One optimizer step over a global batch: (reduced losses, grad norm, skipped?).

    The step checks (``run.checks``) see the losses and gradients between the schedule and the
    optimizer: a failing step is never applied (StepCheckError, or skipped with its gradients
    dropped and neither optimizer nor scheduler stepped)."""
    from megatron.core import parallel_state as ps

    cfg = run.state.cfg
    step = run.state.train_state.step + 1  # the step being computed, as the console counts
    _zero_grads(run)
    with _scheduled(run) as schedule:
        try:
            reported = schedule(
                forward_step_func=forward_step, data_iterator=run.train_iterator,
                model=run.model, num_microbatches=num_microbatches(),
                seq_length=_seq_length(cfg), micro_batch_size=cfg.train.micro_batch_size,
                forward_only=False)
        except RuntimeError as error:
            ours = ddp_grad_check_error(error, step)
            if ours is None:
                raise
            raise ours from None
    losses = {}
    if ps.is_pipeline_last_stage(ignore_virtual=True):
        losses = reduce_reported(reported, ps.get_data_parallel_group(with_context_parallel=True))
    if run.checks is not None:
        run.checks.fault = run.checks.inspect(step, reported, losses, run.model)
        if run.checks.fault is not None:
            _zero_grads(run)
            return losses, None, True
    with profiling.region(run.state, "optimizer"):
        updated, grad_norm, _ = run.optimizer.step()
    if updated:
        run.scheduler.step(increment=cfg.train.global_batch_size)
    return losses, None if grad_norm is None else float(grad_norm), not updated


def _zero_grads(run: Run) -> None:
    for chunk in run.model:
        chunk.zero_grad_buffer()
    run.optimizer.zero_grad()


def _seq_length(cfg) -> int:
    dataset = cfg.dataset
    return getattr(dataset, "sequence_length", None) or getattr(dataset, "seq_length", None) or \
        cfg.model.seq_length


# ----------------------------------------------------------------------------- evaluation


def evaluate(run: Run, forward_step: Callable, iterator, name: str = "validation",
             eval_iters: int | None = None) -> dict[str, float]:
    """Forward-only over ``eval_iters`` global batches; losses averaged over every token seen,
    with the perplexity exp(lm loss)."""
    from megatron.core import parallel_state as ps

    cfg = run.state.cfg
    eval_iters = eval_iters if eval_iters is not None else cfg.train.eval_iters
    if iterator is None or not eval_iters:
        return {}
    for chunk in run.model:
        chunk.eval()
    reported = []
    with torch.no_grad(), _scheduled(run) as schedule:
        for _ in range(eval_iters):
            reported += schedule(
                forward_step_func=forward_step, data_iterator=iterator, model=run.model,
                num_microbatches=num_microbatches(), seq_length=_seq_length(cfg),
                micro_batch_size=cfg.train.micro_batch_size, forward_only=True)
    for chunk in run.model:
        chunk.train()
    if cfg.train.global_batch_size:  # every rank: the counter is saved in checkpoints
        run.state.train_state.consumed_valid_samples += eval_iters * cfg.train.global_batch_size
    if not ps.is_pipeline_last_stage(ignore_virtual=True):
        return {}
    results = reduce_reported(reported, ps.get_data_parallel_group(with_context_parallel=True))
    if LM_LOSS in results:
        results[f"{LM_LOSS} ppl"] = math.exp(min(results[LM_LOSS], 700.0))
    return results


def forward_only_outputs(run: Run, forward_step: Callable, iterator,
                         microbatches: int = 1) -> list:
    """The inference pattern: each loss function's ``non_loss_data=True`` result, collected
    without backward (``collect_non_loss_data=True, forward_only=True``)."""
    cfg = run.state.cfg
    for chunk in run.model:
        chunk.eval()
    with torch.no_grad(), _scheduled(run) as schedule:
        outputs = schedule(
            forward_step_func=forward_step, data_iterator=iterator, model=run.model,
            num_microbatches=microbatches, seq_length=_seq_length(cfg),
            micro_batch_size=cfg.train.micro_batch_size, forward_only=True,
            collect_non_loss_data=True)
    for chunk in run.model:
        chunk.train()
    return outputs


# ----------------------------------------------------------------------------- the loop


def train(run: Run, forward_step_func: Callable) -> Run:
    """Step until train_iters (or an exit condition), evaluating, logging and saving on the
    configured intervals; a final save, the test evaluation and the loss-curve PNG at the end.

    Exits early, after finishing the current step, on ``train.exit_interval``,
    ``train.exit_duration_in_mins`` or the exit signal (``train.exit_signal_handler``); every
    exit saves when ``checkpoint.save`` is set, and the signal exit skips the test evaluation.
    """
    cfg, state = run.state.cfg, run.state
    progress = state.train_state
    first_step = progress.step
    forward_step = schedule_step(forward_step_func, state)
    logging_rank = run.logging_rank = is_last_rank_logger()
    loggers.open_loggers(state, logging_rank)
    reporter = Reporter(state, logging_rank, _seq_length(cfg))
    run.hooks["timers"] = profiling.schedule_timers(state)
    profiler = profiling.StepProfiler(cfg, torch.distributed.get_rank(), say=_say)
    collector = ManualGC(cfg.train)
    exit_signal = ExitSignal(cfg.train)
    state.signal_handler = exit_signal.handler
    hash_interval = cfg.train.check_weight_hash_across_dp_replicas_interval
    watchdog = HangWatchdog.from_config(cfg.ft, torch.distributed.get_rank())
    started = time.time()
    saved_at, by_signal = None, False
    try:
        while progress.step < (cfg.train.train_iters or 0):
            profiler.before_step(progress.step)
            watchdog.step_started(progress.step + 1)
            began = time.perf_counter()
            losses, grad_norm, skipped = train_step(run, forward_step)
            step_time = time.perf_counter() - began
            watchdog.step_finished(step_time)
            progress.step += 1
            step = progress.step
            fault = run.checks.fault if run.checks is not None else None
            if fault is not None:
                reporter.print(f" {fault.message}: step skipped ({run.checks.skipped} of "
                               f"train.skip_nonfinite_steps={run.checks.allowed})")
            progress.consumed_train_samples += cfg.train.global_batch_size
            progress.skipped_train_samples += cfg.train.global_batch_size if skipped else 0
            profiler.after_step(step)
            async_saves.finalize_finished()  # a background save done on every rank: tracker
            record = reporter.training_step(run, losses, grad_norm, skipped, step_time)
            if record is not None:
                run.history.append(record)
            if hash_interval and step % hash_interval == 0:
                check_weight_hashes(run.model, step)
            collector.after_step(step)
            if cfg.train.eval_interval and step % cfg.train.eval_interval == 0:
                with collector.evaluation():
                    results = evaluate(run, forward_step, run.valid_iterator)
                _log_evaluation(run, reporter, "validation", results)
                watchdog.progress()
            if _should_save(cfg, step):
                save(run)
                saved_at = step
                watchdog.progress()
            if exit_signal.received():
                reporter.print(f" {exit_signal.signal.name} received: stopping after step {step}"
                               + (", saving a checkpoint" if cfg.checkpoint.save else ""))
                by_signal = True
                break
            if _should_exit(cfg, step, started):
                break
        profiler.close(progress.step)
        if cfg.checkpoint.save and progress.step > first_step and saved_at != progress.step:
            save(run)
            watchdog.progress()
        if not by_signal and run.test_iterator is not None and \
                getattr(cfg.dataset, "do_test", True):
            with collector.evaluation():
                results = evaluate(run, forward_step, run.test_iterator, "test")
            _log_evaluation(run, reporter, "test", results)
        async_saves.wait()
        if logging_rank:
            _write_loss_curve(run, reporter)
    except BaseException:
        async_saves.abort()
        raise
    finally:
        watchdog.stop()
        profiler.close(progress.step)
        exit_signal.release()
        state.signal_handler = None
        collector.close()
        reporter.close()
        loggers.close_loggers(state)
    return run


def save(run: Run) -> None:
    cfg = run.state.cfg
    checkpointing.save_checkpoint(cfg.checkpoint, run.state.train_state, run.model, run.optimizer,
                                  run.scheduler, adapters_only=cfg.peft is not None,
                                  run_config=cfg)


def _should_save(cfg, step: int) -> bool:
    ckpt = cfg.checkpoint
    return bool(ckpt.save and ckpt.save_interval and step % ckpt.save_interval == 0)


def _should_exit(cfg, step: int, started: float) -> bool:
    train = cfg.train
    if train.exit_interval and step % train.exit_interval == 0:
        return True
    if train.exit_duration_in_mins:
        # Clocks differ between ranks: decide together, or one rank leaves the others waiting.
        return any_rank((time.time() - started) / 60 > train.exit_duration_in_mins)
    return False


def _log_evaluation(run: Run, reporter: Reporter, name: str, results: dict[str, float]) -> None:
    if not results:
        return
    run.history.append({"step": run.state.train_state.step, "split": name, **results})
    reporter.evaluation(name, run.state.train_state.step, results)


def _write_loss_curve(run: Run, reporter: Reporter) -> None:
    path = loss_curve.destination(run.state.cfg)
    if path is None or not reporter.train_curve:
        return
    loss_curve.write_loss_curve(path, reporter.train_curve,
                                reporter.earlier_evaluations + run.history)
    reporter.print(f" loss curve: {path}")


def _say(line: str) -> None:
    print(line, flush=True)


def teardown() -> None:
    """Destroy megatron's parallel state (the process group stays for the caller)."""
    from megatron.core import parallel_state as ps

    cpu_precision.reset()
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
