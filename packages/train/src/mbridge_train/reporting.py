"""What the user sees while training: console lines, TensorBoard / W&B scalars, a progress bar.

Every rank calls the same methods in the same order (the timer write gathers over all ranks);
only the logging rank (last pipeline stage, first TP/CP/DP rank) prints and writes. The
progress bar appears only when stdout is a terminal, so log files get plain lines.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from mbridge_train import loss_curve
from mbridge_train import throughput as tp

TIMER_NAMES = ("forward-backward", "forward-compute", "backward-compute", "optimizer")
"""megatron-core's schedule timers and ours, written to TensorBoard when they ran (their
timing_log_level decides which do)."""


class Reporter:
    def __init__(self, state, logging_rank: bool, seq_length: int):
        cfg = state.cfg
        self.state, self.cfg, self.logging = state, cfg, logging_rank
        self.world = torch.distributed.get_world_size()
        self.tokens_per_step = cfg.train.global_batch_size * seq_length
        self.step_flops = tp.model_flops_per_step(cfg.model, seq_length,
                                                  cfg.train.global_batch_size)
        self.peak = tp.current_device_peak_flops()
        self.fp16 = bool(getattr(cfg.model, "fp16", False) or getattr(cfg.optimizer, "fp16", False))
        self.train_curve: list[tuple[int, dict[str, float]]] = []
        """(step, losses) of every training step, on the logging rank (the loss-curve plot),
        earlier runs of a resumed one included."""
        self.earlier_evaluations: list[dict] = []
        """Validation records of the runs this one resumes (from loss_curve.jsonl)."""
        self._history = loss_curve.history_path(cfg) if logging_rank else None
        if self._history is not None:
            self.train_curve, self.earlier_evaluations = loss_curve.resume_history(
                self._history, state.train_state.step)
        self._window_s, self._window_steps, self._window_skipped = 0.0, 0, 0
        self._bar = None
        if logging_rank and sys.stdout.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=cfg.train.train_iters, initial=state.train_state.step,
                             unit="step", dynamic_ncols=True, file=sys.stdout)
        if logging_rank and cfg.logger.log_memory_to_tensorboard and cfg.logger.tensorboard_dir \
                and not torch.cuda.is_available():
            self.print("logger.log_memory_to_tensorboard: no CUDA device, so no memory scalars "
                       "are written")

    def print(self, line: str) -> None:
        if not self.logging:
            return
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    # --------------------------------------------------------------------- training steps

    def training_step(self, run, losses: dict[str, float], grad_norm: float | None,
                      skipped: bool, step_time_s: float) -> dict[str, Any] | None:
        """Account for one finished step; on log steps print the console line and return the
        history record (step, lr, grad_norm, step_time_s and the losses)."""
        cfg, progress = self.cfg, self.state.train_state
        step = progress.step
        progress.floating_point_operations_so_far += self.step_flops
        self._window_s += step_time_s
        self._window_steps += 1
        self._window_skipped += int(skipped)
        if self.logging and losses:
            self.train_curve.append((step, dict(losses)))
            if self._history is not None:
                loss_curve.append_history(self._history, {"step": step, "losses": losses})
        lr = run.scheduler.get_lr(run.optimizer.param_groups[0])
        loss_scale = float(run.optimizer.get_loss_scale()) if self.fp16 else None
        if self._bar is not None:
            self._bar.update(1)
            if losses:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        self._write_step_scalars(step, losses, grad_norm, lr, loss_scale, step_time_s)
        if not (step % cfg.logger.log_interval == 0 or step == cfg.train.train_iters):
            return None
        mean_s = self._window_s / self._window_steps
        rate = tp.throughput(self.step_flops, self.tokens_per_step, mean_s, self.world, self.peak)
        record = {"step": step, "lr": lr, "grad_norm": grad_norm, "step_time_s": mean_s, **losses}
        self.print(console_line(
            step=step, train_iters=cfg.train.train_iters,
            consumed_samples=progress.consumed_train_samples, step_time_s=mean_s, lr=lr,
            losses=losses, grad_norm=grad_norm, loss_scale=loss_scale,
            skipped=self._window_skipped, rate=rate))
        self._window_s, self._window_steps, self._window_skipped = 0.0, 0, 0
        return record

    def _write_step_scalars(self, step, losses, grad_norm, lr, loss_scale, step_time_s):
        cfg = self.cfg.logger
        state = self.state
        if not cfg.tensorboard_log_interval or step % cfg.tensorboard_log_interval:
            return
        if cfg.log_timers_to_tensorboard and cfg.tensorboard_dir and state.timers is not None:
            # Gathers over every rank; only the logging rank holds a writer.
            state.timers.write(list(TIMER_NAMES), state.tensorboard_logger, step,
                               normalizer=cfg.tensorboard_log_interval)
        if state.tensorboard_logger is None and state.wandb_logger is None:
            return
        scalars = dict(losses)
        scalars["learning-rate"] = lr
        scalars["batch-size"] = self.cfg.train.global_batch_size
        if grad_norm is not None:
            scalars["grad-norm"] = grad_norm
        if loss_scale is not None and cfg.log_loss_scale_to_tensorboard:
            scalars["loss-scale"] = loss_scale
        if cfg.log_timers_to_tensorboard:
            scalars["iteration-time"] = step_time_s
        if cfg.log_throughput_to_tensorboard:
            rate = tp.throughput(self.step_flops, self.tokens_per_step, step_time_s, self.world,
                                 self.peak)
            scalars["throughput/tokens-per-s"] = rate.tokens_per_s
            scalars["throughput/tflops-per-gpu"] = rate.tflops_per_gpu
            if rate.mfu is not None:
                scalars["throughput/mfu"] = rate.mfu
        if cfg.log_memory_to_tensorboard and torch.cuda.is_available():
            stats = torch.cuda.memory_stats()
            scalars["memory/allocated-bytes"] = stats.get("allocated_bytes.all.current", 0)
            scalars["memory/max-allocated-bytes"] = stats.get("allocated_bytes.all.peak", 0)
            scalars["memory/reserved-bytes"] = stats.get("reserved_bytes.all.current", 0)
        self._write(scalars, step)

    # --------------------------------------------------------------------- evaluation

    def evaluation(self, name: str, step: int, results: dict[str, float]) -> None:
        if not results:
            return
        if self._history is not None:
            loss_curve.append_history(self._history, {"step": step, "split": name, **results})
        shown = " | ".join(f"{k}: {v:.6g}" for k, v in results.items())
        self.print(f" {name} at iteration {step} | {shown}")
        scalars = {}
        for key, value in results.items():
            if key.endswith(" ppl"):
                if self.cfg.logger.log_validation_ppl_to_tensorboard:
                    scalars[f"{key[:-4]} {name} ppl"] = value
            else:
                scalars[f"{key} {name}"] = value
        self._write(scalars, step)

    def _write(self, scalars: dict[str, float], step: int) -> None:
        writer = self.state.tensorboard_logger
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
        if self.state.wandb_logger is not None and scalars:
            self.state.wandb_logger.log(scalars, step=step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def console_line(*, step: int, train_iters: int, consumed_samples: int, step_time_s: float,
                 lr: float, losses: dict[str, float], grad_norm: float | None,
                 loss_scale: float | None, skipped: int, rate: tp.Throughput) -> str:
    parts = [f" iteration {step:>8d}/{train_iters:>8d}", f"consumed samples: {consumed_samples}",
             f"ms/step: {step_time_s * 1e3:.1f}", f"lr: {lr:.3e}"]
    parts += [f"{key}: {value:.6g}" for key, value in losses.items()]
    if grad_norm is not None:
        parts.append(f"grad norm: {grad_norm:.4g}")
    if loss_scale is not None:
        parts.append(f"loss scale: {loss_scale:.6g}")
    parts += [f"skipped: {skipped}", f"tokens/s: {rate.tokens_per_s:.6g}",
              f"TFLOP/s/GPU: {rate.tflops_per_gpu:.4g}"]
    if rate.mfu is not None:
        parts.append(f"MFU: {rate.mfu * 100:.1f}%")
    return " | ".join(parts)
