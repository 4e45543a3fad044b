"""Checkpoints through CheckpointConfig: megatron-core dist_checkpointing, Megatron's layout.

    <save>/iter_0000010/                        one torch_dist checkpoint per save: model chunks,
                                                optimizer, scheduler, train state, per-rank RNG
    <save>/iter_0000010/run_config.yaml         the run's config, for humans
    <save>/iter_0000010/hf_assets/              Hugging Face config + tokenizer files, so the
                                                save exports alone (mbridge_train.hf_assets)
    <save>/iter_0000010/checksums.json          size + CRC-32 of every file (mbridge_train.
                                                checksums), written after all of them
    <save>/latest_checkpointed_iteration.txt    written last (temp file + rename): a save it does
                                                not name was never finished and is never loaded

A PEFT run saves and resumes only the adapter parameters (and their optimizer state); its base
weights always come from ``pretrained_checkpoint``. Bad input raises ``CheckpointError`` (a file
or folder) or ``ConfigError`` (a field), one line each.

Never losing a checkpoint:

- Every load checks the folder against its ``checksums.json`` first: a missing, truncated or
  corrupted file is named in one CheckpointError and nothing is loaded.
- A tracker that is gone while ``iter_*`` folders remain (deleted by hand, lost in a copy) is
  what a Megatron user reads as "resume from the newest checkpoint that is there": the run
  resumes from the newest folder whose save completed (its manifest exists and verifies) and
  says so in one line; it never starts from scratch over them. When no folder verifies (only
  unfinished or pre-checksum saves), the run refuses in one line rather than guess.
- A run never overwrites a finished checkpoint: when ``checkpoint.save`` already holds one at an
  iteration this run would save (a fresh run pointed at an old save folder, an older
  ``ckpt_step``), setup refuses in one line. Folders newer than the tracker are unfinished saves
  and are removed at the start, with the tracker's temp files of killed saves.
- ``most_recent_k`` counts only complete checkpoints and always keeps the tracked one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import warnings

import numpy as np
import torch

from mbridge_config.errors import ConfigError, MBridgeError
from mbridge_train import async_saves, checksums
from mbridge_train.atomic_file import replace_bytes

TRACKER = "latest_checkpointed_iteration.txt"
CONFIG_FILE = "run_config.yaml"
ADAPTER_MARK = ".adapter."
_INFO = "mbridge"  # common-state entry describing what a checkpoint holds
_RNG_KEY = "mbridge_rng_state"
_LENIENT = {"log_unexpected", "log_all", "return_unexpected", "return_all", "ignore_all"}

class CheckpointError(MBridgeError, RuntimeError):
    """A checkpoint file or folder is missing, unfinished, corrupt or does not fit the model."""


# ----------------------------------------------------------------------------- layout


def iteration_dir(root: str, iteration: int) -> str:
    return os.path.join(root, f"iter_{iteration:07d}")


def read_tracker(root: str) -> int | None:
    """The iteration the tracker names; None when there is no tracker."""
    path = os.path.join(root, TRACKER)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().strip()
    if not text.isdigit():
        raise CheckpointError(f"{path}: corrupt tracker: expected an iteration number, "
                              f"found {text[:40]!r}")
    return int(text)


def write_tracker(root: str, iteration: int) -> None:
    """Atomically point the tracker at ``iteration`` (temp file in the same folder + rename)."""
    replace_bytes(os.path.join(root, TRACKER), f"{iteration}\n".encode())


def saving_marker(root: str, iteration: int) -> str:
    """``<save>/.iter_N.saving``: there from before a save writes its folder until the tracker
    names it. A folder whose marker is left and that no tracker names is an unfinished save,
    even one whose files are all written (killed before its manifest or tracker)."""
    return os.path.join(root, f".{os.path.basename(iteration_dir(root, iteration))}.saving")


def saved_iterations(root: str) -> list[int]:
    """Iterations with an ``iter_*`` folder under ``root`` (finished or not), ascending."""
    if not os.path.isdir(root):
        return []
    names = (n for n in os.listdir(root) if n.startswith("iter_") and n[5:].isdigit())
    return sorted(int(n[5:]) for n in names if os.path.isdir(os.path.join(root, n)))


def expired(iterations: list[int], tracked: int, keep: int | None,
            complete: set[int] | None = None) -> list[int]:
    """Iterations most_recent_k lets go: every folder up to the tracked iteration but the
    ``keep`` newest complete ones (``complete``: the iterations whose save finished; default
    all). The tracked one always stays, so the only complete checkpoint is never deleted.
    Folders newer than the tracked iteration are unfinished saves, not older ones, and are
    left for the next save of that iteration (or the next start) to replace."""
    if keep is None or keep < 1:
        return []
    finished = sorted(i for i in iterations if i <= tracked)
    whole = [i for i in finished if complete is None or i in complete or i == tracked]
    kept = set(whole[-keep:]) | {tracked}
    return [i for i in finished if i not in kept]


def find_checkpoint(root: str, step: int | None = None) -> str:
    """The folder of iteration ``step`` (default: the tracked one) under a save root."""
    tracked = read_tracker(root)
    iteration = step if step is not None else tracked
    if iteration is None:
        raise CheckpointError(f"{root}: no {TRACKER} here, so no finished checkpoint")
    directory = iteration_dir(root, iteration)
    if not _is_finished(directory):
        named = (f"{os.path.join(root, TRACKER)} names iteration {iteration}" if step is None
                 else f"checkpoint.ckpt_step={step}")
        state = "is missing" if not os.path.isdir(directory) else "holds no finished checkpoint"
        raise CheckpointError(f"{directory}: {state} ({named})")
    return directory


def resume_directory(ckpt) -> str | None:
    """The iteration folder a run resumes from; None to start fresh (collective when it has
    to verify folders: a tracker is missing beside iteration folders)."""
    if not ckpt.load:
        return None
    if read_tracker(ckpt.load) is None:
        found = newest_complete(ckpt.load) if saved_iterations(ckpt.load) else None
        if found is not None:
            return found
        if ckpt.exit_on_missing_checkpoint:
            what = "does not exist" if not os.path.isdir(ckpt.load) else f"holds no {TRACKER}"
            raise CheckpointError(f"{ckpt.load}: {what}, and checkpoint.exit_on_missing_checkpoint "
                                  "is set (checkpoint.load must name a folder a run saved to)")
        _say(f" no checkpoint in {ckpt.load} (no {TRACKER}): starting from scratch")
        return None
    return find_checkpoint(ckpt.load, ckpt.ckpt_step)


def newest_complete(root: str) -> str | None:
    """Without a tracker: the newest ``iter_*`` folder whose save completed and verifies (said
    in one line); None when there are only unfinished saves; CheckpointError when a finished
    save is there that cannot be verified (saved before checksums) or none verifies."""
    rejected = []
    for iteration in reversed(saved_iterations(root)):
        directory = iteration_dir(root, iteration)
        if not checksums.is_complete(directory):
            if _is_finished(directory):
                rejected.append(f"{os.path.basename(directory)} has no {checksums.MANIFEST}")
            continue
        problem = _verify(directory, raise_error=False)
        if problem is None:
            skipped = f" ({'; '.join(rejected)})" if rejected else ""
            _say(f" {os.path.join(root, TRACKER)} is missing: resuming from {directory}, the "
                 f"newest complete checkpoint{skipped}")
            return directory
        rejected.append(problem)
    if rejected:
        raise CheckpointError(f"{os.path.join(root, TRACKER)} is missing and no iteration folder "
                              f"verifies ({'; '.join(rejected[:3])}); write the iteration to "
                              f"resume from into {TRACKER}, or set checkpoint.load to another "
                              "folder")
    return None


_VERIFIED: dict[str, int] = {}
"""Folders this process verified, with their manifest's mtime_ns (a resume verifies once)."""


def _verify(directory: str, raise_error: bool = True) -> str | None:
    """Check ``directory`` against its checksum manifest on every rank (collective); the first
    problem as one line (raised as CheckpointError, or returned). No manifest: nothing to
    check (saved before checksums existed)."""
    manifest = os.path.join(directory, checksums.MANIFEST)
    stamp = os.stat(manifest).st_mtime_ns if os.path.isfile(manifest) else None
    key = os.path.realpath(directory)
    if stamp is not None and _VERIFIED.get(key) == stamp:
        return None
    problem, _ = checksums.verify(directory)
    if problem is None:
        if stamp is not None:
            _VERIFIED[key] = stamp
        return None
    if raise_error:
        raise CheckpointError(f"{problem}; not loaded")
    return problem


def _is_finished(directory: str) -> bool:
    from megatron.core import dist_checkpointing

    return os.path.isdir(directory) and dist_checkpointing.check_is_distributed_checkpoint(
        directory)


def start(ckpt, train_iters: int | None = None) -> str | None:
    """What a run does with its checkpoint folders before anything is built (collective):
    rank 0 removes what killed saves left under ``checkpoint.save``, then the folder to resume
    from is found (None: a fresh start) and a run that would overwrite a finished checkpoint
    is refused."""
    if ckpt.save:
        failure = None
        if _rank() == 0:
            try:
                remove_leftovers(ckpt.save)
            except OSError as error:
                failure = f"{ckpt.save}: cannot remove leftovers of unfinished saves ({error})"
        failure = checksums.broadcast(failure)  # every rank stops, none waits in a barrier
        if failure:
            raise CheckpointError(failure)
    directory = resume_directory(ckpt)
    if ckpt.save:
        begins = 0 if directory is None or ckpt.finetune else _iteration_of(directory)
        _refuse_overwrite(ckpt, begins, train_iters, resumed=directory)
    return directory


def remove_leftovers(root: str) -> list[str]:
    """Delete what killed saves leave under a save root, and nothing else: the tracker's temp
    files (``.latest_checkpointed_iteration.txt.*``), manifest temp files, the loss curve's
    (``.loss_curve.png.*.tmp``, ``.loss_curve.jsonl.*.tmp``), and ``iter_*`` folders newer than
    the tracked iteration or left with their ``saving_marker`` and never tracked (unfinished
    saves). Returns what was removed."""
    if not os.path.isdir(root):
        return []
    from mbridge_train.loss_curve import FILENAME, HISTORY

    removed = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        ours = name.startswith(f".{TRACKER}.") or (
            name.startswith((f".{FILENAME}.", f".{HISTORY}.")) and name.endswith(".tmp"))
        if ours and os.path.isfile(path):
            os.unlink(path)
            removed.append(path)
    try:
        tracked = read_tracker(root)
    except CheckpointError:  # said on every rank when the run reads it; remove no folder
        tracked = None
        unreadable = True
    else:
        unreadable = False
    for iteration in saved_iterations(root):
        directory = iteration_dir(root, iteration)
        marker = saving_marker(root, iteration)
        unfinished = tracked is not None and iteration > tracked
        if os.path.exists(marker) and not unreadable:
            unfinished = unfinished or tracked is None
            os.remove(marker)  # of a tracked iteration: killed between the tracker and this
            removed.append(marker)
        if unfinished:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
            continue
        for name in os.listdir(directory):
            if name.startswith(f".{checksums.MANIFEST}."):
                os.unlink(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
    if removed:
        _say(f" removed {len(removed)} leftover(s) of unfinished saves under {root}")
    return removed


def _refuse_overwrite(ckpt, begins: int, train_iters: int | None, resumed: str | None) -> None:
    """One error when a finished checkpoint under ``checkpoint.save`` sits at an iteration this
    run (starting at ``begins``) would save again: a fresh run in an old save folder, or a
    resume from an older ``ckpt_step``. Without a tracker, a run resuming from that folder
    already took its newest complete save, and newer folders failed to verify."""
    root = ckpt.save
    same = resumed is not None and os.path.realpath(os.path.dirname(resumed)) == \
        os.path.realpath(root)
    tracked = read_tracker(root)
    if tracked is None and same:
        return
    end = train_iters if train_iters is not None else float("inf")
    for iteration in saved_iterations(root):
        if not begins < iteration <= end or (tracked is not None and iteration > tracked):
            continue
        directory = iteration_dir(root, iteration)
        if checksums.is_complete(directory) or _is_finished(directory):
            raise CheckpointError(
                f"{directory}: a finished checkpoint this run would overwrite (it starts at "
                f"iteration {begins}); set checkpoint.load={root} to resume from the newest one, "
                "or set checkpoint.save to another folder")


def _iteration_of(directory: str) -> int:
    name = os.path.basename(os.path.normpath(directory))
    return int(name[5:]) if name.startswith("iter_") and name[5:].isdigit() else 0


# ----------------------------------------------------------------------------- saving


def save_checkpoint(ckpt, train_state, model: list, optimizer=None, scheduler=None, *,
                    adapters_only: bool = False, run_config=None) -> str | None:
    """Save to ``<ckpt.save>/iter_<train_state.step>`` and then move the tracker to it
    (collective). ``adapters_only``: a PEFT run's adapters (and their optimizer state);
    ``run_config``: the ConfigContainer written beside it as YAML, for humans.

    With ``ckpt.async_save`` the files are written in the background (``async_saves``) and the
    tracker moves when the loop finalizes the save; an earlier pending save finishes first."""
    from megatron.core import dist_checkpointing

    if not ckpt.save:
        return None
    async_saves.wait()
    root, iteration = ckpt.save, train_state.step
    directory = iteration_dir(root, iteration)
    _prepare_folder(root, directory, iteration)
    with_optim = bool(ckpt.save_optim and optimizer is not None and _has_state(optimizer))
    metadata = _sharding_metadata(ckpt, optimizer)
    request = _sharded_request(model, optimizer if with_optim else None, metadata,
                               adapters_only=adapters_only, loading=False, rng=ckpt.save_rng)
    request["train_state"] = train_state.state_dict()
    if with_optim:
        request["opt_param_scheduler"] = scheduler.state_dict()
    request[_INFO] = _describe(adapters_only, with_optim, ckpt.save_rng)

    def beside() -> None:  # after the write started: megatron wants an empty folder to write to
        if _rank() == 0 and run_config is not None:
            _write_config(run_config, os.path.join(directory, CONFIG_FILE))
            _write_hf_assets(run_config, directory)
        if getattr(ckpt, "also_save_hf_checkpoint", False) and run_config is not None:
            _barrier()
            _save_hf_beside(run_config, model, directory)  # before the weights move on

    def finish() -> None:
        _barrier()
        checksums.write_manifest(directory)  # every rank's files, before the tracker moves
        if _rank() == 0:
            write_tracker(root, iteration)
            with contextlib.suppress(FileNotFoundError):
                os.remove(saving_marker(root, iteration))
            _prune(root, iteration, ckpt.most_recent_k)
        _barrier()
        _say(f" saved checkpoint {directory}")

    if ckpt.async_save:
        persistent = async_saves.persistent_worker(ckpt)
        async_saves.prepare_results_queue(persistent)
        validate = _validate_access(ckpt)
        pending = dist_checkpointing.save(request, directory, _save_strategy(ckpt),
                                          validate_access_integrity=validate,
                                          async_sharded_save=True, async_strategy="mcore",
                                          content_metadata=_serializable(metadata))
        async_saves.schedule(pending, iteration, directory, finish, persistent)
        beside()
        _say(f" saving checkpoint {directory} in the background")
        return directory
    _in_process_write_results()
    validate = _validate_access(ckpt)
    dist_checkpointing.save(request, directory, _save_strategy(ckpt),
                            validate_access_integrity=validate,
                            content_metadata=_serializable(metadata))
    beside()
    finish()
    return directory


def save_model_weights(model: list, root: str, provider=None) -> str:
    """The model chunks alone (no optimizer, no RNG) as iteration 0 under ``root``: a start that
    ``pretrained_checkpoint`` or ``load`` reads under any parallel layout (collective). With
    ``provider`` it also keeps the model's config and Hugging Face files (hf_assets), so it
    exports with nothing else."""
    from mbridge_config import CheckpointConfig, ConfigContainer
    from mbridge_train.state import TrainState

    ckpt = CheckpointConfig(save=str(root), save_optim=False, save_rng=False)
    run_config = None if provider is None else ConfigContainer(model=provider, checkpoint=ckpt)
    return save_checkpoint(ckpt, TrainState(), model, run_config=run_config)


def _has_state(optimizer) -> bool:
    """Whether the optimizer has taken a step (before that torch's Adam holds no state, and a
    fresh optimizer on resume is exactly what was there)."""
    inners = getattr(optimizer, "chained_optimizers", [optimizer])
    return all(inner.optimizer.state for inner in inners
               if any(group["params"] for group in inner.optimizer.param_groups))


def _prepare_folder(root: str, directory: str, iteration: int) -> None:
    """Rank 0 clears an unfinished earlier save of this iteration; the tracker never names a
    folder while it is rewritten, and a complete save no tracker names is never replaced."""
    refused = None
    if _rank() == 0:
        os.makedirs(root, exist_ok=True)
        tracked = read_tracker(root)
        if os.path.isdir(directory) and tracked is None and checksums.is_complete(directory) \
                and _verifies(directory):
            refused = (f"{directory}: a complete checkpoint that {TRACKER} does not name; this "
                       "save would overwrite it (move it away, or resume from it with "
                       "checkpoint.load)")
        else:
            if tracked == iteration:
                os.remove(os.path.join(root, TRACKER))
            open(saving_marker(root, iteration), "w").close()
            if os.path.isdir(directory):
                shutil.rmtree(directory)
            os.makedirs(directory)
    refused = checksums.broadcast(refused)  # every rank stops, none waits in a barrier
    if refused:
        raise CheckpointError(refused)
    _barrier()


def _verifies(directory: str) -> bool:
    """This process alone checks a whole folder (not collective)."""
    try:
        expected = checksums.read_manifest(directory)
    except ValueError:
        return False
    return expected is not None and not checksums.problems(directory, expected)[0]


def _write_config(cfg, path: str) -> None:
    """The run's config beside its checkpoint, for humans. A config YAML cannot hold (a
    lambda) costs a warning, not the save. The text is made once per run (~0.1 s of YAML
    emitting, which every save would otherwise add to the step that starts it)."""
    from mbridge_config.serialization import write_text

    key = id(cfg)
    if key not in _config_texts:
        try:
            _config_texts[key] = cfg.to_yaml()
        except ConfigError as error:
            _config_texts[key] = error
    text = _config_texts[key]
    if isinstance(text, ConfigError):
        warnings.warn(f"{path} not written: {text}", stacklevel=2)
        return
    write_text(path, text)


def _write_hf_assets(cfg, directory: str) -> None:
    """The Hugging Face config / tokenizer files beside the weights (hf_assets), so the save
    exports with nothing else (none for models no Hugging Face architecture describes); a file
    that cannot be copied costs a warning, not the save."""
    from mbridge_train.hf_assets import save_with_checkpoint

    try:
        save_with_checkpoint(cfg, directory)
    except OSError as error:
        warnings.warn(f"{directory}: no hf_assets written ({error})", stacklevel=2)


HF_FOLDER = "hf"


def _save_hf_beside(cfg, model: list, directory: str) -> None:
    """checkpoint.also_save_hf_checkpoint: ``<directory>/hf`` through AutoBridge's streaming
    export (collective: every rank gathers, rank 0 writes), before the tracker names the
    iteration."""
    import json

    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.hf_assets import ASSETS, assets_of

    assets = assets_of(directory)
    if assets is None:
        raise CheckpointError(f"checkpoint.also_save_hf_checkpoint: {directory} has no "
                              f"{ASSETS}/config.json (no Hugging Face architecture describes "
                              "this model); set it to False")
    bridge = AutoBridge(json.loads((assets / "config.json").read_text()), assets_path=assets)
    bridge._provider = cfg.model
    bridge.save_hf_pretrained(model, os.path.join(directory, HF_FOLDER), show_progress=False)


def _prune(root: str, tracked: int, keep: int | None) -> None:
    iterations = saved_iterations(root)
    complete = {i for i in iterations if checksums.is_complete(iteration_dir(root, i))}
    for iteration in expired(iterations, tracked, keep, complete):
        shutil.rmtree(iteration_dir(root, iteration), ignore_errors=True)


def _describe(adapters_only: bool, optimizer: bool, rng: bool) -> dict:
    from megatron.core import parallel_state as ps

    return {"adapters_only": adapters_only, "optimizer": bool(optimizer), "rng": bool(rng),
            "world_size": _world_size(),
            "tensor_parallel": ps.get_tensor_model_parallel_world_size(),
            "pipeline_parallel": ps.get_pipeline_model_parallel_world_size(),
            "data_parallel": ps.get_data_parallel_world_size()}


def _in_process_write_results() -> None:
    """megatron-core's torch_dist writer hands its threads' results over a multiprocessing
    Manager queue, started on a process's first save by *spawning* an interpreter that re-imports
    the main script (~15 s on a 2-core machine) and left running. mbridge saves synchronously, in
    this process, where a thread-safe queue does the same job (a fresh one per save, so a
    failed save leaves no stale results for the next)."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if filesystem_async._results_queue is None or isinstance(filesystem_async._results_queue,
                                                            queue.Queue):
        filesystem_async._results_queue = queue.Queue()


_reused_strategy = None  # with ckpt_assume_constant_structure: one per run, its plan cached
_config_texts: dict[int, str | ConfigError] = {}  # the run's config as YAML, made once


def _save_strategy(ckpt):
    """torch_dist's save strategy; with ``checkpoint.ckpt_assume_constant_structure`` the same
    one for every save of the process, so its plan and metadata are computed once (megatron
    caches them on the strategy) and the per-save planning drops out of the step."""
    global _reused_strategy
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import (
        FullyParallelSaveStrategyWrapper)

    constant = bool(ckpt.ckpt_assume_constant_structure)
    if constant and _reused_strategy is not None:
        return _reused_strategy
    strategy = get_default_save_sharded_strategy()
    strategy.use_cached_ckpt_structure = constant
    if ckpt.fully_parallel_save and ps.get_data_parallel_world_size() > 1:
        strategy = FullyParallelSaveStrategyWrapper(
            strategy, ps.get_data_parallel_group(with_context_parallel=True), constant)
    if constant:
        _reused_strategy = strategy
    return strategy


def new_run() -> None:
    """A new run (another config, model or layout) plans its saves afresh."""
    global _reused_strategy
    _reused_strategy = None
    _config_texts.clear()


def _validate_access(ckpt) -> bool:
    """The all-rank check that every shard is written exactly once: on the first save only
    when the structure is assumed constant."""
    return not (ckpt.ckpt_assume_constant_structure and _reused_strategy is not None)


# ----------------------------------------------------------------------------- loading


def load_checkpoint(state, model: list, optimizer, scheduler, directory: str | None = None
                    ) -> int | None:
    """Resume from ``checkpoint.load`` (or ``directory``, what ``start`` found): model
    (adapters under PEFT), optimizer and scheduler (``load_optim``), RNG streams
    (``load_rng``) and progress. Returns the iteration loaded, or None when there is nothing to
    resume from (fresh start)."""
    cfg = state.cfg
    ckpt = cfg.checkpoint
    directory = directory or resume_directory(ckpt)
    if directory is None:
        return None
    _verify(directory)
    info = _info(directory)
    adapters_only = cfg.peft is not None
    if info.get("adapters_only", False) != adapters_only:
        held = "PEFT adapters only" if info.get("adapters_only") else "a full model"
        raise CheckpointError(f"{directory}: holds {held}, but this run "
                              f"{'uses' if adapters_only else 'does not use'} PEFT (cfg.peft)")
    resume = not ckpt.finetune
    with_optim = resume and ckpt.load_optim and info.get("optimizer", False)
    with_rng = resume and ckpt.load_rng and info.get("rng", False)
    if with_rng and info.get("world_size") != _world_size():
        _say(f" RNG streams not restored: {directory} was saved by {info.get('world_size')} "
             f"ranks, this run has {_world_size()}")
        with_rng = False
    metadata = _sharding_metadata(ckpt, optimizer, _content_metadata(directory))
    request = _sharded_request(model, optimizer if with_optim else None, metadata,
                               adapters_only=adapters_only, loading=True, rng=with_rng)
    loaded = _load(request, directory, ckpt.dist_ckpt_strictness)
    _load_model(model, loaded, request, lenient=ckpt.dist_ckpt_strictness in _LENIENT,
                where=directory)
    if with_optim:
        from mbridge_train.optim import align_param_groups, reconcile_scheduler

        # The schedule first: a changed learning rate is one line, not a KeyError inside
        # megatron's optimizer (it pairs parameter groups by their rates).
        schedule = reconcile_scheduler(cfg, scheduler, loaded["opt_param_scheduler"], say=_say,
                                       saved_progress=loaded.get("train_state"))
        align_param_groups(cfg, optimizer, loaded["optimizer"])
        with torch.no_grad():  # fp32 main params can be views of the model's leaf params
            optimizer.load_state_dict(loaded["optimizer"])
        _restore_steps(optimizer)
        scheduler.load_state_dict(schedule)
    else:  # main (fp32) copies of the parameters must follow the loaded weights
        optimizer.reload_model_params()
    if resume:
        state.train_state.load_state_dict(loaded["train_state"])
    if with_rng:
        _restore_rng(loaded[_RNG_KEY])
    _say(f" loaded checkpoint {directory} (iteration {state.train_state.step})")
    return state.train_state.step


def load_pretrained_weights(path: str, model: list) -> str:
    """Load only model weights (a fine-tune's start) from a save root with a tracker or from an
    ``iter_*`` folder. Under PEFT the base weights load and the adapters stay as initialised.
    Call before the optimizer is built (its main parameters copy the model's)."""
    directory = _pretrained_directory(path)
    _verify(directory)
    if _info(directory).get("adapters_only"):
        raise CheckpointError(f"{directory}: holds PEFT adapters only; pretrained_checkpoint "
                              "needs a checkpoint of the whole base model")
    request = _sharded_request(model, None, _sharding_metadata(None, None), adapters_only=False,
                               loading=True, rng=False, base_only=True)
    loaded = _load(request, directory, "assume_ok_unexpected")
    _load_model(model, loaded, request, lenient=False, where=directory)
    _say(f" loaded pretrained weights from {directory}")
    return directory


def load_adapter_weights(path: str, model: list) -> str:
    """Load only the adapters of an adapter-only (PEFT) save into an adapted ``model``."""
    directory = _pretrained_directory(path)
    _verify(directory)
    if not _info(directory).get("adapters_only"):
        raise CheckpointError(f"{directory}: holds a full model, not PEFT adapters")
    request = _sharded_request(model, None, _sharding_metadata(None, None), adapters_only=True,
                               loading=True, rng=False)
    loaded = _load(request, directory, "assume_ok_unexpected")
    _load_model(model, loaded, request, lenient=False, where=directory)
    return directory


def _pretrained_directory(path: str, what: str = "checkpoint.pretrained_checkpoint") -> str:
    if os.path.isfile(os.path.join(path, TRACKER)):
        return find_checkpoint(path)
    if _is_finished(path):
        return path
    problem = "does not exist" if not os.path.exists(path) else (
        f"is neither a save folder with {TRACKER} nor a finished iter_* checkpoint folder")
    raise CheckpointError(f"{path}: {problem} ({what})")


def _info(directory: str) -> dict:
    """What the checkpoint holds (mbridge's entry of its common state)."""
    from megatron.core import dist_checkpointing

    try:
        common = dist_checkpointing.load_common_state_dict(directory)
    except _LOAD_FAILURES as error:  # any unreadable file is one error naming it
        raise _load_failure(directory, error, "unreadable checkpoint") from None
    return common.get(_INFO) or {}


def _load_failures() -> tuple:
    from torch.distributed.checkpoint.api import CheckpointException

    return (Exception, CheckpointException)  # torch's is a BaseException


_LOAD_FAILURES = _load_failures()


def _load_failure(directory: str, error: BaseException, what: str) -> CheckpointError:
    """One line for a failed read: the shard that is missing or shorter than the checkpoint's
    metadata says when there is one (torch reports only 'CheckpointException ranks:...'),
    else the first line of the underlying error."""
    damaged = _damaged_shard(directory)
    if damaged is not None:
        return CheckpointError(f"{damaged}; not loaded")
    return CheckpointError(f"{directory}: {what} ({_failure_text(error)})")


def _failure_text(error: BaseException) -> str:
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict) and failures:
        rank, wrapped = sorted(failures.items())[0]
        inner = wrapped[0] if isinstance(wrapped, tuple) else wrapped
        if isinstance(inner, BaseException):
            return f"rank {rank}: {type(inner).__name__}: {_first_line(inner)}"
    return f"{type(error).__name__}: {_first_line(error)}"


def _damaged_shard(directory: str) -> str | None:
    """The first data file the DCP metadata points into that is missing or too short."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        storage = FileSystemReader(directory).read_metadata().storage_data or {}
    except Exception:  # noqa: BLE001 - unreadable metadata is reported by the caller
        return None
    needed: dict[str, int] = {}
    for info in storage.values():
        end = int(info.offset) + int(info.length)
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    for name, end in sorted(needed.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            return f"{path}: missing (the checkpoint's metadata points into it)"
        if os.path.getsize(path) < end:
            return (f"{path}: truncated ({os.path.getsize(path)} bytes, the checkpoint's "
                    f"metadata needs {end})")
    return None


def _content_metadata(directory: str) -> dict | None:
    from megatron.core import dist_checkpointing

    try:
        return dist_checkpointing.load_content_metadata(directory)
    except _LOAD_FAILURES as error:
        raise _load_failure(directory, error, "unreadable checkpoint metadata") from None


def _load(request: dict, directory: str, strictness: str) -> dict:
    """dist_checkpointing.load after checking the model tensors fit the checkpoint's."""
    from megatron.core import dist_checkpointing

    _check_fits(request, directory, strict=strictness not in _LENIENT)
    try:
        loaded = dist_checkpointing.load(request, directory, strict=strictness)
    except CheckpointError:
        raise
    except _LOAD_FAILURES as error:
        raise _load_failure(directory, error, "cannot load") from None
    return loaded[0] if isinstance(loaded, tuple) else loaded


def _check_fits(request: dict, directory: str, strict: bool) -> None:
    """The first model tensor the checkpoint lacks or holds with another shape, as one error."""
    saved = _saved_shapes(directory)
    for key, shape in _model_tensor_shapes(request):
        if key not in saved:
            if strict:
                raise CheckpointError(f"{directory}: has no tensor {key!r} (saved from a "
                                      "different architecture?)")
            continue
        if saved[key] != shape:
            raise CheckpointError(f"{directory}: tensor {key!r} has shape {saved[key]} there "
                                  f"but {shape} in this model (a different architecture or size)")


def _saved_shapes(directory: str) -> dict[str, tuple[int, ...]]:
    """Global shape of every tensor in a torch_dist checkpoint, from its DCP metadata (read
    directly: megatron-core 0.19's load_tensors_metadata fails on torch >= 2.13)."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        entries = FileSystemReader(directory).read_metadata().state_dict_metadata
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{directory}: unreadable checkpoint metadata "
                              f"({type(error).__name__}: {_first_line(error)})") from None
    return {key: tuple(entry.size) for key, entry in entries.items() if hasattr(entry, "size")}


def _model_tensor_shapes(request: dict):
    """(checkpoint key, global shape) of every model tensor requested, factories expanded."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    for name, part in request.items():
        if not name.startswith("model"):
            continue
        for item in nested_values(part):
            if isinstance(item, ShardedTensorFactory):
                items = list(nested_values(item.build()))
            else:
                items = [item]
            for tensor in items:
                if isinstance(tensor, ShardedTensor):
                    yield tensor.key, tuple(tensor.global_shape)


def _load_model(model: list, loaded: dict, request: dict, lenient: bool, where: str) -> None:
    """Copy the loaded tensors into each chunk; every requested key must have arrived."""
    for index, chunk in enumerate(model):
        key = _model_key(index, len(model))
        wanted, got = set(request[key]), loaded.get(key, {})
        lacking = sorted(wanted - set(got))
        if lacking and not lenient:
            raise CheckpointError(f"{where}: model tensor {lacking[0]!r} was not loaded")
        result = _bare(chunk).load_state_dict(got, strict=False)
        unexpected = [k for k in result.unexpected_keys if k in got]
        if unexpected:
            raise CheckpointError(f"{where}: {unexpected[0]!r} is not a tensor of this model")


# ----------------------------------------------------------------------------- the state


def _bare(chunk: torch.nn.Module) -> torch.nn.Module:
    """The model inside megatron's DDP / Float16Module wrappers: checkpoint keys are the bare
    model's (as in Megatron's checkpoints), and only its load_state_dict reports keys."""
    while isinstance(getattr(chunk, "module", None), torch.nn.Module):
        chunk = chunk.module
    return chunk


def _model_key(index: int, chunks: int) -> str:
    return "model" if chunks == 1 else f"model{index}"


def _sharded_request(model: list, optimizer, metadata: dict, *, adapters_only: bool,
                     loading: bool, rng: bool, base_only: bool = False) -> dict:
    """The sharded state dict to save or to load into: model chunks (adapters only, or base
    only), the optimizer over them, and this rank's RNG streams."""
    request = {}
    for index, chunk in enumerate(model):
        tensors = _bare(chunk).sharded_state_dict(metadata=metadata)
        if adapters_only or base_only:
            tensors = {k: v for k, v in tensors.items() if (ADAPTER_MARK in k) == adapters_only}
        request[_model_key(index, len(model))] = tensors
    if optimizer is not None:
        if loading:
            _allocate_optimizer_state(optimizer)
        request["optimizer"] = optimizer.sharded_state_dict(request, is_loading=loading,
                                                            metadata=metadata)
    if rng:
        request[_RNG_KEY] = _rng_object()
    return request


@torch.no_grad()
def _allocate_optimizer_state(optimizer) -> None:
    """megatron's distributed optimizer describes its state for loading only once torch's
    optimizer holds one (torch's Adam, used without TE/Apex, allocates it in its first step):
    one step with zero gradients at lr 0 changes no weight, and the load overwrites the state."""
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        torch_optimizer = inner.optimizer
        if torch_optimizer.state:
            continue
        rates = [group["lr"] for group in torch_optimizer.param_groups]
        for group in torch_optimizer.param_groups:
            group["lr"] = 0.0
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
        torch_optimizer.step()
        torch_optimizer.zero_grad(set_to_none=True)
        for group, rate in zip(torch_optimizer.param_groups, rates):
            group["lr"] = rate


def _restore_steps(optimizer) -> None:
    """Give every parameter its own Adam step counter, at the checkpoint's step. Loading into
    torch's Adam (no TE/Apex), megatron's distributed optimizer keeps the step in param_groups,
    shares one step tensor between all parameters (torch then increments it once per
    parameter) and copies the pre-load step back over it; bias correction would drift."""
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        torch_optimizer = inner.optimizer
        for group in torch_optimizer.param_groups:
            for param in group["params"]:
                step = torch_optimizer.state.get(param, {}).get("step")
                if "step" in group and torch.is_tensor(step):
                    torch_optimizer.state[param]["step"] = step.new_tensor(group["step"])


def _sharding_metadata(ckpt, optimizer, saved: dict | None = None) -> dict:
    """What model and optimizer sharded_state_dict() read: the distributed optimizer's layout
    (the checkpoint's own when loading), megatron's flags, the DP group."""
    from megatron.core import parallel_state as ps

    metadata = {"singleton_local_shards": False, "chained_optim_avoid_prefix": True}
    if saved:
        metadata.update(saved)
    elif getattr(getattr(optimizer, "config", None), "use_distributed_optimizer", False):
        fully = bool(ckpt and ckpt.dist_ckpt_optim_fully_reshardable)
        metadata["distrib_optim_sharding_type"] = (
            "fully_reshardable" if fully else "dp_reshardable")
    metadata["dp_cp_group"] = ps.get_data_parallel_group(with_context_parallel=True)
    return metadata


def _serializable(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k != "dp_cp_group"}


def _rng_object():
    """This rank's RNG streams as its own shard, so every rank gets its own back."""
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    streams = {"random": random.getstate(), "numpy": np.random.get_state(),
               "torch": torch.get_rng_state(),
               "tracker": {k: v.clone() for k, v in get_cuda_rng_tracker().get_states().items()}}
    if torch.cuda.is_available():
        streams["cuda"] = torch.cuda.get_rng_state()
    return ShardedObject(_RNG_KEY, streams, (_world_size(),), (_rank(),), replica_id=0)


def _restore_rng(streams: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    random.setstate(streams["random"])
    np.random.set_state(streams["numpy"])
    torch.set_rng_state(streams["torch"])
    if "cuda" in streams and torch.cuda.is_available():
        torch.cuda.set_rng_state(streams["cuda"])
    get_cuda_rng_tracker().set_states(streams["tracker"])


# ----------------------------------------------------------------------------- helpers


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _say(line: str) -> None:
    if _rank() == 0:
        print(line, flush=True)


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()
