"""Loss patterns and their reduction: every pattern reduces to the value computed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from multirank import run_ranks

from mbridge_train.forward_contract import bind_state
from mbridge_train.losses import LM_LOSS, masked_token_loss, reduce_reported


def test_token_aware_pattern_from_per_token_losses():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
    loss, count, report = masked_token_loss(mask, per_token)
    assert loss.item() == 1 + 3 + 6 and count.item() == 3
    assert report[LM_LOSS].tolist() == [10.0, 3.0]


def test_token_aware_pattern_from_logits_uses_the_kernel_and_matches_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g, requires_grad=True)
    labels = torch.randint(0, 11, (2, 5), generator=g)
    mask = (torch.rand(2, 5, generator=g) > 0.3).float()
    loss, count, report = masked_token_loss(mask, logits, labels=labels)
    expected = (F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), reduction="none")
                * mask.reshape(-1)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert count.item() == mask.sum().item()
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(1, 50)), min_size=1, max_size=6))
def test_pairs_reduce_to_total_sum_over_total_count(microbatches):
    reported = [{LM_LOSS: torch.tensor([s, float(n)])} for s, n in microbatches]
    total = sum(s for s, _ in microbatches) / sum(n for _, n in microbatches)
    assert reduce_reported(reported)[LM_LOSS] == pytest.approx(total, rel=1e-6)  # fp32 reports


def test_scalars_average_over_microbatches_and_lists_count_as_pairs():
    reported = [{"lm loss": torch.tensor(2.0), "aux": [3.0, 1]},
                {"lm loss": torch.tensor(4.0), "aux": [5.0, 3]}]
    out = reduce_reported(reported)
    assert out["lm loss"] == 3.0 and out["aux"] == 2.0
    assert reduce_reported([]) == {}
    with pytest.raises(ValueError, match="'bad'"):
        reduce_reported([{"bad": torch.zeros(3)}])


def _dp_reduce(rank, world):
    # rank 0: 2 micro-batches; rank 1: different sums and token counts.
    pairs = [[(6.0, 2), (4.0, 3)], [(10.0, 5), (0.0, 0)]][rank]
    scalars = [[1.0, 3.0], [5.0, 7.0]][rank]
    reported = [{LM_LOSS: torch.tensor([s, float(n)]), "z": torch.tensor(v)}
                for (s, n), v in zip(pairs, scalars)]
    return reduce_reported(reported, torch.distributed.group.WORLD)


def test_reduction_over_data_parallel_ranks():
    for out in run_ranks(_dp_reduce, 2):
        assert out[LM_LOSS] == pytest.approx(20.0 / 10)  # all sums over all tokens
        assert out["z"] == pytest.approx(4.0)  # mean of per-rank means (2 and 6)


def test_forward_step_forms():
    def modern(state, data_iterator, model, return_schedule_plan=False):
        return state, data_iterator, model

    def three(state, data_iterator, model):
        return state, data_iterator, model

    def legacy(data_iterator, model):
        return data_iterator, model

    assert bind_state(modern, "S")("D", "M") == ("S", "D", "M")
    assert bind_state(three, "S")("D", "M") == ("S", "D", "M")
    assert bind_state(legacy, "S")("D", "M") == ("D", "M")
    with pytest.raises(TypeError, match="forward_step_func must take"):
        bind_state(lambda x: x, "S")

