"""Run a function on several CPU ranks (gloo), as separate processes, and collect the results.

Ranks are forked from the test process, which has already paid for importing torch and
megatron-core (~20 s per fresh interpreter on the 2-core machine), so a 2-rank test costs what
its own work costs. Each rank creates its own gloo process group on a free port and activates
mbridge's CPU runtime; when any rank fails, the error names every failing rank with its traceback.

    def body(rank, world_size, scale):
        ...
        return some_picklable_value

    results = run_ranks(body, world_size=2, scale=3.0)   # results[r] is rank r's return value

With ``launch_env=lambda rank: {...}`` a rank gets those variables instead of torchrun's and
starts no process group itself: the body's own start-up reads them (e.g. SLURM's).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import pickle
import socket
import time
import traceback
from typing import Any, Callable

_GRACE_AFTER_FAILURE_S = 10.0
_PRELOAD = ("megatron.core.parallel_state", "megatron.core.tensor_parallel", "megatron.core.transformer")


class RankFailure(AssertionError):
    """One or more ranks raised or died; the message holds each one's traceback."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(
    fn: Callable[..., Any],
    world_size: int = 2,
    *args: Any,
    timeout: float = 300.0,
    cpu_runtime: bool = True,
    launch_env: Callable[[int], dict[str, str]] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Call ``fn(rank, world_size, *args, **kwargs)`` on ``world_size`` forked gloo ranks."""
    if cpu_runtime:
        # Pay for megatron-core's import once, here, rather than once per forked rank.
        from mbridge_models import runtime  # noqa: F401

        for module in _PRELOAD:
            importlib.import_module(module)
    ctx = mp.get_context("fork")
    port = free_port()
    procs, conns = [], []
    for rank in range(world_size):
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_rank_main,
            args=(rank, world_size, port, cpu_runtime, launch_env, fn, args, kwargs, child_end),
            name=f"rank{rank}",
        )
        p.start()
        child_end.close()
        procs.append(p)
        conns.append(parent_end)

    outcomes: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(outcomes) < world_size and time.monotonic() < deadline:
        for rank, conn in enumerate(conns):
            if rank in outcomes:
                continue
            if conn.poll(0.05):
                try:
                    outcomes[rank] = pickle.loads(conn.recv_bytes())
                except EOFError:
                    procs[rank].join(1)
                    outcomes[rank] = ("died", f"exited with code {procs[rank].exitcode} and no result")
            elif not procs[rank].is_alive() and not conn.poll(0):
                outcomes[rank] = ("died", f"exited with code {procs[rank].exitcode} and no result")
        if any(kind != "ok" for kind, _ in outcomes.values()):
            # Survivors are likely blocked in a collective with the failed rank: give them a
            # moment to fail on their own, then stop them.
            deadline = min(deadline, time.monotonic() + _GRACE_AFTER_FAILURE_S)

    for rank, p in enumerate(procs):
        if rank not in outcomes:
            outcomes[rank] = ("hung", f"still running after the time limit ({timeout:.0f} s) "
                                      "or after another rank failed; terminated")
        p.join(0.5)
        if p.is_alive():
            p.kill()
            p.join()

    failures = {r: o for r, o in sorted(outcomes.items()) if o[0] != "ok"}
    if failures:
        parts = [f"{len(failures)} of {world_size} ranks failed:"]
        for rank, (kind, detail) in failures.items():
            parts.append(f"--- rank {rank} ({kind}) ---\n{detail}".rstrip())
        raise RankFailure("\n".join(parts))
    return [outcomes[r][1] for r in range(world_size)]


_LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                     "LOCAL_WORLD_SIZE")


def _rank_main(rank, world_size, port, cpu_runtime, launch_env, fn, args, kwargs, conn) -> None:
    code = 0
    try:
        import torch
        import torch.distributed as dist

        if launch_env is None:
            os.environ.update(
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                LOCAL_WORLD_SIZE=str(world_size),
            )
        else:
            for name in _LAUNCH_VARIABLES:
                os.environ.pop(name, None)
            os.environ.update(launch_env(rank))
        torch.set_num_threads(1)
        if cpu_runtime:
            from mbridge_models import runtime

            runtime.activate()
        if launch_env is None:
            dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            result = fn(rank, world_size, *args, **kwargs)
        finally:
            _reset_megatron_state()
            if dist.is_initialized():  # a run's own teardown may have ended it already
                dist.destroy_process_group()
        # Plain pickle, not the connection's: torch would share tensors through file
        # descriptors that vanish with this process.
        conn.send_bytes(pickle.dumps(("ok", result)))
    except BaseException:  # noqa: BLE001 - every failure must reach the parent
        code = 1
        try:
            conn.send_bytes(pickle.dumps(("raised", traceback.format_exc())))
        except Exception:
            pass
    finally:
        conn.close()
        _end_children()
        # Never return into the forked copy of pytest.
        os._exit(code)


def _end_children() -> None:
    """Processes a rank started end with it: os._exit skips multiprocessing's own clean-up, so
    e.g. the Manager that megatron-core's checkpoint writer starts would outlive the rank."""
    children = mp.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(5)


def _reset_megatron_state() -> None:
    import sys

    ps = sys.modules.get("megatron.core.parallel_state")
    if ps is not None and ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
