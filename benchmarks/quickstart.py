"""`mbridge quickstart` over seeds (issue 18): its wall time, and exact match per task after it.

    python3 benchmarks/quickstart.py run --out DIR [--seeds 1,2,3]   # this device's JSON
    python3 benchmarks/quickstart.py table [--out DIR]               # every device's -> .md

``run``: the first seed alone, timed (the figure a user sees), then the other seeds together,
for accuracy only (they share the machine, so their wall time is not reported). Each is the
CLI a user runs, ``mbridge quickstart --work-dir W --seed S``, in its own work dir. Writes
``quickstart-<device>.json`` (and the first seed's ``.png``); ``table`` reads every such JSON
in --out and writes ``quickstart.md``. Default --out: ``benchmarks/results/quickstart``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit, device_name, write_json, write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quickstart"


def _quickstart(work: Path, seed: int) -> subprocess.Popen:
    log = open(work.with_suffix(".log"), "w")
    return subprocess.Popen([sys.executable, "-m", "mbridge.cli", "quickstart", "--work-dir",
                             str(work), "--seed", str(seed)], stdout=log, stderr=subprocess.STDOUT)


def run(out: Path, seeds: list[int]) -> None:
    device, tag = device_name(), device_name().lower().replace(" ", "-")
    if device == "cpu":
        device, tag = f"CPU, {os.cpu_count()} cores", f"cpu{os.cpu_count()}"
    with tempfile.TemporaryDirectory() as tmp:
        works = {s: Path(tmp) / f"seed{s}" for s in seeds}
        started = time.perf_counter()
        first = _quickstart(works[seeds[0]], seeds[0])
        if first.wait():
            sys.exit(f"quickstart seed {seeds[0]} failed: {works[seeds[0]].with_suffix('.log')}")
        wall = time.perf_counter() - started
        print(f"seed {seeds[0]}: {wall:.0f} s wall", flush=True)
        rest = {s: _quickstart(works[s], s) for s in seeds[1:]}
        failed = [s for s, p in rest.items() if p.wait()]
        if failed:
            sys.exit(f"quickstart seeds {failed} failed")
        runs = {str(s): json.loads((w / "quickstart.json").read_text()) for s, w in works.items()}
        shutil.copyfile(works[seeds[0]] / "quickstart.png", out / f".{tag}.png.tmp")
        (out / f".{tag}.png.tmp").replace(out / f"quickstart-{tag}.png")
    after = [r["accuracy_after"]["all"] for r in runs.values()]
    gain = [r["accuracy_after"]["all"] - r["accuracy_before"]["all"] for r in runs.values()]
    spread = lambda xs: {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}  # noqa: E731
    write_json(out / f"quickstart-{tag}.json", {
        "device": device, "commit": commit(),
        "command": "mbridge quickstart --work-dir W --seed S "
                   f"(python3 benchmarks/quickstart.py run --seeds {','.join(map(str, seeds))})",
        "wall_seconds_seed1": round(wall, 1), "after_all": spread(after), "gain": spread(gain),
        "runs": runs})


def table(out: Path) -> None:
    lines = ["# mbridge quickstart: exact match on the held-out test prompts after the LoRA "
             "fine-tune", ""]
    for path in sorted(out.glob("quickstart-*.json")):
        d = json.loads(path.read_text())
        runs = d["runs"]
        first = next(iter(runs.values()))
        tasks = sorted(first["accuracy_after"], key=lambda t: (t == "all", t))
        lines += [f"## {d['device']}, commit {d['commit']}", "",
                  f"`{d['command']}`, seed {next(iter(runs))} alone, timed: "
                  f"{d['wall_seconds_seed1']:.0f} s wall; the other seeds together (accuracy "
                  "only).", "",
                  "| task | " + " | ".join(f"seed {s}" for s in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        lines += [f"| {t} | " + " | ".join(f"{r['accuracy_after'][t]:.1%}"
                                           for r in runs.values()) + " |" for t in tasks]
        a, g = d["after_all"], d["gain"]
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in first["seconds"].items())
        lines += ["", f"Overall after: min {a['min']:.1%}, median {a['median']:.1%}, max "
                  f"{a['max']:.1%}; gain over the pretrained model: min {100 * g['min']:.1f} "
                  "points "
                  f"(before: {max(r['accuracy_before']['all'] for r in runs.values()):.1%} at "
                  f"most). First seed's stages: {stages}.", ""]
    write_text(out / "quickstart.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "table"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "run":
        run(args.out, [int(s) for s in args.seeds.split(",")])
    table(args.out)


if __name__ == "__main__":
    main()
