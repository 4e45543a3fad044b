"""LoRA on a single torch nn.Linear: the formula, dropout placement, initialisation, and the
Megatron-Bridge-compatible import paths of the meta-package."""

import pytest
import torch
from torch import nn

from mbridge_peft import LoRA, merge, unmerge


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(10, 7)


def _adapted(**fields):
    torch.manual_seed(0)
    holder = Holder()
    base = holder.proj.weight.detach().clone(), holder.proj.bias.detach().clone()
    LoRA(target_modules=["proj"], **fields)(holder)
    return holder, base


def test_lora_is_w_x_plus_scaled_b_a_x():
    holder, (weight, bias) = _adapted(dim=3, alpha=6)
    adapter = holder.proj.adapter
    assert torch.count_nonzero(adapter.linear_out.weight) == 0  # B starts at zero
    assert torch.count_nonzero(adapter.linear_in.weight) == 30
    with torch.no_grad():
        adapter.linear_out.weight.normal_()
    a, b = adapter.linear_in.weight.detach(), adapter.linear_out.weight.detach()
    x = torch.randn(4, 10)
    expected = x @ weight.T + bias + 2.0 * (x @ a.T) @ b.T
    torch.testing.assert_close(holder.proj(x), expected, rtol=1e-5, atol=1e-6)
    merge(holder)
    torch.testing.assert_close(holder.proj.to_wrap.weight, weight + 2.0 * b @ a)
    unmerge(holder)
    assert torch.equal(holder.proj.to_wrap.weight, weight)


@pytest.mark.parametrize("position", ["pre", "post"])
def test_dropout_applies_in_training_only(position):
    holder, (weight, bias) = _adapted(dim=4, dropout=0.5, dropout_position=position)
    with torch.no_grad():
        holder.proj.adapter.linear_out.weight.fill_(1.0)
    x = torch.randn(64, 10)
    holder.train()
    assert not torch.equal(holder.proj(x), holder.proj(x))
    holder.eval()
    assert torch.equal(holder.proj(x), holder.proj(x))
    # The base path is never dropped: with B = 0 again, training output is the base output.
    with torch.no_grad():
        holder.proj.adapter.linear_out.weight.zero_()
    holder.train()
    assert torch.equal(holder.proj(x), nn.functional.linear(x, weight, bias))


@pytest.mark.parametrize("method, check", [
    ("zero", lambda a: torch.count_nonzero(a) == 0),
    ("normal", lambda a: 0.005 < float(a.std()) < 0.05),
    ("kaiming", lambda a: float(a.abs().max()) <= (1 / 10) ** 0.5 + 1e-6),
    ("xavier", lambda a: 0.2 < float(a.std()) < 0.6),  # sqrt(2 / (10 + 16)) ~ 0.28
])
def test_initialisation_methods(method, check):
    holder, _ = _adapted(dim=16, lora_A_init_method=method)
    assert check(holder.proj.adapter.linear_in.weight.detach())


def test_meta_package_import_paths():
    import mbridge.peft
    from mbridge.peft.dora import DoRA
    from mbridge.peft.lora import LoRA as BridgeLoRA

    from mbridge_peft import DoRA as OurDoRA

    assert BridgeLoRA is LoRA is mbridge.peft.LoRA
    assert DoRA is OurDoRA is mbridge.peft.DoRA
