"""Checkpoint cost on the Llama 3.2 1B recipe (issue 14): sync and async save, and load.

    python3 benchmarks/checkpoint.py --out DIR [--tiny]              # the driver: every phase
    python3 benchmarks/checkpoint.py --phase sync|async --out DIR    # one training run
        [--iters N --save-interval K --phases sync,async --constant-structure --profile]

Each phase is its own process (``mbridge.recipes.llama.llama32_1b``, mock data, bf16, the
distributed optimizer, seq 4096, micro-batch 2; ``--tiny``: ``tiny.gpt_tiny`` on the CPU). A
phase trains ``--iters`` steps (10) and saves every ``--save-interval`` (5) steps (model,
optimizer, RNG: a resumable checkpoint) with ``checkpoint.async_save`` off or on, then a fresh
setup loads the last one. An async save that starts before the previous one's write finished
waits for it: space the saves wider than a write to see the steady state.

Reported per phase: the median normal step; the step that starts a save (its training step
plus the blocking part of the save call: for a sync save the whole write, for an async one the
staging to host memory) and its ratio to the normal step (target <= 1.10 for async); the step
after it; for async saves the time until the background write was finalized; checkpoint size;
load time. Floors measured in the same run: disk write bandwidth (a 1 GiB file with fsync) and
pinned device-to-host bandwidth, as size / bandwidth. Writes ``checkpoint-<device>.json`` and
``.md`` under --out (temp name, then renamed); checkpoints are deleted after each phase.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit, device_name, write_json, write_text  # noqa: E402



def build_config(args, root: str, async_save: bool):
    from mbridge.training.config import MockGPTDatasetConfig, TokenizerConfig

    from mbridge import recipes

    seq = 64 if args.tiny else args.seq
    common = dict(micro_batch_size=args.micro_batch, global_batch_size=args.micro_batch,
                  train_iters=args.iters, lr_warmup_iters=1, lr_decay_iters=args.iters,
                  seq_length=seq,
                  dir=root)
    if args.tiny:
        cfg = recipes.tiny.gpt_tiny.pretrain_config(**common)
    else:
        cfg = recipes.llama.llama32_1b.pretrain_config(precision_config="bf16_mixed", **common)
        cfg.ddp.use_distributed_optimizer = cfg.optimizer.use_distributed_optimizer = True
    cfg.dataset = MockGPTDatasetConfig(sequence_length=seq, num_workers=0, split="1,0,0",
                                       random_seed=1234)
    cfg.tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer",
                                    vocab_size=cfg.model.vocab_size or 512)
    cfg.train.eval_interval, cfg.train.eval_iters = None, 0
    cfg.logger.log_interval, cfg.logger.tensorboard_dir = 1, None
    ckpt = cfg.checkpoint
    ckpt.save = ckpt.load = os.path.join(root, "checkpoints")
    ckpt.save_interval, ckpt.most_recent_k, ckpt.async_save = args.save_interval, 1, async_save
    ckpt.ckpt_assume_constant_structure = args.constant_structure
    return cfg


def run_phase(args) -> None:
    """Train with a save every --save-interval steps, timing each save call and when each save
    finished; then a fresh setup that loads the last checkpoint, timed."""
    import torch

    from mbridge.training.gpt_step import forward_step
    from mbridge_models import runtime
    from mbridge_train import async_saves, checkpointing, checksums, training

    runtime.activate()
    root = str(Path(args.out) / "runs" / args.phase)
    shutil.rmtree(root, ignore_errors=True)
    cfg = build_config(args, root, async_save=args.phase == "async")
    save_calls, finished_at, handed_over = {}, {}, {}
    plain_save, plain_finalize = training.save, async_saves.finalize_finished
    plain_schedule = async_saves.schedule

    def timed_schedule(request, iteration, *a, **k):
        began = time.perf_counter()
        plain_schedule(request, iteration, *a, **k)
        handed_over[iteration] = time.perf_counter() - began

    profiles = []

    def timed_save(run):
        profiler = cProfile.Profile() if args.profile else None
        sync()
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        plain_save(run)
        sync()
        save_calls[run.state.train_state.step] = (began, time.perf_counter())
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
            profiles.append(f"## save call at step {run.state.train_state.step}\n{text.getvalue()}")

    def timed_finalize(blocking=False):
        done = plain_finalize(blocking)
        for iteration in done:
            finished_at[iteration] = time.perf_counter()
        return done

    training.save, async_saves.finalize_finished = timed_save, timed_finalize
    async_saves.schedule = timed_schedule
    run = training.setup(cfg)
    training.train(run, forward_step)
    steps = {h["step"]: h["step_time_s"] for h in run.history if "split" not in h}
    directory = checkpointing.find_checkpoint(cfg.checkpoint.save)
    size = sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
    crc = checksums.measure(directory)  # what hashing it costs one process
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    training.teardown()

    cfg = build_config(args, root, async_save=False)  # setup loads it; nothing is trained
    plain_load = checkpointing.load_checkpoint
    load_times = []

    def timed_load(*a, **k):
        sync()
        began = time.perf_counter()
        out = plain_load(*a, **k)
        sync()
        load_times.append(time.perf_counter() - began)
        return out

    checkpointing.load_checkpoint = timed_load
    training.setup(cfg)
    training.teardown()

    saved_at = sorted(save_calls)
    normal = [t for s, t in steps.items() if s not in saved_at and s - 1 not in saved_at and s > 2]
    rows = []
    for at in saved_at:
        began, returned = save_calls[at]
        starting = steps[at] + (returned - began)
        rows.append({"iteration": at, "save_call_s": returned - began,
                     "handover_s": handed_over.get(at),
                     "starting_step_s": starting,
                     "starting_vs_normal": starting / statistics.median(normal),
                     "next_step_s": steps.get(at + 1),
                     "write_finished_after_s": (finished_at[at] - began) if at in finished_at
                     else returned - began})
    result = {"phase": args.phase, "normal_step_s_median": statistics.median(normal),
              "normal_step_s_min": min(normal), "normal_step_s_max": max(normal),
              "saves": rows, "checkpoint_bytes": size, "load_s": load_times[0],
              "crc32_gbps_one_process": crc.bytes / crc.seconds / 1e9 if crc.seconds else None,
              "peak_memory_gib": peak, "steps": steps}
    shutil.rmtree(root, ignore_errors=True)
    write_json(Path(args.out) / "phases" / f"{args.phase}.json", result)
    if profiles:
        write_text(Path(args.out) / "phases" / f"{args.phase}-profile.txt", "\n".join(profiles))
    print(f"[checkpoint] {args.phase}: {json.dumps({k: v for k, v in result.items() if k != 'steps'})}",
          flush=True)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------ floors


def disk_write_gbps(folder: Path, gib: int = 1) -> float:
    """Sequential write with fsync of ``gib`` GiB in 64 MiB blocks."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disk_probe.bin"
    block = os.urandom(64 << 20)
    began = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(gib * 16):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - began
    path.unlink()
    return gib * 2**30 / seconds / 1e9


def d2h_gbps() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty(1 << 30, dtype=torch.uint8, pin_memory=True)
    dst.copy_(src)
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(5):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    return 5 * 2**30 / (time.perf_counter() - began) / 1e9


# ------------------------------------------------------------------ the driver


def drive(args) -> dict:
    disk = disk_write_gbps(Path(args.out))
    phases = {}
    for phase in args.phases.split(","):
        command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--out",
                   args.out, "--seq", str(args.seq), "--micro-batch", str(args.micro_batch),
                   "--iters", str(args.iters), "--save-interval", str(args.save_interval)]
        command += ["--constant-structure"] if args.constant_structure else []
        command += ["--profile"] if args.profile else []
        command += ["--tiny"] if args.tiny else []
        print(f"[checkpoint] {' '.join(command)}", flush=True)
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531", "RANK": "0",
               "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
        log = Path(args.out) / "logs" / f"{phase}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        path = Path(args.out) / "phases" / f"{phase}.json"
        phases[phase] = json.loads(path.read_text()) if code == 0 and path.exists() else {
            "error": f"exit {code}: " + " | ".join(log.read_text().splitlines()[-3:])}
    import torch

    result = {"device": device_name(), "commit": commit(), "command": " ".join(sys.argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model": "tiny.gpt_tiny" if args.tiny else "llama.llama32_1b",
              "seq": 64 if args.tiny else args.seq, "micro_batch": args.micro_batch,
              "torch": torch.__version__, "disk_write_gbps": disk,
              "d2h_pinned_gbps": d2h_gbps(), "phases": phases}
    write(Path(args.out), result)
    return result


def markdown(result: dict) -> str:
    disk, d2h = result["disk_write_gbps"], result["d2h_pinned_gbps"]
    lines = [f"# Checkpoint save and load, {result['model']} ({result['device']})", "",
             f"commit {result['commit']}; `{result['command']}`; {result['date']}; seq "
             f"{result['seq']}, micro-batch {result['micro_batch']}, torch {result['torch']}",
             f"measured floors: disk write {disk:.2f} GB/s (fsync'd), pinned D2H "
             + (f"{d2h:.1f} GB/s" if d2h else "n/a"), "",
             "| save | size GB | normal step s | save-starting step s (ratio) | save call s "
             "(hand-over) | next step s | written after s | floor write s | floor staging s | "
             "load s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for phase, row in result["phases"].items():
        if "error" in row:
            lines.append(f"| {phase} | {row['error']} |||||||||")
            continue
        gb = row["checkpoint_bytes"] / 1e9
        for save in row["saves"]:
            lines.append(
                f"| {phase} @{save['iteration']} | {gb:.2f} | {row['normal_step_s_median']:.3f} "
                f"({row['normal_step_s_min']:.3f}–{row['normal_step_s_max']:.3f}) | "
                f"{save['starting_step_s']:.3f} ({save['starting_vs_normal']:.2f}x) | "
                f"{save['save_call_s']:.3f} ({save['handover_s'] or 0:.3f}) | "
                f"{save['next_step_s'] or 0:.3f} | "
                f"{save['write_finished_after_s']:.2f} | {gb / disk:.2f} | "
                + (f"{gb / d2h:.2f}" if d2h else "n/a") + f" | {row['load_s']:.2f} |")
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    slug = "".join(c if c.isalnum() else "-" for c in result["device"].lower()).strip("-")
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", markdown(result))):
        write_text(out / f"checkpoint-{slug}{suffix}", text)
    print(markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--phase", choices=("sync", "async"))
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--save-interval", type=int, default=5)
    parser.add_argument("--phases", default="sync,async")
    parser.add_argument("--constant-structure", action="store_true",
                        help="checkpoint.ckpt_assume_constant_structure: plan the save once")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each save call: phases/<phase>-profile.txt")
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
