"""The modules that replace a targeted linear: base layer + adapter, same call signature.

The wrapper keeps the base layer as ``to_wrap`` and the adapter as ``adapter``. Its plain
``state_dict()`` lists the base tensors under the base layer's own keys (``...linear_qkv.weight``,
not ``...linear_qkv.to_wrap.weight``) and loads them back the same way, and its megatron
``sharded_state_dict`` does the same, so base checkpoints load unchanged into an adapted model.
Attributes the model reads off its linears (``backward_dw``, ``weight``, TE's norm weights) are
forwarded to the base layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mbridge_peft import fused
from mbridge_peft.adapters import DoRAAdapter, LoRAAdapter
from mbridge_peft.linears import LinearLayout


class MergeError(RuntimeError):
    """The adapter cannot be folded into (or taken back out of) its base weight."""


class AdapterWrapper(nn.Module):
    """Common part of LoRALinear and DoRALinear."""

    is_peft_wrapper = True

    def __init__(self, to_wrap: nn.Module, adapter: LoRAAdapter, layout: LinearLayout):
        super().__init__()
        self.to_wrap = to_wrap
        self.adapter = adapter
        self.layout = layout
        self.merged = False
        self._original_weight: torch.Tensor | None = None
        if layout.layernorm_input:
            to_wrap.return_layernorm_output = True  # TE hands back the normalised input too
        self.register_load_state_dict_pre_hook(self._base_keys_into_to_wrap)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("to_wrap")
            if base is None:
                raise
            return getattr(base, name)

    # ------------------------------------------------------------------ calling

    def _call_base(self, x, *args, **kwargs):
        """(output, bias, adapter input) from the base layer."""
        result = self.to_wrap(x, *args, **kwargs)
        if not self.layout.returns_tuple:
            return result, None, x
        if not self.layout.layernorm_input:
            out, bias = result
        elif len(result) == 3:  # TE with its bias returned: (out, bias, normalised input)
            out, bias, x = result
        else:  # ((out, normalised input), bias)
            (out, x), bias = result
        return out, bias, x

    def _pack(self, out, bias):
        return (out, bias) if self.layout.returns_tuple else out

    def _gather_output(self, kwargs) -> bool:
        runtime = kwargs.get("runtime_gather_output")
        return self.layout.gather_output if runtime is None else bool(runtime)

    # ------------------------------------------------------------------ merging

    def base_weight(self) -> torch.Tensor:
        weight = getattr(self.to_wrap, "weight", None)
        if weight is None:
            raise MergeError(f"{type(self.to_wrap).__name__} receives its weight at call time "
                             "(shared embedding/output weights): nothing to merge into")
        return weight

    def merged_weight(self) -> torch.Tensor:
        """float32 base weight with the adapter folded in (this rank's block)."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the base weight, computed in float32 and cast back once.

        The original weight is kept (a copy, same device) so ``unmerge`` restores it bit for bit;
        recomputing ``W' - s B A`` would not be exact in low precision.
        """
        if self.merged:
            return
        weight = self.base_weight()
        merged = self.merged_weight()
        self._original_weight = weight.detach().clone()
        weight.copy_(merged.to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_weight().copy_(self._original_weight)
        self._original_weight = None
        self.merged = False

    # ------------------------------------------------------------------ state dicts

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if args:  # torch's legacy positional form: (destination, prefix, keep_vars)
            destination, prefix, keep_vars = (list(args) + [None, "", False])[:3]
        if destination is None:
            from collections import OrderedDict

            destination = OrderedDict()
        self.to_wrap.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        self.adapter.state_dict(destination=destination, prefix=prefix + "adapter.",
                                keep_vars=keep_vars)
        return destination

    @staticmethod
    def _base_keys_into_to_wrap(module, state_dict, prefix, *args):
        """Inverse of ``state_dict``: base keys under ``prefix`` belong to ``to_wrap``."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if not rest.startswith(("adapter.", "to_wrap.")):
                state_dict[prefix + "to_wrap." + rest] = state_dict.pop(key)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        """megatron dist-checkpointing: base tensors under the base keys, adapter tensors under
        ``adapter.`` with the same tensor-parallel axes as the base (gated rows via megatron's
        SwiGLU factory)."""
        from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
        from megatron.core.transformer.utils import (ensure_metadata_has_dp_cp_group,
                                                     make_sharded_tensors_for_checkpoint,
                                                     sharded_state_dict_default)

        metadata = ensure_metadata_has_dp_cp_group(metadata)
        result = sharded_state_dict_default(self.to_wrap, prefix, sharded_offsets, metadata)
        dims = self.adapter.sharded_dims()
        local = self.adapter.state_dict(prefix="", keep_vars=True)
        adapter_prefix = f"{prefix}adapter."
        sharded = make_sharded_tensors_for_checkpoint(
            local, adapter_prefix, {name: dim for name, (dim, _) in dims.items()},
            sharded_offsets, tp_group=self.layout.tp_group, dp_cp_group=metadata["dp_cp_group"])
        for name, (_, gated) in dims.items():
            if gated:
                sharded[adapter_prefix + name] = apply_swiglu_sharded_factory(
                    sharded[adapter_prefix + name], sharded_offsets,
                    metadata.get("singleton_local_shards", False),
                    tp_group=self.layout.tp_group, dp_group=metadata["dp_cp_group"])
        result.update(sharded)
        return result


class LoRALinear(AdapterWrapper):
    """``y = W x (+ b) + s B A x``; exactly the base output while B is zero."""

    def forward(self, x, *args, **kwargs):
        if fused.fusable(self, args, kwargs):
            return fused.forward(self, x, *args, **kwargs)
        out, bias, adapter_input = self._call_base(x, *args, **kwargs)
        if self.merged:
            return self._pack(out, bias)
        delta = self.adapter(adapter_input, self._gather_output(kwargs))
        return self._pack(out + delta, bias)

    def merged_weight(self) -> torch.Tensor:
        return self.base_weight().float() + self.adapter.delta_weight()


class DoRALinear(AdapterWrapper):
    """``y = m / ||W + s B A|| * (W x + s B A x) + b``; exactly the base output at init."""

    def __init__(self, to_wrap: nn.Module, adapter: DoRAAdapter, layout: LinearLayout):
        super().__init__(to_wrap, adapter, layout)
        if layout.gather_output:
            raise ValueError("DoRA on a column-parallel linear with gather_output=True is not "
                             "supported (the magnitude is sharded with the output rows)")
        # The bias is not scaled by m/||.||: take it out of the base call and add it back.
        self._adds_bias = layout.returns_tuple and not getattr(to_wrap, "skip_bias_add", True)
        if self._adds_bias:
            to_wrap.skip_bias_add = True

    def _wx(self, x, *args, **kwargs):
        """(W x, bias, adapter input) with the bias kept apart."""
        if not self.layout.returns_tuple:
            return F.linear(x, self.to_wrap.weight), self.to_wrap.bias, x
        return self._call_base(x, *args, **kwargs)

    def forward(self, x, *args, **kwargs):
        out, bias, adapter_input = self._wx(x, *args, **kwargs)
        if not self.merged:
            delta = self.adapter(adapter_input, False)
            norm = self.adapter.weight_norm(self.base_weight()).to(out.dtype)
            out = (self.adapter.magnitude() / norm) * (out + delta)
        if bias is not None and (self._adds_bias or not self.layout.returns_tuple):
            return self._pack(out + bias, None)
        return self._pack(out, bias)

    def merged_weight(self) -> torch.Tensor:
        combined = self.base_weight().float() + self.adapter.delta_weight()
        norm = self.adapter.weight_norm(self.base_weight())
        return (self.adapter.weight_magnitude.float() / norm).unsqueeze(1) * combined
