"""TP=2 adapters compute what TP=1 adapters compute: loss, adapter gradients, merged weights.

The TP=1 run builds the model, gives every adapter random values (B non-zero) and hands back the
full base and adapter tensors; the TP=2 ranks load their shards of exactly those tensors, with
and without sequence parallelism. fp32 throughout; only summation order differs, hence
rtol/atol 1e-5 on losses and gradients and 1e-6 on merged weights.
"""

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc

METHODS = ("lora", "lora-triton", "dora")
"""lora: the fused op with its CPU backend (the reference); lora-triton: the fused op's Triton
kernels under the interpreter (all of them, also where cuBLAS would serve without dropout)."""


def _peft(method):
    from mbridge_kernels import lora as kernel_lora
    from mbridge_peft import DoRA, LoRA, compute

    triton = method == "lora-triton"
    compute.lora_backend = "triton" if triton else "auto"
    kernel_lora.kernel_policy.update(down="always" if triton else "dropout",
                                     dx_da="always" if triton else "dropout")
    return (DoRA if method == "dora" else LoRA)(dim=4, alpha=8)


def _one(provider, method, base=None, adapters=None):
    from mbridge_peft import merge
    from mbridge_peft.state import load_full_adapter_state

    model = h.build(provider)
    if base is not None:
        h.load_full_state(model, base)
    base = h.full_state(model)
    _peft(method)(model)
    if adapters is None:
        adapters = h.randomise_adapters(model)
    else:
        load_full_adapter_state(model, adapters)
    ids, labels, positions = h.tokens(batch=2)
    loss = h.loss(model, ids, labels, positions)
    h.backward(loss)
    grads = h.full_adapter_grads(model)
    sharded_keys = sorted(model.sharded_state_dict().keys())
    merge(model)
    merged = {k: v for k, v in h.full_state(model).items() if "adapter" not in k}
    return dict(loss=float(loss), grads=grads, merged=merged, base=base, adapters=adapters,
                sharded_keys=sharded_keys)


def _tp1(rank, world_size):
    provider = h.tiny_provider(tp=1)
    return {method: _one(provider, method) for method in METHODS}


def _tp2(rank, world_size, reference):
    results = {}
    for sp in (False, True):
        provider = h.tiny_provider(tp=2, sequence_parallel=sp)
        for method in METHODS:
            ref = reference[method]
            results[method, sp] = _one(provider, method, ref["base"], ref["adapters"])
    return results


@pytest.fixture(scope="module")
def runs():
    reference, = run_ranks(_tp1, 1)
    return reference, run_ranks(_tp2, 2, reference)


@pytest.mark.parametrize("sp", [False, True], ids=["tp2", "tp2-sp"])
@pytest.mark.parametrize("method", METHODS)
def test_tp2_matches_tp1(runs, method, sp):
    reference, ranks = runs
    ref = reference[method]
    assert any(v.abs().max() > 0 for k, v in ref["adapters"].items() if "linear_out" in k)
    for rank, result in enumerate(ranks):
        got = result[method, sp]
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5), rank
        assert got["grads"].keys() == ref["grads"].keys()
        for key, grad in ref["grads"].items():
            torch.testing.assert_close(got["grads"][key], grad, rtol=1e-5, atol=1e-5,
                                       msg=f"rank {rank} grad {key}")
        for key, weight in ref["merged"].items():
            torch.testing.assert_close(got["merged"][key], weight, rtol=1e-6, atol=1e-6,
                                       msg=f"rank {rank} merged {key}")
    # Merging changed the targeted weights (the comparison above is not vacuous).
    changed = [k for k in ref["merged"] if not torch.equal(ref["merged"][k], ref["base"][k])]
    assert sorted(changed) == sorted(k for k in ref["base"] if k.endswith(
        ("linear_qkv.weight", "linear_proj.weight", "linear_fc1.weight", "linear_fc2.weight")))


def test_sharded_state_dict_keeps_base_keys_and_adds_adapters(runs):
    _, ranks = runs
    keys = ranks[0]["dora", False]["sharded_keys"]
    prefix = "decoder.layers.0.self_attention.linear_qkv."
    assert prefix + "weight" in keys and prefix + "to_wrap.weight" not in keys
    for name in ("adapter.linear_in.weight", "adapter.linear_out.weight",
                 "adapter.weight_magnitude"):
        assert prefix + name in keys
    assert "decoder.layers.1.mlp.linear_fc1.adapter.linear_out.weight" in keys
