"""Tokens/s, TFLOP/s per GPU and MFU of a training step.

FLOPs come from the analytic count of ``mbridge_models.counting`` (the model's matmuls, the
same on every hardware), never from a profiler, so the numbers compare across runs and
machines. MFU needs the device's peak rate; we only know it for the devices in ``PEAK_FLOPS``
and leave MFU out elsewhere (CPU included) rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense (no sparsity) bf16/fp16 tensor-core peak per GPU, by a substring of
# torch.cuda.get_device_name(); the more specific names come first.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500e12),
    ("B200", 2250e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("V100", 125e12),
)


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16/fp16 FLOP/s of one device, or None when the device is not in the table."""
    if not device_name:
        return None
    for key, value in PEAK_FLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def current_device_peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return peak_flops(torch.cuda.get_device_name())


@dataclass(frozen=True)
class Throughput:
    """What one optimizer step achieved."""

    tokens_per_s: float
    tflops_per_gpu: float
    mfu: float | None
    step_flops: float


def model_flops_per_step(provider, seq_length: int, global_batch_size: int) -> float:
    """Training FLOPs of one global batch (forward + backward of every token)."""
    from mbridge_models.counting import flops_per_token

    return flops_per_token(provider, seq_length) * seq_length * global_batch_size


def throughput(step_flops: float, tokens: int, step_time_s: float, world_size: int,
               peak: float | None) -> Throughput:
    """``tokens`` (global batch x sequence length) and ``step_flops`` over all GPUs of the job."""
    seconds = max(step_time_s, 1e-12)
    per_gpu = step_flops / seconds / world_size
    return Throughput(tokens_per_s=tokens / seconds, tflops_per_gpu=per_gpu / 1e12,
                      mfu=per_gpu / peak if peak else None, step_flops=step_flops)
