"""Start-up cost of mbridge-config vs the megatron-core config classes it builds on.

Each candidate runs as a fresh `python -c` process, the candidates alternating (A B C A B C ...)
so that drift on a shared machine hits them alike; we report the median and the min/max of the
in-process import time. Writes benchmarks/results/import_cost-<tag>.json and .md.

    uv run python benchmarks/import_cost.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = {
    "megatron-core configs": (
        "from megatron.core.optimizer import OptimizerConfig\n"
        "from megatron.core.distributed import DistributedDataParallelConfig\n"
        "import megatron.training.config\n"
    ),
    "import mbridge_config": "import mbridge_config\n",
    "mbridge --help": (
        "import contextlib, io\nfrom mbridge.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
    ),
    "mbridge recipes": (
        "import contextlib, io\nfrom mbridge.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['recipes'])\n"
    ),
}


def time_once(body: str) -> float:
    code = ("import time\nstart = time.perf_counter()\n" + body +
            "print(time.perf_counter() - start)\n")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default=f"cpu{os.cpu_count()}", help="names the result files")
    args = parser.parse_args()

    for body in CANDIDATES.values():  # warm the file cache once
        time_once(body)
    samples: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for run in range(args.runs):
        for name, body in CANDIDATES.items():
            samples[name].append(time_once(body))
        print(f"run {run + 1}/{args.runs}: " +
              ", ".join(f"{n} {s[-1]:.2f}s" for n, s in samples.items()), flush=True)

    base = statistics.median(samples["megatron-core configs"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({"what": name, "median_s": median, "min_s": min(values),
                     "max_s": max(values), "vs_megatron": median / base, "runs": values})
    result = {"device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "rows": rows}
    table = ["| what | median s | min s | max s | median / megatron-core configs |",
             "|---|---|---|---|---|"]
    table += [f"| {r['what']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} | "
              f"{r['vs_megatron']:.3f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2)),
                         (".md", f"Import cost, {result['device']}, {args.runs} runs each, "
                                 "fresh processes alternating.\n\n" + "\n".join(table) + "\n")):
        target = args.out / f"import_cost-{args.tag}{suffix}"
        with tempfile.NamedTemporaryFile("w", dir=args.out, delete=False) as tmp:
            tmp.write(text)
        os.replace(tmp.name, target)
    print("\n".join(table))


if __name__ == "__main__":
    main()
