"""Peak memory and wall time of HF <-> Megatron conversion (CPU), against two baselines.

A Llama-3.2-shaped random model is made locally with transformers (bf16 safetensors in a temp
folder). Each measurement runs in a fresh process that reports its own peak RSS
(``resource.getrusage``) and the wall time of the work alone (imports excluded; the RSS of the
imports alone is measured too, as "imports only"). Candidates alternate run by run; we report
the median of ``--runs`` and the min/max. Targets (issue 12): import and export peak RSS <=
0.3 x model bytes + 1 GiB, wall <= 2 x a plain safetensors read + write of the same bytes.
Writes benchmarks/results/conversion-<tag>.json and .md.

    uv run python benchmarks/conversion.py --preset 1b --runs 3
    uv run python benchmarks/conversion.py --preset small --runs 3   # 2 shared cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit  # noqa: E402

# Llama-3.2-1B's shape (tied embeddings, GQA 32/8, llama3 RoPE scaling); "small" keeps the
# vocabulary and head layout and shrinks depth and width, for machines where 1B is too slow.
PRESETS = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8),
    "small": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=4),
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=8, num_key_value_heads=2, vocab_size=4096),
}
GIB = 2**30


def make_model(folder: Path, preset: str) -> int:
    """Save a random model as bf16 safetensors; returns its weight bytes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True,
                  rope_theta=500000.0, rms_norm_eps=1e-5, head_dim=None,
                  rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192})
    fields.update(PRESETS[preset])
    fields.pop("head_dim")
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**fields))
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(folder, max_shard_size="1GB")
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


# ---------------------------------------------------------------------- the measured steps


def step_imports(hf: Path, work: Path) -> None:
    import mbridge_train.auto_bridge  # noqa: F401
    import safetensors.torch  # noqa: F401
    import transformers  # noqa: F401


def step_plain(hf: Path, work: Path) -> None:
    """Every safetensors file read whole and written again (the floor any conversion pays)."""
    from safetensors.torch import load_file, save_file

    out = work / "plain"
    out.mkdir()
    for file in sorted(hf.glob("*.safetensors")):
        save_file(load_file(str(file)), str(out / file.name), metadata={"format": "pt"})


def step_hf_whole(hf: Path, work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.bfloat16)


def step_import(hf: Path, work: Path) -> None:
    from mbridge_train.auto_bridge import AutoBridge

    AutoBridge.import_ckpt(str(hf), str(work / "ckpt"), torch_dtype="bfloat16")


def step_export(hf: Path, work: Path) -> None:
    from mbridge_train.auto_bridge import AutoBridge

    AutoBridge.export_ckpt(str(work / "ckpt"), str(work / "export"), show_progress=False)


STEPS = {"imports only": step_imports, "plain read+write": step_plain,
         "HF load whole": step_hf_whole, "import": step_import, "export": step_export}


def child(name: str, hf: Path, work: Path) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    if name == "make":
        print(json.dumps({"model_bytes": make_model(hf, work.name)}))
        return
    if name == "plain read+write":
        import safetensors.torch  # noqa: F401 - imports excluded from the wall time
    elif name != "imports only":
        step_imports(hf, work)
    start = time.perf_counter()
    STEPS[name](hf, work)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"wall_s": wall, "peak_rss": peak}))


def measure(name: str, hf: Path, work: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", name, "--hf", str(hf),
                           "--work", str(work)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default=None, help="names the result files")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hf", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.hf, args.work)

    root = Path(tempfile.mkdtemp(prefix="mbridge-conversion-bench-"))
    try:
        hf = root / "hf"
        # Made in a child: Linux carries a process's peak RSS across fork + exec, so the parent
        # stays small (stdlib only) and every measured child starts from it.
        model_bytes = measure("make", hf, root / args.preset)["model_bytes"]
        print(f"model: {args.preset}, {model_bytes / GIB:.2f} GiB of bf16 weights", flush=True)
        samples: dict[str, list[dict]] = {name: [] for name in STEPS}
        for run in range(args.runs):
            work = root / f"run{run}"
            work.mkdir()
            for name in STEPS:  # import before export: export reads the import's checkpoint
                samples[name].append(measure(name, hf, work))
                print(f"run {run + 1}/{args.runs} {name}: {samples[name][-1]}", flush=True)
            shutil.rmtree(work)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rss_target = 0.3 * model_bytes + GIB
    plain = statistics.median(s["wall_s"] for s in samples["plain read+write"])
    rows = []
    for name, runs in samples.items():
        walls = [s["wall_s"] for s in runs]
        peaks = [s["peak_rss"] for s in runs]
        row = {"what": name, "wall_median_s": statistics.median(walls), "wall_min_s": min(walls),
               "wall_max_s": max(walls), "peak_rss_median": statistics.median(peaks),
               "peak_rss_min": min(peaks), "peak_rss_max": max(peaks), "runs": runs,
               "rss_vs_model": statistics.median(peaks) / model_bytes,
               "wall_vs_plain": statistics.median(walls) / plain}
        if name in ("import", "export"):
            row["meets_rss_target"] = row["peak_rss_median"] <= rss_target
            row["meets_wall_target"] = row["wall_vs_plain"] <= 2.0
        rows.append(row)
    tag = args.tag or f"cpu{os.cpu_count()}-{args.preset}"
    command = f"uv run python benchmarks/conversion.py --preset {args.preset} --runs {args.runs}"
    result = {"device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                        "(shared)", "commit": commit(), "command": command,
              "preset": args.preset, "model_bytes": model_bytes,
              "rss_target_bytes": rss_target, "rows": rows}
    table = ["| what | wall s (median, min-max) | x plain | peak RSS GiB (median, min-max) | "
             "x model bytes | target met |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = ("" if "meets_rss_target" not in r else
               f"RSS {'yes' if r['meets_rss_target'] else 'NO'}, "
               f"wall {'yes' if r['meets_wall_target'] else 'NO'}")
        table.append(f"| {r['what']} | {r['wall_median_s']:.1f} ({r['wall_min_s']:.1f}-"
                     f"{r['wall_max_s']:.1f}) | {r['wall_vs_plain']:.2f} | "
                     f"{r['peak_rss_median'] / GIB:.2f} ({r['peak_rss_min'] / GIB:.2f}-"
                     f"{r['peak_rss_max'] / GIB:.2f}) | {r['rss_vs_model']:.2f} | {met} |")
    header = (f"HF <-> Megatron conversion, {result['device']}, preset {args.preset} "
              f"({model_bytes / GIB:.2f} GiB bf16), commit {result['commit']}, {args.runs} runs "
              f"each (fresh processes; wall excludes imports).\n\n`{command}`\n\n"
              f"RSS target: 0.3 x model bytes + 1 GiB = {rss_target / GIB:.2f} GiB; wall target: "
              "2 x plain read+write.\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / f"conversion-{tag}.json", json.dumps(result, indent=2) + "\n")
    _write(args.out / f"conversion-{tag}.md", header + "\n".join(table) + "\n")
    print(header + "\n".join(table))


if __name__ == "__main__":
    main()
