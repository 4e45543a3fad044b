"""T5ModelProvider builds and trains on CPU (our local spec equals megatron's); SDPA attention
with an additive bias (T5 relative positions) equals the textbook formula; MambaProvider says
clearly what it is missing."""

from __future__ import annotations

import math

import pytest
import torch
from multirank import run_ranks
from tiny import cloned_state, teardown

from mbridge_config.errors import ConfigError


def _t5(**overrides):
    from mbridge_models.t5_provider import T5ModelProvider

    fields = dict(num_layers=2, encoder_num_layers=2, hidden_size=64, ffn_hidden_size=128,
                  num_attention_heads=4, kv_channels=16, vocab_size=128, seq_length=12,
                  seq_length_dec=8, hidden_dropout=0.0, attention_dropout=0.0,
                  use_cpu_initialization=True, init_method_std=0.05)
    fields.update(overrides)
    return T5ModelProvider(**fields)


def _t5_batch():
    g = torch.Generator().manual_seed(0)
    enc = torch.randint(0, 128, (2, 12), generator=g)
    dec = torch.randint(0, 128, (2, 9), generator=g)
    enc_valid = torch.ones(2, 12, dtype=torch.bool)
    enc_valid[1, 9:] = False  # padding in the second encoder sequence
    enc_mask = ~(enc_valid[:, None, :, None] & enc_valid[:, None, None, :])
    dec_mask = torch.ones(8, 8, dtype=torch.bool).triu(1).expand(2, 1, 8, 8)
    cross_mask = ~enc_valid[:, None, None, :].expand(2, 1, 8, 12)
    return enc, dec[:, :-1], dec[:, 1:], enc_mask, dec_mask, cross_mask


def _t5_local_vs_mcore(rank, world):
    out = {}
    for choice in ("local", "mbridge_local"):
        provider = _t5(transformer_layer_spec=choice)
        provider.initialize_model_parallel(seed=3)
        model = provider.provide()
        if choice == "mbridge_local":
            model.load_state_dict(reference, strict=True)
        else:
            reference = cloned_state(model)
        enc, dec_in, labels, enc_mask, dec_mask, cross_mask = _t5_batch()
        loss = model(enc, dec_in, enc_mask, dec_mask, cross_mask, lm_labels=labels).mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        out[choice] = (loss.item(), grads)
        teardown()
    return out


def test_t5_local_spec_matches_megatron_local_spec_and_trains():
    (out,) = run_ranks(_t5_local_vs_mcore, 1)
    (mcore_loss, mcore_grads), (loss, grads) = out["local"], out["mbridge_local"]
    assert math.isfinite(loss) and loss == pytest.approx(mcore_loss, rel=1e-6)
    assert grads.keys() == mcore_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], mcore_grads[name], rtol=1e-4, atol=1e-6)


def test_t5_encoder_depth_and_validation():
    provider = _t5(encoder_num_layers=3)
    assert provider.encoder_config().num_layers == 3 and provider.num_layers == 2
    with pytest.raises(ConfigError, match="num_attention_heads=4"):
        _t5(tensor_model_parallel_size=3).finalize()


def _biased_attention(rank, world, causal):
    from megatron.core.transformer.enums import AttnMaskType

    from mbridge_models.attention import SDPAttention
    from mbridge_models.gpt_provider import GPTModelProvider

    config = GPTModelProvider(num_layers=1, hidden_size=32, num_attention_heads=4,
                              attention_dropout=0.0).finalize()
    from megatron.core import parallel_state

    parallel_state.initialize_model_parallel()
    mask_type = AttnMaskType.causal if causal else AttnMaskType.no_mask
    attention = SDPAttention(config, layer_number=1, attn_mask_type=mask_type,
                             attention_type="self")
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(6, 2, 4, 8, generator=g) for _ in range(3))  # [s, b, heads, dim]
    bias = torch.randn(1, 4, 6, 6, generator=g)
    out = attention(q, k, v, None, attention_bias=bias)
    teardown()
    return q, k, v, bias, out


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_attention_with_additive_bias_matches_textbook(causal):
    ((q, k, v, bias, out),) = run_ranks(_biased_attention, 1, causal)
    qb, kb, vb = (t.permute(1, 2, 0, 3) for t in (q, k, v))
    scores = qb @ kb.transpose(-1, -2) / math.sqrt(8) + bias
    if causal:
        scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    expected = (scores.softmax(-1) @ vb).permute(2, 0, 1, 3).reshape(6, 2, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_mamba_provider_names_what_is_missing():
    from mbridge_models.mamba_provider import MambaProvider, missing_mamba_requirements

    provider = MambaProvider(num_layers=4, hidden_size=64, num_attention_heads=4, vocab_size=128,
                             hybrid_override_pattern="M*M-")
    assert provider.layer_pattern() == "M*M-"
    assert MambaProvider(num_layers=3, hidden_size=64, num_attention_heads=4).layer_pattern() == "MMM"
    missing = missing_mamba_requirements()
    if not missing:
        pytest.skip("mamba-ssm, causal-conv1d and TE are all here: nothing to report")
    with pytest.raises(RuntimeError, match="MambaProvider needs .*mamba-ssm"):
        provider.provide()
    with pytest.raises(ConfigError, match="hybrid_override_pattern"):
        MambaProvider(num_layers=3, hidden_size=64, num_attention_heads=4,
                      hybrid_override_pattern="M*M-").finalize()
