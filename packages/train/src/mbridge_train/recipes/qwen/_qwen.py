"""What Qwen's pretraining recipes share: 4K sequences, small global batches (32 x 2), a short
warm-up, as in Megatron Bridge's Qwen recipes."""

import torch

PRETRAIN = dict(train_iters=300_000, global_batch_size=32, micro_batch_size=2, seq_length=4096,
                lr_warmup_iters=500, eval_interval=500, save_interval=500)
PIPELINE = dict(pipeline_dtype=torch.bfloat16)
RECOMPUTE = {"model.recompute_granularity": "full", "model.recompute_method": "uniform",
             "model.recompute_num_layers": 1}
"""Full activation recomputation, one layer at a time: what the 32B+ and MoE recipes need to fit."""
FP32_ROUTER = {"model.moe_router_dtype": "fp32"}
"""Router logits and top-k in fp32: with 128 experts bf16 ties and rounding skew the routing."""
