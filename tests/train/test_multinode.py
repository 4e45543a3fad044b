"""Launching beyond one torchrun: two torchrun "nodes" on one machine (c10d rendezvous or a
static master address), and SLURM's variables alone (srun without torchrun). Each trains the
tiny recipe and must give the losses of the same run started as one node's ranks.

The reference runs are forked from the test process (cheap); the launches under test are fresh
interpreters, as a user's would be (~35 s of CPU each on two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from multirank import free_port, run_ranks

import launch_script

SCRIPT = Path(launch_script.__file__)
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                    "MASTER_PORT", "GROUP_RANK", "TORCHELASTIC_RUN_ID")
TP2 = ["model.tensor_model_parallel_size=2"]


def _reference_losses(rank, world, overrides):
    _, history = launch_script.train(overrides)
    return launch_script.train_losses(history)


@pytest.fixture(scope="module")
def single_node_dp2():
    """The tiny recipe on one node's two ranks, data-parallel: what every launch must match."""
    import tiny_run

    tiny_run.preload()
    first, second = run_ranks(_reference_losses, 2, [])
    assert first == second and len(first) == 4
    return first


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCH_VARIABLES and not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env


def _wait_all(procs: list[subprocess.Popen], timeout: float = 600) -> None:
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for index, (p, (out, _)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {index} exited with {p.returncode}:\n{out[-4000:]}"


def _results(out_dir: Path, world: int) -> list[dict]:
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


def _two_torchrun_nodes(out_dir: Path, overrides: list[str], rendezvous: str) -> list[dict]:
    """Two torchrun agents, one process each, meeting at 127.0.0.1 as two nodes would."""
    port = free_port()
    procs = []
    for node in range(2):
        if rendezvous == "c10d":
            rdzv = ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                    "--rdzv_id=two-nodes", "--local_addr=127.0.0.1"]
        else:  # the classic multi-node form: --node_rank with rank 0's address and port
            rdzv = [f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
             *rdzv, str(SCRIPT), str(out_dir), *overrides],
            env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    _wait_all(procs)
    return _results(out_dir, 2)


@pytest.mark.multiproc
def test_two_torchrun_nodes_train_like_one_node(tmp_path, single_node_dp2):
    results = _two_torchrun_nodes(tmp_path, [], "c10d")
    for rank, result in enumerate(results):
        assert result["launch"]["launcher"] == "torchrun"
        assert (result["launch"]["rank"], result["launch"]["world_size"]) == (rank, 2)
        torch.testing.assert_close(launch_script.train_losses(result["history"]),
                                   single_node_dp2, rtol=1e-6, atol=0)


@pytest.mark.slow
@pytest.mark.multiproc
def test_tensor_parallel_split_across_two_torchrun_nodes_trains_like_one_node(tmp_path):
    results = _two_torchrun_nodes(tmp_path, TP2, "static")
    reference = run_ranks(_reference_losses, 2, TP2)
    assert reference[0] == reference[1]
    for result in results:
        torch.testing.assert_close(launch_script.train_losses(result["history"]), reference[1],
                                   rtol=1e-6, atol=0)


def _slurm_env(rank: int, job_id: int) -> dict[str, str]:
    """What srun sets for task ``rank`` of a 2-task, 2-node step (one task per node)."""
    return dict(SLURM_PROCID=str(rank), SLURM_LOCALID="0", SLURM_NTASKS="2", SLURM_NNODES="2",
                SLURM_NODEID=str(rank), SLURM_JOB_ID=str(job_id),
                SLURM_JOB_NODELIST="127.0.0.[1-2]", SLURM_NODELIST="127.0.0.[1-2]")


def _free_derived_port_job() -> int:
    """A SLURM job id whose derived rendezvous port is free now."""
    from mbridge_config.launch import PORT_BASE, PORT_SPAN

    for _ in range(50):
        port = free_port()
        if PORT_BASE <= port < PORT_BASE + PORT_SPAN:
            return port - PORT_BASE
    pytest.skip("no free port in the derived-port range")


def _slurm_rank(rank, world, job_id):
    for name in LAUNCH_VARIABLES:
        assert name not in os.environ  # nothing but SLURM's variables
    return launch_script.train([])


def _check_slurm_results(results, reference):
    for rank, (launch, history) in enumerate(results):
        assert launch == {"launcher": "slurm", "rank": rank, "world_size": 2,
                          "master_addr": "127.0.0.1"}
        torch.testing.assert_close(launch_script.train_losses(history), reference,
                                   rtol=1e-6, atol=0)


@pytest.mark.multiproc
def test_slurm_variables_alone_launch_data_parallel_ranks(single_node_dp2):
    """srun without torchrun: rank, world size and rank 0's host from SLURM_* only; the port is
    the one derived from the job id (chosen so that it is free). The two tasks are forked from
    the test process with only SLURM's variables; the process group is started by mbridge."""
    job_id = _free_derived_port_job()
    results = run_ranks(_slurm_rank, 2, job_id, launch_env=lambda rank: _slurm_env(rank, job_id))
    _check_slurm_results(results, single_node_dp2)


@pytest.mark.slow
@pytest.mark.multiproc
def test_slurm_variables_alone_in_two_fresh_python_processes(tmp_path, single_node_dp2):
    """The same as two plain ``python script.py`` processes, as srun starts them."""
    job_id = _free_derived_port_job()
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path)],
                              env=_clean_env(**_slurm_env(rank, job_id)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    _wait_all(procs)
    _check_slurm_results([(r["launch"], r["history"]) for r in _results(tmp_path, 2)],
                         single_node_dp2)


@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_parallel_sizes_that_do_not_fit_the_launch_fail_on_every_rank_before_any_model(
        monkeypatch, launcher):
    """TP=2 in a world of 3: each rank says so in one line, naming the sizes, before the process
    group starts (so no rank waits for another) and before a model is built."""
    from mbridge_config import ConfigError
    from mbridge_train import training

    built = []
    monkeypatch.setattr(training.data_setup, "build_tokenizer", lambda cfg: built.append(cfg))
    for rank in range(3):
        for name in LAUNCH_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        if launcher == "torchrun":
            env = dict(RANK=str(rank), WORLD_SIZE="3", MASTER_ADDR="127.0.0.1",
                       MASTER_PORT="1")
        else:
            env = dict(SLURM_PROCID=str(rank), SLURM_NTASKS="3", SLURM_JOB_ID="1",
                       SLURM_NODELIST="n[1-3]")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as info:
            training.setup(launch_script.config(TP2))
        message = str(info.value)
        assert "\n" not in message
        assert "2 x 1 x 1 = 2 does not divide the world size 3" in message
        assert not torch.distributed.is_initialized() and not built
