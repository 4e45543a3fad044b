"""Loss patterns and their reduction (``loss_contract``): every pattern reduces to the value
computed by hand, and only explicit pairs are read as [sum, count]."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from multirank import run_ranks

from mbridge_train.forward_contract import bind_state, schedule_step
from mbridge_train.loss_contract import LM_LOSS, TokenMean, normalize, reduce_reported, token_mean
from mbridge_train.losses import masked_token_loss


def test_token_aware_pattern_from_per_token_losses():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
    loss, count, report = masked_token_loss(mask, per_token)
    assert loss.item() == 1 + 3 + 6 and count.item() == 3
    assert isinstance(report[LM_LOSS], TokenMean)
    assert (report[LM_LOSS].total.item(), report[LM_LOSS].count.item()) == (10.0, 3.0)


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
    reported = [{LM_LOSS: token_mean(s, n)} for s, n in microbatches]
    total = sum(s for s, _ in microbatches) / sum(n for _, n in microbatches)
    assert reduce_reported(reported)[LM_LOSS] == pytest.approx(total, rel=1e-6)  # fp32 reports


def test_scalars_average_and_only_explicit_pairs_divide():
    reported = [{LM_LOSS: torch.tensor(2.0), "aux": token_mean(3.0, 1)},
                {LM_LOSS: torch.tensor(4.0), "aux": token_mean(5.0, 3)}]
    out = reduce_reported(reported)
    assert out[LM_LOSS] == 3.0 and out["aux"] == 2.0
    assert reduce_reported([]) == {}
    # A raw two-number metric was taken for [sum, count] (numel()==2); now it is refused.
    for bad in (torch.zeros(3), torch.tensor([0.5, 0.25])):
        with pytest.raises(ValueError, match="'bad' must be a scalar or a TokenMean"):
            reduce_reported([{"bad": bad}])


def test_reports_are_copies_the_schedule_cannot_change():
    """megatron divides the trained loss in place (by tokens or micro-batches); a report that
    aliased it would be divided too."""
    loss = torch.tensor(12.0)
    _, _, report = normalize((loss, torch.tensor(4)))
    _, scalars = normalize((loss, {"m": loss}))
    loss /= 4
    assert reduce_reported([report])[LM_LOSS] == 3.0 and reduce_reported([scalars])["m"] == 12.0


def test_a_two_number_metric_in_the_scalar_form_is_not_a_pair():
    loss = torch.tensor(1.0)
    with pytest.raises(ValueError, match="'per_class' must be a scalar here"):
        normalize((loss, {"per_class": torch.tensor([0.5, 0.25])}))


def _dp_reduce(rank, world):
    # rank 0: 2 micro-batches; rank 1: different sums and token counts.
    pairs = [[(6.0, 2), (4.0, 3)], [(10.0, 5), (0.0, 0)]][rank]
    scalars = [[1.0, 3.0], [5.0, 7.0]][rank]
    reported = [{LM_LOSS: token_mean(s, n), "z": torch.tensor(v)}
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


def test_every_loss_pattern_becomes_a_schedule_form():
    loss = torch.tensor(6.0, requires_grad=True)
    tokens = torch.tensor(3)
    single = normalize(loss)
    assert single[0] is loss and reduce_reported([single[1]])[LM_LOSS] == 6.0
    pair = normalize((loss, {"x": torch.tensor(1.0)}))
    assert pair[0] is loss and set(pair[1]) == {"x"}
    token_aware = normalize((loss, tokens))
    assert token_aware[0] is loss and int(token_aware[1]) == 3
    assert reduce_reported([token_aware[2]])[LM_LOSS] == 2.0
    # megatron's convention in the token-aware form: a 2-element value is [sum, count].
    loss_, count, report = normalize((loss, tokens.to(torch.int), {"y": torch.tensor([1.0, 4.0]),
                                                                  "s": torch.tensor(2.0)}))
    assert loss_ is loss and int(count) == 3
    assert reduce_reported([report]) == {"y": 0.25, "s": 2.0}
    float_count = normalize((loss, torch.tensor(3.0), {}))[1]  # a mask's sum
    assert float_count.dtype == torch.int and int(float_count) == 3


def test_dict_pattern_trains_on_the_lm_loss_and_reports_value_over_count():
    """The spec's loss-reduction example: {key: cat([value, count])} per micro-batch."""
    value = torch.tensor(12.0, requires_grad=True)
    count = torch.tensor(4)
    metric = torch.tensor(2.0)
    reported = normalize({"custom_metric": torch.cat([metric.view(1), count.view(1)]),
                          LM_LOSS: torch.cat([value.view(1), count.view(1)])})
    trained, num_tokens, report = reported
    trained.backward()
    assert value.grad.item() == 1.0 and int(num_tokens) == 4  # LM_LOSS, though not first
    assert num_tokens.dtype == torch.int  # megatron adds it to an int total
    second = normalize({LM_LOSS: [torch.tensor(8.0), 4], "custom_metric": [6.0, 4]})[2]
    out = reduce_reported([report, second])
    assert out[LM_LOSS] == pytest.approx(20.0 / 8) and out["custom_metric"] == pytest.approx(1.0)
    first = normalize({"loss": [torch.tensor(8.0), 4]})  # no LM_LOSS entry: the first trains
    assert first[0].item() == 8.0
    with pytest.raises(ValueError, match="'loss' must be \\[sum, count\\]"):
        normalize({"loss": torch.zeros(3)})
    with pytest.raises(TypeError, match="a loss function returns"):
        normalize("nope")


def test_schedule_step_normalises_the_returned_loss_function():
    def step(state, data_iterator, model):
        def loss_func(output, non_loss_data=False):
            return {"raw": output} if non_loss_data else (output.sum(), output.numel())
        return state * next(data_iterator), loss_func

    output, loss_func = schedule_step(step, torch.tensor([1.0, 2.0]))(iter([2.0]), None)
    loss, tokens, report = loss_func(output)
    assert loss.item() == 6.0 and int(tokens) == 2 and reduce_reported([report])[LM_LOSS] == 3.0
    assert loss_func(output, non_loss_data=True)["raw"] is output
