"""The analytic parameter / FLOP counter against megatron-core, and its invariants.

megatron-core builds a tiny variant of every preset family (the family's own class, small
dimensions; one forked CPU rank for all of them) and the counter must give exactly
``sum(p.numel())``. Mamba-2 mixers are checked the same way, mixer by mixer (the full Mamba
stack needs CUDA kernels). The properties below hold for any configuration.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbridge_models import presets as P
from mbridge_models.counting import (breakdown, count_active_parameters, count_parameters,
                                     flops_per_token, summary)
from preset_variants import built_variants, mamba_variants, transformer_variants  # noqa: F401


@pytest.mark.multiproc
@pytest.mark.parametrize("name", sorted(transformer_variants()) + sorted(mamba_variants()))
def test_count_equals_megatron_core_numel(built_variants, name):  # noqa: F811
    result = built_variants[name]
    assert result["counted"] == result["built"], result


# ----------------------------------------------------------------------------- properties


def _dense(**overrides):
    fields = dict(num_layers=4, hidden_size=64, ffn_hidden_size=96, num_attention_heads=8,
                  num_query_groups=4, vocab_size=1000, seq_length=128)
    fields.update(overrides)
    return P.Llama3ModelProvider8B(**fields)


def _moe(**overrides):
    fields = dict(num_moe_experts=8, moe_router_topk=2, moe_ffn_hidden_size=32)
    fields.update(overrides)
    return _dense(**fields)


PRESET_NAMES = sorted(P.all_presets())
layouts = st.fixed_dictionaries(dict(
    tensor_model_parallel_size=st.sampled_from([1, 2, 4, 8]),
    pipeline_model_parallel_size=st.sampled_from([1, 2, 4]),
    virtual_pipeline_model_parallel_size=st.sampled_from([None, 2]),
    context_parallel_size=st.sampled_from([1, 2]),
    expert_model_parallel_size=st.sampled_from([1, 2, 4]),
    expert_tensor_parallel_size=st.sampled_from([None, 1, 2]),
    sequence_parallel=st.booleans(),
))


@given(name=st.sampled_from(PRESET_NAMES), layout=layouts)
def test_count_does_not_depend_on_the_parallel_layout(name, layout):
    reference = P.all_presets()[name]()
    changed = dataclasses.replace(reference, **layout)
    assert breakdown(changed) == breakdown(reference)
    assert flops_per_token(changed) == flops_per_token(reference)


@given(tp=st.sampled_from([1, 2, 3, 8]), divisor=st.sampled_from([1, 64, 128]),
       vocab=st.integers(100, 5000))
def test_padded_vocab_counts_the_padding_rows(tp, divisor, vocab):
    plain = _dense(vocab_size=vocab)
    padded = _dense(vocab_size=vocab, should_pad_vocab=True, tensor_model_parallel_size=tp,
                    make_vocab_size_divisible_by=divisor)
    rows = padded.padded_vocab_size()
    assert rows % (tp * divisor) == 0 and vocab <= rows < vocab + tp * divisor
    # embedding and the untied output layer both grow by the padding rows
    assert count_parameters(padded) - count_parameters(plain) == 2 * (rows - vocab) * 64


@given(layers=st.integers(1, 12), moe=st.booleans(), glu=st.booleans(),
       norm=st.sampled_from(["RMSNorm", "LayerNorm"]), bias=st.booleans())
def test_count_grows_by_one_layer_per_layer(layers, moe, glu, norm, bias):
    make = _moe if moe else _dense
    options = dict(gated_linear_unit=glu, normalization=norm, add_bias_linear=bias)
    sizes = [count_parameters(make(num_layers=n, **options)) for n in (layers, layers + 1,
                                                                       layers + 2)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] - sizes[1] == sizes[1] - sizes[0]  # identical layers


@given(experts=st.sampled_from([2, 4, 8, 16]), data=st.data())
def test_active_counts_topk_routed_experts(experts, data):
    topk = data.draw(st.integers(1, experts))
    shared = data.draw(st.sampled_from([None, 48]))
    model = _moe(num_moe_experts=experts, moe_router_topk=topk,
                 moe_shared_expert_intermediate_size=shared)
    counts = breakdown(model)
    expert = 3 * 64 * 32  # gated fc1 (2 x 32) + fc2, no bias
    layers = model.num_layers
    assert counts.components["moe_experts"] == layers * experts * expert
    assert counts.active_components["moe_experts"] == layers * topk * expert
    assert counts.total() - counts.active() == layers * (experts - topk) * expert
    assert count_active_parameters(model) <= count_parameters(model)
    if shared:
        assert counts.active_components["moe_shared_experts"] == layers * 3 * 64 * shared


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_dense_models_are_fully_active_and_embeddings_split_off(name):
    model = P.all_presets()[name]()
    counts = breakdown(model)
    if not model.num_moe_experts:
        assert counts.active() == counts.total()
    vocab_rows = model.vocab_size * model.hidden_size
    assert counts.embedding == vocab_rows
    assert counts.output_layer == (0 if model.share_embeddings_and_output_weights else vocab_rows)
    assert count_parameters(model, include_embeddings=False) == (
        counts.total() - counts.embedding - counts.output_layer)


def test_tying_removes_exactly_the_output_matrix():
    untied, tied = _dense(), _dense(share_embeddings_and_output_weights=True)
    assert count_parameters(untied) - count_parameters(tied) == 1000 * 64


def test_learned_positions_add_seq_length_rows():
    rope, learned = _dense(), _dense(position_embedding_type="learned_absolute")
    assert count_parameters(learned) - count_parameters(rope) == 128 * 64


def test_mtp_layers_are_counted_separately():
    v3 = P.DeepSeekV3ModelProvider()
    counts = breakdown(v3)
    h = v3.hidden_size
    # one MoE layer (MLA + router + 256 experts + shared) + enorm, hnorm, final norm + eh_proj
    last_layer = (counts.components["mla"] // 61 + 2 * h + v3.num_moe_experts * h
                  + (v3.num_moe_experts + 1) * 3 * h * 2048)
    assert counts.mtp == last_layer + 3 * h + 2 * h * h
    assert count_parameters(v3) - count_parameters(v3, include_mtp=False) == counts.mtp
    assert count_parameters(dataclasses.replace(v3, mtp_num_layers=2)) - count_parameters(
        v3) == counts.mtp


def test_hybrid_patterns():
    base = dict(num_layers=4, hidden_size=64, num_attention_heads=4, ffn_hidden_size=96,
                mamba_num_heads=8, mamba_head_dim=16, mamba_state_dim=8, mamba_num_groups=2)
    model = P.NemotronHModelProvider8B(hybrid_override_pattern="M-*-", **base)
    counts = breakdown(model)
    assert set(counts.components) == {"mamba", "mlp", "attention", "norm"}
    assert counts.components["norm"] == 5 * 64  # one per layer + final (RMSNorm)
    swapped = P.NemotronHModelProvider8B(hybrid_override_pattern="*-M-", **base)
    assert count_parameters(swapped) == count_parameters(model)  # order does not matter
    with pytest.raises(ValueError, match="3 layers"):
        count_parameters(P.NemotronHModelProvider8B(hybrid_override_pattern="M-*", **base))
    with pytest.raises(ValueError, match="'G'"):
        count_parameters(P.NemotronHModelProvider8B(hybrid_override_pattern="MG*-", **base))
    # all-Mamba when no pattern is given
    plain = P.MambaModelProvider130M(num_layers=3)
    assert set(breakdown(plain).components) == {"mamba", "norm"}


@given(seq=st.integers(16, 8192), moe=st.booleans())
def test_flops_are_three_forwards_and_linear_in_sequence_length(seq, moe):
    model = _moe() if moe else _dense()
    forward = flops_per_token(model, seq, training=False)
    assert flops_per_token(model, seq) == pytest.approx(3 * forward)
    # matmuls: 2 FLOPs per active weight, output layer included, embedding lookup not
    counts = breakdown(model)
    assert forward >= 2 * (counts.active() - counts.embedding)
    # causal attention: 2 FLOPs x 8 heads x (8 + 8) q.k and v dims x s/2 per layer, 4 layers
    step = flops_per_token(model, seq + 1, training=False) - forward
    assert step == pytest.approx(4 * 2 * 8 * (8 + 8) / 2)


def test_flops_of_llama3_8b_match_the_textbook_formula():
    """6N + attention: 6 x (non-embedding + output) + 6 x layers x heads x head_dim x s (causal)."""
    model = P.Llama3ModelProvider8B()
    n = count_parameters(model, include_embeddings=False) + model.vocab_size * model.hidden_size
    s = 8192
    expected = 6 * n + 6 * model.num_layers * model.num_attention_heads * 128 * s
    assert flops_per_token(model, s) == pytest.approx(expected)
    assert 5.0e10 < expected < 6.0e10


def test_summary_lists_components_and_totals():
    text = summary(P.Qwen3MoEModelProvider30B_A3B())
    assert "Qwen/Qwen3-30B-A3B" in text and "moe_experts" in text
    total = f"{count_parameters(P.Qwen3MoEModelProvider30B_A3B()):,}"
    assert total in text and "FLOPs/token" in text


def test_repeated_mtp_layer_is_stored_once_and_run_every_depth():
    v3 = P.DeepSeekV3ModelProvider(mtp_num_layers=3)
    repeated = dataclasses.replace(v3, mtp_use_repeated_layer=True)
    one = dataclasses.replace(v3, mtp_num_layers=1)
    assert count_parameters(repeated) == count_parameters(one) < count_parameters(v3)
    assert flops_per_token(repeated) == pytest.approx(flops_per_token(v3))
