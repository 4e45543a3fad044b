"""benchmarks/lora.py --smoke runs on the CPU (reference + Triton interpreter, one tiny shape)
and writes a JSON whose rows all ran and agree with the reference."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "lora.py"


def test_lora_benchmark_smoke_writes_results(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))
    monkeypatch.setattr(sys, "argv", ["benchmarks/lora.py", "--smoke"])
    spec = importlib.util.spec_from_file_location("lora_bench_smoke", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.layer_main(SimpleNamespace(smoke=True, out=str(tmp_path), tokens=32))
    result = json.loads((tmp_path / "lora-smoke-cpu-smoke.json").read_text())
    assert (tmp_path / "lora-smoke-cpu-smoke.md").exists()
    methods = {r["method"] for r in result["rows"]}
    assert {"floor", "ours", "mbridge-peft unfused"} <= methods
    assert all(r["status"] == "ok" for r in result["rows"]), result["rows"]
    for row in result["rows"]:
        if "max_rel_err" in row:
            assert row["max_rel_err"] < 1e-5, row
        assert row["fwd_bwd"]["median_ms"] > 0
    assert result["targets"] and result["commit"]
