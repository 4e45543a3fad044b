"""A tiny pretraining config and runners for the loop tests (NullTokenizer, mock GPT data, a
2-layer Llama-like model), plus what the forked ranks should have imported before forking."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny import llama_like  # noqa: E402

SEQ, GLOBAL_BATCH = 32, 4


def preload() -> None:
    """Import the loop's heavy modules in the test process, so forked ranks start warm."""
    import megatron.core.datasets.gpt_dataset  # noqa: F401
    import megatron.core.models.gpt  # noqa: F401
    import megatron.core.optimizer  # noqa: F401
    import megatron.core.pipeline_parallel  # noqa: F401
    import mbridge_train.training  # noqa: F401
    import torch
    from mbridge_train.losses import masked_token_loss

    # The first call loads the kernels' C++ extension (~15 s on 2 cores): pay it once, here.
    logits = torch.zeros(1, 2, 8, requires_grad=True)
    masked_token_loss(torch.ones(1, 2), logits, labels=torch.zeros(1, 2, dtype=torch.long))


def config(*, train=None, logger=None, profiling=None, checkpoint=None, dist=None, **model):
    from mbridge_config import (CheckpointConfig, ConfigContainer, DistributedInitConfig,
                                LoggerConfig, MockGPTDatasetConfig, OptimizerConfig,
                                ProfilingConfig, SchedulerConfig, TokenizerConfig, TrainingConfig)

    fields = dict(micro_batch_size=2, global_batch_size=GLOBAL_BATCH, train_iters=4,
                  eval_interval=None, eval_iters=1)
    fields.update(train or {})
    return ConfigContainer(
        model=llama_like(vocab_size=None, seq_length=SEQ, **model),
        train=TrainingConfig(**fields),
        optimizer=OptimizerConfig(optimizer="adam", lr=3e-3, use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_warmup_iters=1),
        dataset=MockGPTDatasetConfig(sequence_length=SEQ, num_workers=0),
        tokenizer=TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=300),
        logger=LoggerConfig(**{"log_interval": 1, **(logger or {})}),
        profiling=ProfilingConfig(**profiling) if profiling is not None else None,
        checkpoint=CheckpointConfig(**(checkpoint or {})),
        dist=DistributedInitConfig(**(dist or {})))


def pretrain_captured(cfg, forward_step=None):
    """pretrain(cfg) with stdout captured: (run, printed text)."""
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step as gpt_forward_step

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run = pretrain(cfg, forward_step or gpt_forward_step)
    return run, out.getvalue()


class SaveRecorder:
    """Stands in for training.save (checkpointing lives elsewhere): records the step of each call."""

    def __init__(self):
        self.steps = []

    def __call__(self, run):
        self.steps.append(run.state.train_state.step)
