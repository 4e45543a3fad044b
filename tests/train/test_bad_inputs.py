"""Bad input, one table: malformed checkpoints, data files and configs, each through what a
user runs (``setup()`` of a pretraining run, or reading a YAML config).

Every case gets one line naming the file or field (no newline, no traceback, raised by mbridge
itself, not chained to a dependency's exception) and leaves every file of the checkpoint or data
set it was given as it was (the tree is hashed before and after). A few cases are not errors but
must say one line and go on safely: a deleted tracker beside iteration folders, an extended
schedule, a stale index cache, leftovers of a killed save.

One good checkpoint (4-step schedule, saves at 1 and 2, stopped at 2) and one indexed data set
are made once; each case works on its own copy (shutil.copytree). All cases run in one forked
CPU rank, so the test costs one run's start-up plus ~30 set-ups.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
import tiny_run  # noqa: E402

pytestmark = pytest.mark.multiproc

TRACKER = "latest_checkpointed_iteration.txt"
SHARD = "iter_0000002/__0_0.distcp"
VOCAB = 300  # the tokenizer's; the model pads it


# ----------------------------------------------------------------------------- what to break


def _truncate(path, size=1000):
    os.truncate(path, size)


def _garbage(path, at=100_000, size=4096):
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(np.random.default_rng(0).bytes(size))


def _write_data(prefix: Path, docs: int = 30, length: int = 40, top: int = VOCAB - 2) -> str:
    from mbridge_data.indexed import index_bytes

    tokens = np.random.default_rng(docs).integers(0, top + 1, docs * length).astype(np.uint16)
    tokens[-1] = top  # the largest id is there
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.bin").write_bytes(tokens.tobytes())
    Path(f"{prefix}.idx").write_bytes(index_bytes(np.full(docs, length, np.int32), np.uint16))
    return str(prefix)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.blake2b(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- the cases
#
# name: (what is copied: "ckpt" or "data", how it is broken, the run's config fields,
#        expected: (error type or "ok", parts the message / said line must hold))
# Config fields: "load"/"save"/"pretrained" = the copy; "data" = blend of the copy's prefix.


def _cases():
    rm = os.remove
    return {
        # --- checkpoints -------------------------------------------------------------
        "missing_shard": ("ckpt", lambda d: rm(d / SHARD), dict(load=True),
                          ("CheckpointError", ["{d}/" + SHARD, "missing"])),
        "truncated_shard": ("ckpt", lambda d: _truncate(d / SHARD), dict(load=True),
                            ("CheckpointError", ["{d}/" + SHARD, "truncated", "1000 bytes"])),
        "corrupted_shard": ("ckpt", lambda d: _garbage(d / SHARD), dict(load=True),
                            ("CheckpointError", ["{d}/" + SHARD, "corrupt"])),
        "truncated_shard_no_manifest": (
            "ckpt", lambda d: (_truncate(d / SHARD), rm(d / "iter_0000002/checksums.json")),
            dict(load=True), ("CheckpointError", ["{d}/" + SHARD, "truncated"])),
        "missing_dcp_metadata": ("ckpt", lambda d: rm(d / "iter_0000002/.metadata"),
                                 dict(load=True),
                                 ("CheckpointError", ["{d}/iter_0000002/.metadata", "missing"])),
        "unreadable_manifest": (
            "ckpt", lambda d: (d / "iter_0000002/checksums.json").write_text("{not json"),
            dict(load=True), ("CheckpointError", ["{d}/iter_0000002/checksums.json"])),
        "corrupt_tracker": ("ckpt", lambda d: (d / TRACKER).write_text("seven\n"), dict(load=True),
                            ("CheckpointError", ["{d}/" + TRACKER, "corrupt tracker", "'seven'"])),
        "empty_tracker": ("ckpt", lambda d: (d / TRACKER).write_text(""), dict(load=True),
                          ("CheckpointError", ["{d}/" + TRACKER, "corrupt tracker"])),
        "dangling_tracker": ("ckpt", lambda d: (d / TRACKER).write_text("7\n"), dict(load=True),
                             ("CheckpointError", ["{d}/iter_0000007", "is missing",
                                                  "{d}/" + TRACKER])),
        "deleted_tracker": ("ckpt", lambda d: rm(d / TRACKER), dict(load=True),
                            ("ok", ["{d}/" + TRACKER + " is missing", "resuming from "
                                    "{d}/iter_0000002", "step=2"])),
        "deleted_tracker_newest_corrupt": (
            "ckpt", lambda d: (rm(d / TRACKER), _garbage(d / SHARD)), dict(load=True),
            ("ok", ["resuming from {d}/iter_0000001", "{d}/" + SHARD + ": corrupt", "step=1"])),
        "deleted_tracker_nothing_verifies": (
            "ckpt", lambda d: (rm(d / TRACKER), _garbage(d / SHARD),
                               _truncate(d / "iter_0000001/__0_0.distcp")), dict(load=True),
            ("CheckpointError", ["{d}/" + TRACKER + " is missing", "no iteration folder verifies",
                                 "{d}/" + SHARD])),
        "missing_load_folder": ("none", None, dict(load="{tmp}/nowhere",
                                                   exit_on_missing_checkpoint=True),
                                ("CheckpointError", ["{tmp}/nowhere", "does not exist",
                                                     "exit_on_missing_checkpoint"])),
        "empty_load_folder": ("none", None, dict(load=True, exit_on_missing_checkpoint=True),
                              ("CheckpointError", ["{d}", TRACKER, "exit_on_missing_checkpoint"])),
        "peft_run_over_a_full_checkpoint": (
            "ckpt", None, dict(load=True, pretrained=True, peft=True),
            ("CheckpointError", ["{d}/iter_0000002", "holds a full model", "cfg.peft"])),
        "ckpt_step_absent": ("ckpt", None, dict(load=True, ckpt_step=5),
                             ("CheckpointError", ["{d}/iter_0000005", "checkpoint.ckpt_step=5"])),
        "wrong_architecture": ("ckpt", None, dict(load=True, ffn_hidden_size=128),
                               ("CheckpointError", ["{d}/iter_0000002", "linear_fc1.weight",
                                                    "different architecture"])),
        "fresh_run_over_old_saves": ("ckpt", None, dict(save=True),
                                     ("CheckpointError", ["{d}/iter_0000001", "overwrite",
                                                          "checkpoint.load"])),
        "fresh_run_over_untracked_saves": ("ckpt", lambda d: os.remove(d / TRACKER),
                                           dict(save=True),
                                           ("CheckpointError", ["{d}/iter_0000001", "overwrite",
                                                                "checkpoint.load={d}"])),
        "older_ckpt_step_over_newer_save": (
            "ckpt", None, dict(load=True, save=True, ckpt_step=1),
            ("CheckpointError", ["{d}/iter_0000002", "overwrite"])),
        "pretrained_nowhere": ("none", None, dict(pretrained="{tmp}/nothing_here"),
                               ("CheckpointError", ["{tmp}/nothing_here",
                                                    "checkpoint.pretrained_checkpoint"])),
        "pretrained_corrupted_shard": ("ckpt", lambda d: _garbage(d / SHARD),
                                       dict(pretrained=True),
                                       ("CheckpointError", ["{d}/" + SHARD, "corrupt"])),
        "schedule_changed_lr": ("ckpt", None, dict(load=True, lr=1e-3),
                                ("ConfigError", ["optimizer.lr", "0.003", "0.001",
                                                 "scheduler.override_opt_param_scheduler",
                                                 "scheduler.use_checkpoint_opt_param_scheduler"])),
        "schedule_changed_lr_override": (
            "ckpt", None, dict(load=True, lr=1e-3, override=True), ("ok", ["step=2 lr=0.001"])),
        "schedule_changed_lr_keep_checkpoint": (
            "ckpt", None, dict(load=True, lr=1e-3, keep=True), ("ok", ["step=2 lr=0.003"])),
        "schedule_shortened": ("ckpt", None, dict(load=True, train_iters=3),
                               ("ConfigError", ["scheduler.lr_decay_iters", "16", "12",
                                                "scheduler.override_opt_param_scheduler"])),
        "schedule_extended": ("ckpt", None, dict(load=True, train_iters=6),
                              ("ok", ["train.train_iters 4 -> 6", "lr_decay_steps 4 -> 6",
                                      "step=2"])),
        "killed_save_leftovers": (
            "ckpt", lambda d: ((d / f".{TRACKER}.abc123").write_text("3"),
                               shutil.copytree(d / "iter_0000002", d / "iter_0000003")),
            dict(load=True, save=True),
            ("ok", ["removed 2 leftover(s) of unfinished saves under {d}", "step=2"])),
        "unsupported_format": ("none", None, dict(ckpt_format="torch"),
                               ("ConfigError", ["checkpoint.ckpt_format: 'torch' is not "
                                                "supported"])),
        "local_checkpoints": ("none", None, dict(non_persistent_ckpt_type="local"),
                              ("ConfigError", ["checkpoint.non_persistent_ckpt_type: 'local'"])),
        # --- data ----------------------------------------------------------------------
        "truncated_bin": ("data", lambda d: _truncate(d / "ds.bin", 100), dict(data=True),
                          ("DataError", ["{d}/ds.bin", "truncated"])),
        "idx_of_another_bin": ("data", lambda d: shutil.copy(d / "other.idx", d / "ds.idx"),
                               dict(data=True), ("DataError", ["{d}/ds.bin", "{d}/ds.idx"])),
        "missing_idx": ("data", lambda d: rm(d / "ds.idx"), dict(data=True),
                        ("DataError", ["{d}/ds.idx", "not found"])),
        "garbage_idx_header": ("data", lambda d: _garbage(d / "ds.idx", at=0, size=16),
                               dict(data=True),
                               ("DataError", ["{d}/ds.idx", "not a megatron-core index file"])),
        "out_of_vocabulary_ids": ("data", lambda d: _write_data(d / "ds", top=5000),
                                  dict(data=True),
                                  ("DataError", ["{d}/ds.bin", "token id 5000",
                                                 "model.vocab_size"])),
        "stale_index_cache": ("data", "stale", dict(data=True),
                              ("ok", ["step=0 batch"])),
        "split_leaves_a_split_empty": ("data", None, dict(data=True, split="1,0.001,0"),
                                       ("DataError", ["dataset.split", "{d}/ds"])),
        # --- configs ---------------------------------------------------------------------
        "unreadable_yaml": ("yaml", "model: [unclosed\n", {},
                            ("ConfigError", ["{d}/run.yaml", "not valid YAML"])),
        "yaml_not_a_mapping": ("yaml", "- a\n- list\n", {},
                               ("ConfigError", ["{d}/run.yaml", "expected a mapping"])),
        "batch_not_divisible": ("none", None, dict(global_batch_size=5),
                                ("ConfigError", ["train.global_batch_size"])),
    }


# ----------------------------------------------------------------------------- the rank


def _config(tmp: Path, copy: Path | None, fields: dict):
    from mbridge_config import GPTDatasetConfig, OptimizerConfig

    fields = dict(fields)
    place = lambda v: str(copy) if v is True else v.format(tmp=tmp)  # noqa: E731
    train = {k: fields.pop(k) for k in ("train_iters", "global_batch_size") if k in fields}
    model = {k: fields.pop(k) for k in ("ffn_hidden_size",) if k in fields}
    lr = fields.pop("lr", None)
    peft = fields.pop("peft", False)
    override, keep = fields.pop("override", False), fields.pop("keep", False)
    data, split = fields.pop("data", False), fields.pop("split", "1,1,1")
    ckpt = {k: place(v) if k in ("load", "save") else v for k, v in fields.items()
            if k != "pretrained"}
    if "pretrained" in fields:
        ckpt["pretrained_checkpoint"] = place(fields["pretrained"])
    cfg = tiny_run.config(train={"train_iters": 4, **train}, checkpoint=ckpt, **model)
    if lr is not None:
        cfg.optimizer = OptimizerConfig(optimizer="adam", lr=lr, use_distributed_optimizer=True)
    cfg.scheduler.override_opt_param_scheduler = override
    cfg.scheduler.use_checkpoint_opt_param_scheduler = keep
    if peft:
        from mbridge.peft import LoRA

        cfg.peft = LoRA(dim=4, alpha=8)
    if data:
        cfg.dataset = GPTDatasetConfig(
            sequence_length=tiny_run.SEQ, blend=[str(copy / "ds")], split=split,
            path_to_cache=str(tmp / f"cache-{copy.name}"), num_workers=0,
            reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False)
    return cfg


def _outcome(error: BaseException) -> dict:
    frames = traceback.extract_tb(error.__traceback__)
    chained = error.__cause__ is not None or (error.__context__ is not None
                                              and not error.__suppress_context__)
    return dict(kind=type(error).__name__, text=str(error), chained=chained,
                ours="/mbridge_" in frames[-1].filename or "/mbridge/" in frames[-1].filename)


def _all_cases(rank, world, tmp):
    from mbridge_config import ConfigContainer
    from mbridge_train.training import setup, teardown

    tmp = Path(tmp)
    good = tmp / "good"
    tiny_run.pretrain_captured(tiny_run.config(
        train=dict(train_iters=4, exit_interval=2),
        checkpoint=dict(save=str(good), save_interval=1)))
    (good / "loss_curve.png").unlink()
    (good / "loss_curve.jsonl").unlink()
    data = tmp / "data"
    _write_data(data / "ds")
    _write_data(data / "other", docs=20, length=50)
    originals = {"ckpt": good, "data": data}
    results = {}
    for name, (source, breaks, fields, _) in _cases().items():
        copy = tmp / "cases" / name
        if source in originals:
            shutil.copytree(originals[source], copy)
        else:
            copy.mkdir(parents=True)
        if callable(breaks):
            breaks(copy)
        before = _tree(copy)
        out = io.StringIO()
        result = {}
        try:
            with contextlib.redirect_stdout(out):
                if source == "yaml":
                    (copy / "run.yaml").write_text(breaks)
                    before = _tree(copy)
                    ConfigContainer.from_yaml(copy / "run.yaml")
                    result = dict(kind="ok")
                else:
                    cfg = _config(tmp, copy, fields)
                    if breaks == "stale":  # built once, then preprocessed again, fewer docs
                        setup(cfg, training_mode="finetune")
                        teardown()
                        _write_data(copy / "ds", docs=4)
                        before = _tree(copy)
                        cfg = _config(tmp, copy, fields)
                    run = setup(cfg, training_mode="finetune")
                    said = f"step={run.state.train_state.step}"
                    if "lr" in fields:  # the peak rate the schedule and its groups now use
                        rates = {g["max_lr"] for g in run.optimizer.param_groups}
                        said += f" lr={run.scheduler.max_lr:g}" if rates == {
                            run.scheduler.max_lr} else f" lr=groups {rates}"
                    if breaks == "stale":
                        said += " batch" if next(run.train_iterator) is not None else ""
                    result = dict(kind="ok", said=said)
        except Exception as error:  # noqa: BLE001 - the outcome is what is compared
            result = _outcome(error)
        finally:
            teardown()
        result["printed"] = out.getvalue()
        result["modified"] = sorted(set(before.items()) ^ set(_tree(copy).items()))
        results[name] = result
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    tiny_run.preload()
    (results,) = run_ranks(_all_cases, 1, str(tmp), timeout=900)
    return tmp, results


def test_there_are_at_least_30_cases():
    assert len(_cases()) >= 30


@pytest.mark.parametrize("name", list(_cases()))
def test_bad_input_gets_one_line_naming_the_file_or_field(outcomes, name):
    tmp, results = outcomes
    source, breaks, _, (kind, parts) = _cases()[name]
    got = results[name]
    d = tmp / "cases" / name
    parts = [p.format(d=d, tmp=tmp) for p in parts]
    if kind == "ok":
        assert got["kind"] == "ok", got
        text = got["printed"] + " " + got["said"]
        for part in parts:
            assert part in text, (name, part, got)
        if len(parts) > 1:  # what happened is said in one line, once
            assert sum(parts[0] in line for line in got["printed"].splitlines()) == 1, got
    else:
        assert (got["kind"], "\n" in got["text"], "Traceback" in got["text"]) == \
            (kind, False, False), got
        assert got["ours"] and not got["chained"], got
        for part in parts:
            assert part in got["text"], (name, part, got["text"])
    if name == "killed_save_leftovers":  # what the killed save left, and nothing else, went
        assert {path for path, _ in got["modified"]} == {f".{TRACKER}.abc123"} | {
            f"iter_0000003/{p}" for p in _tree(tmp / "good" / "iter_0000002")}
    else:
        assert got["modified"] == [], got["modified"]
