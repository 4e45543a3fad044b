"""Warnings of dependencies that never apply to an mbridge run, filtered here and nowhere else.

megatron-core and torch tell every run about things its user cannot act on: optional extras
mbridge does not use (Apex, Transformer Engine fallbacks), syntax warnings of their own sources,
megatron's notices about its internals (GPTModel's deprecation, the MCore async-save
deprecation although mbridge only saves synchronously, DDP computing its own layout) and, on a
CPU, torch's "No CUDA runtime is found". ``drop_inapplicable()`` drops exactly the messages
listed below, from ``warnings`` and from those libraries' loggers; mbridge_config runs it when it
is imported, before it imports megatron-core (mbridge_models imports mbridge_config first for the
same reason).

``install()``, run by the CLI and by pretrain()/finetune(), adds how the rest is shown:

* each warning once (Python's ``"once"``: the first time its module raises that message, not
  once per line that raises it), and mbridge's own deprecation warnings (a field the user set
  is deprecated) shown, which Python hides by default outside __main__;
* in a multi-process launch only rank 0 shows warnings (and megatron-core's / torch's log lines
  below ERROR): every rank would print the same ones. ``MBRIDGE_ALL_RANK_WARNINGS=1`` shows them
  on every rank. Errors are never filtered.

Explicit ``-W`` / ``PYTHONWARNINGS`` choices are respected: then only the drops apply. (The CPU
runtime drops one more line, megatron's RNG-tracker warning, that only a CPU run triggers:
``mbridge_models.runtime``.) Standard library only.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

ALL_RANKS_VARIABLE = "MBRIDGE_ALL_RANK_WARNINGS"
_MEGATRON = r"megatron(\.|_fsdp\.)"
_MEGATRON_SOURCE = r".*[\\/]megatron[\\/]"  # a compile-time warning's module is its file path

# (category, start of the message, module that raises it): warnings.warn calls.
WARNINGS = (
    (UserWarning, r"Transformer Engine and Apex are not installed", _MEGATRON),
    (UserWarning, r"Apex is not installed", _MEGATRON),
    (UserWarning, r"Only transformer-engine>=1\.7\.0 supports MoE", _MEGATRON),
    (DeprecationWarning, r"The following imports from `dynamic_context\.py`", _MEGATRON),
    (UserWarning, r"MimoModelConfig is experimental", _MEGATRON),
    # TransformerConfig's own default cuda_graph_modules="full" raises it in every config.
    (UserWarning, r"full scope is deprecated\. Use empty cuda_graph_modules", _MEGATRON),
    (SyntaxWarning, r"invalid escape sequence", _MEGATRON_SOURCE),
    # megatron's optimizer asks every parameter shard for .grad, shards being views; on a CPU
    # the call is attributed to the runtime's torch-function mode that forwards it.
    (UserWarning, r"The \.grad attribute of a Tensor that is not a leaf",
     r"(megatron\.|mbridge_models\.runtime)"),
    # megatron's torch_dist load of a pretrained checkpoint on one process (the CPU runtime) and
    # its ShardedTensor state dicts: notices about torch's internals, nothing to change.
    (UserWarning, r"torch\.distributed is disabled, unavailable or uninitialized",
     r"torch\.distributed\.checkpoint"),
    (UserWarning, r"The argument order of load has been changed", r"torch\.distributed\.checkpoint"),
    (FutureWarning, r"Please use DTensor instead and we are deprecating ShardedTensor",
     r"(torch\.|megatron\.|mbridge_models\.runtime)"),
)

# logger -> starts of the messages it logs that never apply.
LOG_RECORDS = {
    "megatron.core.dist_checkpointing.strategies.torch": ("MCore's async save is deprecated",),
    "megatron.core.models.gpt.gpt_model": ("GPTModel IS DEPRECATED",),
    "megatron.core.distributed.distributed_data_parallel": ("DistributedDataParallel: "
                                                            "full_param_layout not provided",),
    "megatron.core.datasets.gpt_dataset": ("Unable to save MockGPTDataset indexes",),
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}

DEPENDENCY_LOGGERS = ("megatron", "torch")
"""Loggers quieted below ERROR on ranks other than 0."""

_state = {"dropped": False, "installed": False}


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def drop_inapplicable() -> None:
    """Filter out WARNINGS and LOG_RECORDS (idempotent)."""
    if _state["dropped"]:
        return
    for category, message, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, starts in LOG_RECORDS.items():
        logging.getLogger(name).addFilter(_DropMessages(starts))
    _state["dropped"] = True


def install(rank: int | None = None) -> None:
    """drop_inapplicable(), warnings once per process, mbridge's deprecations shown, and
    nothing below ERROR from ranks other than 0 (``rank``: default from the launcher's
    variables). Idempotent."""
    drop_inapplicable()
    if _state["installed"]:
        return
    _state["installed"] = True
    if sys.warnoptions:  # the user chose with -W / PYTHONWARNINGS
        return
    if rank is None:
        rank = _launcher_rank()
    if rank != 0 and not os.environ.get(ALL_RANKS_VARIABLE):
        warnings.simplefilter("ignore")
        for name in DEPENDENCY_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.level, logging.ERROR))
        return
    warnings.filterwarnings("once", append=True)  # what no filter above decides
    warnings.filterwarnings("once", category=DeprecationWarning, module=r"mbridge")


def _launcher_rank() -> int:
    """This process's rank from torchrun's or SLURM's variables (0 when unset or malformed)."""
    value = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return int(value) if value.strip().isdigit() else 0
