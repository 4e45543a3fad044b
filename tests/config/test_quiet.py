"""mbridge_config.quiet: the listed dependency warnings and log lines are dropped, nothing else;
the rest is shown once per process, by rank 0 only unless MBRIDGE_ALL_RANK_WARNINGS is set."""

import logging
import warnings

import pytest

from mbridge_config import quiet

# What each WARNINGS entry looks like when a dependency raises it (message, category, module).
RAISED = [
    ("Transformer Engine and Apex are not installed. Falling back to Torch optimizers.",
     UserWarning, "megatron.core.optimizer"),
    ("Transformer Engine and Apex are not installed. Falling back to local implementations of "
     "multi_tensor_applier and multi_tensor_scale", UserWarning, "megatron_fsdp.mixed_precision"),
    ("Apex is not installed. Falling back to Torch Norm", UserWarning,
     "megatron.core.models.backends"),
    ("Only transformer-engine>=1.7.0 supports MoE experts, but your version is 0.",
     UserWarning, "megatron.core.extensions.transformer_engine_spec_provider"),
    ("The following imports from `dynamic_context.py` will be removed", DeprecationWarning,
     "megatron.core.inference.contexts"),
    ("MimoModelConfig is experimental and still under active development.", UserWarning,
     "megatron.core.models.mimo.config.base_configs"),
    ("full scope is deprecated. Use empty cuda_graph_modules to capture the whole layer.",
     UserWarning, "megatron.core.transformer.transformer_config"),
    ("invalid escape sequence '\\-'", SyntaxWarning,
     "/venv/site-packages/megatron/core/inference/contexts/kv_block_allocator"),
    ("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed.",
     UserWarning, "mbridge_models.runtime"),
]
LOGGED = [
    ("megatron.core.dist_checkpointing.strategies.torch",
     "MCore's async save is deprecated and will be removed in the future releases."),
    ("megatron.core.models.gpt.gpt_model", "GPTModel IS DEPRECATED. GPTModel is only accepting"),
    ("megatron.core.distributed.distributed_data_parallel",
     "DistributedDataParallel: full_param_layout not provided with use_distributed_optimizer"),
    ("megatron.core.datasets.gpt_dataset",
     "Unable to save MockGPTDataset indexes because path_to_cache is None"),
    ("torch.utils.cpp_extension", "No CUDA runtime is found, using CUDA_HOME='/usr/local'"),
]


def _shown(calls, *, rank, monkeypatch, all_ranks=False):
    """Messages shown for ``calls`` [(message, category, module)] after a fresh install()."""
    monkeypatch.setattr(quiet, "_state", {"dropped": False, "installed": False})
    monkeypatch.setattr(quiet.sys, "warnoptions", [])
    if all_ranks:
        monkeypatch.setenv(quiet.ALL_RANKS_VARIABLE, "1")
    else:
        monkeypatch.delenv(quiet.ALL_RANKS_VARIABLE, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # as Python starts
        quiet.install(rank=rank)
        registries = {}  # each module's __warningregistry__, as warnings.warn passes it
        for line, (message, category, module) in enumerate(calls):
            warnings.warn_explicit(message, category, f"{module}.py", line + 1, module=module,
                                   registry=registries.setdefault(module, {}))
    return [str(w.message) for w in caught]


@pytest.fixture(autouse=True)
def _restore_loggers():
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).filters))
             for name in (*quiet.LOG_RECORDS, *quiet.DEPENDENCY_LOGGERS)}
    yield
    for name, (level, filters) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).filters[:] = filters


@pytest.mark.parametrize("message, category, module", RAISED)
def test_each_listed_dependency_warning_is_dropped(message, category, module, monkeypatch):
    assert _shown([(message, category, module)], rank=0, monkeypatch=monkeypatch) == []


def test_the_same_message_from_elsewhere_is_kept(monkeypatch):
    """A listed message raised by the user's own code (or mbridge) still shows."""
    calls = [("Apex is not installed. Falling back to Torch Norm", UserWarning, "my_script"),
             ("The .grad attribute of a Tensor that is not a leaf", UserWarning, "__main__")]
    assert len(_shown(calls, rank=0, monkeypatch=monkeypatch)) == 2


def test_once_per_process_and_mbridge_deprecations_shown(monkeypatch):
    deprecated = "transformer_layer_spec='mcore_local' is deprecated: write 'local'"
    calls = [("a user warning", UserWarning, "mbridge_train.checkpointing")] * 3 + [
        (deprecated, DeprecationWarning, "mbridge_models.gpt_provider"),
        (deprecated, DeprecationWarning, "mbridge_models.gpt_provider"),
        ("megatron's own deprecation", DeprecationWarning, "megatron.core.transformer.mlp")]
    assert _shown(calls, rank=0, monkeypatch=monkeypatch) == ["a user warning", deprecated]


def test_other_ranks_show_no_warnings_unless_asked(monkeypatch):
    calls = [("rank-local", UserWarning, "mbridge_train.checkpointing")]
    assert _shown(calls, rank=1, monkeypatch=monkeypatch) == []
    assert logging.getLogger("megatron").getEffectiveLevel() == logging.ERROR
    assert _shown(calls, rank=1, monkeypatch=monkeypatch, all_ranks=True) == ["rank-local"]


@pytest.mark.parametrize("name, message", LOGGED)
def test_each_listed_log_line_is_dropped_and_its_neighbours_kept(name, message, monkeypatch):
    monkeypatch.setattr(quiet, "_state", {"dropped": False, "installed": False})
    quiet.drop_inapplicable()
    logger = logging.getLogger(name)
    record = lambda text: logger.makeRecord(name, logging.WARNING, "f.py", 1, text, (), None)  # noqa: E731
    assert not logger.filter(record(message))
    assert logger.filter(record("Unable to save GPTDataset indexes: a real data set"))


def test_the_launcher_rank(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert quiet._launcher_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert quiet._launcher_rank() == 3
    monkeypatch.setenv("RANK", "1")
    assert quiet._launcher_rank() == 1
