"""Greedy decoding with a megatron-core GPT model, to score a model on prompts by exact match.

No KV cache: each new token re-runs the prompt so far, which costs nothing at the sizes this is
for (evaluating small models on short prompts, e.g. the embedded instruction set). Prompts of
equal token length are decoded together, so no padding or attention mask is needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16,
                    batch_size: int = 64) -> list[str]:
    """The text each prompt continues with, up to EOD or ``max_new_tokens``.

    ``model`` is one model chunk (DDP / Float16Module wrappers are fine) holding the whole
    model: pipeline parallelism is not supported here, tensor parallelism is (logits shards
    are gathered).
    """
    chunk = model[0] if isinstance(model, (list, tuple)) else model
    device = next(chunk.parameters()).device
    was_training = chunk.training
    chunk.eval()
    by_length: dict[int, list[int]] = defaultdict(list)
    encoded = [tokenizer.tokenize(p) for p in prompts]
    for index, ids in enumerate(encoded):
        by_length[len(ids)].append(index)
    out: list[str] = [""] * len(prompts)
    try:
        for indices in by_length.values():
            for start in range(0, len(indices), batch_size):
                rows = indices[start:start + batch_size]
                tokens = torch.tensor([encoded[i] for i in rows], device=device)
                new = _decode(chunk, tokens, max_new_tokens, tokenizer.eod)
                for row, ids in zip(rows, new):
                    out[row] = tokenizer.detokenize(ids)
    finally:
        chunk.train(was_training)
    return out


def _decode(model, tokens: torch.Tensor, max_new_tokens: int, eod: int) -> list[list[int]]:
    finished = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
    generated = []
    for _ in range(max_new_tokens):
        positions = torch.arange(tokens.size(1), device=tokens.device).expand_as(tokens)
        logits = _full_vocab(model(tokens, positions, None)[:, -1])
        next_ids = logits.argmax(-1)
        generated.append(next_ids)
        finished |= next_ids == eod
        if bool(finished.all()):
            break
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
    rows = torch.stack(generated, dim=1).tolist()
    return [row[:row.index(eod)] if eod in row else row for row in rows]


def _full_vocab(logits: torch.Tensor) -> torch.Tensor:
    """Gather vocab-parallel logits shards when tensor parallelism is on."""
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized() and ps.get_tensor_model_parallel_world_size() > 1:
        from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

        return gather_from_tensor_model_parallel_region(logits)
    return logits
