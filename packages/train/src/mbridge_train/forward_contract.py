"""Adapting user forward steps to megatron-core's schedule.

Megatron Bridge's contract is ``forward_step(state, data_iterator, model,
return_schedule_plan=False) -> (output, loss_func)``; the legacy megatron form
``forward_step(data_iterator, model)`` is accepted too. The schedule itself calls
``f(data_iterator, model)``, so the state is bound here.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

from mbridge_train.loss_contract import normalize


def bind_state(forward_step_func: Callable, state) -> Callable:
    """A two-argument forward step for megatron's schedule, with ``state`` injected if wanted."""
    try:
        parameters = inspect.signature(forward_step_func).parameters
    except (TypeError, ValueError):  # builtins / C callables: assume the legacy form
        return forward_step_func
    positional = [p for p in parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    if len(positional) >= 3:
        return functools.partial(forward_step_func, state)
    if len(positional) == 2:
        return forward_step_func
    raise TypeError("forward_step_func must take (state, data_iterator, model[, "
                    "return_schedule_plan]) or (data_iterator, model); got "
                    f"{inspect.signature(forward_step_func)}")


def schedule_step(forward_step_func: Callable, state) -> Callable:
    """The forward step megatron's schedule calls: state bound, and the returned loss function
    answering in one of the two forms the schedule reads (``loss_contract.normalize``)."""
    step = bind_state(forward_step_func, state)

    @functools.wraps(step)
    def run(data_iterator, model):
        output, loss_func = step(data_iterator, model)
        return output, _normalized(loss_func)

    return run


def _normalized(loss_func: Callable) -> Callable:
    def loss(output_tensor, non_loss_data: bool = False):
        if non_loss_data:  # the inference pattern: whatever the user returns
            return loss_func(output_tensor, non_loss_data=True)
        return normalize(loss_func(output_tensor))

    return loss
