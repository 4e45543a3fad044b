"""A 4-layer, 128-wide Llama-style GPT: the smallest model that learns something on a CPU.

Big enough to learn, from the embedded corpus (English prose and drills), to copy from its
context, count and compare in a few thousand CPU steps, and then, LoRA-fine-tuned, to answer
the embedded instructions with those skills; small enough that each stage takes minutes on two
cores. It is what ``mbridge quickstart`` runs on a CPU (on a GPU it widens it)::

    mbridge data corpus corpus/ && mbridge data instructions sft/
    mbridge pretrain tiny.gpt_small -a dir=runs -a data_paths='[corpus/corpus_text_document]' \\
        -a tokenizer_model=corpus/tokenizer
    mbridge finetune tiny.gpt_small -a dir=runs -a dataset_root=sft \\
        -a tokenizer_model=corpus/tokenizer -a pretrained_checkpoint=runs/gpt_small/checkpoints
"""

from dataclasses import dataclass, field

from mbridge_models.presets import LlamaModelProvider

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe
from mbridge_train.recipes.tiny.gpt_tiny import CPU_SETTINGS


@dataclass
class SmallGPTProvider(LlamaModelProvider):
    """RMSNorm, SwiGLU, RoPE, 4 heads (no grouping), tied embeddings; 4 x 128 wide, 0.8 M
    parameters besides the embedding. The vocabulary comes from the tokenizer."""

    num_layers: int = 4
    hidden_size: int = 128
    ffn_hidden_size: int = 320
    num_attention_heads: int = 4
    num_query_groups: int = 4
    seq_length: int = field(default=128, kw_only=True)
    vocab_size: int | None = field(default=None, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    init_method_std: float = 0.02
    use_cpu_initialization: bool = True
    bias_activation_fusion: bool = False


SETTINGS = CPU_SETTINGS | {"logger.log_interval": 50}
# Copying from the context (what the instructions need) appears between 1500 and 3000 steps
# (measured: 28-37% of held-out instructions after the fine-tune at 1500-2000 steps of 64
# tokens, 47-57% at 2000-3000 steps of 128); 2500 steps is what fits in ten CPU minutes.
PRETRAIN = PretrainSpec(__name__, SmallGPTProvider, train_iters=2500, global_batch_size=16,
                        micro_batch_size=16, seq_length=128, lr=3e-3, min_lr=3e-4,
                        lr_warmup_iters=20, eval_interval=500, eval_iters=4, save_interval=1000,
                        precision_config=None, outputs_without_dir=False)
# Many small steps beat few large ones for the same samples: on an H200, with the earlier
# instruction set, 1200 x 16 prompts learnt a task that 300 x 64 did not (LoRA r16, lr 3e-3;
# lr 1e-2 learnt nothing).
FINETUNE = FinetuneSpec(__name__, SmallGPTProvider, train_iters=1200, global_batch_size=16,
                        micro_batch_size=16, seq_length=64, finetune_lr=3e-3, lr_warmup_iters=50,
                        eval_interval=600, eval_iters=4, save_interval=600,
                        precision_config=None, outputs_without_dir=False,
                        peft_fields=dict(dim=16, alpha=32,
                                         target_modules=["linear_qkv", "linear_proj",
                                                         "linear_fc1", "linear_fc2"]))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Small GPT pretraining on the embedded corpus: 2500 CPU steps of 16 x 128 tokens."""
    cfg = build_pretrain(PRETRAIN.bind(arguments))
    return apply_overrides(cfg, SETTINGS | {"optimizer.weight_decay": 0.01})


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Small GPT LoRA fine-tuning on the embedded instruction set: 1200 CPU steps of 16 prompts."""
    return apply_overrides(build_finetune(FINETUNE.bind(arguments)), SETTINGS)
