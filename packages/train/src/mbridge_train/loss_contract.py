"""The loss contract: what a forward step's loss function reports, and how the loop reads it.

A loss function answers in one of the Megatron Bridge patterns (``normalize`` lists them).
Each reported metric is either a scalar, averaged uniformly over micro-batches and ranks, or a
``TokenMean``: a sum over tokens and the token count, both summed before dividing, so the mean
is exact however the tokens are spread. megatron-core marks such pairs by shape alone (a
2-element tensor in the token-aware ``(loss, num_tokens, metadata)`` form); that reading
happens once, here at the boundary, and everything after it sees the explicit type, so no
other two-number metric is ever taken for a pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

LM_LOSS = "lm loss"
"""The key of the language-model loss, as megatron and Megatron Bridge report it."""


class TokenMean(NamedTuple):
    """A per-token mean still to be divided: (sum over tokens, token count), float tensors."""

    total: torch.Tensor
    count: torch.Tensor


def token_mean(total, count) -> TokenMean:
    """The pair for reporting: float scalars on the loss's device, copies (megatron's schedule
    divides the loss it trains on in place, which must not reach the report)."""
    total = torch.as_tensor(total).detach().float().clone().reshape(())
    count = torch.as_tensor(count, device=total.device).detach().float().clone().reshape(())
    return TokenMean(total, count)


def normalize(result):
    """Any loss pattern of the Megatron Bridge contract as ``(loss, metadata)`` or
    ``(loss, num_tokens, metadata)``, the two forms megatron-core's schedule reads, with every
    metadata value a float scalar tensor or a TokenMean.

    - ``loss`` (a scalar tensor): averaged over micro-batches; reported as LM_LOSS.
    - ``(loss, metadata)``: metadata values are scalars.
    - ``(loss, num_tokens)``: a token-aware sum; reported as LM_LOSS = sum / tokens.
    - ``(loss, num_tokens, metadata)``: metadata values are scalars or ``[sum, count]`` pairs
      (megatron's convention: a 2-element tensor or list).
    - ``{name: [sum, count], ...}``: every entry is reported as sum / count; the entry named
      LM_LOSS (else the first) is the one trained on, as a token-aware sum.
    """
    if torch.is_tensor(result):
        return result, {LM_LOSS: _scalar(LM_LOSS, result)}
    if isinstance(result, Mapping):
        if not result:
            raise ValueError("the loss function returned an empty dict")
        report = {name: _pair(name, value) for name, value in result.items()}
        trained = LM_LOSS if LM_LOSS in result else next(iter(result))
        total, count = _pair_tensors(trained, result[trained])
        return total, _token_count(count), report
    if isinstance(result, (tuple, list)) and len(result) == 3:
        loss, count, metadata = result
        report = {name: _scalar_or_pair(name, value) for name, value in _mapping(metadata).items()}
        return loss, _token_count(torch.as_tensor(count, device=loss.device)), report
    if isinstance(result, (tuple, list)) and len(result) == 2:
        loss, second = result
        if isinstance(second, Mapping):
            return loss, {name: _scalar(name, value) for name, value in second.items()}
        count = torch.as_tensor(second, device=loss.device)
        return loss, _token_count(count), {LM_LOSS: token_mean(loss, count)}
    raise TypeError("a loss function returns loss, (loss, metadata), (loss, num_tokens), "
                    "(loss, num_tokens, metadata) or {name: [sum, count]}; got "
                    f"{type(result).__name__}")


def reduce_reported(reported: Sequence[Mapping[str, object]],
                    group: torch.distributed.ProcessGroup | None = None) -> dict[str, float]:
    """Each metric of the per-micro-batch dicts (``normalize``'s) as one number: TokenMeans
    summed on both parts over micro-batches and the ranks of ``group``, then divided; scalars
    averaged over micro-batches, then over ranks."""
    if not reported:
        return {}
    names = list(reported[0])
    for record in reported:
        for name, value in record.items():
            if not isinstance(value, TokenMean) and torch.as_tensor(value).numel() != 1:
                raise ValueError(f"reported value {name!r} must be a scalar or a TokenMean "
                                 "(loss_contract.normalize reads the loss function's answer)")
    pairs = [n for n in names if isinstance(reported[0][n], TokenMean)]
    scalars = [n for n in names if n not in pairs]
    sums = [torch.stack([_as_float64(r[n]) for r in reported]).sum(0) for n in pairs]
    means = [torch.stack([_as_float64(r[n]) for r in reported]).mean().reshape(1)
             for n in scalars]
    flat = torch.cat(sums + means)
    world = 1
    if group is not None or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        world = torch.distributed.get_world_size(group)
        if world > 1:
            flat = _all_reduce_sum(flat, group)
    out = {}
    for index, name in enumerate(pairs):
        total, count = flat[2 * index].item(), flat[2 * index + 1].item()
        out[name] = total / count if count else math.nan
    for index, name in enumerate(scalars):
        out[name] = flat[2 * len(pairs) + index].item() / world
    return out


def _as_float64(value) -> torch.Tensor:
    if isinstance(value, TokenMean):
        return torch.stack([value.total.detach().double().cpu(), value.count.detach().double().cpu()])
    return torch.as_tensor(value).detach().double().cpu().reshape(())


def _mapping(metadata) -> Mapping:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"a loss function's metadata must be a dict, got {type(metadata).__name__}")
    return metadata


def _scalar(name: str, value) -> torch.Tensor:
    if isinstance(value, TokenMean):
        return value
    tensor = torch.as_tensor(value).detach()
    if tensor.numel() != 1:
        raise ValueError(f"reported value {name!r} must be a scalar here (a per-token mean needs "
                         f"the token-aware (loss, num_tokens, metadata) form or "
                         f"loss_contract.token_mean), got {tensor.numel()} numbers")
    return tensor.float().clone().reshape(())  # a copy, as for token_mean


def _scalar_or_pair(name: str, value):
    if isinstance(value, TokenMean):
        return value
    if torch.as_tensor(value).numel() == 2:
        return _pair(name, value)
    return _scalar(name, value)


def _pair_tensors(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of a ``[sum, count]`` entry (a TokenMean, a list or a 2-element tensor)."""
    if isinstance(pair, TokenMean):
        return pair
    if torch.is_tensor(pair) and pair.numel() == 2:
        flat = pair.reshape(2)
        return flat[0], flat[1]
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        total = torch.as_tensor(pair[0])
        return total.reshape(()), torch.as_tensor(pair[1], device=total.device).reshape(())
    raise ValueError(f"reported value {name!r} must be [sum, count], got {pair!r}")


def _pair(name: str, value) -> TokenMean:
    return token_mean(*_pair_tensors(name, value))


def _token_count(count: torch.Tensor) -> torch.Tensor:
    """megatron sums token counts into an int tensor; counts often arrive as floats (a mask's
    sum, or a [sum, count] pair's second half)."""
    count = count.detach()
    return (count if not count.is_floating_point() else count.round()).to(torch.int).reshape(())


def _all_reduce_sum(values: torch.Tensor, group) -> torch.Tensor:
    backend = torch.distributed.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    values = values.to(device)
    torch.distributed.all_reduce(values, group=group)
    return values.cpu()
