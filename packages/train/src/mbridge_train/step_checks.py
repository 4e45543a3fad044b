"""Checks on every training step before the optimizer applies it (``rerun_state_machine``).

After the forward/backward schedule and before ``optimizer.step()`` each rank notes what it
saw: its share of the loss trained on (``lm loss``, else the first reported metric), whether
that is finite, and the norm of its local gradient buffers. One all-gather over the world puts
every rank's row on every rank, so all of them take the same decision, and the failing rank
can be named. A failed check raises StepCheckError (one line: the iteration being computed, the
value and the rank) before the step is applied, so the weights and every checkpoint stay those
of the last good step; ``train.skip_nonfinite_steps=N`` instead drops up to N failing steps.

The checks (all under ``rerun_state_machine``):
- ``check_for_nan_in_loss``: the loss is NaN/Inf on some rank, or the gradients are (a
  non-finite local gradient norm). The gradient check is left to megatron when a loss scaler is
  in use (fp16 or ``optimizer.loss_scale``): there an overflow is routine and megatron's
  optimizer skips the step and lowers the scale itself.
- ``check_for_spiky_loss``: the reduced loss is above ``spiky_loss_factor`` x the median of the
  reduced losses of the last SPIKE_WINDOW accepted steps of this process (skipped steps never
  enter the window; a resumed run starts an empty one). The median, not the mean or the max,
  so that neither the high losses of the first steps nor one earlier outlier hide a spike.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from dataclasses import dataclass

import torch

from mbridge_config.errors import MBridgeError
from mbridge_train.loss_contract import LM_LOSS, TokenMean
from mbridge_train.resilience import collective_device

SPIKE_WINDOW = 100
"""Accepted steps whose median loss is the spike check's reference."""

# One row per rank: has the trained loss, its local value, local value non-finite,
# gradients checked, local gradient norm, reduced loss (NaN where this rank has none).
_HAS_LOSS, _LOSS, _LOSS_BAD, _GRAD_CHECKED, _GRAD_NORM, _REDUCED = range(6)


class StepCheckError(MBridgeError, RuntimeError):
    """A training step failed a ``rerun_state_machine`` check and was not applied."""


@dataclass
class Fault:
    """What failed at one step: the check's message, without the run's skip budget."""

    step: int
    message: str


class StepChecks:
    """The checks of one run (``StepChecks(cfg)``); ``inspect`` once per step, on every rank."""

    def __init__(self, cfg, *, loss_scaled: bool):
        rerun = cfg.rerun_state_machine
        self.nan_check = bool(rerun.check_for_nan_in_loss)
        self.grad_check = self.nan_check and not loss_scaled
        self.spike_check = bool(rerun.check_for_spiky_loss)
        self.spike_factor = float(rerun.spiky_loss_factor)
        self.allowed = cfg.train.skip_nonfinite_steps
        self.skipped = 0
        self.fault: Fault | None = None
        """The last step's fault when it was skipped (the loop reports it), else None."""
        self.recent: deque[float] = deque(maxlen=SPIKE_WINDOW)

    @property
    def active(self) -> bool:
        return self.nan_check or self.spike_check

    def inspect(self, step: int, reported: list, reduced: dict[str, float],
                model: list) -> Fault | None:
        """None when the step may be applied; the Fault when it is to be skipped; raises
        StepCheckError when it fails and no skip is left. Collective (every rank calls it)."""
        if not self.active:
            return None
        table = _gather(_local_row(reported, reduced, model if self.grad_check else None))
        fault = self.judge(step, table, _trained_name(reduced))
        if fault is None:
            losses = table[table[:, _HAS_LOSS] > 0, _REDUCED]
            if len(losses) and math.isfinite(losses[0]):  # NaN passes when only spikes count
                self.recent.append(float(losses[0]))
            return None
        self.skipped += 1
        if self.skipped > self.allowed:
            if self.allowed:
                note = (f"; all {self.allowed} skips of train.skip_nonfinite_steps="
                        f"{self.allowed} are spent")
            else:
                note = "; train.skip_nonfinite_steps=N would skip up to N such steps"
            raise StepCheckError(f"{fault.message}: the run stops before applying the step"
                                 f"{note}")
        return fault

    def judge(self, step: int, table: torch.Tensor, name: str) -> Fault | None:
        """The decision from every rank's row (``table[rank]``); the same on every rank."""
        ranks = torch.arange(len(table))
        has_loss = table[:, _HAS_LOSS] > 0
        if self.nan_check:
            bad = ranks[has_loss & (table[:, _LOSS_BAD] > 0)]
            value_at = _LOSS
            if not len(bad):  # finite shares whose reduction is not (an overflow)
                bad, value_at = ranks[has_loss & ~torch.isfinite(table[:, _REDUCED])], _REDUCED
            if len(bad):
                rank = int(bad[0])
                value = table[rank, value_at]
                return Fault(step, f"iteration {step}: {name} is {float(value)} on rank {rank}"
                                   f"{_more(len(bad))} (rerun_state_machine."
                                   "check_for_nan_in_loss)")
        if self.grad_check:
            checked = table[:, _GRAD_CHECKED] > 0
            bad = ranks[checked & ~torch.isfinite(table[:, _GRAD_NORM])]
            if len(bad):
                rank = int(bad[0])
                return Fault(step, f"iteration {step}: the gradients are not finite (local grad "
                                   f"norm {float(table[rank, _GRAD_NORM])}) on rank {rank}"
                                   f"{_more(len(bad))} (rerun_state_machine."
                                   "check_for_nan_in_loss)")
        if self.spike_check and self.recent and has_loss.any():
            reduced = float(table[has_loss][0, _REDUCED])
            reference = statistics.median(self.recent)
            if reference > 0 and reduced > self.spike_factor * reference:
                local = torch.where(has_loss, table[:, _LOSS],
                                    torch.full_like(table[:, 0], -math.inf))
                rank = int(torch.argmax(local))
                return Fault(step, f"iteration {step}: {name} {reduced:.6g} is a spike, above "
                                   f"rerun_state_machine.spiky_loss_factor {self.spike_factor:g} x "
                                   f"{reference:.6g} (the median of the last {len(self.recent)} "
                                   f"steps); largest on rank {rank} ({float(local[rank]):.6g}) "
                                   "(rerun_state_machine.check_for_spiky_loss)")
        return None


def _more(count: int) -> str:
    return f" and {count - 1} more rank{'s' if count > 2 else ''}" if count > 1 else ""


def _trained_name(reduced: dict[str, float]) -> str:
    if not reduced or LM_LOSS in reduced:
        return LM_LOSS
    return next(iter(reduced))


def _local_row(reported: list, reduced: dict[str, float], model: list | None) -> torch.Tensor:
    row = torch.zeros(6, dtype=torch.float64)
    row[_REDUCED] = math.nan
    if reported:
        name = LM_LOSS if LM_LOSS in reported[0] else next(iter(reported[0]))
        total, value = _local_loss([record[name] for record in reported])
        row[_HAS_LOSS], row[_LOSS] = 1, value
        row[_LOSS_BAD] = float(not math.isfinite(total))
        row[_REDUCED] = reduced.get(name, math.nan)
    if model is not None:
        row[_GRAD_CHECKED], row[_GRAD_NORM] = 1, local_grad_norm(model)
    return row


def _local_loss(values: list) -> tuple[float, float]:
    """(what decides finiteness, this rank's value) of the trained loss over its micro-batches:
    for a TokenMean the token sum and sum / count (a rank may see no tokens: count 0 is fine)."""
    if isinstance(values[0], TokenMean):  # summed where they are: one copy to the host
        pair = torch.stack([torch.stack([v.total.detach(), v.count.detach()]).double()
                            for v in values]).sum(0).cpu()
        total, count = float(pair[0]), float(pair[1])
        return total, total / count if count else total
    mean = float(torch.stack([torch.as_tensor(v).detach().double().reshape(())
                              for v in values]).mean().cpu())
    return mean, mean


def local_grad_norm(model: list) -> float:
    """The L2 norm of this rank's gradient buffers (after the data-parallel reduction): NaN or
    Inf exactly when some gradient element is. With the distributed optimizer a buffer also
    holds the unreduced local gradients outside this rank's shard, so the number is only a
    finiteness witness, not the model's grad norm."""
    squares = []
    for chunk in model:
        # megatron's DDP keeps its gradient buffers in lists (shadowing Module.buffers()).
        buffers = [b for name in ("buffers", "expert_parallel_buffers")
                   if isinstance(getattr(chunk, name, None), list) for b in getattr(chunk, name)]
        if buffers:
            grads = [buffer.grad_data for buffer in buffers]
        else:  # not wrapped in megatron's DDP
            grads = [getattr(p, "main_grad", None) if getattr(p, "main_grad", None) is not None
                     else p.grad for p in chunk.parameters()]
        squares += [torch.linalg.vector_norm(g, dtype=torch.float32).square()
                    for g in grads if g is not None and g.numel()]
    if not squares:
        return 0.0
    return float(torch.stack(squares).sum().sqrt())


def _gather(row: torch.Tensor) -> torch.Tensor:
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return row.reshape(1, -1)
    local = row.to(collective_device(None))
    rows = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(rows, local)
    return torch.stack([r.cpu() for r in rows])


_MEGATRON_GRAD_CHECK = re.compile(r"Rank (\d+).*Unexpected result (\S+) \(message='([^']*)'\)")


def ddp_grad_check_error(error: RuntimeError, step: int) -> StepCheckError | None:
    """megatron's ``ddp.check_for_nan_in_grad`` failure (a RuntimeError from its rerun state
    machine, whose iteration count the loop does not drive, so it says "iteration 0") as our
    one line with the iteration being computed; None for any other error."""
    found = _MEGATRON_GRAD_CHECK.search(str(error))
    if found is None or "grad norm" not in found.group(3):
        return None
    rank, value, what = found.groups()
    return StepCheckError(f"iteration {step}: the gradients are not finite on rank {rank}: "
                          f"{what} (value {value}; ddp.check_for_nan_in_grad)")
