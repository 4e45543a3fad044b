"""What mbridge-train implements, as rules of ``ConfigContainer.validate()``.

mbridge-config holds the rules every implementation shares; these name settings that this
package's checkpoints and loop do not implement, so a run is refused before anything is built
(not after the model exists). mbridge-config finds them through the ``mbridge_config.rules``
entry point declared in this package's pyproject.toml.
"""

from __future__ import annotations

# Checkpoint fields whose non-default values checkpointing.py does not implement, with the
# value it does.
UNSUPPORTED_CHECKPOINT = (
    ("ckpt_format", "torch_dist"), ("non_persistent_ckpt_type", None),
    ("non_persistent_save_interval", None), ("non_persistent_local_ckpt_dir", None),
    ("replication", False), ("use_checkpoint_args", False),
    ("use_mp_args_from_checkpoint_args", False), ("ckpt_convert_format", None),
    ("save_retain_interval", None), ("load_main_params_from_ckpt", False),
)


def rule_supported_checkpoint(cfg, world_size: int) -> list[tuple[str, str]]:
    ckpt = cfg.checkpoint
    return [(f"checkpoint.{name}", f"{getattr(ckpt, name)!r} is not supported (mbridge writes "
                                   f"persistent torch_dist checkpoints); use "
                                   f"{supported!r}")
            for name, supported in UNSUPPORTED_CHECKPOINT if getattr(ckpt, name) != supported]


def rule_tp_comm_overlap(cfg, world_size: int) -> list[tuple[str, str]]:
    """TP overlap runs inside Transformer Engine's userbuffer GEMMs, which need a per-run
    communicator set-up mbridge does not do: refused rather than silently not overlapped."""
    if cfg.comm_overlap is not None and cfg.comm_overlap.tp_comm_overlap:
        return [("comm_overlap.tp_comm_overlap",
                 "is not supported yet: it needs Transformer Engine's userbuffers, which mbridge "
                 "does not initialise; leave it False (DP/PP overlap work)")]
    return []


def rule_cpu_compute_dtype(cfg, world_size: int) -> list[tuple[str, str]]:
    from mbridge_train.cpu_precision import FIELD, POLICIES

    value = getattr(cfg.dist, "cpu_compute_dtype", "auto")
    if value not in POLICIES:
        return [(FIELD, f"must be one of {', '.join(map(repr, POLICIES))}, got {value!r}")]
    return []


RULES = [rule_supported_checkpoint, rule_tp_comm_overlap, rule_cpu_compute_dtype]
