"""A 2-layer Llama-style GPT that trains on a laptop CPU in seconds.

Same builder and code path as the published-model recipes (megatron-core model, DDP, distributed
optimizer, schedule), only small: for tests, the README and checking a set-up before queueing a
real run. Data: megatron-core's mock sequences by default, or the embedded English corpus::

    mbridge data corpus corpus/         # corpus/corpus_text_document.{bin,idx} + corpus/tokenizer
    pretrain_config(data_paths=["corpus/corpus_text_document"], tokenizer_model="corpus/tokenizer")

and for fine-tuning the embedded instruction set (``mbridge data instructions sft/``, then
``finetune_config(dataset_root="sft/")``). The byte-level NullTokenizer needs no files. Nothing is
written unless ``dir`` is given.
"""

from dataclasses import dataclass, field

from mbridge_models.presets import LlamaModelProvider

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe


@dataclass
class TinyGPTProvider(LlamaModelProvider):
    """RMSNorm, SwiGLU, RoPE, grouped-query attention; 2 x 64 wide, ~70k parameters besides the
    embedding. The vocabulary comes from the tokenizer (257 byte-level ids by default)."""

    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_attention_heads: int = 4
    num_query_groups: int = 2
    seq_length: int = field(default=64, kw_only=True)
    vocab_size: int | None = field(default=None, kw_only=True)
    init_method_std: float = 0.05
    use_cpu_initialization: bool = True
    bias_activation_fusion: bool = False  # the fused SwiGLU is torch.compile'd: slow to start


# What a CPU run wants that a GPU cluster does not: no dataloader workers or pinned memory,
# no communication overlap, every step logged, garbage collection left to Python.
CPU_SETTINGS = {"dataset.num_workers": 0, "dataset.pin_memory": False,
                "ddp.overlap_grad_reduce": False, "ddp.overlap_param_gather": False,
                "ddp.average_in_collective": False, "ddp.check_for_nan_in_grad": False,
                "train.manual_gc": False, "logger.log_interval": 1}

PRETRAIN = PretrainSpec(__name__, TinyGPTProvider, train_iters=30, global_batch_size=8,
                        micro_batch_size=4, seq_length=64, lr=3e-3, min_lr=3e-4,
                        lr_warmup_iters=3, eval_interval=10, eval_iters=2, save_interval=10,
                        precision_config=None, outputs_without_dir=False)
FINETUNE = FinetuneSpec(__name__, TinyGPTProvider, train_iters=30, global_batch_size=8,
                        micro_batch_size=4, seq_length=64, finetune_lr=3e-3, lr_warmup_iters=3,
                        eval_interval=10, eval_iters=2, save_interval=10, precision_config=None,
                        peft_fields=dict(dim=8, alpha=16), outputs_without_dir=False)


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Tiny GPT pretraining on CPU in seconds: 30 steps of mock data (or the embedded corpus)."""
    return apply_overrides(build_pretrain(PRETRAIN.bind(arguments)), CPU_SETTINGS)


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Tiny GPT LoRA fine-tuning on CPU in seconds, on the embedded instruction set."""
    return apply_overrides(build_finetune(FINETUNE.bind(arguments)), CPU_SETTINGS)
