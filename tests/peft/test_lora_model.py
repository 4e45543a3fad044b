"""LoRA/DoRA on a real megatron GPTModel (one CPU rank): identity at init, merge/unmerge,
trainable parameter counts, targeting, adapter checkpoints, MoE experts.

Everything runs in one forked rank (model builds are cheap; megatron's import is not) and the
tests assert on what it returns. Tolerance for merged vs unmerged logits (fp32): atol 1e-5.
"""

import os

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc

PROJECTIONS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")


def shapes(provider):
    """Full (in, out) of each projection: the analytic basis of the parameter counts."""
    head_dim = provider.hidden_size // provider.num_attention_heads
    ffn = provider.ffn_hidden_size * (2 if provider.gated_linear_unit else 1)
    return {"linear_qkv": (provider.hidden_size,
                           (provider.num_attention_heads + 2 * provider.num_query_groups) * head_dim),
            "linear_proj": (provider.hidden_size, provider.hidden_size),
            "linear_fc1": (provider.hidden_size, ffn),
            "linear_fc2": (provider.ffn_hidden_size, provider.hidden_size)}


def expected_count(provider, targets, dim, dora, layers):
    sizes = shapes(provider)
    return sum(dim * (sizes[t][0] + sizes[t][1]) + (sizes[t][1] if dora else 0)
               for t in targets) * layers


def _identity_and_merge(provider):
    from mbridge_peft import DoRA, LoRA, merge, unmerge

    out = {}
    ids, _, positions = h.tokens()
    for name, peft in [("lora", LoRA(dim=8, alpha=16)), ("dora", DoRA(dim=8, alpha=16))]:
        model = h.build(provider, seed=11)
        base_logits = h.logits(model, ids, positions)
        base_weights = h.full_state(model)
        peft(model)
        init_logits = h.logits(model, ids, positions)
        h.randomise_adapters(model)
        unmerged = h.logits(model, ids, positions)
        merge(model)
        merged = h.logits(model, ids, positions)
        merged_weights = h.full_state(model)
        unmerge(model)
        out[name] = dict(
            init_equal=torch.equal(init_logits, base_logits),
            merge_diff=float((merged - unmerged).abs().max()),
            adapter_effect=float((unmerged - base_logits).abs().max()),
            restored=all(torch.equal(v, base_weights[k]) for k, v in h.full_state(model).items()
                         if k in base_weights),
            after_unmerge_equal=torch.equal(h.logits(model, ids, positions), unmerged),
            merged_changed=sum(not torch.equal(merged_weights[k], v)
                               for k, v in base_weights.items()))
    return out


def _counts(provider):
    """Hypothesis over rank, targets (short names and a one-layer wildcard), method."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mbridge_peft import DoRA, LoRA, trainable_parameters

    model = h.build(provider)
    pristine = h.full_state(model)
    seen = []

    @settings(max_examples=20, deadline=None, database=None)
    @given(dim=st.integers(1, 16), targets=st.sets(st.sampled_from(PROJECTIONS), min_size=1),
           one_layer=st.booleans(), dora=st.booleans())
    def check(dim, targets, one_layer, dora):
        model = h.build(provider)
        patterns = [f"*.layers.1.*.{t}" for t in targets] if one_layer else sorted(targets)
        (DoRA if dora else LoRA)(target_modules=patterns, dim=dim)(model)
        trainable = trainable_parameters(model)
        count = sum(p.numel() for p in trainable.values())
        layers = 1 if one_layer else provider.num_layers
        assert count == expected_count(provider, targets, dim, dora, layers), (dim, targets)
        assert all(".adapter." in name for name in trainable)
        assert not any(p.requires_grad for n, p in model.named_parameters() if ".adapter." not in n)
        seen.append(count)

    check()
    del pristine
    return seen


def _targeting(provider, tmp):
    from mbridge_peft import (LoRA, TargetError, adapter_state_dict, load_adapters,
                              save_adapters, wrappers)
    from mbridge_peft.state import AdapterCheckpointError

    out = {}
    model = h.build(provider)
    base_keys = set(model.state_dict())
    base_state = model.state_dict()
    try:
        LoRA(target_modules=["linear_qvk"])(model)
    except TargetError as error:
        out["typo_error"] = str(error)
    lora = LoRA(target_modules=["*.layers.0.*.linear_qkv", "linear_fc2"],
                exclude_modules=["*.layers.1.mlp.linear_fc2"])
    lora(model)
    out["wrapped"] = [name for name, _ in wrappers(model)]
    lora(model)  # again: nothing new
    out["wrapped_again"] = [name for name, _ in wrappers(model)]
    keys = set(model.state_dict())
    out["base_keys_kept"] = base_keys <= keys
    out["extra_keys"] = sorted(keys - base_keys)
    result = model.load_state_dict(base_state, strict=False)
    out["load_base_missing"] = sorted(result.missing_keys)
    out["load_base_unexpected"] = sorted(result.unexpected_keys)

    # Adapter checkpoint round trip into a differently initialised model.
    h.randomise_adapters(model, seed=3)
    ids, _, positions = h.tokens()
    want = h.logits(model, ids, positions)
    save_adapters(model, tmp, config=LoRA(dim=32))
    out["files"] = sorted(os.listdir(tmp))
    other = h.build(provider)
    h.load_full_state(other, h.full_state(model))
    LoRA(target_modules=["*.layers.0.*.linear_qkv", "linear_fc2"], exclude_modules=[
        "*.layers.1.mlp.linear_fc2"])(other)
    out["differs_before_load"] = not torch.equal(h.logits(other, ids, positions), want)
    load_adapters(other, tmp)
    out["equal_after_load"] = torch.equal(h.logits(other, ids, positions), want)
    out["adapter_keys"] = sorted(adapter_state_dict(other))
    errors = []
    for corrupt in (b"", b"not safetensors at all"):
        with open(os.path.join(tmp, "mbridge_adapter.safetensors"), "wb") as f:
            f.write(corrupt)
        try:
            load_adapters(other, tmp)
        except AdapterCheckpointError as error:
            errors.append(str(error))
    try:
        load_adapters(other, os.path.join(tmp, "nowhere"))
    except AdapterCheckpointError as error:
        errors.append(str(error))
    out["load_errors"] = errors
    return out


def _moe(provider):
    from mbridge_peft import LoRA, trainable_parameters, wrappers

    model = h.build(provider)
    ids, labels, positions = h.tokens()
    base = h.logits(model, ids, positions)
    LoRA(target_modules=["linear_fc1", "linear_fc2"], dim=2)(model)
    names = [name for name, _ in wrappers(model)]
    same = torch.equal(h.logits(model, ids, positions), base)
    h.randomise_adapters(model)
    h.backward(h.loss(model, ids, labels, positions))
    grads = {n: float(p.grad.abs().sum()) for n, p in trainable_parameters(model).items()}
    return dict(names=names, init_equal=same, grads=grads,
                count=sum(p.numel() for p in trainable_parameters(model).values()))


def _shared_output(provider):
    """output_layer fed the embedding weight at call time: LoRA works, merging is refused."""
    from mbridge_peft import DoRA, LoRA, MergeError, PEFTConfigError, merge

    model = h.build(provider)
    ids, _, positions = h.tokens()
    base = h.logits(model, ids, positions)
    LoRA(target_modules=["output_layer"], dim=2)(model)
    out = dict(init_equal=torch.equal(h.logits(model, ids, positions), base))
    h.randomise_adapters(model)
    out["changed"] = not torch.equal(h.logits(model, ids, positions), base)
    for name, action in [("merge", lambda: merge(model)),
                         ("dora", lambda: DoRA(target_modules=["output_layer"])(h.build(provider)))]:
        try:
            action()
        except (MergeError, PEFTConfigError) as error:
            out[name] = str(error)
    return out


def _everything(rank, world_size, tmp):
    provider = h.tiny_provider()
    moe = h.tiny_provider(num_moe_experts=2, moe_router_topk=2, moe_ffn_hidden_size=32,
                          moe_token_dispatcher_type="alltoall")
    return dict(identity=_identity_and_merge(provider), counts=_counts(provider),
                targeting=_targeting(provider, tmp), moe=_moe(moe),
                shared=_shared_output(h.tiny_provider(share_embeddings_and_output_weights=True)))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    result, = run_ranks(_everything, 1, str(tmp_path_factory.mktemp("adapters")))
    return result


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_wrapped_model_equals_base_at_init(results, method):
    assert results["identity"][method]["init_equal"]


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_merge_matches_unmerged_and_unmerge_restores_exactly(results, method):
    r = results["identity"][method]
    assert r["adapter_effect"] > 1e-2  # the adapters really change the output
    assert r["merge_diff"] < 1e-5
    assert r["merged_changed"] == 8  # 4 projections x 2 layers
    assert r["restored"] and r["after_unmerge_equal"]


def test_trainable_count_is_analytic(results):
    assert len(results["counts"]) >= 10 and len(set(results["counts"])) > 3


def test_a_typo_in_targets_lists_the_available_linears(results):
    message = results["targeting"]["typo_error"]
    assert "'linear_qvk' matches no linear module" in message
    for name in PROJECTIONS + ("output_layer",):
        assert name in message


def test_wildcards_exclusions_and_idempotence(results):
    t = results["targeting"]
    assert t["wrapped"] == ["decoder.layers.0.self_attention.linear_qkv",
                            "decoder.layers.0.mlp.linear_fc2"]
    assert t["wrapped_again"] == t["wrapped"]


def test_state_dict_keeps_base_keys(results):
    t = results["targeting"]
    assert t["base_keys_kept"]
    assert all(".adapter." in k for k in t["extra_keys"]) and len(t["extra_keys"]) == 4
    assert t["load_base_missing"] == t["extra_keys"] and t["load_base_unexpected"] == []


def test_adapter_checkpoint_round_trip_and_errors(results):
    t = results["targeting"]
    assert t["files"] == ["mbridge_adapter.json", "mbridge_adapter.safetensors"]  # no temp left
    assert t["differs_before_load"] and t["equal_after_load"]
    assert t["adapter_keys"] == t["extra_keys"]
    assert len(t["load_errors"]) == 3
    assert all("adapter checkpoint" in e and "\n" not in e for e in t["load_errors"])


def test_moe_experts_get_their_own_adapters(results):
    moe = results["moe"]
    assert moe["init_equal"]
    experts = [n for n in moe["names"] if ".experts.local_experts." in n]
    assert sorted(experts) == [f"decoder.layers.{layer}.mlp.experts.local_experts.{e}.linear_fc{i}"
                               for layer in range(2) for e in range(2) for i in (1, 2)]
    # fc1 (64 -> 2x32 gated) and fc2 (32 -> 64) of 2 experts in 2 layers, rank 2.
    assert moe["count"] == 2 * 2 * (2 * (64 + 64) + 2 * (32 + 64))
    assert all(g > 0 for g in moe["grads"].values())


def test_shared_output_weight_adapts_but_does_not_merge(results):
    shared = results["shared"]
    assert shared["init_equal"] and shared["changed"]
    assert "nothing to merge into" in shared["merge"]
    assert "exclude it from the targets" in shared["dora"]
