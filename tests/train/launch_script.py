"""A user's training script, as torchrun, srun or NeMo-Run's ``run.Script`` start it:

    python launch_script.py OUT_DIR [KEY=VALUE ...]     (Hydra-style overrides, as plugins add)

Trains ``tiny.gpt_tiny`` (mock data, no writes unless overrides ask) and leaves in OUT_DIR one
``rank<R>.json`` per rank: how the launch was read (launcher, rank, world size, master address),
the loop's history (tests compare exact losses between launchers), the final config as YAML and
the launch-related environment.

Faults for the plugin tests, set by environment:
  MBRIDGE_TEST_READY_FILE    after step 2, write this process's pid there and wait (up to 2 min)
                             for the exit signal: the test sends SIGTERM as a scheduler would
  MBRIDGE_TEST_CRASH_MARKER  right after the first checkpoint save, if that file does not exist,
                             create it and die (exit 3): a crash the launcher must restart from
  MBRIDGE_TEST_HANG_MARKER   in step 3 on the last rank, if that file does not exist, create it
                             and sleep (10 min) inside the step's collective: a hang the watchdog
                             (ft.enable_ft_package) must end so that the launcher restarts
"""

from __future__ import annotations

import json
import os
import sys

ENV_RECORDED = ("CUDA_DEVICE_MAX_CONNECTIONS", "NVTE_FWD_LAYERNORM_SM_MARGIN",
                "NVTE_BWD_LAYERNORM_SM_MARGIN", "WANDB_MODE", "TORCHELASTIC_RESTART_COUNT",
                "PET_MAX_RESTARTS")
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
    _install_faults()
    run = pretrain(config(overrides), forward_step)
    info = {"launcher": launch.launcher, "rank": launch.rank, "world_size": launch.world_size,
            "master_addr": launch.master_addr}
    train.last_config_yaml = run.state.cfg.to_yaml()
    return info, run.history


def _install_faults() -> None:
    import time

    from mbridge_train import training

    ready, marker = os.environ.get("MBRIDGE_TEST_READY_FILE"), \
        os.environ.get("MBRIDGE_TEST_CRASH_MARKER")
    hang = os.environ.get("MBRIDGE_TEST_HANG_MARKER")
    if hang:
        hang_in_step(3, hang)
    if ready:
        real_step = training.train_step

        def step_then_wait(run, forward_step):
            result = real_step(run, forward_step)
            if run.state.train_state.step == 1:  # this call finishes step 2
                with open(ready + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.replace(ready + ".tmp", ready)
                handler = run.state.signal_handler
                for _ in range(1200):
                    if handler is None or getattr(handler, "_signal_received", False):
                        break
                    time.sleep(0.1)
            return result

        training.train_step = step_then_wait
    if marker:
        real_save = training.save

        def save_then_crash(run):
            real_save(run)
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(3)

        training.save = save_then_crash


def hang_in_step(step: int, marker: str | None = None, seconds: float = 600.0) -> None:
    """On the last rank, make the all-gather of ``step`` (the step checks' one) sleep first,
    unless ``marker`` already exists (then create it)."""
    import time

    import torch

    from mbridge_train import training

    real_step, real_gather = training.train_step, torch.distributed.all_gather
    armed = []

    def step_maybe_hanging(run, forward_step):
        last = torch.distributed.get_rank() == torch.distributed.get_world_size() - 1
        if last and run.state.train_state.step == step - 1 and not (
                marker and os.path.exists(marker)):
            if marker:
                open(marker, "w").close()
            armed.append(True)
        return real_step(run, forward_step)

    def sleepy_gather(*args, **kwargs):
        if armed:
            armed.clear()
            time.sleep(seconds)
        return real_gather(*args, **kwargs)

    training.train_step = step_maybe_hanging
    torch.distributed.all_gather = sleepy_gather


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
                   "config": getattr(train, "last_config_yaml", ""),
                   "env": {k: os.environ[k] for k in ENV_RECORDED if k in os.environ}}, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
