import json, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
from mbridge_train.recipes.tiny import gpt_small
from mbridge_train.quickstart import _data, _pretrain, _finetune_and_score
from mbridge_data.corpus.instructions import accuracy_by_task
import mbridge_train.checkpointing as C
W = Path(sys.argv[1])
corpus, sft = _data(W, print)
test = [json.loads(l) for l in (sft / "test.jsonl").read_text().splitlines()]
def pre(iters, name):
    cfg = gpt_small.pretrain_config(dir=str(W / "runs"), name=name, data_paths=[corpus.prefix],
        tokenizer_model=corpus.tokenizer_dir, train_iters=iters)
    cfg.dataset.split = "98,2,0"; cfg.logger.log_interval = 1000
    _pretrain(cfg); return cfg.checkpoint.save
def ft(base, name, lr, dim, iters, gbs, peft="lora"):
    t = time.time()
    cfg = gpt_small.finetune_config(dir=str(W / "runs"), name=name, dataset_root=str(sft),
        tokenizer_model=corpus.tokenizer_dir, pretrained_checkpoint=base, finetune_lr=lr,
        train_iters=iters, global_batch_size=gbs, micro_batch_size=gbs, peft=peft)
    if cfg.peft is not None:
        cfg.peft.dim, cfg.peft.alpha = dim, 2 * dim
    cfg.logger.log_interval = 1000
    _, before, after = _finetune_and_score(cfg, test, lambda *a: None)
    acc = accuracy_by_task(after, test)
    print("RESULT", name, f"lr={lr} dim={dim} iters={iters} gbs={gbs} peft={peft}", f"{time.time()-t:.0f}s",
          json.dumps({k: v for k, v in acc.items() if v}), flush=True)
b400 = pre(400, "pre400")
for args in [("v1", 3e-3, 16, 300, 64), ("v2", 3e-3, 16, 600, 64), ("v3", 1e-2, 16, 300, 64),
             ("v4", 3e-3, 64, 300, 64), ("v5", 3e-3, 16, 1200, 16), ("v6", 5e-3, 32, 600, 64),
             ("v8", 1e-2, 16, 600, 64), ("v9", 3e-3, 16, 300, 256)]:
    ft(b400, *args)
ft(b400, "full", 1e-3, 0, 300, 64, peft=None)
b1000 = pre(1000, "pre1000")
ft(b1000, "v1@1000", 3e-3, 16, 300, 64)
ft(b1000, "v3@1000", 1e-2, 16, 300, 64)
