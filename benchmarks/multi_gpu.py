"""Multi-GPU runs: data, tensor, pipeline and expert parallel through ``mbridge`` (issue 19).

One case per torchrun launch; the driver launches them all (1-GPU baselines included)::

    torchrun --nproc_per_node=N benchmarks/multi_gpu.py --case CASE --out DIR
    python3 benchmarks/multi_gpu.py --all --out DIR [--cases a,b] [--tiny]
    python3 benchmarks/multi_gpu.py --all --single-gpu --out DIR   # only the 1-GPU rows

Every case builds a recipe config (``mbridge.recipes.llama.llama32_1b`` / ``llama32_3b``,
``qwen.qwen3_30b_a3b`` scaled down for the MoE), mock data, the NullTokenizer, and trains
through ``mbridge_train.training.setup`` + ``train`` (what ``mbridge.training.pretrain`` runs),
so the step is the library's own: distributed optimizer, overlapped grad reduce / param gather,
the stock GPT forward step. Step time is the loop's wall clock per optimizer step, warm-up
steps dropped; tokens/s per GPU = global tokens per step / step time / world size; TFLOP/s from
``mbridge_models.counting.flops_per_token``; MFU against 989 TFLOP/s (H200 dense bf16).

Measured pipeline bubble: after the timed steps two more steps run under torch.profiler. On
each stage the compute time is the summed device time of its kernels that are not NCCL
collectives or send/recv (on a CPU: the self CPU time of the non-communication ops); the
bubble is ``1 - compute / wall time of the profiled steps``, averaged over stages. The
optimizer step is compute too, so this slightly understates the schedule's own bubble; the
analytic value is (p-1)/(m+p-1) for 1F1B and (p-1)/(v*m+p-1) interleaved with v chunks.

All-to-all share (MoE): the device time of the token dispatch/combine collectives (kernels and
ops whose name holds ``all_to_all``/``alltoall``/``SendRecv``: with EP only, megatron's
alltoall dispatcher is the only point-to-point traffic) over the profiled steps' wall time.

Resume across layouts: ``resume_save`` trains at TP=2 and saves; ``resume_tp2``,
``resume_dp2`` and ``resume_pp2`` load that checkpoint and train one step, whose loss is
computed before the update on the same batch: all four losses must agree.
The optimizer is saved fully reshardable and loaded too (``--resume-optim none``: weights,
scheduler and progress only; on CPU ranks with torch's Adam, megatron's fully reshardable load
fails with ``KeyError: 'step'``). Packed fine-tuning: ``packed_pp1`` and ``packed_pp2`` fine-tune (full SFT) on the embedded
instruction set, packed, from the same seed: the per-step losses must agree. KNOWN GAP: from
random init they cannot yet (megatron seeds each pipeline stage differently, so PP=2 starts
from other weights; on CPU ranks the first losses already differ by ~0.05); both should start
from one checkpoint (``checkpoint.pretrained_checkpoint``) before this row means anything.

``--tiny`` swaps every model for a 4-layer 64-wide GPT (``tiny.gpt_tiny``) so that the cases run
on CPU ranks (gloo, ``mbridge_models.runtime``). Each case's last rank writes
``DIR/cases/CASE.json`` (its commit and command included); the driver logs each launch to
``DIR/logs/CASE.log`` and writes ``DIR/multi_gpu-<device>.json`` and ``.md`` from every case row
in DIR, those of earlier calls included, so cases may be run a few per call.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit, device_name, write_json  # noqa: E402

H200_BF16_TFLOPS = 989.0
COMM_MARKERS = ("nccl", "all_reduce", "allreduce", "all_gather", "allgather", "reduce_scatter",
                "reducescatter", "all_to_all", "alltoall", "sendrecv", "c10d::", "gloo", "recv",
                "send", "broadcast", "barrier", "wait")
A2A_MARKERS = ("all_to_all", "alltoall", "sendrecv")


@dataclass(frozen=True)
class Case:
    nproc: int
    model: str  # llama32_1b | llama32_3b | moe
    layout: dict = field(default_factory=dict)  # recipe parallelism arguments
    micro_batches: int = 4  # per data-parallel rank and step
    profile: bool = False
    kind: str = "pretrain"  # pretrain | resume_save | resume_load | packed


LAYOUT_TP2 = dict(tensor_model_parallel_size=2, sequence_parallel=True)
CASES = {
    "baseline_1gpu": Case(1, "llama32_1b"),
    "dp2": Case(2, "llama32_1b"),
    "baseline_3b_1gpu": Case(1, "llama32_3b"),
    "dp2_3b": Case(2, "llama32_3b"),
    "tp2_sp_3b": Case(2, "llama32_3b", LAYOUT_TP2),
    "pp2_3b": Case(2, "llama32_3b", dict(pipeline_model_parallel_size=2), 8, profile=True),
    "pp2_vpp2_3b": Case(2, "llama32_3b", dict(pipeline_model_parallel_size=2,
                                              virtual_pipeline_model_parallel_size=2), 8,
                        profile=True),
    "moe_ep1_1gpu": Case(1, "moe", profile=True),
    "moe_ep2": Case(2, "moe", dict(expert_model_parallel_size=2), profile=True),
    "resume_save": Case(2, "llama32_1b", LAYOUT_TP2, kind="resume_save"),
    "resume_tp2": Case(2, "llama32_1b", LAYOUT_TP2, kind="resume_load"),
    "resume_dp2": Case(2, "llama32_1b", kind="resume_load"),
    "resume_pp2": Case(2, "llama32_1b", dict(pipeline_model_parallel_size=2), kind="resume_load"),
    "packed_pp1": Case(1, "llama32_1b", kind="packed"),
    "packed_pp2": Case(2, "llama32_1b", dict(pipeline_model_parallel_size=2), kind="packed"),
}
SINGLE_GPU = [name for name, case in CASES.items() if case.nproc == 1]
MOE_SHAPE = dict(num_layers=12, num_moe_experts=32, moe_router_topk=8, moe_ffn_hidden_size=768)
"""Qwen3-30B-A3B's width (hidden 2048, expert FFN 768, top-8), 12 layers and 32 experts: fits
one H200 with the distributed optimizer, so EP=1 is a single-GPU row."""
TINY_MOE = dict(num_moe_experts=8, moe_router_topk=2, moe_ffn_hidden_size=64,
                moe_aux_loss_coeff=0.0, moe_token_dispatcher_type="alltoall",
                moe_router_load_balancing_type="none", moe_grouped_gemm=False)


# ------------------------------------------------------------------ one case, on every rank

def build_config(name: str, case: Case, args):
    """The recipe config of ``case``: mock data, no eval, checkpoints only for resume cases."""
    from mbridge.training.config import MockGPTDatasetConfig, TokenizerConfig

    from mbridge import recipes

    world = case.nproc
    model_parallel = 1
    for key in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
        model_parallel *= case.layout.get(key, 1)
    dp = world // model_parallel
    micro_batch = 1 if args.tiny or case.kind == "packed" else args.micro_batch
    # Resume cases share one global batch whatever the layout: the same samples follow the save.
    gbs = micro_batch * case.micro_batches * (2 if case.kind.startswith("resume") else dp)
    iters = args.warmup + args.steps
    seq = 64 if args.tiny else args.seq
    common = dict(**case.layout, micro_batch_size=micro_batch, global_batch_size=gbs,
                  train_iters=iters, lr_warmup_iters=1, lr_decay_iters=iters, seq_length=seq,
                  dir=str(Path(args.out) / "runs" / name))
    if not args.tiny:
        common["precision_config"] = "bf16_mixed"
    if case.kind == "packed":
        return _packed_config(case, args, common, seq)
    if args.tiny:
        cfg = recipes.tiny.gpt_tiny.pretrain_config(**common)
        cfg.model.num_layers = 4
        if case.model == "moe":
            for key, value in TINY_MOE.items():
                setattr(cfg.model, key, value)
    elif case.model == "moe":
        # The recipe's own layout is TP4 PP2 EP4 with full recompute: none of it here.
        single = dict(tensor_model_parallel_size=1, pipeline_model_parallel_size=1,
                      pipeline_dtype=None, sequence_parallel=False,
                      expert_model_parallel_size=1, expert_tensor_parallel_size=1)
        cfg = recipes.qwen.qwen3_30b_a3b.pretrain_config(**{**single, **common})
        for key, value in MOE_SHAPE.items():
            setattr(cfg.model, key, value)
        cfg.model.recompute_granularity = cfg.model.recompute_method = None
        cfg.model.recompute_num_layers = None
    else:
        module = getattr(recipes.llama, case.model)
        cfg = module.pretrain_config(**common)
    if not args.tiny:
        cfg.ddp.use_distributed_optimizer = cfg.optimizer.use_distributed_optimizer = True
        cfg.ddp.overlap_grad_reduce = True
        cfg.ddp.overlap_param_gather = True
    cfg.dataset = MockGPTDatasetConfig(sequence_length=seq, num_workers=0 if args.tiny else 2,
                                       split="1,0,0", random_seed=1234)
    cfg.tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer",
                                    vocab_size=cfg.model.vocab_size or 512)
    _quiet(cfg)
    ckpt = str(Path(args.out) / "runs" / "resume_ckpt")
    cfg.checkpoint.save = ckpt if case.kind == "resume_save" else None
    cfg.checkpoint.load = ckpt if case.kind == "resume_load" else None
    cfg.checkpoint.save_interval = None
    # A distributed optimizer's default dp_reshardable state loads only at the saved layout.
    cfg.checkpoint.dist_ckpt_optim_fully_reshardable = True
    if case.kind == "resume_load":
        cfg.train.train_iters = RESUME_SAVED_AT + 1
        # The loss before the first update depends on the weights only; "none" loads those.
        cfg.checkpoint.load_optim = args.resume_optim == "full"
    if case.kind == "resume_save":
        cfg.train.train_iters = RESUME_SAVED_AT
    return cfg


RESUME_SAVED_AT = 3
SHORT = {"tensor_model_parallel_size": "TP", "sequence_parallel": "SP",
         "pipeline_model_parallel_size": "PP", "virtual_pipeline_model_parallel_size": "VPP",
         "expert_model_parallel_size": "EP"}


def _quiet(cfg) -> None:
    cfg.train.eval_interval, cfg.train.eval_iters = None, 0
    cfg.logger.log_interval = 1
    cfg.logger.tensorboard_dir = None


def _packed_config(case: Case, args, common: dict, seq: int):
    """Full SFT on the embedded instruction set, packed to ``seq`` tokens (byte tokenizer)."""
    from mbridge.training.config import TokenizerConfig
    from mbridge_data.corpus.instructions import write_instructions

    from mbridge import recipes

    root = Path(args.out) / "runs" / "instructions"
    if not (root / "validation.jsonl").exists():  # each rank writes the same bytes atomically
        write_instructions(root)
    common = {**common, "seq_length": seq, "peft": None, "packed_sequence": True,
              "dataset_root": str(root)}
    module = recipes.tiny.gpt_tiny if args.tiny else recipes.llama.llama32_1b
    cfg = module.finetune_config(**common)
    if args.tiny:
        cfg.model.num_layers = 4
    cfg.tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer",
                                    vocab_size=cfg.model.vocab_size or 257)
    cfg.checkpoint.pretrained_checkpoint = None
    cfg.checkpoint.save = cfg.checkpoint.load = cfg.checkpoint.save_interval = None
    _quiet(cfg)
    return cfg


def run_case(name: str, args) -> None:
    import torch

    from mbridge.training.gpt_step import forward_step
    from mbridge_models import runtime
    from mbridge_train import training

    case = CASES[name]
    runtime.activate()
    if case.kind == "resume_load" or case.kind == "packed":
        from mbridge_config import container

        if container.rule_peft_needs_pretrained in container.RULES:
            container.RULES.remove(container.rule_peft_needs_pretrained)
    cfg = build_config(name, case, args)
    run = training.setup(cfg, training_mode="finetune" if case.kind == "packed" else "pretrain")
    try:
        training.train(run, forward_step)
        timed = [h for h in run.history if "split" not in h]
        profile = _profiled_steps(run, forward_step) if case.profile else None
    finally:
        training.teardown()
    world = torch.distributed.get_world_size()
    profiles = [None] * world
    torch.distributed.all_gather_object(profiles, profile)
    losses = [h.get("lm loss") for h in timed]
    if not run.logging_rank:
        return
    from mbridge_models.counting import flops_per_token

    times = [h["step_time_s"] for h in timed][0 if case.kind.startswith("resume") else args.warmup:]
    tokens = cfg.train.global_batch_size * cfg.model.seq_length
    stats = _stats(times)
    row = {"case": name, "commit": commit(), "command": " ".join(
               [f"torchrun --nproc_per_node={world}", *sys.argv]), "nproc": world, "model": "tiny" if args.tiny else case.model,
           "layout": case.layout, "micro_batch": cfg.train.micro_batch_size,
           "global_batch": cfg.train.global_batch_size, "seq": cfg.model.seq_length,
           "micro_batches_per_rank": case.micro_batches, **stats, "losses": losses}
    median = stats["step_ms_median"] / 1e3
    row["tokens_per_s_per_gpu"] = tokens / median / world
    row["tflops_per_gpu"] = flops_per_token(cfg.model) * tokens / median / world / 1e12
    row["mfu"] = row["tflops_per_gpu"] / H200_BF16_TFLOPS
    if torch.cuda.is_available():
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if case.profile:
        row.update(_summarise_profiles(case, profiles))
    write_json(Path(args.out) / "cases" / f"{name}.json", row)
    print(f"[multi_gpu] {name}: {json.dumps({k: v for k, v in row.items() if k != 'losses'})}",
          flush=True)


def _stats(times: list[float]) -> dict:
    median = statistics.median(times)
    return {"step_ms_median": median * 1e3, "step_ms_min": min(times) * 1e3,
            "step_ms_max": max(times) * 1e3, "steps": len(times)}


def _profiled_steps(run, forward_step, steps: int = 2) -> dict:
    """Two more steps under torch.profiler: wall time, compute and all-to-all time here."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mbridge_train import training

    on_gpu = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    run.state.cfg.train.train_iters += steps
    if on_gpu:
        torch.cuda.synchronize()
    torch.distributed.barrier()
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        training.train(run, forward_step)
        if on_gpu:
            torch.cuda.synchronize()
        wall = time.perf_counter() - began
    compute = a2a = 0.0
    for event in prof.key_averages():
        label = event.key.lower()
        if on_gpu:
            spent = getattr(event, "self_device_time_total", None)
            if spent is None:
                spent = event.self_cuda_time_total
            if not _is_kernel(event):
                continue
        else:
            spent = event.self_cpu_time_total
        spent /= 1e6
        if any(m in label for m in A2A_MARKERS):
            a2a += spent
        if not any(m in label for m in COMM_MARKERS):
            compute += spent
    return {"wall_s": wall, "compute_s": compute, "all_to_all_s": a2a, "steps": steps}


def _is_kernel(event) -> bool:
    from torch.autograd import DeviceType

    return getattr(event, "device_type", None) == DeviceType.CUDA


def _summarise_profiles(case: Case, profiles: list[dict]) -> dict:
    wall = max(p["wall_s"] for p in profiles)
    out = {"profile": profiles}
    pp = case.layout.get("pipeline_model_parallel_size", 1)
    if pp > 1:
        vpp = case.layout.get("virtual_pipeline_model_parallel_size") or 1
        m = case.micro_batches
        busy = statistics.mean(min(1.0, p["compute_s"] / p["wall_s"]) for p in profiles)
        out["bubble_measured"] = 1.0 - busy
        out["bubble_analytic"] = (pp - 1) / (vpp * m + pp - 1)
        out["bubble_analytic_1f1b"] = (pp - 1) / (m + pp - 1)
    if case.model == "moe":
        out["all_to_all_share"] = max(p["all_to_all_s"] for p in profiles) / wall
    return out


# ------------------------------------------------------------------ the driver

def launch(name: str, args) -> dict:
    """``torchrun --nproc_per_node=N`` this script for one case; its row, or the error."""
    case = CASES[name]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={case.nproc}", str(Path(__file__).resolve()), "--case", name,
               "--out", args.out, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--micro-batch", str(args.micro_batch), "--seq", str(args.seq),
               "--resume-optim", args.resume_optim]
    command += ["--tiny"] if args.tiny else []
    print(f"[multi_gpu] {' '.join(command)}", flush=True)
    began = time.time()
    log = Path(args.out) / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "cases" / f"{name}.json"
    path.unlink(missing_ok=True)  # a row left by an earlier run must not pass for this one
    with log.open("w") as sink:
        try:
            rc = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT,
                                timeout=args.case_timeout).returncode
        except subprocess.TimeoutExpired:
            rc = f"timeout after {args.case_timeout} s"
    if rc != 0 or not path.exists():
        tail = log.read_text(errors="replace")[-3000:]
        print(tail, flush=True)
        return {"case": name, "error": f"rc {rc} (log {log}): {tail[-300:]}"}
    row = json.loads(path.read_text())
    row["wall_s"] = time.time() - began
    return row


def targets(rows: dict) -> list[dict]:
    """Each target of the issue: value, threshold and PASS / MISS (or n/a when not run)."""
    def get(case, key):
        return rows.get(case, {}).get(key)

    out = []

    def add(name, value, ok, threshold):
        out.append({"target": name, "value": value, "threshold": threshold,
                    "result": "n/a" if value is None else ("PASS" if ok(value) else "MISS")})

    base, dp2 = get("baseline_1gpu", "tokens_per_s_per_gpu"), get("dp2", "tokens_per_s_per_gpu")
    add("DP=2 scaling efficiency (1B)", dp2 / base if base and dp2 else None,
        lambda v: v >= 0.95, ">= 0.95")
    tp, dp = get("tp2_sp_3b", "tokens_per_s_per_gpu"), get("dp2_3b", "tokens_per_s_per_gpu")
    add("TP=2+SP per GPU vs DP=2 (3B)", tp / dp if tp and dp else None,
        lambda v: v >= 0.85, ">= 0.85")
    for case in ("pp2_3b", "pp2_vpp2_3b"):
        measured, analytic = get(case, "bubble_measured"), get(case, "bubble_analytic")
        add(f"{case} bubble - analytic", None if measured is None else measured - analytic,
            lambda v: abs(v) <= 0.02, "abs <= 0.02")
    add("EP=2 all-to-all share of step", get("moe_ep2", "all_to_all_share"),
        lambda v: v <= 0.15, "<= 0.15")
    saved = [get(c, "losses") for c in ("resume_tp2", "resume_dp2", "resume_pp2")]
    if all(saved):
        first = [loss[-1] for loss in saved]
        spread = max(first) - min(first)
        add("resume TP=2 -> TP=2/DP=2/PP=2: loss spread", spread,
            lambda v: v <= 1e-2 * abs(first[0]), "<= 1% of the loss")
    else:
        add("resume TP=2 -> TP=2/DP=2/PP=2: loss spread", None, bool, "<= 1% of the loss")
    p1, p2 = get("packed_pp1", "losses"), get("packed_pp2", "losses")
    diff = max(abs(a - b) for a, b in zip(p1, p2)) if p1 and p2 and len(p1) == len(p2) else None
    add("packed fine-tune PP=2 vs PP=1: max loss diff", diff, lambda v: v <= 2e-2, "<= 0.02")
    return out


def markdown(result: dict) -> str:
    lines = [f"# Multi-GPU: DP / TP+SP / PP / EP through mbridge ({result['device']})", "",
             f"commit {result['commit']}; command: `{result['command']}`; {result['date']}; "
             f"MFU vs {H200_BF16_TFLOPS:.0f} TFLOP/s", "",
             "| case | GPUs | layout | step ms (median) | min-max | tokens/s/GPU | TFLOP/s/GPU "
             "| MFU | extra |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        if "error" in row:
            lines.append(f"| {name} | {CASES[name].nproc} | | error: "
                         f"{' '.join(row['error'][:160].split()).replace('|', '/')} | | | | | |")
            continue
        extra = []
        for key in ("bubble_measured", "bubble_analytic", "all_to_all_share"):
            if key in row:
                extra.append(f"{key} {row[key]:.3f}")
        if row.get("losses") and (name.startswith("resume") or name.startswith("packed")):
            extra.append(f"last loss {row['losses'][-1]:.5f}")
        layout = ", ".join(f"{SHORT[k]}={v}" for k, v in row["layout"].items()) or "-"
        lines.append(f"| {name} | {row['nproc']} | {layout} | {row['step_ms_median']:.1f} | "
                     f"{row['step_ms_min']:.1f}-{row['step_ms_max']:.1f} | "
                     f"{row['tokens_per_s_per_gpu']:.0f} | {row['tflops_per_gpu']:.1f} | "
                     f"{row['mfu']:.1%} | {'; '.join(extra)} |")
    lines += ["", "| target | value | threshold | result |", "|---|---|---|---|"]
    for t in result["targets"]:
        value = "" if t["value"] is None else f"{t['value']:.4g}"
        lines.append(f"| {t['target']} | {value} | {t['threshold']} | {t['result']} |")
    return "\n".join(lines) + "\n"


def drive(args) -> dict:
    if args.cases:
        names = args.cases.split(",")
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise SystemExit(f"--cases: unknown case(s) {unknown}; known: {sorted(CASES)}")
    else:
        names = SINGLE_GPU if args.single_gpu else list(CASES)
    rows = {}
    for name in names:
        if CASES[name].kind == "resume_load" and "resume_save" not in rows and \
                not (Path(args.out) / "runs" / "resume_ckpt").exists():
            rows[name] = {"case": name, "error": "needs resume_save first"}
            continue
        rows[name] = launch(name, args)
    for name in CASES:  # rows of earlier calls (one case per device call): the table is whole
        earlier = Path(args.out) / "cases" / f"{name}.json"
        if name not in rows and earlier.exists():
            rows[name] = json.loads(earlier.read_text())
    rows = {name: rows[name] for name in CASES if name in rows}
    result = {"device": device_name() + (" (tiny)" if args.tiny else ""), "commit": commit(),
              "command": "python3 " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
              "tiny": args.tiny, "rows": rows, "targets": targets(rows)}
    out = Path(args.out)
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    write_json(out / f"multi_gpu-{slug}.json", result)
    text = markdown(result)
    tmp = out / f"multi_gpu-{slug}.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / f"multi_gpu-{slug}.md")
    print(text, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case (under torchrun)")
    parser.add_argument("--all", action="store_true", help="launch every case with torchrun")
    parser.add_argument("--cases", default="", help="with --all: a comma-separated subset")
    parser.add_argument("--single-gpu", action="store_true", help="with --all: 1-GPU cases")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "multi_gpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny GPT on CPU ranks (smoke)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--resume-optim", choices=("full", "none"), default="full",
                        help="resume cases: load the optimizer state too (full) or not")
    parser.add_argument("--case-timeout", type=int, default=1800)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args)
    elif args.all:
        drive(args)
    else:
        parser.error("give --case CASE (under torchrun) or --all")


if __name__ == "__main__":
    main()
