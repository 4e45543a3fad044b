"""Pretrain a small GPT on the embedded corpus, then LoRA-fine-tune it: user code, public API.

    uv run python examples/pretrain_then_lora.py [WORK_DIR]      # CPU: ~10 min, GPU: ~2 min
    uv run torchrun --nproc_per_node=2 examples/pretrain_then_lora.py   # the same on 2 ranks

Written as a Megatron Bridge user would (replace `mbridge` by `megatron.bridge` and the embedded
data by yours). `mbridge quickstart` does the same and also scores answers before and after.
Set EXAMPLE_ITERS=N (> 50, the warm-up) to shorten both runs.
"""

import os
import sys

from mbridge.recipes.tiny import gpt_small
from mbridge.training import finetune, pretrain
from mbridge.training.gpt_step import forward_step
from mbridge_data import build_corpus, load_corpus, write_instructions

work = sys.argv[1] if len(sys.argv) > 1 else "example_run"
iters = {"train_iters": int(os.environ["EXAMPLE_ITERS"])} if "EXAMPLE_ITERS" in os.environ else {}
rank0 = int(os.environ.get("RANK", 0)) == 0
if rank0 and not os.path.isfile(f"{work}/corpus/manifest.json"):
    build_corpus(f"{work}/corpus")
    write_instructions(f"{work}/sft")
if "WORLD_SIZE" in os.environ:  # torchrun: the others wait for rank 0's data
    import torch.distributed as dist

    dist.init_process_group("gloo")
    dist.barrier()
corpus = load_corpus(f"{work}/corpus")

cfg = gpt_small.pretrain_config(dir=f"{work}/runs", name="pretrain", data_paths=[corpus.prefix],
                                tokenizer_model=corpus.tokenizer_dir, **iters)
cfg.dataset.split = "98,2,0"  # the corpus is small: 2% for validation, no test split
pretrain(cfg, forward_step_func=forward_step)

cfg = gpt_small.finetune_config(dir=f"{work}/runs", name="lora", dataset_root=f"{work}/sft",
                                tokenizer_model=corpus.tokenizer_dir,
                                pretrained_checkpoint=f"{work}/runs/pretrain/checkpoints",
                                **iters)
finetune(cfg, forward_step_func=forward_step)
print(f"adapters: {work}/runs/lora/checkpoints; loss curves: loss_curve.png beside them")
