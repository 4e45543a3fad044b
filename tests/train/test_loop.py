"""The training loop on CPU ranks: loss goes down, data parallelism changes nothing, evaluation
and test run on schedule, the inference pattern collects outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny import llama_like  # noqa: E402


def _config(**train):
    from mbridge_config import (ConfigContainer, LoggerConfig, MockGPTDatasetConfig,
                                OptimizerConfig, SchedulerConfig, TokenizerConfig, TrainingConfig)

    fields = dict(micro_batch_size=2, global_batch_size=4, train_iters=6, eval_interval=3,
                  eval_iters=2)
    fields.update(train)
    return ConfigContainer(
        model=llama_like(vocab_size=None, seq_length=32),
        train=TrainingConfig(**fields),
        optimizer=OptimizerConfig(optimizer="adam", lr=3e-3, use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_warmup_iters=1),
        dataset=MockGPTDatasetConfig(sequence_length=32, num_workers=0),
        tokenizer=TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=300),
        logger=LoggerConfig(log_interval=1))


def _pretrain(rank, world, **train):
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    return pretrain(_config(**train), forward_step).history


def _train_losses(history):
    return [h["lm loss"] for h in history if "split" not in h]


@pytest.mark.multiproc
def test_loss_decreases_and_data_parallel_2_equals_1():
    (single,) = run_ranks(_pretrain, 1)
    losses = _train_losses(single)
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3
    splits = [(h["step"], h["split"]) for h in single if "split" in h]
    assert splits == [(3, "validation"), (6, "validation"), (6, "test")]
    assert all(h["lm loss ppl"] > 1 for h in single if "split" in h)
    for history in run_ranks(_pretrain, 2):  # same global batch, 2 data-parallel ranks
        torch.testing.assert_close(_train_losses(history), losses, rtol=1e-5, atol=0)


def _legacy_and_inference(rank, world):
    from mbridge_train.gpt_step import get_batch
    from mbridge_train.training import forward_only_outputs, setup, teardown, train

    run = setup(_config(train_iters=2, eval_interval=None))

    def legacy_step(data_iterator, model):  # megatron's two-argument form
        batch = get_batch(data_iterator)
        logits = model(batch["tokens"], batch["position_ids"], None)

        def loss_func(output, non_loss_data=False):
            if non_loss_data:
                return {"argmax": output.argmax(-1)}
            loss = output.float().logsumexp(-1).mean()
            return loss, {"lse": loss.detach().clone()}

        return logits, loss_func

    train(run, legacy_step)
    outputs = forward_only_outputs(run, legacy_step, run.valid_iterator, microbatches=2)
    history = run.history
    teardown()
    return history, outputs


def test_legacy_forward_step_and_inference_pattern():
    ((history, outputs),) = run_ranks(_legacy_and_inference, 1)
    assert [h["step"] for h in history if "lse" in h and "split" not in h] == [1, 2]
    assert len(outputs) == 2 and outputs[0]["argmax"].shape == (2, 32)


def _save_start(rank, world, directory):
    """One set of starting weights (TP=PP=1) as a torch_dist checkpoint at iteration 0."""
    from megatron.core import parallel_state

    from mbridge_train.checkpointing import save_model_weights

    provider = llama_like(vocab_size=512, seq_length=32)
    provider.initialize_model_parallel(seed=7)
    save_model_weights([provider.provide()], directory)
    parallel_state.destroy_model_parallel()


def _pretrain_from(rank, world, directory, tp, pp):
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    cfg = _config(eval_interval=None)
    cfg.model = llama_like(vocab_size=512, seq_length=32, tensor_model_parallel_size=tp,
                           pipeline_model_parallel_size=pp)
    cfg.checkpoint.load = directory  # same weights for every layout (resharded on load)
    return pretrain(cfg, forward_step).history


@pytest.mark.multiproc
def test_tensor_and_pipeline_parallel_2_equal_one_rank(tmp_path):
    """Same starting weights, same data: TP=2 and PP=2 (2 CPU ranks, fp32) follow the TP=1 run
    step for step (rtol 1e-5: the layouts only reorder floating-point sums)."""
    start = str(tmp_path / "start")
    run_ranks(_save_start, 1, start)
    (single,) = run_ranks(_pretrain_from, 1, start, 1, 1)
    losses = _train_losses(single)
    assert len(losses) == 6 and losses[-1] < losses[0]
    for tp, pp in ((2, 1), (1, 2)):
        last_stage = run_ranks(_pretrain_from, 2, start, tp, pp)[-1]
        torch.testing.assert_close(_train_losses(last_stage), losses, rtol=1e-5, atol=0)
