"""Launch-environment detection: torchrun, SLURM srun alone, a lone process; SLURM node lists."""

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbridge_config import ConfigError
from mbridge_config.launch import (LaunchEnv, derived_port, detect, expand_nodelist, first_host,
                                   world_size)

# ----------------------------------------------------------------------------- node lists

_names = st.text("abcdefghijklmnopqrstuvwxyz-.", min_size=1, max_size=6)


@st.composite
def _group(draw):
    """A bracket group as (text, expected numbers): ranges and single numbers, zero-padded."""
    parts, numbers = [], []
    for _ in range(draw(st.integers(1, 3))):
        width = draw(st.integers(1, 4))
        low = draw(st.integers(0, 10 ** width - 1))
        count = draw(st.integers(1, 4))
        low_text = str(low).zfill(width)
        parts.append(low_text if count == 1 else f"{low_text}-{low + count - 1}")
        numbers += [str(n).zfill(width) for n in range(low, low + count)]
    return "[" + ",".join(parts) + "]", numbers


@st.composite
def _entry(draw):
    """One comma-free host pattern and its hosts: literals and groups, multiplied out."""
    text, hosts = draw(_names), [""]
    hosts = [text]
    for _ in range(draw(st.integers(0, 2))):
        group_text, numbers = draw(_group())
        literal = draw(st.one_of(st.just(""), _names))
        text += group_text + literal
        hosts = [h + n + literal for h in hosts for n in numbers]
    return text, hosts


@given(st.lists(_entry(), min_size=1, max_size=4))
def test_a_node_list_expands_to_every_host_in_order(entries):
    text = ",".join(t for t, _ in entries)
    expected = [h for _, hosts in entries for h in hosts]
    assert expand_nodelist(text) == expected
    assert first_host(text) == expected[0]


def test_node_list_examples():
    assert expand_nodelist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07",
                                                       "login1"]
    assert expand_nodelist("r[1-2]n[09-10]") == ["r1n09", "r1n10", "r2n09", "r2n10"]
    assert first_host("node[0998-1001]") == "node0998"
    assert expand_nodelist("node[0998-1001]")[-1] == "node1001"


@pytest.mark.parametrize("text, why", [
    ("a[]", "not a number"), ("a[1-", "without ']'"), ("a]", "without '['"),
    ("a[3-1]", "backwards"), ("a,,b", "empty host"), ("a[[1]]", "nested"), ("a[x]", "not a number"),
])
def test_a_bad_node_list_is_one_line_naming_the_variable(text, why):
    with pytest.raises(ConfigError, match=re.escape(why)) as info:
        detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": text,
                "SLURM_JOB_ID": "7"})
    assert info.value.fields == ["SLURM_JOB_NODELIST"] and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- detection

TORCHRUN = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
SLURM = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "123456",
         "SLURM_JOB_NODELIST": "gpu[07-10]", "SLURM_NODELIST": "gpu[07-10]",
         "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.7"}


@pytest.mark.parametrize("env, expected", [
    ({}, LaunchEnv("single", 0, 0, 1, "127.0.0.1", None)),
    (TORCHRUN, LaunchEnv("torchrun", 3, 1, 4, "node0", 29500)),
    ({"RANK": "0", "WORLD_SIZE": "1"}, LaunchEnv("torchrun", 0, 0, 1, "127.0.0.1", None)),
    (SLURM, LaunchEnv("slurm", 5, 1, 8, "gpu07", derived_port(123456))),
    ({**SLURM, "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "gpu[09-10]",
      "SLURM_PROCID": "3"}, LaunchEnv("slurm", 3, 1, 4, "gpu09", derived_port(123456))),
    ({**SLURM, "MASTER_ADDR": "head", "MASTER_PORT": "1234"},
     LaunchEnv("slurm", 5, 1, 8, "head", 1234)),
    ({k: v for k, v in SLURM.items() if "NODELIST" not in k},
     LaunchEnv("slurm", 5, 1, 8, "10.0.0.7", derived_port(123456))),
    # torchrun inside a SLURM job: torchrun's variables describe the worker, not srun's
    ({**SLURM, **TORCHRUN}, LaunchEnv("torchrun", 3, 1, 4, "node0", 29500)),
])
def test_detect(env, expected):
    assert detect(env) == expected
    assert world_size(env) == expected.world_size


@given(st.integers(1, 64), st.data(), st.integers(0, 10 ** 9))
def test_a_slurm_launch_exported_reads_back_as_the_same_torchrun_launch(world, data, job):
    rank = data.draw(st.integers(0, world - 1))
    env = {"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % 4), "SLURM_NTASKS": str(world),
           "SLURM_JOB_ID": str(job), "SLURM_NODELIST": "n[3-9]"}
    slurm = detect(env)
    assert 20000 <= slurm.master_port < 40000
    exported = dict(env)
    slurm.export(exported)
    again = detect(exported)
    assert (again.launcher, again.rank, again.local_rank, again.world_size, again.master_addr,
            again.master_port) == ("torchrun", rank, rank % 4, world, "n3", slurm.master_port)


@pytest.mark.parametrize("env, variable, message", [
    ({"RANK": "0"}, "WORLD_SIZE", "not set"),
    ({"RANK": "4", "WORLD_SIZE": "4", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "RANK",
     "not a rank of a world of 4"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE", "expected an integer, got 'two'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"}, "MASTER_ADDR", "not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "99999"},
     "MASTER_PORT", r"in \[1, 65535\]"),
    ({**SLURM, "SLURM_PROCID": "8"}, "SLURM_PROCID", "not a rank of a world of 8"),
    ({**SLURM, "SLURM_NTASKS": "0"}, "SLURM_NTASKS", ">= 1"),
    ({k: v for k, v in SLURM.items() if k != "SLURM_JOB_ID"}, "MASTER_PORT", "SLURM_JOB_ID"),
    ({k: v for k, v in SLURM.items() if "NODE" not in k}, "MASTER_ADDR", "SLURM_NODELIST"),
])
def test_a_bad_launch_variable_is_one_line_naming_it(env, variable, message):
    with pytest.raises(ConfigError, match=message) as info:
        detect(env)
    assert info.value.fields == [variable] and "\n" not in str(info.value)


def test_every_task_of_a_job_derives_one_port_and_neighbouring_jobs_differ():
    ports = {derived_port(job) for job in range(1000, 1100)}
    assert len(ports) == 100
    for job, rank in itertools.product((5, 77777), range(4)):
        env = {**SLURM, "SLURM_PROCID": str(rank), "SLURM_JOB_ID": str(job)}
        assert detect(env).master_port == derived_port(job)
