# The spec's "Advanced: Custom Forward Step and Loss Reduction" (Megatron Bridge halves), with
# `megatron.bridge` replaced by `mbridge`. The spec leaves compute_custom_loss, compute_loss,
# some_metric and cfg to the user; they are defined here (scaled-down mock-data run).
import os

import torch
from typing import Iterable
from functools import partial
from mbridge.training.state import GlobalState
from mbridge.training import pretrain
from mbridge.training.config import (ConfigContainer, LoggerConfig, MockGPTDatasetConfig,
                                     OptimizerConfig, SchedulerConfig, TrainingConfig)
from mbridge.models import Llama3ModelProvider8B

cfg = ConfigContainer(
    model=Llama3ModelProvider8B(num_layers=2, hidden_size=64, ffn_hidden_size=128,
                                num_attention_heads=4, num_query_groups=2, vocab_size=512,
                                seq_length=32),
    train=TrainingConfig(micro_batch_size=2, global_batch_size=4, train_iters=4,
                         eval_interval=None, eval_iters=0),
    optimizer=OptimizerConfig(optimizer="adam", lr=3e-3, use_distributed_optimizer=True),
    scheduler=SchedulerConfig(lr_warmup_iters=1),
    dataset=MockGPTDatasetConfig(sequence_length=32, split="1,0,0", num_workers=0),
    logger=LoggerConfig(log_interval=1),
)


def compute_custom_loss(output_tensor, labels, loss_mask):
    per_token = torch.nn.functional.cross_entropy(
        output_tensor.float().transpose(1, 2), labels, reduction="none")
    loss = (per_token * loss_mask).sum() / loss_mask.sum()
    return loss, {"custom loss": loss.detach().clone()}


def custom_forward_step(
    state: GlobalState,
    data_iterator: Iterable,
    model: torch.nn.Module,
) -> tuple[torch.Tensor, partial]:
    """Custom forward step for specialized loss computation."""
    # Get batch from iterator
    batch = next(data_iterator)
    tokens = batch['tokens'].cuda()
    labels = batch['labels'].cuda()
    loss_mask = batch['loss_mask'].cuda()

    # Custom forward logic
    output = model(tokens, attention_mask=batch.get('attention_mask'))

    # Define custom loss function
    def loss_func(output_tensor):
        return compute_custom_loss(output_tensor, labels, loss_mask)

    return output, loss_func

# Pass to training function
pretrain(cfg, forward_step_func=custom_forward_step)


def compute_loss(output_tensor, labels, loss_mask):
    per_token = torch.nn.functional.cross_entropy(
        output_tensor.float().transpose(1, 2), labels, reduction="none")
    return (per_token * loss_mask).sum()


def custom_forward_step(state, data_iterator, model):
    """Forward step with custom loss reduction."""
    batch = next(data_iterator)
    tokens = batch['tokens'].cuda()
    labels = batch['labels'].cuda()
    loss_mask = batch['loss_mask'].cuda()

    output = model(tokens)

    def loss_func(output_tensor):
        """Compute and return loss in reduction-friendly format.

        Return formats:
        - Single value: loss (averaged over microbatches only)
        - Tuple: (loss, num_tokens) - averaged over microbatches and tokens
        - Dict: {"loss": loss, "custom_metric": value, ...} - for logging
        """
        loss = compute_loss(output_tensor, labels, loss_mask)
        num_tokens = loss_mask.sum()
        some_metric = (output_tensor.argmax(-1) == labels).float().mul(loss_mask).sum()

        # Return (loss, num_tokens) for proper averaging
        # Training loop automatically reduces across microbatches and data parallel ranks
        return {
            "loss": torch.cat([loss.view(1), num_tokens.view(1)]),
            "custom_metric": torch.cat([some_metric.view(1), num_tokens.view(1)]),
        }

    return output, loss_func

# Pass to training - reduction handled automatically
pretrain(cfg, forward_step_func=custom_forward_step)
