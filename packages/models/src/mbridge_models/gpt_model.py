"""megatron-core's GPTModel, callable as ``model(tokens)``.

megatron's ``forward(input_ids, position_ids, attention_mask, ...)`` requires all three; user
forward steps written for Megatron Bridge often pass only the tokens (and an optional mask).
Defaults here: positions 0..s-1 per row, and no mask (the layers' causal mask type applies).
Same parameters, state-dict keys and sharded checkpoints as the parent.
"""

from __future__ import annotations

import torch
from megatron.core.models.gpt import GPTModel as MegatronGPTModel


class GPTModel(MegatronGPTModel):
    def forward(self, input_ids, position_ids=None, attention_mask=None, *args, **kwargs):
        if position_ids is None and input_ids is not None:
            position_ids = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(
                input_ids)
        return super().forward(input_ids, position_ids, attention_mask, *args, **kwargs)
