"""Core attention through ``torch.nn.functional.scaled_dot_product_attention``.

megatron-core's local ``DotProductAttention`` materialises the [b, heads, s, s] score matrix
(baddbmm, softmax, bmm) and repeats keys/values for grouped-query attention. SDPA dispatches to
flash / memory-efficient / cuDNN kernels on a GPU (no score matrix, GQA without copies) and to
the math kernel on a CPU. Same parameters, same sharded state dict: it subclasses megatron's class
and only replaces ``forward``; features SDPA cannot express fall back to the parent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPAttention(DotProductAttention):
    """Drop-in core attention for megatron-core layer specs, backed by SDPA.

    Also accepts the per-head key/value widths multi-latent attention passes (``k_channels``,
    ``v_channels``), which megatron's local class does not: SDPA takes a value width that
    differs from the query/key width.
    """

    def __init__(self, config, layer_number, attn_mask_type, attention_type,
                 attention_dropout=None, softmax_scale=None, k_channels=None, v_channels=None,
                 cp_comm_type=None, pg_collection=None):
        if softmax_scale is None and k_channels is not None:
            softmax_scale = 1.0 / math.sqrt(k_channels)
        super().__init__(config, layer_number, attn_mask_type, attention_type,
                         attention_dropout=attention_dropout, softmax_scale=softmax_scale,
                         cp_comm_type=cp_comm_type, pg_collection=pg_collection)

    def _sdpa_supported(self) -> bool:
        config = self.config
        return (self.softmax_offset is None
                and getattr(config, "window_size", None) is None
                and not getattr(config, "apply_query_key_layer_scaling", False)
                and getattr(config, "softmax_type", "vanilla") == "vanilla")

    def forward(self, query, key, value, attention_mask, attn_mask_type=None,
                attention_bias=None, packed_seq_params=None):
        if not self._sdpa_supported():
            return super().forward(query, key, value, attention_mask, attn_mask_type,
                                   attention_bias, packed_seq_params)
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        causal = mask_type in (AttnMaskType.causal, AttnMaskType.padding_causal)
        if packed_seq_params is not None and attention_bias is None:
            return self._packed(query, key, value, packed_seq_params, causal)
        if packed_seq_params is not None:
            return super().forward(query, key, value, attention_mask, attn_mask_type,
                                   attention_bias, packed_seq_params)
        # [s, b, heads, dim] -> [b, heads, s, dim]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        context = self._attend(q, k, v, attention_mask, causal, attention_bias)
        # [b, heads, s, dim_v] -> [s, b, heads * dim_v]
        context = context.permute(2, 0, 1, 3)
        return context.reshape(context.size(0), context.size(1), -1)

    def _attend(self, q, k, v, attention_mask, causal, bias=None):
        """SDPA on [b, heads, s, dim]; ``attention_mask`` is megatron's (True = masked out);
        ``bias`` an additive score bias (T5's relative positions), broadcast like the scores."""
        dropout = self.attention_dropout.p if self.training else 0.0
        gqa = q.size(1) != k.size(1)
        mask = None
        if attention_mask is not None:
            mask = ~attention_mask.bool()
            causal = False  # megatron's mask already carries the causal structure
        if bias is not None:
            blocked = None if mask is None else ~mask
            if causal:
                blocked = torch.ones(q.size(2), k.size(2), dtype=torch.bool,
                                     device=q.device).triu(1)
                causal = False
            mask = bias.to(q.dtype)
            if blocked is not None:
                mask = mask.masked_fill(blocked, float("-inf"))
        if dropout > 0.0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                return self._sdpa(q, k, v, mask, dropout, causal, gqa)
        return self._sdpa(q, k, v, mask, dropout, causal, gqa)

    def _sdpa(self, q, k, v, mask, dropout, causal, gqa):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal,
            scale=self.softmax_scale, enable_gqa=gqa)

    def _packed(self, query, key, value, packed_seq_params, causal):
        """THD layout ([tokens, heads, dim]): attention never crosses a sequence boundary.

        Each packed sequence is attended on its own slice; sequences are short next to the pack,
        so the loop costs little and keeps flash kernels usable (no block-diagonal mask).
        """
        cu_q = _boundaries(packed_seq_params, "q")
        cu_kv = _boundaries(packed_seq_params, "kv")
        outputs = []
        for i in range(len(cu_q) - 1):
            q = query[cu_q[i]:cu_q[i + 1]].transpose(0, 1).unsqueeze(0)
            k = key[cu_kv[i]:cu_kv[i + 1]].transpose(0, 1).unsqueeze(0)
            v = value[cu_kv[i]:cu_kv[i + 1]].transpose(0, 1).unsqueeze(0)
            if q.size(2) == 0:
                outputs.append(query.new_zeros(0, query.size(1), value.size(-1)))
                continue
            outputs.append(self._attend(q, k, v, None, causal).squeeze(0).transpose(0, 1))
        padding = query.size(0) - int(cu_q[-1])
        if padding > 0:  # tokens after the last boundary belong to no sequence
            outputs.append(query.new_zeros(padding, query.size(1), value.size(-1)))
        return torch.cat(outputs, dim=0)


def _boundaries(params, side: str) -> list[int]:
    padded = getattr(params, f"cu_seqlens_{side}_padded", None)
    cu = padded if padded is not None else getattr(params, f"cu_seqlens_{side}")
    return [int(x) for x in cu.tolist()]
