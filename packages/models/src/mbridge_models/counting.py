"""Analytic parameter and FLOP counts of a provider's model: formulas only, nothing allocated.

The formulas follow the modules megatron-core 0.19 builds for the provider's fields (tests build
tiny models and compare with ``sum(p.numel())`` exactly), so a preset's size can be checked
against its published size, and MFU computed, without a GPU:

- embedding: padded vocab x hidden (+ seq_length x hidden for learned absolute positions);
  the output layer adds vocab x hidden unless it shares the embedding's weight;
- attention: standard / grouped-query (q, k, v, output projections, optional qkv bias, output
  gate, per-head q/k norms) or multi-latent (q down/up or full-rank q, kv down/up, latent norms);
- MLP: fc1 (x2 when gated) and fc2, with biases when ``add_bias_linear``;
- MoE layers (chosen by ``moe_layer_freq``): router, every routed expert, shared experts;
  a token passes through ``moe_router_topk`` routed experts plus the shared ones ("active");
- norms: two per transformer layer and a final one; LayerNorm has a bias, RMSNorm does not;
- Mamba-2 layers (hybrid pattern "M"): in_proj, depthwise conv1d (+ bias), dt_bias, A_log, D,
  gated RMSNorm, out_proj, plus the layer's input norm;
- multi-token prediction layers (DeepSeek-V3): two norms, the 2h -> h projection, one layer of
  the decoder's last kind and a norm; embedding and output layer are shared with the model.

Counts are of the whole model (all tensor/pipeline/expert shards together), so they do not depend
on the parallel layout except through vocab padding (``should_pad_vocab``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAMBA_CONV_KERNEL = 4  # megatron-core's MambaMixer d_conv
MAMBA_EXPAND = 2  # MambaMixer's expand, when mamba_num_heads is not set


# ----------------------------------------------------------------------------- result type


@dataclass
class ParameterCounts:
    """Parameters by component; ``*_active`` are those one token's forward pass uses."""

    embedding: int = 0  # word (+ learned position) embeddings
    output_layer: int = 0  # 0 when tied to the embedding
    components: dict[str, int] = field(default_factory=dict)  # decoder, by kind
    active_components: dict[str, int] = field(default_factory=dict)
    mtp: int = 0
    mtp_active: int = 0

    @property
    def decoder(self) -> int:
        return sum(self.components.values())

    @property
    def decoder_active(self) -> int:
        return sum(self.active_components.values())

    def total(self, include_embeddings: bool = True, include_mtp: bool = True) -> int:
        extra = self.embedding + self.output_layer if include_embeddings else 0
        return self.decoder + extra + (self.mtp if include_mtp else 0)

    def active(self, include_embeddings: bool = True, include_mtp: bool = True) -> int:
        extra = self.embedding + self.output_layer if include_embeddings else 0
        return self.decoder_active + extra + (self.mtp_active if include_mtp else 0)


# ----------------------------------------------------------------------------- public API


def count_parameters(provider, *, include_embeddings: bool = True,
                     include_mtp: bool = True) -> int:
    """Parameters of the model ``provider.provide()`` builds (all ranks together).

    ``include_embeddings=False`` leaves out the embedding table(s) and an untied output layer
    (the "non-embedding" count model cards quote); ``include_mtp=False`` leaves out
    multi-token-prediction layers.
    """
    return breakdown(provider).total(include_embeddings, include_mtp)


def count_active_parameters(provider, *, include_embeddings: bool = True,
                            include_mtp: bool = True) -> int:
    """Parameters one token passes through: MoE layers count the router, ``moe_router_topk``
    routed experts and the shared experts; everything else as in ``count_parameters``."""
    return breakdown(provider).active(include_embeddings, include_mtp)


def breakdown(provider) -> ParameterCounts:
    """Per-component counts of ``provider``'s model (see the module docstring)."""
    dims = _Dims(provider)
    counts = ParameterCounts()
    counts.embedding = dims.vocab * dims.hidden
    if getattr(provider, "position_embedding_type", None) == "learned_absolute":
        counts.embedding += provider.seq_length * dims.hidden
    if not provider.share_embeddings_and_output_weights:
        counts.output_layer = dims.vocab * dims.hidden

    layers, mtp_layers = _layer_kinds(provider)
    for kind in layers:
        _add_layer(counts.components, counts.active_components, kind, dims)
    _add(counts.components, counts.active_components, "norm", dims.norm(dims.hidden))

    mtp_total: dict[str, int] = {}
    mtp_active: dict[str, int] = {}
    for depth in mtp_layers:
        # enorm, hnorm, eh_proj (2h -> h, no bias), the layer(s), final_layernorm
        _add(mtp_total, mtp_active, "mtp", 3 * dims.norm(dims.hidden) + 2 * dims.hidden ** 2)
        for kind in depth:
            _add_layer(mtp_total, mtp_active, kind, dims)
    counts.mtp = sum(mtp_total.values())
    counts.mtp_active = sum(mtp_active.values())
    return counts


def flops_per_token(provider, seq_length: int | None = None, training: bool = True) -> float:
    """Model FLOPs per token (matmuls; multiply-add = 2 FLOPs), for MFU.

    forward = 2 x (active parameters: everything but the embedding lookup; the output layer
              counts even when tied, and again for every MTP depth; norm weights and biases
              are included too, a negligible overcount)
            + causal attention: per attention layer 2 x heads x (qk_dim + v_dim) x s / 2
              (QK^T and attention x V; each token attends to s/2 positions on average)
            + Mamba-2: per layer 2 x 2 x d_inner x d_state (state update and readout)
    training = 3 x forward (the backward pass costs two forwards); recomputation not included.
    ``seq_length`` defaults to the provider's.
    """
    s = seq_length or provider.seq_length
    dims = _Dims(provider)
    counts = breakdown(provider)
    layers, mtp_layers = _layer_kinds(provider)
    # A repeated MTP layer is stored once and applied mtp_num_layers times.
    mtp_uses = (provider.mtp_num_layers or 0) if getattr(
        provider, "mtp_use_repeated_layer", False) else 1
    mtp_depths = len(mtp_layers) * mtp_uses
    matmul = (counts.decoder_active + counts.mtp_active * mtp_uses
              + dims.vocab * dims.hidden * (1 + mtp_depths))
    every_layer = list(layers) + [kind for depth in mtp_layers for kind in depth] * mtp_uses
    extra = 0.0
    for kind in every_layer:
        if kind.mixer == "attention":
            extra += 2 * dims.heads * (dims.qk_head_dim + dims.v_head_dim) * s / 2
        elif kind.mixer == "mla":
            extra += 2 * dims.heads * (dims.mla_q_head_dim + dims.mla_v_head_dim) * s / 2
        elif kind.mixer == "mamba":
            extra += 4 * dims.mamba_d_inner * dims.mamba_state
    forward = 2.0 * matmul + extra
    return 3.0 * forward if training else forward


def summary(provider) -> str:
    """A small table of the counts (total and per token) for humans."""
    counts = breakdown(provider)
    rows = [("embedding", counts.embedding, counts.embedding),
            ("output layer", counts.output_layer, counts.output_layer)]
    for name in sorted(counts.components):
        rows.append((name, counts.components[name], counts.active_components.get(name, 0)))
    if counts.mtp:
        rows.append(("multi-token prediction", counts.mtp, counts.mtp_active))
    rows.append(("total", counts.total(), counts.active()))
    title = type(provider).__name__
    hf = getattr(provider, "hf_model_id", None)
    lines = [f"{title}" + (f" ({hf})" if hf else ""),
             f"{'component':<24}{'parameters':>18}{'active/token':>18}"]
    lines += [f"{name:<24}{total:>18,}{active:>18,}" for name, total, active in rows
              if total or name == "total"]
    if provider.share_embeddings_and_output_weights:
        lines.insert(3, f"{'output layer':<24}{'(tied)':>18}{'(tied)':>18}")
    flops = flops_per_token(provider)
    lines.append(f"training FLOPs/token at seq_length {provider.seq_length}: {flops:.4g}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- internals


class _Dims:
    """The provider's sizes with megatron-core's derived defaults applied (as finalize() would)."""

    def __init__(self, p):
        self.p = p
        self.hidden = p.hidden_size
        self.heads = p.num_attention_heads
        self.groups = p.num_query_groups or self.heads
        self.kv_channels = p.kv_channels or self.hidden // self.heads
        self.ffn = p.ffn_hidden_size if p.ffn_hidden_size is not None else 4 * self.hidden
        self.moe_ffn = p.moe_ffn_hidden_size if p.moe_ffn_hidden_size is not None else self.ffn
        self.vocab = p.padded_vocab_size()
        self.layer_norm = p.normalization == "LayerNorm"
        if p.normalization not in ("LayerNorm", "RMSNorm"):
            raise ValueError(f"counting: normalization {p.normalization!r} is not modelled")
        self.bias = bool(p.add_bias_linear)
        self.glu = bool(p.gated_linear_unit)
        self.qk_head_dim = self.v_head_dim = self.kv_channels
        if getattr(p, "multi_latent_attention", False):
            self.mla_q_head_dim = p.qk_head_dim + p.qk_pos_emb_head_dim
            self.mla_v_head_dim = p.v_head_dim
        mamba_heads = getattr(p, "mamba_num_heads", None)
        head_dim = getattr(p, "mamba_head_dim", None) or 64
        if mamba_heads:
            self.mamba_heads, self.mamba_d_inner = mamba_heads, mamba_heads * head_dim
        else:
            self.mamba_d_inner = MAMBA_EXPAND * self.hidden
            self.mamba_heads = self.mamba_d_inner // head_dim
        self.mamba_state = getattr(p, "mamba_state_dim", None) or 0
        self.mamba_groups = getattr(p, "mamba_num_groups", None) or 1

    def norm(self, size: int) -> int:
        return 2 * size if self.layer_norm else size

    def linear(self, fan_in: int, fan_out: int, bias: bool) -> int:
        return fan_in * fan_out + (fan_out if bias else 0)

    def mlp(self, ffn: int) -> int:
        fc1 = self.linear(self.hidden, ffn * (2 if self.glu else 1), self.bias)
        return fc1 + self.linear(ffn, self.hidden, self.bias)

    def attention(self) -> int:
        p, h, kv = self.p, self.hidden, self.kv_channels
        qkv_out = (self.heads + 2 * self.groups) * kv
        if getattr(p, "attention_output_gate", False):
            qkv_out += self.heads * kv
        total = self.linear(h, qkv_out, self.bias or p.add_qkv_bias)
        total += self.linear(self.heads * kv, h, self.bias)
        if p.qk_layernorm and not getattr(p, "qk_l2_norm", False):
            total += 2 * self.norm(kv)  # one norm over head_dim for q, one for k
        return total

    def mla(self) -> int:
        p, h = self.p, self.hidden
        q_head = p.qk_head_dim + p.qk_pos_emb_head_dim
        if p.q_lora_rank is None:
            total = h * self.heads * q_head
            if p.qk_layernorm:  # megatron-core fuses a norm into q_proj (TE spec)
                total += self.norm(h)
        else:
            total = h * p.q_lora_rank + p.q_lora_rank * self.heads * q_head
            if p.qk_layernorm:
                total += self.norm(p.q_lora_rank)
        total += h * (p.kv_lora_rank + p.qk_pos_emb_head_dim)
        if p.qk_layernorm:
            total += self.norm(p.kv_lora_rank)
        total += p.kv_lora_rank * self.heads * (p.qk_head_dim + p.v_head_dim)
        return total + self.linear(self.heads * p.v_head_dim, h, self.bias)

    def mamba(self) -> int:
        d_inner, heads = self.mamba_d_inner, self.mamba_heads
        bc = 2 * self.mamba_groups * self.mamba_state
        in_proj = self.hidden * (2 * d_inner + bc + heads)  # z, x, B, C, dt
        conv_dim = d_inner + bc
        conv = conv_dim * MAMBA_CONV_KERNEL + conv_dim
        per_head = 3 * heads  # dt_bias, A_log, D
        return in_proj + conv + per_head + d_inner + d_inner * self.hidden  # + norm, out_proj

    def moe(self) -> tuple[int, int, int, int]:
        """(router, all routed experts, shared experts, routed experts one token uses)."""
        p = self.p
        router = self.linear(self.hidden, p.num_moe_experts, self.bias)
        expert = self.mlp(self.moe_ffn)
        shared = 0
        if p.moe_shared_expert_intermediate_size:
            shared = self.mlp(p.moe_shared_expert_intermediate_size)
            if getattr(p, "moe_shared_expert_gate", False):
                shared += self.hidden
        return router, p.num_moe_experts * expert, shared, p.moe_router_topk * expert


@dataclass(frozen=True)
class _Layer:
    mixer: str | None  # "attention" | "mla" | "mamba" | None
    ffn: str | None  # "mlp" | "moe" | None


def _add(total: dict, active: dict, name: str, count: int, used: int | None = None) -> None:
    total[name] = total.get(name, 0) + count
    active[name] = active.get(name, 0) + (count if used is None else used)


def _add_layer(total: dict, active: dict, kind: _Layer, d: _Dims) -> None:
    if kind.mixer is not None:
        _add(total, active, "norm", d.norm(d.hidden))
        _add(total, active, kind.mixer, {"attention": d.attention, "mla": d.mla,
                                         "mamba": d.mamba}[kind.mixer]())
    if kind.ffn == "mlp":
        _add(total, active, "norm", d.norm(d.hidden))
        _add(total, active, "mlp", d.mlp(d.ffn))
    elif kind.ffn == "moe":
        router, experts, shared, used = d.moe()
        _add(total, active, "norm", d.norm(d.hidden))
        _add(total, active, "moe_router", router)
        _add(total, active, "moe_experts", experts, used)
        if shared:
            _add(total, active, "moe_shared_experts", shared)


_HYBRID = {"M": _Layer("mamba", None), "*": _Layer("attention", None), "-": _Layer(None, "mlp"),
           "E": _Layer(None, "moe"), "+": _Layer("mla", None)}


def _layer_kinds(p) -> tuple[list[_Layer], list[list[_Layer]]]:
    """(decoder layers, one list of layers per multi-token-prediction depth)."""
    pattern = _hybrid_pattern(p)
    if pattern is not None:
        main, *mtp = pattern.replace("|", "").split("/")
        if len(main) != p.num_layers:
            raise ValueError(f"counting: hybrid pattern has {len(main)} layers, num_layers is "
                             f"{p.num_layers}")
        return _hybrid_layers(main), [_hybrid_layers(depth) for depth in mtp if depth]
    mixer = "mla" if getattr(p, "multi_latent_attention", False) else "attention"
    moe = _moe_pattern(p)
    layers = [_Layer(mixer, "moe" if is_moe else "mlp") for is_moe in moe]
    depths = p.mtp_num_layers or 0
    if getattr(p, "mtp_use_repeated_layer", False):
        depths = min(depths, 1)  # one layer, applied mtp_num_layers times
    return layers, [[layers[-1]] for _ in range(depths)]


def _hybrid_pattern(p) -> str | None:
    """The Mamba/hybrid layer pattern of a MambaProvider (None for transformer providers)."""
    if hasattr(p, "layer_pattern"):
        return p.layer_pattern()
    return getattr(p, "hybrid_override_pattern", None) or getattr(p, "hybrid_layer_pattern", None)


def _hybrid_layers(pattern: str) -> list[_Layer]:
    unknown = sorted(set(pattern) - set(_HYBRID))
    if unknown:
        raise ValueError(f"counting: hybrid layer symbol(s) {unknown} are not modelled "
                         f"(known: {''.join(_HYBRID)})")
    return [_HYBRID[c] for c in pattern]


def _moe_pattern(p) -> list[bool]:
    """Which decoder layers are MoE layers (megatron-core's reading of moe_layer_freq)."""
    if not p.num_moe_experts:
        return [False] * p.num_layers
    freq = p.moe_layer_freq
    if isinstance(freq, int):
        return [i % freq == 0 for i in range(p.num_layers)]
    if not isinstance(freq, (list, tuple)):
        raise ValueError(f"counting: moe_layer_freq {freq!r} is neither an int nor a list")
    if len(freq) != p.num_layers:
        raise ValueError(f"counting: moe_layer_freq has {len(freq)} entries, num_layers is "
                         f"{p.num_layers}")
    return [bool(x) for x in freq]
