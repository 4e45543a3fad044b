"""Adapting user forward steps to megatron-core's schedule.

Megatron Bridge's contract is ``forward_step(state, data_iterator, model,
return_schedule_plan=False) -> (output, loss_func)``; the legacy megatron form
``forward_step(data_iterator, model)`` is accepted too. The schedule itself calls
``f(data_iterator, model)``, so the state is bound here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Callable

import torch


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
    answering in one of the two forms the schedule reads (see ``schedule_loss``)."""
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
        return schedule_loss(loss_func(output_tensor))

    return loss


def schedule_loss(result):
    """Any loss pattern of the Megatron Bridge contract as ``(loss, metadata)`` or
    ``(loss, num_tokens, metadata)``, the two forms megatron-core's schedule reads.

    - ``loss`` (a scalar tensor): averaged over micro-batches; reported as "loss".
    - ``(loss, metadata)``: as is.
    - ``(loss, num_tokens)``: a token-aware sum; reported as "loss" = sum / tokens.
    - ``(loss, num_tokens, metadata)``: as is.
    - ``{name: [value, count], ...}``: every entry is reported as value / count; the entry
      named "loss" (else the first) is the one trained on, as a token-aware sum.
    """
    if torch.is_tensor(result):
        return result, {"loss": result.detach().clone()}
    if isinstance(result, Mapping):
        if not result:
            raise ValueError("the loss function returned an empty dict")
        name = "loss" if "loss" in result else next(iter(result))
        value, count = _pair(name, result[name])
        report = {key: torch.stack([v.detach().float() for v in _pair(key, pair)])
                  for key, pair in result.items()}
        return value, _token_count(count), report
    if isinstance(result, (tuple, list)):
        if len(result) == 3:
            loss, count, metadata = result
            if not (torch.is_tensor(count) and count.dtype == torch.int):
                count = _token_count(torch.as_tensor(count, device=loss.device))
            return loss, count, metadata
        if len(result) == 2:
            loss, second = result
            if isinstance(second, Mapping):
                return loss, second
            count = torch.as_tensor(second, device=loss.device)
            return loss, _token_count(count), {"loss": torch.stack(
                [loss.detach().float().reshape(()), count.detach().float().reshape(())])}
    raise TypeError("a loss function returns loss, (loss, metadata), (loss, num_tokens), "
                    "(loss, num_tokens, metadata) or {name: [value, count]}; got "
                    f"{type(result).__name__}")


def _token_count(count: torch.Tensor) -> torch.Tensor:
    """megatron sums token counts into an int tensor; counts often arrive as floats (a mask's
    sum, or a [value, count] pair's second half)."""
    return count.detach().round().to(torch.int).reshape(())


def _pair(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, count) tensors of a ``[value, count]`` entry (a list or a 2-element tensor)."""
    if torch.is_tensor(pair) and pair.numel() == 2:
        flat = pair.reshape(2)
        return flat[0], flat[1]
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        value, count = pair
        value = torch.as_tensor(value)
        return value.reshape(()), torch.as_tensor(count, device=value.device).reshape(())
    raise ValueError(f"loss dict entry {name!r} must be [value, count], got {pair!r}")
