"""What Qwen's recipes share: 4K sequences, small global batches (32 x 2) and a short warm-up
for pretraining, as in Megatron Bridge's Qwen recipes; the settings the large models need."""

from dataclasses import dataclass, field

from mbridge_train.recipes.spec import PretrainSpec


@dataclass(frozen=True)
class QwenPretrainSpec(PretrainSpec):
    """A Qwen pretraining spec: the family's schedule and batch sizes as defaults."""

    train_iters: int = field(default=300_000, kw_only=True)
    global_batch_size: int = field(default=32, kw_only=True)
    micro_batch_size: int = field(default=2, kw_only=True)
    seq_length: int = field(default=4096, kw_only=True)
    lr_warmup_iters: int = field(default=500, kw_only=True)
    eval_interval: int = field(default=500, kw_only=True)
    save_interval: int = field(default=500, kw_only=True)


RECOMPUTE = {"model.recompute_granularity": "full", "model.recompute_method": "uniform",
             "model.recompute_num_layers": 1}
"""Full activation recomputation, one layer at a time: what the 32B+ and MoE recipes need to fit."""
FP32_ROUTER = {"model.moe_router_dtype": "fp32"}
"""Router logits and top-k in fp32: with 128 experts bf16 ties and rounding skew the routing."""
