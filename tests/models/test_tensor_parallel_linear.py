"""TP=2 ColumnParallelLinear -> RowParallelLinear on two CPU ranks equals a single-rank reference."""

import pytest
import torch
import torch.nn.functional as F

from multirank import run_ranks

pytestmark = pytest.mark.multiproc

SEQ, BATCH, HIDDEN, FFN = 5, 3, 8, 12


def _reference(x, w1, b1, w2, b2, upstream):
    """Plain PyTorch, one process: y = gelu(x W1^T + b1) W2^T + b2."""
    x, w1, b1, w2, b2 = (t.clone().requires_grad_() for t in (x, w1, b1, w2, b2))
    y = F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)
    (y * upstream).sum().backward()
    return y.detach(), x.grad, w1.grad, b1.grad, w2.grad, b2.grad


def _parallel_pair(rank, world_size, x, w1, b1, w2, b2, upstream):
    from megatron.core import parallel_state
    from megatron.core.model_parallel_config import ModelParallelConfig
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    parallel_state.initialize_model_parallel(tensor_model_parallel_size=world_size)
    model_parallel_cuda_manual_seed(0)
    config = ModelParallelConfig(tensor_model_parallel_size=world_size, use_cpu_initialization=True)
    column = ColumnParallelLinear(HIDDEN, FFN, config=config, init_method=torch.nn.init.zeros_,
                                  bias=True, gather_output=False)
    row = RowParallelLinear(FFN, HIDDEN, config=config, init_method=torch.nn.init.zeros_,
                            bias=True, input_is_parallel=True, skip_bias_add=False)
    shard = slice(rank * FFN // world_size, (rank + 1) * FFN // world_size)
    with torch.no_grad():
        column.weight.copy_(w1[shard])
        column.bias.copy_(b1[shard])
        row.weight.copy_(w2[:, shard])
        row.bias.copy_(b2)
    x = x.clone().requires_grad_()
    hidden, _ = column(x)
    y, _ = row(F.gelu(hidden))
    (y * upstream).sum().backward()
    return (y.detach(), x.grad, column.weight.grad, column.bias.grad, row.weight.grad,
            row.bias.grad)


def test_column_row_pair_matches_single_rank_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SEQ, BATCH, HIDDEN, generator=g)
    w1, b1 = torch.randn(FFN, HIDDEN, generator=g), torch.randn(FFN, generator=g)
    w2, b2 = torch.randn(HIDDEN, FFN, generator=g), torch.randn(HIDDEN, generator=g)
    upstream = torch.randn(SEQ, BATCH, HIDDEN, generator=g)
    y, dx, dw1, db1, dw2, db2 = _reference(x, w1, b1, w2, b2, upstream)

    ranks = run_ranks(_parallel_pair, 2, x, w1, b1, w2, b2, upstream)

    tol = dict(rtol=1e-5, atol=1e-5)  # fp32; only the summation order differs
    for rank, (y_r, dx_r, dw1_r, db1_r, dw2_r, db2_r) in enumerate(ranks):
        shard = slice(rank * FFN // 2, (rank + 1) * FFN // 2)
        torch.testing.assert_close(y_r, y, **tol)  # row-parallel output is all-reduced
        torch.testing.assert_close(dx_r, dx, **tol)  # column-parallel input grad is all-reduced
        torch.testing.assert_close(dw1_r, dw1[shard], **tol)
        torch.testing.assert_close(db1_r, db1[shard], **tol)
        torch.testing.assert_close(dw2_r, dw2[:, shard], **tol)
        torch.testing.assert_close(db2_r, db2, **tol)
    # The shards really are different halves (a rank computing the full layer would fail above).
    assert not torch.allclose(ranks[0][2], ranks[1][2])
