"""LoRA layers through mbridge_kernels.lora_linear equal the unfused adapter path: loss and
adapter gradients of a tiny megatron GPTModel (one CPU rank, fp32, rtol/atol 1e-5), for the
reference backend and for the Triton kernels under the interpreter; and the fused path is the
one actually taken for every targeted linear."""

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc


def _run(rank, world_size):
    import mbridge_kernels
    from mbridge_kernels import lora as kernel_lora
    from mbridge_peft import LoRA, compute, trainable_parameters

    calls = []
    original = mbridge_kernels.lora_linear

    def counting(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return original(*args, **kwargs)

    mbridge_kernels.lora_linear = counting
    provider = h.tiny_provider(tp=1)
    results = {}
    adapters = None
    for backend in ("off", "reference", "triton"):
        compute.lora_backend = backend
        kernel_lora.kernel_policy.update(down="always", dx_da="always")
        model = h.build(provider)
        LoRA(dim=4, alpha=8)(model)
        if adapters is None:
            adapters = h.randomise_adapters(model)
        else:
            from mbridge_peft.state import load_full_adapter_state

            load_full_adapter_state(model, adapters)
        frozen_grads = []
        ids, labels, positions = h.tokens(batch=2)
        calls.clear()
        loss = h.loss(model, ids, labels, positions)
        h.backward(loss)
        frozen_grads = [n for n, p in model.named_parameters()
                        if not p.requires_grad and p.grad is not None]
        results[backend] = dict(loss=float(loss), grads=h.full_adapter_grads(model),
                                calls=list(calls), frozen_grads=frozen_grads,
                                trainable=len(list(trainable_parameters(model))))
    compute.lora_backend = "auto"
    return results


@pytest.fixture(scope="module")
def results():
    return run_ranks(_run, 1)[0]


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_fused_lora_equals_unfused_path(results, backend):
    off, got = results["off"], results[backend]
    assert off["calls"] == []
    # 2 layers x (qkv, proj, fc1, fc2), each through the fused op with the chosen backend
    assert got["calls"] == [backend] * 8
    assert got["loss"] == pytest.approx(off["loss"], rel=1e-5)
    assert got["grads"].keys() == off["grads"].keys()
    for key, grad in off["grads"].items():
        assert grad.abs().max() > 0, key
        torch.testing.assert_close(got["grads"][key], grad, rtol=1e-5, atol=1e-5, msg=key)
    assert got["frozen_grads"] == [] and got["trainable"] == off["trainable"] == 16
