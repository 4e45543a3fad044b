"""Checkpoints on CPU ranks: resume is exact (1 rank, DP=2 with the distributed optimizer, TP=2,
PP=2), an unfinished save is never loaded, most_recent_k prunes, a fine-tune starts from the
pretrained weights (LoRA: base loaded, adapters fresh, adapter-only checkpoints that resume),
a deleted tracker resumes from the newest complete save, every rank names a corrupted shard of
any rank, leftovers of killed saves go and nothing else does; the bad-input table lives in
tests/train/test_bad_inputs.py.

Exactness: every run is fp32 on the CPU with dropout off, and a resumed run repeats the very same
operations in the same order on the same data, so losses and weights are compared for equality.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny import llama_like  # noqa: E402

from mbridge_train import checkpointing as ck  # noqa: E402

pytestmark = pytest.mark.multiproc


def _config(tmp=None, *, model=None, load=None, pretrained=None, peft=None, **fields):
    """The tiny run of test_loop, 4 steps, with checkpoint fields from ``fields``."""
    from mbridge_config import (CheckpointConfig, ConfigContainer, LoggerConfig,
                                MockGPTDatasetConfig, OptimizerConfig, SchedulerConfig,
                                TokenizerConfig, TrainingConfig)

    train = {"train_iters": 4, "eval_interval": None, "eval_iters": 0}
    train.update({k: fields.pop(k) for k in list(train) + ["exit_interval"] if k in fields})
    ckpt = dict(save=str(tmp) if tmp else None, load=load, pretrained_checkpoint=pretrained)
    ckpt.update(fields)
    return ConfigContainer(
        model=model or llama_like(vocab_size=None, seq_length=32),
        train=TrainingConfig(micro_batch_size=2, global_batch_size=4, **train),
        optimizer=OptimizerConfig(optimizer="adam", lr=3e-3, use_distributed_optimizer=True,
                                  clip_grad=1.0),
        scheduler=SchedulerConfig(lr_warmup_iters=1),
        dataset=MockGPTDatasetConfig(sequence_length=32, num_workers=0),
        tokenizer=TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=300),
        logger=LoggerConfig(log_interval=1),
        checkpoint=CheckpointConfig(**ckpt), peft=peft)


def _losses(run, split=None) -> list[float]:
    return [h["lm loss"] for h in run.history if "lm loss" in h and h.get("split") == split]


def _weights(run) -> dict:
    return {f"{i}.{k}": v.detach().clone() for i, chunk in enumerate(run.model)
            for k, v in chunk.state_dict().items() if torch.is_tensor(v)}


def _pretrain(cfg):
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    return pretrain(cfg, forward_step)


def _finetune(cfg):
    from mbridge.training import finetune
    from mbridge.training.gpt_step import forward_step

    return finetune(cfg, forward_step)


def _straight_vs_resumed(rank, world, tmp, model_fields, fields=None):
    """(losses, validation losses, weights) of 4 straight steps, and of 2 steps + save + a
    fresh run resuming; ``fields``: more config fields for every run (validation, async)."""
    model = lambda: llama_like(vocab_size=None, seq_length=32, **model_fields)  # noqa: E731
    fields = fields or {}
    straight = _pretrain(_config(tmp / "straight" if fields else None, model=model(),
                                 **fields))
    first = _pretrain(_config(tmp, model=model(), exit_interval=2, **fields))
    resumed = _pretrain(_config(tmp, model=model(), load=str(tmp), **fields))
    valid = lambda *runs: sum((_losses(r, "validation") for r in runs), [])  # noqa: E731
    return dict(straight=(_losses(straight), valid(straight), _weights(straight)),
                resumed=(_losses(first) + _losses(resumed), valid(first, resumed),
                         _weights(resumed)),
                steps=(first.state.train_state.step, resumed.state.train_state.step))


def _assert_same(result, evaluations=0):
    """Equal losses (reported on the last pipeline stage only), validation losses and
    weights."""
    (losses, valid, weights) = result["straight"]
    (resumed_losses, resumed_valid, resumed_weights) = result["resumed"]
    assert result["steps"] == (2, 4)
    assert len(losses) in (0, 4) and resumed_losses == losses
    assert len(valid) in (0, evaluations) and resumed_valid == valid
    assert weights.keys() == resumed_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], resumed_weights[key]), key


def test_resume_is_exact_on_one_rank(tmp_path):
    (result,) = run_ranks(_straight_vs_resumed, 1, tmp_path, {})
    _assert_same(result)
    assert ck.read_tracker(str(tmp_path)) == 4
    assert ck.saved_iterations(str(tmp_path)) == [2, 4]
    assert (tmp_path / "iter_0000002" / ck.CONFIG_FILE).is_file()


# Validation every step, each evaluation reading the next batches: the resumed run's evaluations
# must continue where the first run's stopped (not re-read its batches); async saves with the
# save plan made once (ckpt_assume_constant_structure) on top.
_VALIDATED_ASYNC = dict(eval_interval=1, eval_iters=1, async_save=True, save_interval=1,
                        ckpt_assume_constant_structure=True)


def test_async_saves_and_validation_resume_exactly_on_one_rank(tmp_path):
    (result,) = run_ranks(_straight_vs_resumed, 1, tmp_path, {}, _VALIDATED_ASYNC)
    _assert_same(result, evaluations=4)
    assert ck.read_tracker(str(tmp_path)) == 4
    assert ck.saved_iterations(str(tmp_path)) == [1, 2, 3, 4]
    assert ck.read_tracker(str(tmp_path / "straight")) == 4


@pytest.mark.slow
def test_async_saves_and_validation_resume_exactly_on_two_data_parallel_ranks(tmp_path):
    for result in run_ranks(_straight_vs_resumed, 2, tmp_path, {}, _VALIDATED_ASYNC):
        _assert_same(result, evaluations=4)


@pytest.mark.parametrize("layout", [{}, {"tensor_model_parallel_size": 2},
                                    {"pipeline_model_parallel_size": 2}],
                         ids=["dp2", "tp2", "pp2"])
def test_resume_is_exact_on_two_ranks(tmp_path, layout):
    results = run_ranks(_straight_vs_resumed, 2, tmp_path, layout)
    for result in results:
        _assert_same(result)
    assert len(results[-1]["straight"][0]) == 4  # the last rank holds the last stage


def _corrupt_shard_of_rank_one(rank, world, tmp):
    """DP=2 saves (each rank hashes the shard it wrote); rank 1's shard gets 4 KB of garbage;
    the resume fails on both ranks with the same line."""
    from mbridge_train import checksums
    from mbridge_train.training import setup, teardown

    _pretrain(_config(tmp, train_iters=2))
    directory = ck.iteration_dir(str(tmp), 2)
    listed = sorted(checksums.read_manifest(directory))
    torch.distributed.barrier()
    if rank == 0:
        with open(os.path.join(directory, "__1_0.distcp"), "r+b") as f:
            f.seek(1000)
            f.write(os.urandom(4096))
    torch.distributed.barrier()
    try:
        setup(_config(load=str(tmp)))
        message = None
    except ck.CheckpointError as error:
        message = str(error)
    teardown()
    return listed, message


def test_every_rank_names_a_corrupted_shard_of_another_rank(tmp_path):
    results = run_ranks(_corrupt_shard_of_rank_one, 2, tmp_path)
    (listed, first), (_, second) = results
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= set(listed)
    shard = str(tmp_path / "iter_0000002" / "__1_0.distcp")
    assert first == second and first.startswith(f"{shard}: corrupt")


# ----------------------------------------------------------------------------- RNG, save_optim


def _draws() -> list:
    import random

    import numpy as np
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    with get_cuda_rng_tracker().fork():
        tracked = torch.rand(2).tolist()
    return [random.random(), float(np.random.random()), torch.rand(2).tolist(), tracked]


def _rng_and_optional_parts(rank, world, tmp):
    """Rank-specific RNG streams survive save + load (and stay untouched with load_rng=False);
    save_optim/save_rng=False checkpoints hold neither and still load."""
    import random

    import numpy as np

    from mbridge_train.gpt_step import forward_step
    from mbridge_train.training import setup, teardown, train

    run = train(setup(_config(tmp / "full", load=str(tmp / "full"), exit_interval=1)),
                forward_step)  # one step, so the optimizer has state to save
    ckpt, args = run.state.cfg.checkpoint, (run.state, run.model, run.optimizer, run.scheduler)
    save_args = (ckpt, run.state.train_state, run.model, run.optimizer, run.scheduler)
    random.seed(rank), np.random.seed(10 + rank), torch.manual_seed(20 + rank)
    ck.save_checkpoint(*save_args)
    expected = _draws()
    scrambled = lambda: (random.seed(99), np.random.seed(99), torch.manual_seed(99))  # noqa: E731
    scrambled()
    ck.load_checkpoint(*args)
    restored = _draws()
    ckpt.load_rng = False
    scrambled()
    ck.load_checkpoint(*args)
    untouched = _draws()
    scrambled()
    control = _draws()

    ckpt.save, ckpt.load, ckpt.save_optim, ckpt.save_rng = (str(tmp / "lean"),) * 2 + (False,) * 2
    ckpt.load_rng = True
    ck.save_checkpoint(*save_args)
    lean_keys = sorted(ck._saved_shapes(ck.iteration_dir(ckpt.save, 1)))
    ck.load_checkpoint(*args)
    teardown()
    return dict(expected=expected, restored=restored, untouched=untouched, control=control,
                lean_keys=lean_keys)


def test_rng_streams_of_every_rank_are_restored_and_optional_parts_honoured(tmp_path):
    results = run_ranks(_rng_and_optional_parts, 2, tmp_path)
    assert results[0]["expected"] != results[1]["expected"]  # the ranks' streams differ
    for result in results:
        assert result["restored"] == result["expected"]
        # load_rng=False: the (scrambled) streams stay as they were; the tracker, which the
        # scrambling does not reset, just continues
        assert result["untouched"][:3] == result["control"][:3] != result["expected"][:3]
        keys = result["lean_keys"]
        assert keys and not any(k.startswith(("optimizer.", ck._RNG_KEY)) for k in keys)
    full = ck._saved_shapes(ck.iteration_dir(str(tmp_path / "full"), 1))
    assert any(k.startswith("optimizer.") for k in full)


# ----------------------------------------------------------------------------- unfinished saves


def _interrupted_then_resumed(rank, world, tmp):
    """A save that dies after its shards are written (before the tracker) is never loaded."""
    write_tracker = ck.write_tracker

    def dies_at_4(root, iteration):
        if iteration == 4:
            raise RuntimeError("killed before the tracker")
        write_tracker(root, iteration)

    ck.write_tracker = dies_at_4
    try:
        _pretrain(_config(tmp, save_interval=2))
    except RuntimeError as error:
        assert "killed before the tracker" in str(error)
    finally:
        ck.write_tracker = write_tracker
    left = dict(tracked=ck.read_tracker(str(tmp)), folders=ck.saved_iterations(str(tmp)),
                shards_written=ck._is_finished(ck.iteration_dir(str(tmp), 4)))
    resumed = _pretrain(_config(tmp, load=str(tmp), save_interval=2))
    return left, [h["step"] for h in resumed.history if "lm loss" in h], ck.read_tracker(str(tmp))


def test_an_unfinished_save_is_never_loaded(tmp_path):
    ((left, steps, tracked),) = run_ranks(_interrupted_then_resumed, 1, tmp_path)
    assert left == dict(tracked=2, folders=[2, 4], shards_written=True)
    assert steps == [3, 4]  # resumed from iteration 2, not from the unfinished 4
    assert tracked == 4 and (tmp_path / "iter_0000004" / ck.CONFIG_FILE).is_file()


def _tracker_deleted_then_resumed(rank, world, tmp):
    straight = _pretrain(_config())
    first = _pretrain(_config(tmp, save_interval=1, exit_interval=2))
    os.remove(tmp / ck.TRACKER)
    resumed = _pretrain(_config(tmp, load=str(tmp), save_interval=1))
    return (_losses(straight), _losses(first) + _losses(resumed), ck.saved_iterations(str(tmp)),
            ck.read_tracker(str(tmp)))


def test_a_deleted_tracker_resumes_from_the_newest_complete_save(tmp_path):
    """Not a fresh start over the old folders: steps 3 and 4 follow the first run's 1 and 2."""
    ((straight, joined, folders, tracked),) = run_ranks(_tracker_deleted_then_resumed, 1,
                                                        tmp_path)
    assert joined == straight and folders == [1, 2, 3, 4] and tracked == 4


def _keep_two(rank, world, tmp):
    _pretrain(_config(tmp, save_interval=1, most_recent_k=2, train_iters=5))
    return ck.saved_iterations(str(tmp)), ck.read_tracker(str(tmp))


def test_most_recent_k_keeps_exactly_k(tmp_path):
    ((folders, tracked),) = run_ranks(_keep_two, 1, tmp_path)
    assert folders == [4, 5] and tracked == 5


@given(st.sets(st.integers(0, 60), min_size=1), st.data(), st.integers(1, 8))
def test_expired_keeps_the_k_newest_finished(iterations, data, keep):
    tracked = data.draw(st.sampled_from(sorted(iterations)))
    gone = ck.expired(sorted(iterations), tracked, keep)
    finished = sorted(i for i in iterations if i <= tracked)
    assert sorted(set(finished) - set(gone)) == finished[-keep:]
    assert tracked not in gone and all(i <= tracked for i in gone)
    assert ck.expired(sorted(iterations), tracked, -1) == []


@given(st.sets(st.integers(0, 60), min_size=1), st.data(), st.integers(1, 8))
def test_most_recent_k_never_deletes_the_only_complete_checkpoint(iterations, data, keep):
    """Unfinished folders (no manifest) do not count towards keep, and go once older ones do."""
    ordered = sorted(iterations)
    tracked = data.draw(st.sampled_from(ordered))
    complete = data.draw(st.sets(st.sampled_from(ordered))) | {tracked}
    gone = ck.expired(ordered, tracked, keep, complete)
    whole = sorted(i for i in complete if i <= tracked)
    assert sorted(set(whole) - set(gone)) == whole[-keep:]  # the keep newest complete stay
    assert tracked not in gone and all(i <= tracked for i in gone)
    assert set(ordered) - set(gone) >= {i for i in ordered if i > tracked}


def test_only_leftovers_of_killed_saves_are_removed(tmp_path):
    from mbridge_train import checksums

    root = tmp_path
    for iteration in (1, 2, 3):
        (root / f"iter_000000{iteration}").mkdir()
        (root / f"iter_000000{iteration}" / "__0_0.distcp").write_bytes(b"x")
    ck.write_tracker(str(root), 2)
    leftovers = [root / f".{ck.TRACKER}.k9x2", root / "iter_0000002" / f".{checksums.MANIFEST}.q1",
                 root / ".loss_curve.png.ab12.tmp", root / ".loss_curve.jsonl.cd34.tmp"]
    kept = [root / f"{ck.TRACKER}.bak", root / "notes.txt", root / "iter_0000002" / ".keep",
            root / ".loss_curve.png.ab12", root / "loss_curve.png"]
    for path in leftovers + kept:
        path.write_text("x")
    removed = ck.remove_leftovers(str(root))
    assert sorted(removed) == sorted(map(str, leftovers + [root / "iter_0000003"]))
    assert all(p.exists() for p in kept) and ck.saved_iterations(str(root)) == [1, 2]
    assert ck.read_tracker(str(root)) == 2


@pytest.mark.parametrize("tracked", [None, 2])
def test_a_finished_save_killed_before_the_tracker_named_it_is_removed(tmp_path, tracked):
    """Its files all written (megatron's metadata, even the manifest) but killed before the
    tracker moved: its saving marker is left, so the restart removes it and resumes from the
    tracked one (or starts fresh), instead of refusing a folder it cannot account for."""
    from mbridge_train import checksums

    root = str(tmp_path)
    for iteration in (2, 3):
        directory = ck.iteration_dir(root, iteration)
        os.makedirs(directory)
        with open(os.path.join(directory, "__0_0.distcp"), "wb") as f:
            f.write(b"weights")
        checksums.write_manifest(directory)
    open(ck.saving_marker(root, 3), "w").close()  # 3 was being saved
    open(ck.saving_marker(root, 2), "w").close()  # 2 too, killed after the tracker named it
    if tracked:
        ck.write_tracker(root, tracked)
    else:
        shutil.rmtree(ck.iteration_dir(root, 2))
        os.remove(ck.saving_marker(root, 2))
    removed = ck.remove_leftovers(root)
    assert ck.iteration_dir(root, 3) in removed and not os.path.exists(ck.saving_marker(root, 3))
    assert ck.saved_iterations(root) == ([2] if tracked else [])
    assert not os.path.exists(ck.saving_marker(root, 2))


def test_a_save_never_replaces_a_complete_folder_no_tracker_names(tmp_path):
    """The last guard under setup's refusal: without a tracker, a folder whose manifest
    verifies stays; an unverifiable one (a killed or corrupted save) is replaced."""
    from mbridge_train import checksums

    directory = ck.iteration_dir(str(tmp_path), 3)
    os.makedirs(directory)
    with open(os.path.join(directory, "__0_0.distcp"), "wb") as f:
        f.write(b"weights")
    checksums.write_manifest(directory)
    with pytest.raises(ck.CheckpointError, match="a complete checkpoint") as error:
        ck._prepare_folder(str(tmp_path), directory, 3)
    assert str(error.value).startswith(directory) and os.listdir(directory) != []
    with open(os.path.join(directory, "__0_0.distcp"), "ab") as f:
        f.write(b"!")  # no longer what was saved
    ck._prepare_folder(str(tmp_path), directory, 3)
    assert os.listdir(directory) == []


@given(st.integers(0, 10**9))
def test_tracker_round_trip(iteration):
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        ck.write_tracker(root, iteration)
        assert ck.read_tracker(root) == iteration
        assert os.listdir(root) == [ck.TRACKER]  # no temporary file left behind


@given(st.text(min_size=1).filter(lambda t: not t.strip().isdigit()))
def test_a_corrupt_tracker_is_named(text):
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, ck.TRACKER)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        with pytest.raises(ck.CheckpointError, match="corrupt tracker") as error:
            ck.read_tracker(root)
        assert str(error.value).startswith(path) and "\n" not in str(error.value)


# ----------------------------------------------------------------------------- fine-tuning


def _logits(run) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 256, (2, 32), generator=generator)
    positions = torch.arange(32).expand(2, -1)
    chunk = run.model[0]
    chunk.eval()
    with torch.no_grad():
        out = chunk(tokens, positions, None)
    chunk.train()
    return out.detach().clone()


def _finetune_starts_from_pretrained(rank, world, tmp):
    from mbridge_train.training import setup, teardown

    saved = _pretrain(_config(tmp / "base", train_iters=2))
    expected = _logits(saved)
    results = {}
    for name, path in [("root", tmp / "base"), ("iter", tmp / "base" / "iter_0000002")]:
        run = setup(_config(pretrained=str(path)), training_mode="finetune")
        results[name] = torch.equal(_logits(run), expected)
        teardown()
    fresh = setup(_config(), training_mode="finetune")  # the control: no pretrained weights
    results["fresh_differs"] = not torch.equal(_logits(fresh), expected)
    teardown()
    return results


def test_finetune_starts_from_the_pretrained_weights(tmp_path):
    ((results,),) = [run_ranks(_finetune_starts_from_pretrained, 1, tmp_path)]
    assert results == {"root": True, "iter": True, "fresh_differs": True}


def _lora():
    from mbridge.peft import LoRA

    return LoRA(dim=4, alpha=8)


def _lora_finetune(rank, world, tmp):
    """A LoRA fine-tune from a pretrained checkpoint: what it starts from, what it saves, and
    4 straight steps against 2 + save + resume."""
    from mbridge_train.training import setup, teardown

    base = _pretrain(_config(tmp / "base", train_iters=2))
    base_state = _weights(base)
    expected = _logits(base)
    pretrained = str(tmp / "base")

    run = setup(_config(pretrained=pretrained, peft=_lora()), training_mode="finetune")
    state = _weights(run)
    start = dict(
        base_equal=all(torch.equal(state[k], v) for k, v in base_state.items()),
        adapters=sorted(k for k in state if ck.ADAPTER_MARK in k),
        b_zero=all(not v.any() for k, v in state.items() if "adapter.linear_out" in k),
        a_random=all(v.std() > 0 for k, v in state.items() if "adapter.linear_in" in k),
        logits_equal=torch.equal(_logits(run), expected))
    trainable = sum(p.numel() for p in run.model[0].parameters() if p.requires_grad)
    teardown()

    straight = _finetune(_config(pretrained=pretrained, peft=_lora()))
    first = _finetune(_config(tmp / "lora", pretrained=pretrained, peft=_lora(), exit_interval=2))
    resumed = _finetune(_config(tmp / "lora", load=str(tmp / "lora"), pretrained=pretrained,
                                peft=_lora()))
    saved = ck._saved_shapes(str(tmp / "lora" / "iter_0000002"))
    return dict(start=start, trainable=trainable, saved=saved,
                straight=(_losses(straight), [], _weights(straight)),
                resumed=(_losses(first) + _losses(resumed), [], _weights(resumed)),
                steps=(first.state.train_state.step, resumed.state.train_state.step))


def test_lora_finetune_loads_the_base_saves_adapters_only_and_resumes_exactly(tmp_path):
    import math

    ((result,),) = [run_ranks(_lora_finetune, 1, tmp_path)]
    start = result["start"]
    assert start["adapters"] and start["base_equal"] and start["logits_equal"]
    assert start["b_zero"] and start["a_random"]  # LoRA's own initialisation, not loaded
    saved, trainable = result["saved"], result["trainable"]
    model_keys = [k for k in saved if not k.startswith("optimizer.")]
    assert model_keys and all(ck.ADAPTER_MARK in k for k in model_keys)
    assert sum(math.prod(saved[k]) for k in model_keys) == trainable
    # The distributed optimizer adds its param, exp_avg and exp_avg_sq buckets, which on one
    # rank cover exactly the adapters: 4 copies of the trainable parameters, nothing else.
    total = sum(math.prod(shape) for shape in saved.values())
    assert total == 4 * trainable
    _assert_same(result)
