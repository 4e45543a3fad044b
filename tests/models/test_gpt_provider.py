"""GPTModelProvider: deferred validation, clear layout errors, our local spec against megatron's,
packed sequences, tensor parallelism against one rank, distributed wrapping."""

from __future__ import annotations

import pytest
import torch
from multirank import run_ranks
from tiny import VOCAB, batch, built, cloned_state, gather, llama_like, moe_like, shard, teardown

from mbridge_config.errors import ConfigError

# ----------------------------------------------------------------------------- configuration


def test_validation_waits_for_finalize_so_presets_can_be_edited():
    provider = llama_like(hidden_size=96, num_attention_heads=6)  # 6 heads, 2 groups: fine
    provider.tensor_model_parallel_size = 4  # invalid, but only checked at finalize
    with pytest.raises(ConfigError) as error:
        provider.finalize()
    assert error.value.fields == ["model.tensor_model_parallel_size"] * 2
    assert "num_attention_heads=6" in str(error.value)

    provider = llama_like(ffn_hidden_size=None)
    provider.hidden_size = 32
    provider.finalize()
    assert provider.ffn_hidden_size == 4 * 32  # megatron's derived default, from the edited size
    assert provider.kv_channels == 32 // 4


@pytest.mark.parametrize("overrides, field, words", [
    (dict(num_attention_heads=5, num_query_groups=None), "model.hidden_size", "divisible"),
    (dict(num_query_groups=3), "model.num_query_groups", "does not divide"),
    (dict(num_layers=3, pipeline_model_parallel_size=2), "model.num_layers", "split evenly"),
    (dict(num_layers=8, pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=3),
     "model.num_layers", "virtual"),
    (dict(num_layers=6, pipeline_model_parallel_size=4, num_layers_in_first_pipeline_stage=1,
          num_layers_in_last_pipeline_stage=2), "model.num_layers", "middle stages"),
    (dict(sequence_parallel=True), "model.sequence_parallel", "tensor_model_parallel_size > 1"),
    (dict(num_moe_experts=6, moe_router_topk=2, expert_model_parallel_size=4),
     "model.expert_model_parallel_size", "num_moe_experts=6"),
])
def test_invalid_layouts_name_the_field(overrides, field, words):
    with pytest.raises(ConfigError) as error:
        llama_like(**overrides).finalize()
    assert field in error.value.fields
    assert words in str(error.value)


def test_valid_uneven_pipeline_layout_passes():
    llama_like(num_layers=5, pipeline_model_parallel_size=3, num_layers_in_first_pipeline_stage=1,
               num_layers_in_last_pipeline_stage=2).finalize()


def test_megatron_rejections_become_config_errors():
    with pytest.raises(ConfigError, match="GPTModelProvider: num_moe_experts must be non-neg"):
        llama_like(num_moe_experts=-1).finalize()


def test_vocab_padding_and_missing_vocab():
    assert llama_like(vocab_size=1000, should_pad_vocab=True,
                      tensor_model_parallel_size=2).padded_vocab_size() == 1024
    assert llama_like(vocab_size=1000).padded_vocab_size() == 1000
    with pytest.raises(ConfigError, match="model.vocab_size"):
        llama_like(vocab_size=None).padded_vocab_size()


def test_layer_spec_choice():
    assert llama_like(transformer_layer_spec="mbridge_local").layer_spec_choice() == "mbridge_local"
    expected = "te" if (torch.cuda.is_available() and _has_te()) else "mbridge_local"
    assert llama_like().layer_spec_choice() == expected
    with pytest.raises(ValueError, match="transformer_layer_spec.*'fast'"):
        llama_like(transformer_layer_spec="fast").layer_spec_choice()
    if not _has_te():
        with pytest.raises(RuntimeError, match="Transformer Engine"):
            llama_like(transformer_layer_spec="te").layer_spec_choice()
    # "local" is megatron-core's local spec, as everywhere else; the old spelling still works.
    assert llama_like(transformer_layer_spec="local").layer_spec_choice() == "local"
    with pytest.warns(DeprecationWarning, match="'mcore_local' is deprecated: write 'local'"):
        assert llama_like(transformer_layer_spec="mcore_local").layer_spec_choice() == "local"
    with pytest.raises(ConfigError, match="context_parallel_size"):
        llama_like(context_parallel_size=2, transformer_layer_spec="mbridge_local").layer_spec()


def _has_te():
    import importlib.util

    return importlib.util.find_spec("transformer_engine") is not None


# ----------------------------------------------------------------------------- builds on CPU ranks


def _local_against_mcore(rank, world, make):
    """Same weights in megatron's local spec and ours: outputs and gradients."""
    results = {}
    for choice in ("local", "mbridge_local"):
        model = built(make(transformer_layer_spec=choice))
        if choice == "mbridge_local":
            model.load_state_dict(reference_state, strict=True)
        else:
            reference_state = cloned_state(model)
        tokens, labels, positions = batch()
        loss = model(tokens, positions, None, labels=labels).mean()
        loss.backward()
        attention = type(model.decoder.layers[0].self_attention.core_attention).__name__
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[choice] = (loss.item(), grads, attention)
        teardown()
    return results


@pytest.mark.parametrize("make", [llama_like, moe_like], ids=["llama", "qwen3moe"])
def test_local_spec_matches_megatron_local_spec(make):
    (results,) = run_ranks(_local_against_mcore, 1, make)
    mcore_loss, mcore_grads, mcore_attention = results["local"]
    ours_loss, ours_grads, ours_attention = results["mbridge_local"]
    assert (mcore_attention, ours_attention) == ("DotProductAttention", "SDPAttention")
    assert ours_loss == pytest.approx(mcore_loss, rel=1e-6)
    assert mcore_grads.keys() == ours_grads.keys()
    for name in mcore_grads:
        torch.testing.assert_close(ours_grads[name], mcore_grads[name], rtol=1e-4, atol=1e-6,
                                   msg=name)


def _packed_vs_separate(rank, world):
    from megatron.core.packed_seq_params import PackedSeqParams

    model = built(llama_like(transformer_layer_spec="mbridge_local"))
    lengths = [5, 8, 3]
    tokens = torch.randint(0, VOCAB, (1, sum(lengths)), generator=torch.Generator().manual_seed(3))
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    cu = torch.tensor([0, 5, 13, 16], dtype=torch.int32)
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=8, max_seqlen_kv=8)
    packed = model(tokens, positions, None, packed_seq_params=params)
    separate = [model(tokens[:, a:b], positions[:, a:b], None)
                for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
    teardown()
    return packed.detach(), torch.cat(separate, dim=1).detach()


def test_packed_sequences_never_attend_across_boundaries():
    (packed, separate), = run_ranks(_packed_vs_separate, 1)
    torch.testing.assert_close(packed, separate, rtol=1e-5, atol=1e-5)


def _loss_and_logits(rank, world, make, tensor_parallel, sequence_parallel, full_state=None):
    provider = make(tensor_model_parallel_size=tensor_parallel,
                    sequence_parallel=sequence_parallel, transformer_layer_spec="mbridge_local")
    model = built(provider)
    if full_state is None:
        state = cloned_state(model)
    else:
        model.load_state_dict(shard(full_state, model), strict=True)
    tokens, labels, positions = batch(seed=5)
    logits = model(tokens, positions, None)
    loss = model(tokens, positions, None, labels=labels).mean()
    loss.backward()
    embedding_grad = model.embedding.word_embeddings.weight.grad
    if tensor_parallel > 1:
        logits, embedding_grad = gather(logits, dim=-1), gather(embedding_grad, dim=0)
    teardown()
    return (loss.item(), logits.detach(), embedding_grad.clone(),
            state if full_state is None else None)


@pytest.mark.multiproc
@pytest.mark.parametrize("make, sequence_parallel", [
    (llama_like, False), (llama_like, True), (moe_like, True)],
    ids=["llama", "llama-sequence-parallel", "qwen3moe-sequence-parallel"])
def test_tensor_parallel_2_matches_one_rank(make, sequence_parallel):
    (loss1, logits1, grad1, state), = run_ranks(_loss_and_logits, 1, make, 1, False)
    ranks = run_ranks(_loss_and_logits, 2, make, 2, sequence_parallel, state)
    for loss2, logits2, grad2, _ in ranks:
        assert loss2 == pytest.approx(loss1, rel=1e-5)
        torch.testing.assert_close(logits2, logits1, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grad2, grad1, rtol=1e-4, atol=1e-6)


def _distributed(rank, world, bf16):
    from megatron.core.distributed import DistributedDataParallel
    from megatron.core.transformer.module import Float16Module

    provider = llama_like(num_layers=4, pipeline_model_parallel_size=2,
                          virtual_pipeline_model_parallel_size=2, bf16=bf16,
                          params_dtype=torch.bfloat16 if bf16 else torch.float32,
                          pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
                          transformer_layer_spec="mbridge_local")
    try:
        provider.provide_distributed_model()
    except RuntimeError as error:
        not_initialised = str(error)
    provider.initialize_model_parallel(seed=7)
    seen = []
    chunks = provider.provide_distributed_model(pre_wrap_hook=lambda c: seen.extend(c) or c)
    inner = [chunk.module.module if bf16 else chunk.module for chunk in chunks]
    summary = dict(
        error=not_initialised,
        wrapped=[isinstance(c, DistributedDataParallel) for c in chunks],
        fp16_module=[isinstance(c.module, Float16Module) for c in chunks],
        hook_saw=len(seen),
        pre=[m.pre_process for m in inner], post=[m.post_process for m in inner],
        layers=[len(m.decoder.layers) for m in inner],
        dtype=str(next(chunks[0].parameters()).dtype))
    teardown()
    return summary


@pytest.mark.multiproc
@pytest.mark.parametrize("bf16", [False, True])
def test_provide_distributed_model_builds_one_chunk_per_virtual_stage(bf16):
    rank0, rank1 = run_ranks(_distributed, 2, bf16)
    assert "initialize_model_parallel" in rank0["error"]
    for summary in (rank0, rank1):
        assert summary["wrapped"] == [True, True] and summary["hook_saw"] == 2
        assert summary["fp16_module"] == [bf16, bf16]
        assert summary["layers"] == [1, 1]
        assert summary["dtype"] == ("torch.bfloat16" if bf16 else "torch.float32")
    # Interleaved: rank 0 holds virtual stages 0 and 2, rank 1 holds 1 and 3.
    assert rank0["pre"] == [True, False] and rank0["post"] == [False, False]
    assert rank1["pre"] == [False, False] and rank1["post"] == [False, True]


@pytest.mark.parametrize("normalization", ["LayerNorm", "RMSNorm"])
def test_zero_centered_gamma_norm_stores_gamma_minus_one(normalization):
    from types import SimpleNamespace

    from mbridge_models.layer_specs import TorchNorm

    config = SimpleNamespace(normalization=normalization, layernorm_zero_centered_gamma=True,
                             params_dtype=torch.float32, sequence_parallel=True)
    norm = TorchNorm(config, 8, eps=1e-5)
    assert torch.equal(norm.weight, torch.zeros(8)) and norm.weight.sequence_parallel
    with torch.no_grad():
        norm.weight.uniform_(-0.5, 0.5)
    plain = TorchNorm(SimpleNamespace(**{**vars(config), "layernorm_zero_centered_gamma": False}),
                      8, eps=1e-5)
    with torch.no_grad():
        plain.weight.copy_(norm.weight + 1)
    x = torch.randn(3, 8)
    torch.testing.assert_close(norm(x), plain(x))


def _tokens_only_call(rank, world_size):
    torch.manual_seed(0)
    model = built(llama_like(position_embedding_type="learned_absolute"))
    tokens, _, positions = batch()
    full = model(tokens, positions, None)
    short = model(tokens)
    masked = model(tokens, attention_mask=None)
    teardown()
    return full, short, masked


def test_the_model_takes_tokens_alone():
    """Bridge-style forward steps call ``model(tokens)``: positions default to 0..s-1."""
    ((full, short, masked),) = run_ranks(_tokens_only_call, 1)
    assert torch.equal(full, short) and torch.equal(full, masked)


def test_local_moe_with_bias_is_refused_at_build_time():
    provider = moe_like(add_bias_linear=True, transformer_layer_spec="mbridge_local")
    with pytest.raises(ConfigError, match="add_bias_linear=False") as error:
        provider.layer_spec()
    assert error.value.fields == ["model.add_bias_linear"]
