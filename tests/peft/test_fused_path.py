"""LoRA layers through mbridge_kernels.lora_linear equal the unfused adapter path: loss and
adapter gradients of a tiny megatron GPTModel (one CPU rank, fp32, rtol/atol 1e-5), for the
reference backend and for the Triton kernels under the interpreter; the fused path is the one
actually taken for every targeted linear; and no backward GEMM produces a frozen weight's
gradient (no wgrad work for the frozen base)."""

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc


class GemmShapes:
    """Output shapes of every matrix product dispatched while active (the backward's GEMMs)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        shapes = self.shapes = []
        ops = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
               torch.ops.aten.bmm.default, torch.ops.aten.addmm_.default}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if func in ops:
                    shapes.append(tuple(out.shape))
                return out

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


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
        ids, labels, positions = h.tokens(batch=2)
        calls.clear()
        loss = h.loss(model, ids, labels, positions)
        with GemmShapes() as gemms:
            h.backward(loss)
        frozen_shapes = {tuple(p.shape) for p in model.parameters()
                         if not p.requires_grad and p.dim() == 2}
        frozen_grads = [n for n, p in model.named_parameters()
                        if not p.requires_grad and p.grad is not None]
        results[backend] = dict(loss=float(loss), grads=h.full_adapter_grads(model),
                                calls=list(calls), frozen_grads=frozen_grads,
                                wgrad_gemms=sorted(set(gemms.shapes) & frozen_shapes),
                                gemm_count=len(gemms.shapes),
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


@pytest.mark.parametrize("backend", ["off", "reference", "triton"])
def test_backward_runs_no_gemm_shaped_like_a_frozen_weight(results, backend):
    """No weight-gradient GEMM for frozen weights: megatron's frozen linear (the output layer,
    and every base layer on the unfused path) and the fused op compute input gradients only."""
    got = results[backend]
    assert got["gemm_count"] > 0
    assert got["wgrad_gemms"] == []
