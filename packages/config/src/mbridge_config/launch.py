"""Where this process sits in the job: rank, local rank, world size and rank 0's address, read
from the launcher's environment (torchrun, single- or multi-node; SLURM ``srun`` without torchrun;
or a lone ``python script.py``).

One place for it, standard library only, so that the CLI, config validation and the process-group
start agree on the world size before torch or megatron-core is imported. A malformed or missing
variable is a ConfigError naming the variable.

    torchrun / any env:// launcher   RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
    srun (no torchrun)               SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS or
                                     SLURM_NTASKS; MASTER_ADDR or the first host of the step's
                                     node list (SLURM_STEP_NODELIST, SLURM_NODELIST,
                                     SLURM_JOB_NODELIST), else SLURM_LAUNCH_NODE_IPADDR;
                                     MASTER_PORT or one derived from SLURM_JOB_ID
    neither                          rank 0 of 1 on 127.0.0.1
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mbridge_config.errors import ConfigError

PORT_BASE, PORT_SPAN = 20000, 20000
"""A port derived from the SLURM job id lies in [PORT_BASE, PORT_BASE + PORT_SPAN): every task of
a job derives the same one, and two jobs sharing a node rarely collide."""

NODELIST_VARIABLES = ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST")


@dataclass(frozen=True)
class LaunchEnv:
    """This process's place in the job, as the launcher described it."""

    launcher: str
    """"torchrun" (any launcher setting RANK/WORLD_SIZE), "slurm" (srun alone) or "single"."""
    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int | None
    """None for a single process: any free port will do."""

    def export(self, environ: os._Environ | dict | None = None) -> None:
        """Write the torchrun variables, so that torch's env:// start, megatron-core and user
        code that read them see this same description (a SLURM launch becomes torchrun-shaped)."""
        environ = os.environ if environ is None else environ
        environ["RANK"] = str(self.rank)
        environ["LOCAL_RANK"] = str(self.local_rank)
        environ["WORLD_SIZE"] = str(self.world_size)
        environ["MASTER_ADDR"] = self.master_addr
        if self.master_port is not None:
            environ["MASTER_PORT"] = str(self.master_port)


def detect(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """The launch environment of this process (see the module docstring for the variables)."""
    env = os.environ if environ is None else environ
    if "RANK" in env or "WORLD_SIZE" in env:
        return _torchrun(env)
    if "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        return _slurm(env)
    return LaunchEnv("single", 0, 0, 1, env.get("MASTER_ADDR", "127.0.0.1"),
                     _optional_int(env, "MASTER_PORT"))


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of processes the launcher started (WORLD_SIZE alone is enough here)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" not in env:
        return _int(env, "WORLD_SIZE", minimum=1)
    return detect(env).world_size


def _torchrun(env: Mapping[str, str]) -> LaunchEnv:
    for name in ("RANK", "WORLD_SIZE"):
        if name not in env:
            other = "WORLD_SIZE" if name == "RANK" else "RANK"
            raise ConfigError(f"not set, but {other} is: a launcher sets both", field=name)
    world = _int(env, "WORLD_SIZE", minimum=1)
    rank = _rank(env, "RANK", world, "WORLD_SIZE")
    local_rank = _int(env, "LOCAL_RANK", minimum=0) if "LOCAL_RANK" in env else 0
    if world == 1:
        return LaunchEnv("torchrun", rank, local_rank, 1, env.get("MASTER_ADDR", "127.0.0.1"),
                         _optional_int(env, "MASTER_PORT"))
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise ConfigError(f"not set: {world} processes need rank 0's address and port",
                              field=name)
    return LaunchEnv("torchrun", rank, local_rank, world, env["MASTER_ADDR"],
                     _int(env, "MASTER_PORT", minimum=1, maximum=65535))


def _slurm(env: Mapping[str, str]) -> LaunchEnv:
    tasks = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
    world = _int(env, tasks, minimum=1)
    rank = _rank(env, "SLURM_PROCID", world, tasks)
    local_rank = _int(env, "SLURM_LOCALID", minimum=0) if "SLURM_LOCALID" in env else 0
    return LaunchEnv("slurm", rank, local_rank, world, _slurm_master_addr(env),
                     _slurm_master_port(env))


def _slurm_master_addr(env: Mapping[str, str]) -> str:
    """Rank 0 runs on the first node of the step (srun's block distribution). The node list is
    preferred to SLURM_LAUNCH_NODE_IPADDR, the host srun ran on, which is a login node under
    salloc."""
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    for name in NODELIST_VARIABLES:
        if env.get(name):
            return first_host(env[name], name)
    if env.get("SLURM_LAUNCH_NODE_IPADDR"):
        return env["SLURM_LAUNCH_NODE_IPADDR"]
    raise ConfigError("not set, and no SLURM node list (SLURM_NODELIST, SLURM_JOB_NODELIST) or "
                      "SLURM_LAUNCH_NODE_IPADDR to find rank 0's host from", field="MASTER_ADDR")


def _slurm_master_port(env: Mapping[str, str]) -> int:
    if env.get("MASTER_PORT"):
        return _int(env, "MASTER_PORT", minimum=1, maximum=65535)
    if env.get("SLURM_JOB_ID"):
        return derived_port(_int(env, "SLURM_JOB_ID", minimum=0))
    raise ConfigError("not set, and no SLURM_JOB_ID to derive it from", field="MASTER_PORT")


def derived_port(job_id: int) -> int:
    """The rendezvous port every task of SLURM job ``job_id`` agrees on without talking."""
    return PORT_BASE + job_id % PORT_SPAN


# ----------------------------------------------------------------------------- node lists

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_PIECE = re.compile(r"([^\[]*)(?:\[([^\]]*)\])?")


def expand_nodelist(text: str, variable: str = "SLURM_NODELIST") -> list[str]:
    """Every host of a SLURM node list, in order: ``gpu[01-03,07],login1`` -> gpu01, gpu02,
    gpu03, gpu07, login1. Several bracket groups in one name multiply out
    (``r[1-2]n[1-2]`` -> r1n1, r1n2, r2n1, r2n2); a range keeps its lower bound's zero padding."""
    hosts: list[str] = []
    for entry in _split_top_level(text, variable):
        hosts += _expand_entry(entry, variable)
    return hosts


def first_host(text: str, variable: str = "SLURM_NODELIST") -> str:
    """The first host of a node list, without expanding the rest."""
    return _expand_entry(_split_top_level(text, variable)[0], variable, first_only=True)[0]


def _split_top_level(text: str, variable: str) -> list[str]:
    entries, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise _bad_nodelist(text, variable, "nested '['")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise _bad_nodelist(text, variable, "']' without '['")
        elif char == "," and depth == 0:
            entries.append(text[start:index])
            start = index + 1
    if depth:
        raise _bad_nodelist(text, variable, "'[' without ']'")
    entries.append(text[start:])
    if any(not entry.strip() for entry in entries):
        raise _bad_nodelist(text, variable, "an empty host name")
    return [entry.strip() for entry in entries]


def _expand_entry(entry: str, variable: str, first_only: bool = False) -> list[str]:
    names = [""]
    for match in _PIECE.finditer(entry):
        literal, group = match.group(1), match.group(2)
        names = [name + literal for name in names]
        if group is not None:
            numbers = _expand_group(group, entry, variable, first_only)
            names = [name + number for name in names for number in numbers]
        if first_only:
            names = names[:1]
    return names


def _expand_group(group: str, entry: str, variable: str, first_only: bool) -> list[str]:
    numbers = []
    for part in group.split(","):
        match = _RANGE.fullmatch(part.strip())
        if match is None:
            raise _bad_nodelist(entry, variable, f"'{part}' is not a number or a range a-b")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise _bad_nodelist(entry, variable, f"range '{part}' runs backwards")
        stop = int(low) + 1 if first_only else int(high) + 1
        numbers += [str(n).zfill(len(low)) for n in range(int(low), stop)]
        if first_only:
            break
    return numbers


def _bad_nodelist(text: str, variable: str, why: str) -> ConfigError:
    return ConfigError(f"cannot read node list {text!r}: {why}", field=variable)


# ----------------------------------------------------------------------------- integers


def _int(env: Mapping[str, str], name: str, minimum: int | None = None,
         maximum: int | None = None) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"expected an integer, got {raw!r}", field=name) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"expected an integer {bounds}, got {value}", field=name)
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name, minimum=1, maximum=65535) if env.get(name) else None


def _rank(env: Mapping[str, str], name: str, world: int, world_name: str) -> int:
    rank = _int(env, name, minimum=0)
    if rank >= world:
        raise ConfigError(f"{rank} is not a rank of a world of {world} ({world_name}={world})",
                          field=name)
    return rank
