# The spec's "Callback Migration" examples (Megatron Bridge halves), with `megatron.bridge`
# replaced by `mbridge`, used in one scaled-down run on 2 data-parallel CPU ranks: the DDP parity
# check, manual GC, preemption handling, the experimental flag, MoE token drop. DeepEP and TP
# communication overlap need CUDA / Transformer Engine: here they must be refused clearly.
import os

from mbridge.training.config import (ConfigContainer, DistributedInitConfig, LoggerConfig,
                                     MockGPTDatasetConfig, OptimizerConfig, SchedulerConfig)
from mbridge.training.config import TrainingConfig
from mbridge.training.comm_overlap import CommOverlapConfig
from mbridge.training.utils.moe_token_drop import apply_moe_token_drop
from mbridge.training.deepep import apply_deepep
from mbridge.models import GPTModelProvider
from mbridge.training import pretrain
from mbridge.training.gpt_step import forward_step

# Built into TrainingConfig
train_config = TrainingConfig(
    check_weight_hash_across_dp_replicas_interval=2,  # scaled down (100)
)
# Built into TrainingConfig
train_config = TrainingConfig(
    manual_gc=True,              # Enable manual garbage collection
    manual_gc_interval=2,        # GC interval during training (was gc_interval_train)
    manual_gc_eval=True,         # Enable GC at start/end of evaluation (was gc_interval_val)
    check_weight_hash_across_dp_replicas_interval=2,
    exit_signal_handler=True,  # Enable preemption signal handling
    micro_batch_size=1, global_batch_size=4, train_iters=4, eval_interval=2, eval_iters=1,
)
dist_config = DistributedInitConfig(
    enable_megatron_core_experimental=True,
)

model = GPTModelProvider(
    # MoE architecture
    num_moe_experts=8,
    moe_router_topk=2,
    moe_token_dispatcher_type="alltoall",
    # scaled down; no bias: megatron-core's local expert MLP cannot train with one (mbridge
    # says so at build time), and Transformer Engine is not available on a CPU
    num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=128,
    moe_ffn_hidden_size=32, vocab_size=512, seq_length=32, add_bias_linear=False,
)

# Apply token drop optimization
apply_moe_token_drop(
    model,
    moe_expert_capacity_factor=1.0,
    moe_pad_expert_input_to_capacity=True
)


def config(**changes):
    fields = dict(
        model=model, train=train_config, dist=dist_config,
        optimizer=OptimizerConfig(optimizer="adam", lr=3e-3, use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_warmup_iters=1),
        dataset=MockGPTDatasetConfig(sequence_length=32, num_workers=0),
        logger=LoggerConfig(log_interval=1))
    fields.update(changes)
    return ConfigContainer(**fields)


pretrain(config(), forward_step_func=forward_step)

refusals = {}
try:
    pretrain(config(comm_overlap=CommOverlapConfig(tp_comm_overlap=True)), forward_step)
except Exception as error:  # noqa: BLE001 - the example records what the user would see
    refusals["tp_comm_overlap"] = f"{type(error).__name__}: {error}"

deepep_model = GPTModelProvider(
    num_moe_experts=8,
    # ... other MoE settings
    moe_router_topk=2, num_layers=2, hidden_size=64, num_attention_heads=4,
    ffn_hidden_size=128, moe_ffn_hidden_size=32, vocab_size=512, seq_length=32,
    add_bias_linear=False,
)

# Apply DeepEP optimizations (only on Ampere/Hopper GPUs)
# Hardware validation is performed automatically during training
apply_deepep(deepep_model)
try:
    pretrain(config(model=deepep_model), forward_step)
except Exception as error:  # noqa: BLE001
    refusals["deepep"] = f"{type(error).__name__}: {error}"

RESULT = {"refusals": refusals, "moe": (model.moe_expert_capacity_factor,
                                        model.moe_pad_expert_input_to_capacity)}
