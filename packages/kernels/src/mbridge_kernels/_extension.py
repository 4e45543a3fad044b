"""Builds and loads the C++/CUDA extension (csrc/) with torch's cpp_extension and ninja.

The sources live in the repository's top-level ``csrc/``; the wheel carries a copy in
``mbridge_kernels/csrc`` (hatch force-include), so both a workspace checkout and an installed
wheel find them. The build is cached per source hash, torch version and CUDA flag under
``$MBRIDGE_KERNELS_BUILD_DIR`` (default ``~/.cache/mbridge_kernels``). The ops are registered
with TORCH_LIBRARY as ``torch.ops.mbridge_kernels.*``; the CUDA kernel is compiled only where
torch sees a GPU and nvcc is available.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import torch

CPU_SOURCES = ("masked_token_loss.cpp",)
CUDA_SOURCES = ("masked_token_loss_cuda.cu",)


def csrc_dir() -> Path:
    """The installed copy next to this module, else the workspace's top-level csrc/."""
    here = Path(__file__).resolve().parent
    candidates = [here / "csrc"]
    if len(here.parents) > 3:  # packages/kernels/src/mbridge_kernels -> the repository root
        candidates.append(here.parents[3] / "csrc")
    for candidate in candidates:
        if (candidate / CPU_SOURCES[0]).is_file():
            return candidate
    raise FileNotFoundError(f"mbridge_kernels: no csrc/ with {CPU_SOURCES[0]} near {here}")


def _with_cuda() -> bool:
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and CUDA_HOME is not None


@functools.cache
def load() -> bool:
    """Build (once, cached) and load the extension; True when its ops are registered."""
    if hasattr(torch.ops.mbridge_kernels, "masked_token_loss_fwd"):
        return True
    from torch.utils.cpp_extension import load as cpp_load

    src = csrc_dir()
    with_cuda = _with_cuda()
    sources = [src / s for s in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    # build.ninja holds the absolute include/library paths of this torch install: two
    # environments (e.g. two worktrees' .venv) sharing one build folder would rebuild each time.
    digest.update(f"{torch.__version__}|{with_cuda}|{Path(torch.__file__).parent}".encode())
    name = f"mbridge_kernels_{digest.hexdigest()[:12]}"
    root = Path(os.environ.get("MBRIDGE_KERNELS_BUILD_DIR",
                               Path.home() / ".cache" / "mbridge_kernels"))
    build_dir = root / name
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp_load(
        name=name,
        sources=[str(p) for p in sources],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=os.environ.get("MBRIDGE_KERNELS_VERBOSE_BUILD") == "1",
    )
    return hasattr(torch.ops.mbridge_kernels, "masked_token_loss_fwd")


@functools.cache
def available() -> bool:
    """Whether the extension loads; a build failure is reported once, as a warning."""
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - any build failure means "use another backend"
        warnings.warn(f"mbridge_kernels: C++ extension unavailable ({type(exc).__name__}: "
                      f"{str(exc)[-500:]})", RuntimeWarning, stacklevel=2)
        return False


def has_cuda_kernel() -> bool:
    return available() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "mbridge_kernels::masked_token_loss_fwd", "CUDA")


def loss_forward(logits, labels, weights, grad, *, ignore_index: int, label_smoothing: float,
                 z_loss_weight: float, block_size=None) -> torch.Tensor:
    """Per-row weighted loss (fp32 [N]); same contract as the Triton ``loss_forward``."""
    del block_size  # the C++ kernels pick their own tiling
    return torch.ops.mbridge_kernels.masked_token_loss_fwd(
        logits, labels, weights, grad, ignore_index, float(label_smoothing), float(z_loss_weight))
