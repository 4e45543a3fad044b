"""DoRA against a plain-PyTorch reference written from the paper (Liu et al. 2024, eq. 5 and
section 4.3), on torch's nn.Linear: forward, gradients, initial magnitude, merge."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mbridge_peft import DoRA, LoRA, merge, unmerge, wrappers


def reference(x, weight, bias, a, b, magnitude, scale):
    """W' = m * V / ||V||_c with V = W0 + s B A; ||V|| per output feature (the norm over the
    input dimension of a [out, in] weight), treated as a constant in backward (4.3)."""
    v = weight + scale * b @ a
    norm = v.norm(p=2, dim=1, keepdim=True).detach()
    return x @ (magnitude.unsqueeze(1) * v / norm).T + bias


class Holder(nn.Module):
    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.proj = nn.Linear(fan_in, fan_out)


@settings(max_examples=15, deadline=None)
@given(fan_in=st.integers(2, 24), fan_out=st.integers(2, 24), dim=st.integers(1, 6),
       alpha=st.sampled_from([1, 4, 16]), seed=st.integers(0, 2**16))
def test_dora_matches_the_paper(fan_in, fan_out, dim, alpha, seed):
    torch.manual_seed(seed)
    holder = Holder(fan_in, fan_out)
    weight, bias = holder.proj.weight.detach().clone(), holder.proj.bias.detach().clone()
    x = torch.randn(3, 5, fan_in)
    DoRA(target_modules=["proj"], dim=dim, alpha=alpha)(holder)
    adapter = holder.proj.adapter
    # At init the magnitude is the base weight's row norm and the output is the base output.
    torch.testing.assert_close(adapter.weight_magnitude, weight.norm(dim=1), rtol=1e-6, atol=0)
    assert torch.equal(holder.proj(x), nn.functional.linear(x, weight, bias))
    with torch.no_grad():  # move away from init: B, and m, non-trivial
        adapter.linear_out.weight.normal_()
        adapter.weight_magnitude.mul_(1 + 0.3 * torch.randn(fan_out))
    a, b, m = (p.detach().clone().requires_grad_() for p in (
        adapter.linear_in.weight, adapter.linear_out.weight, adapter.weight_magnitude))
    xr = x.clone().requires_grad_()
    expected = reference(xr, weight, bias, a, b, m, alpha / dim)
    xm = x.clone().requires_grad_()
    got = holder.proj(xm)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(expected)
    (expected * upstream).sum().backward()
    (got * upstream).sum().backward()
    for mine, theirs in [(adapter.linear_in.weight, a), (adapter.linear_out.weight, b),
                         (adapter.weight_magnitude, m)]:
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xm.grad, xr.grad, rtol=1e-4, atol=1e-5)
    assert holder.proj.to_wrap.weight.grad is None  # base frozen
    # Merged: W' = m V / ||V||, bias untouched.
    merge(holder)
    v = weight + alpha / dim * b.detach() @ a.detach()
    torch.testing.assert_close(holder.proj.to_wrap.weight,
                               m.detach().unsqueeze(1) * v / v.norm(dim=1, keepdim=True))
    torch.testing.assert_close(holder.proj(x), expected.detach(), rtol=1e-5, atol=1e-5)
    unmerge(holder)
    assert torch.equal(holder.proj.to_wrap.weight, weight)


def test_dora_differs_from_lora_once_trained():
    """The same A and B give different outputs under DoRA (normalised) and LoRA."""
    torch.manual_seed(0)
    lora_holder, dora_holder = Holder(8, 6), Holder(8, 6)
    dora_holder.load_state_dict(lora_holder.state_dict())
    LoRA(target_modules=["proj"], dim=2, alpha=2)(lora_holder)
    DoRA(target_modules=["proj"], dim=2, alpha=2)(dora_holder)
    with torch.no_grad():
        for holder in (lora_holder, dora_holder):
            holder.proj.adapter.linear_in.weight.fill_(0.5)
            holder.proj.adapter.linear_out.weight.fill_(0.5)
    x = torch.randn(4, 8)
    assert not torch.allclose(lora_holder.proj(x), dora_holder.proj(x))


def test_dora_rejects_post_dropout():
    with pytest.raises(ValueError, match="dropout_position"):
        DoRA(dropout_position="post")


def test_dora_wraps_only_what_was_asked():
    holder = Holder(4, 4)
    DoRA(target_modules=["proj"], dim=2)(holder)
    assert [name for name, _ in wrappers(holder)] == ["proj"]
    assert {n for n, p in holder.named_parameters() if p.requires_grad} == {
        "proj.adapter.linear_in.weight", "proj.adapter.linear_out.weight",
        "proj.adapter.weight_magnitude"}
