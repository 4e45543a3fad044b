"""A bf16 run on a CPU: matmuls in fp32 (dist.cpu_compute_dtype), everything stored in bf16.

The widened run keeps bf16 parameters, says so in one line, runs no bf16 matmul kernel, writes a
checkpoint of bf16 tensors, and that checkpoint resumes (optimizer included) in a run that keeps
bf16 arithmetic, as a GPU run would; weights cross between bf16 and fp32 runs both ways.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
import tiny_run  # noqa: E402

from mbridge_config.errors import ConfigError  # noqa: E402
from mbridge_models import runtime  # noqa: E402
from mbridge_train import cpu_precision  # noqa: E402

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU arithmetic only")
LINE = "CPU: bfloat16 matmuls compute in fp32"


class _MatmulDtypes(torch.utils._python_dispatch.TorchDispatchMode):
    """Operand dtypes of every aten matmul-family kernel run under it."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__.startswith(("mm", "bmm", "addmm", "baddbmm",
                                                     "_scaled_dot_product")):
            self.seen |= {a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()}
        return func(*args, **(kwargs or {}))


def _config(precision, policy="auto", lr=3e-3, train_iters=4, **checkpoint):
    cfg = tiny_run.config(train={"train_iters": train_iters}, checkpoint=checkpoint,
                          dist={"cpu_compute_dtype": policy})
    cfg.mixed_precision = precision
    cfg.optimizer.lr, cfg.optimizer.min_lr = lr, 0.0
    return cfg


def _weights(run) -> dict:
    from mbridge_train.checkpointing import _bare

    return {k: v.detach().clone() for k, v in _bare(run.model[0]).state_dict().items()
            if torch.is_tensor(v) and v.is_floating_point()}


def _losses(run) -> list[float]:
    return [h["lm loss"] for h in run.history if "lm loss" in h and "split" not in h]


def _saved_dtypes(directory) -> dict:
    from torch.distributed.checkpoint import FileSystemReader

    entries = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    return {k: e.properties.dtype for k, e in entries.items()
            if hasattr(e, "properties") and not k.startswith("optimizer")}


def _bf16_on_a_cpu(rank, world, tmp):
    from mbridge.training import finetune
    from mbridge.training.gpt_step import forward_step

    saved = tmp / "widened"
    with _MatmulDtypes() as spy:
        widened, printed = tiny_run.pretrain_captured(_config("bf16_mixed", "fp32",
                                                              save=str(saved)))
    result = dict(printed=printed.count(LINE), widened_kernels=spy.seen,
                  params={p.dtype for p in widened.model[0].parameters()},
                  saved=set(_saved_dtypes(saved / "iter_0000004").values()),
                  widened_losses=_losses(widened))
    with _MatmulDtypes() as spy:
        kept, printed = tiny_run.pretrain_captured(_config("bf16_mixed", "keep"))
    result.update(kept_kernels=spy.seen, kept_printed=printed.count(LINE),
                  kept_losses=_losses(kept))
    # What a GPU run of the config does with the checkpoint: resume it, optimizer included
    # (nothing left to train: the weights are the checkpoint's).
    resumed, _ = tiny_run.pretrain_captured(_config("bf16_mixed", "keep", load=str(saved)))
    result["resumed"] = (resumed.state.train_state.step,
                         all(torch.equal(v, _weights(widened)[k])
                             for k, v in _weights(resumed).items()))
    # Weights cross precisions both ways (lr 0: the fine-tune leaves them as loaded).
    as_fp32 = finetune(_config(None, lr=0.0, train_iters=2, pretrained_checkpoint=str(saved)),
                       forward_step)
    result["into_fp32"] = all(v.dtype == torch.float32 and torch.equal(v, _weights(widened)[k]
                                                                       .float())
                              for k, v in _weights(as_fp32).items())
    fp32_saved = tmp / "fp32"
    fp32_run, _ = tiny_run.pretrain_captured(_config(None, save=str(fp32_saved)))
    as_bf16 = finetune(_config("bf16_mixed", "fp32", lr=0.0, train_iters=2,
                               pretrained_checkpoint=str(fp32_saved)), forward_step)
    result["into_bf16"] = all(v.dtype == torch.bfloat16 and torch.equal(
        v, _weights(fp32_run)[k].bfloat16()) for k, v in _weights(as_bf16).items())
    return result


@cpu_only
@pytest.mark.multiproc
def test_a_bf16_run_on_a_cpu_computes_in_fp32_and_stores_bf16(tmp_path):
    (result,) = run_ranks(_bf16_on_a_cpu, 1, tmp_path)
    assert result["printed"] == 1 and result["kept_printed"] == 0
    assert result["params"] == {torch.bfloat16}
    assert result["widened_kernels"] == {torch.float32}
    assert torch.bfloat16 in result["kept_kernels"]
    assert result["saved"] == {torch.bfloat16}
    # The same model either way: fp32 arithmetic only rounds less.
    assert result["widened_losses"] == pytest.approx(result["kept_losses"], rel=2e-2)
    assert result["resumed"] == (4, True)
    assert result["into_fp32"] and result["into_bf16"]


@cpu_only
def test_auto_widens_only_what_the_cpu_has_no_kernels_for(monkeypatch):
    monkeypatch.setattr(runtime, "is_active", lambda: True)
    monkeypatch.setattr(runtime, "native_matmul", lambda d: d == torch.bfloat16)
    assert cpu_precision.widened_dtype("auto", torch.bfloat16) is None
    assert cpu_precision.widened_dtype("auto", torch.float16) is torch.float16
    assert cpu_precision.widened_dtype("fp32", torch.bfloat16) is torch.bfloat16
    assert cpu_precision.widened_dtype("keep", torch.float16) is None
    assert cpu_precision.widened_dtype("fp32", None) is None  # an fp32 run has nothing to widen
    monkeypatch.setattr(runtime, "is_active", lambda: False)  # a GPU: inert
    assert cpu_precision.widened_dtype("fp32", torch.float16) is None


def test_a_bad_policy_is_named():
    cfg = _config("bf16_mixed", "fast")
    with pytest.raises(ConfigError, match=r"dist\.cpu_compute_dtype: must be one of"):
        cfg.finalize().validate(1)
    with pytest.raises(ConfigError, match=r"dist\.cpu_compute_dtype"):
        _config("bf16_mixed").apply_overrides(["dist.cpu_compute_dtype=fast"])
