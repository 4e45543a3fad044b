"""Run the Triton kernels through Triton's interpreter on the CPU when there is no GPU.

mbridge_kernels builds its Triton kernels on first use, so setting the variable here (before
any test calls them) is enough.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
