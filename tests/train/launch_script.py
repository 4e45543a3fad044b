"""A user's training script, as torchrun, srun or NeMo-Run's ``run.Script`` start it:

    python launch_script.py OUT_DIR [KEY=VALUE ...]     (Hydra-style overrides, as plugins add)

Trains ``tiny.gpt_tiny`` (mock data, no writes unless overrides ask) and leaves in OUT_DIR one
``rank<R>.json`` per rank: how the launch was read (launcher, rank, world size, master address)
and the loop's history, so tests compare exact losses between launchers.
"""

from __future__ import annotations

import json
import os
import sys

BASE = ["train.train_iters=4", "train.eval_interval=null", "train.eval_iters=1",
        "logger.log_interval=1"]


def config(overrides: list[str]):
    from mbridge_train.recipes.tiny.gpt_tiny import pretrain_config

    return pretrain_config().apply_overrides([*BASE, *overrides])


def train(overrides: list[str]) -> tuple[dict, list[dict]]:
    """(the launch as detected before the process group starts, the run's history)."""
    from mbridge_config.launch import detect

    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    launch = detect()
    run = pretrain(config(overrides), forward_step)
    return ({"launcher": launch.launcher, "rank": launch.rank, "world_size": launch.world_size,
             "master_addr": launch.master_addr}, run.history)


def train_losses(history: list[dict]) -> list[float]:
    return [h["lm loss"] for h in history if "split" not in h and "lm loss" in h]


def main() -> None:
    out_dir, overrides = sys.argv[1], sys.argv[2:]
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    from mbridge_train.distributed import destroy_process_group

    try:
        launch, history = train(overrides)
    finally:
        destroy_process_group()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"rank{launch['rank']}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"launch": launch, "history": history, "argv": overrides,
                   "env": {k: v for k, v in os.environ.items() if k.startswith("MBRIDGE_TEST")}},
                  f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
