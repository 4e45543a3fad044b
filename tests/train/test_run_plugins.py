"""NeMo-Run plugins (mbridge.recipes.run_plugins) on ``run.Script`` tasks.

Fast tests check what each plugin adds to the task and executor and that the overrides take on
the tiny recipe's config. The slow ones launch the tiny recipe for real through
``run.run(run.Script(...), executor=run.LocalExecutor(), plugins=[...])`` in fresh processes
and check the effect: the profiling window in the run's config and the nsys wrapper's command,
a W&B offline run written, SIGTERM ending in a checkpoint that resumes exactly, and a crashed
run restarted by the launcher resuming to the same losses.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from multirank import run_ranks

import launch_script

run = pytest.importorskip("nemo_run", reason="nemo-run is in the dev group (mbridge[run])")
plugins = importlib.import_module("mbridge.recipes.run_plugins")

SCRIPT = str(Path(launch_script.__file__))


def _task(*args):
    return run.Script(path=SCRIPT, args=["OUT", *args], entrypoint="python")


def _apply(plugin, executor=None):
    task, executor = _task(), executor or run.LocalExecutor()
    plugin.setup(task, executor)
    return task.args[1:], executor


# ----------------------------------------------------------------------------- fast


def test_both_import_paths_are_one_module():
    import mbridge_train.recipes.run_plugins as train_side

    assert plugins is train_side


def test_importing_without_nemo_run_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nemo_run", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "mbridge_train.recipes.run_plugins")
    with pytest.raises(ImportError) as info:
        importlib.import_module("mbridge_train.recipes.run_plugins")
    assert "mbridge[run]" in str(info.value) and "\n" not in str(info.value)


def _config_after(overrides):
    from mbridge_train.recipes.tiny.gpt_tiny import pretrain_config

    return pretrain_config().apply_overrides(overrides)


def test_nsys_plugin_sets_the_window_and_wraps_the_launch_in_nsys():
    args, executor = _apply(plugins.NsysPlugin(profile_step_start=3, profile_step_end=5,
                                               profile_ranks=[0, 1], nsys_trace=["nvtx"]))
    prof = _config_after(args).profiling
    assert (prof.use_nsys_profiler, prof.profile_step_start, prof.profile_step_end,
            prof.profile_ranks, prof.record_shapes) == (True, 3, 5, [0, 1], False)
    launcher = executor.get_launcher()
    assert launcher.nsys_profile and launcher.nsys_trace == ["nvtx"]
    slurm = run.SlurmExecutor(account="a", tunnel=run.LocalTunnel(job_dir="/tmp"))
    plugins.NsysPlugin(profile_step_start=1, profile_step_end=2).setup(_task(), slurm)
    assert "%q{SLURM_PROCID}" in slurm.get_launcher().nsys_filename


def test_pytorch_profiler_plugin_sets_its_window():
    args, _ = _apply(plugins.PyTorchProfilerPlugin(profile_step_start=1, profile_step_end=2,
                                                   record_shapes=True))
    prof = _config_after(args).profiling
    assert (prof.use_pytorch_profiler, prof.use_nsys_profiler, prof.profile_step_start,
            prof.profile_step_end, prof.profile_ranks, prof.record_shapes) == (
        True, False, 1, 2, [0], True)


def test_wandb_plugin_needs_a_key_or_offline_mode(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    args, executor = _apply(plugins.WandbPlugin(project="p"))
    assert args == [] and "WANDB_API_KEY" not in executor.env_vars
    monkeypatch.setenv("WANDB_API_KEY", "k")
    args, executor = _apply(plugins.WandbPlugin(project="p", entity="team", name="n",
                                                save_dir="/w"))
    assert executor.env_vars["WANDB_API_KEY"] == "k"
    logger = _config_after(args).logger
    assert (logger.wandb_project, logger.wandb_entity, logger.wandb_exp_name,
            logger.wandb_save_dir) == ("p", "team", "n", "/w")


def test_preemption_plugin_turns_on_the_exit_handler_and_slurm_signal():
    args, _ = _apply(plugins.PreemptionPlugin())
    assert _config_after(args).train.exit_signal_handler is True
    slurm = run.SlurmExecutor(account="a", tunnel=run.LocalTunnel(job_dir="/tmp"))
    plugins.PreemptionPlugin(preempt_time=120).setup(_task(), slurm)
    assert slurm.signal == "TERM@120"


def test_fault_tolerance_plugin_restarts_through_the_launcher():
    args, executor = _apply(plugins.FaultTolerancePlugin(num_in_job_restarts=2,
                                                         num_job_retries_on_failure=1,
                                                         rank_heartbeat_timeout=90))
    assert isinstance(executor.launcher, (run.Torchrun, run.FaultTolerance))
    if isinstance(executor.launcher, run.Torchrun):  # no nvidia-resiliency-ext here
        assert executor.env_vars["PET_MAX_RESTARTS"] == "2"
    assert executor.retries == 1
    after = _config_after(args)
    assert after.dist.distributed_timeout_minutes == 2  # 90 s, rounded up
    assert (after.ft.enable_ft_package, after.ft.calc_ft_timeouts, after.ft.hang_timeout_s,
            after.ft.initial_hang_timeout_s) == (True, True, 90.0, 1800.0)  # instead of NVRx
    slurm = run.SlurmExecutor(account="a", tunnel=run.LocalTunnel(job_dir="/tmp"))
    plugins.FaultTolerancePlugin(num_in_job_restarts=4).setup(_task(), slurm)
    assert isinstance(slurm.launcher, run.FaultTolerance) and slurm.launcher.max_restarts == 4


@pytest.mark.parametrize("sizes, expected", [
    (dict(tp_size=2), "1"), (dict(), "8"), (dict(tp_size=2, a2a_overlap=True), "8"),
    (dict(tp_size=2, gpu_sm100_or_newer=True), "32"), (dict(deepep_enabled=True), "32"),
])
def test_perf_env_plugin_sets_the_environment_and_manual_gc(sizes, expected):
    args, executor = _apply(plugins.PerfEnvPlugin(manual_gc_interval=7, pp_size=2,
                                                  nccl_pp_comm_chunksize=2097152, **sizes)
                            if "tp_size" not in sizes else plugins.PerfEnvPlugin(**sizes))
    assert executor.env_vars["CUDA_DEVICE_MAX_CONNECTIONS"] == expected
    assert executor.env_vars["NVTE_FWD_LAYERNORM_SM_MARGIN"] == "16"
    train = _config_after(args).train
    assert train.manual_gc is True
    if "tp_size" not in sizes:
        assert train.manual_gc_interval == 7
        assert executor.env_vars["NCCL_P2P_NET_CHUNKSIZE"] == "2097152"


def test_a_custom_converter_renders_the_script_args():
    seen = []

    def argparse_style(args):
        seen.append(args)
        return ["--exit-handler"] if args.enable_exit_handler else []

    args, _ = _apply(plugins.PreemptionPlugin(script_args_converter_fn=argparse_style))
    assert args == ["--exit-handler"]
    assert seen == [plugins.PreemptionPluginScriptArgs(True, False)]


# ----------------------------------------------------------------------------- real launches


@pytest.fixture
def nemo_run_home(tmp_path, monkeypatch):
    """A NeMo-Run home in tmp_path; this interpreter's bin folder (python, torchrun) on PATH."""
    from nemo_run.config import get_nemorun_home, set_nemorun_home

    before = get_nemorun_home()
    set_nemorun_home(str(tmp_path / "nemo_run"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path / "nemo_run"
    set_nemorun_home(before)


def _launch(out_dir, overrides, executor_plugins, executor=None, name="tiny", env=None):
    """run.run the launch script on a LocalExecutor; its rank-0 result (logs on failure)."""
    executor = executor or run.LocalExecutor()
    executor.env_vars.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **(env or {}))
    task = run.Script(path=SCRIPT, args=[str(out_dir), *overrides], entrypoint="python")
    run.run(task, executor=executor, plugins=executor_plugins, name=name, tail_logs=False)
    result = Path(out_dir) / "rank0.json"
    if not result.exists():
        from nemo_run.config import get_nemorun_home

        logs = sorted(Path(get_nemorun_home()).rglob("*.log"))
        text = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs)
        pytest.fail(f"the launched script left no result; logs:\n{text}")
    return json.loads(result.read_text())


def _reference(rank, world, overrides):
    _, history = launch_script.train(overrides)
    return launch_script.train_losses(history)


@pytest.fixture(scope="module")
def uninterrupted():
    """The 4-step tiny run in one process, as the interrupted runs should end up."""
    import tiny_run

    tiny_run.preload()
    (losses,) = run_ranks(_reference, 1, [])
    return losses


FAKE_NSYS = """#!/bin/sh
# Stands in for nsys on a machine without it: record the arguments, run the wrapped command.
printf '%s\\n' "$@" > "$NSYS_ARGS_FILE"
shift  # profile
while [ $# -gt 0 ]; do
  case "$1" in
    -s|-t|-o) shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
cmd="$1"; shift
last=""
for a in "$@"; do last="$a"; done
if [ -z "$last" ]; then set -- $(printf '%s\\n' "$@" | sed '$d'); fi
exec "$cmd" "$@"
"""


@pytest.mark.slow
def test_nsys_wandb_and_perf_env_plugins_take_effect_in_a_real_launch(nemo_run_home, tmp_path,
                                                                      monkeypatch):
    pytest.importorskip("wandb")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nsys").write_text(FAKE_NSYS)
    (bin_dir / "nsys").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    nsys_args = tmp_path / "nsys_args.txt"
    result = _launch(tmp_path / "out", [], [
        plugins.NsysPlugin(profile_step_start=1, profile_step_end=3),
        plugins.WandbPlugin(project="tiny-project", name="tiny-run",
                            save_dir=str(tmp_path / "wandb")),
        plugins.PerfEnvPlugin(manual_gc_interval=2)], env={"NSYS_ARGS_FILE": str(nsys_args)})
    cfg = yaml.safe_load(result["config"])
    prof = cfg["profiling"]
    assert (prof["use_nsys_profiler"], prof["profile_step_start"], prof["profile_step_end"],
            prof["profile_ranks"]) == (True, 1, 3, [0])
    wrapped = nsys_args.read_text().split("\n")
    assert wrapped[0] == "profile" and "nvtx,cuda" in wrapped
    assert "--capture-range=cudaProfilerApi" in wrapped and SCRIPT in wrapped
    assert (cfg["logger"]["wandb_project"], cfg["logger"]["wandb_exp_name"]) == (
        "tiny-project", "tiny-run")
    runs = list((tmp_path / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (cfg["train"]["manual_gc"], cfg["train"]["manual_gc_interval"]) == (True, 2)
    assert result["env"]["CUDA_DEVICE_MAX_CONNECTIONS"] == "8"
    assert result["env"]["NVTE_FWD_LAYERNORM_SM_MARGIN"] == "16"
    assert len(launch_script.train_losses(result["history"])) == 4


def _resume(rank, world, overrides):
    _, history = launch_script.train(overrides)
    return history


@pytest.mark.slow
def test_preemption_plugin_and_sigterm_end_in_a_checkpoint_that_resumes_exactly(
        nemo_run_home, tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    ready = tmp_path / "ready"
    saving = [f"checkpoint.save={ckpt}", f"checkpoint.load={ckpt}", "checkpoint.save_interval=100"]
    outcome = {}

    def launch():
        outcome["result"] = _launch(tmp_path / "out", saving, [plugins.PreemptionPlugin()],
                                    env={"MBRIDGE_TEST_READY_FILE": str(ready)})

    thread = threading.Thread(target=launch)
    thread.start()
    deadline = time.monotonic() + 600
    while not ready.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.exists(), "the script never reached step 2"
    os.kill(int(ready.read_text()), signal.SIGTERM)  # what SLURM sends preempt_time early
    thread.join(600)
    result = outcome["result"]
    cfg = yaml.safe_load(result["config"])
    assert cfg["train"]["exit_signal_handler"] is True
    stopped = launch_script.train_losses(result["history"])
    assert len(stopped) == 2 and not any(h.get("split") for h in result["history"])
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    (history,) = run_ranks(_resume, 1, saving)
    assert [h["step"] for h in history if "split" not in h] == [3, 4]
    torch.testing.assert_close(stopped + launch_script.train_losses(history), uninterrupted,
                               rtol=1e-6, atol=0)


@pytest.mark.slow
def test_fault_tolerance_plugin_restarts_a_crashed_run_which_resumes(nemo_run_home, tmp_path,
                                                                    uninterrupted):
    ckpt = tmp_path / "ckpt"
    result = _launch(tmp_path / "out", [f"checkpoint.save={ckpt}", f"checkpoint.load={ckpt}",
                                        "checkpoint.save_interval=2"],
                     [plugins.FaultTolerancePlugin(num_in_job_restarts=1)],
                     env={"MBRIDGE_TEST_CRASH_MARKER": str(tmp_path / "crashed")})
    assert (tmp_path / "crashed").exists()  # the first attempt died after saving step 2
    assert result["env"]["TORCHELASTIC_RESTART_COUNT"] == "1"
    assert [h["step"] for h in result["history"] if "split" not in h] == [3, 4]
    torch.testing.assert_close(launch_script.train_losses(result["history"]), uninterrupted[2:],
                               rtol=1e-6, atol=0)
