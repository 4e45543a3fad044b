"""Vocab-parallel loss on 2 CPU ranks (gloo) equals the single-rank loss and gradient."""

import pytest
import torch

from helpers import IGNORE, oracle
from multirank import run_ranks
from mbridge_kernels import vocab_parallel_token_loss_sum

pytestmark = pytest.mark.multiproc


def _case(vocab, dtype):
    gen = torch.Generator().manual_seed(vocab)
    logits = (torch.randn(2, 7, vocab, generator=gen) * 3).to(dtype)
    labels = torch.randint(0, vocab, (2, 7), generator=gen)
    labels[0, 2] = IGNORE
    mask = (torch.rand(2, 7, generator=gen) < 0.75).float()
    mask[1] = 1.0  # one fully unmasked sequence
    return logits, labels, mask


def _rank_body(rank, world_size, vocab, split, dtype, kwargs):
    logits, labels, mask = _case(vocab, dtype)
    bounds = [0, split, vocab]
    shard = logits[..., bounds[rank]:bounds[rank + 1]].clone().requires_grad_(True)
    loss, count = vocab_parallel_token_loss_sum(
        shard, labels, mask, vocab_start=bounds[rank], vocab_size=vocab, **kwargs)
    (loss * 0.75).backward()
    return loss.item(), count.item(), shard.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab,split,kwargs", [
    (50, 25, {}),
    (37, 11, {"label_smoothing": 0.1, "z_loss_weight": 1e-2}),  # uneven shards
    (9, 1, {"label_smoothing": 1.0}),
])
def test_two_ranks_equal_one_rank(vocab, split, kwargs, dtype):
    results = run_ranks(_rank_body, 2, vocab, split, dtype, kwargs, cpu_runtime=False)
    logits, labels, mask = _case(vocab, dtype)
    ref_loss, ref_count, ref_grad = oracle(logits, labels, mask, 0.75, ignore_index=IGNORE,
                                           **kwargs)
    for loss, count, _ in results:  # every rank returns the full loss
        assert count == pytest.approx(ref_count.item())
        assert loss == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-4)
    grad = torch.cat([g for _, _, g in results], dim=-1)
    assert grad.dtype == dtype
    atol = 1e-6 if dtype == torch.float32 else 8e-3
    torch.testing.assert_close(grad.double(), ref_grad, atol=atol, rtol=atol)


def test_shard_outside_the_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="outside vocab_size"):
        vocab_parallel_token_loss_sum(torch.randn(3, 10), torch.zeros(3).long(),
                                         vocab_start=5, vocab_size=12)
