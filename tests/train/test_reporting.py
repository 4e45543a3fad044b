"""What a user sees while training: the console line's fields and values, TensorBoard scalars,
a W&B offline run, the loss-curve PNG, and the one-line error for a missing logger package."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys

import pytest
from multirank import RankFailure, run_ranks

import tiny_run
from mbridge_train import throughput as tp

@pytest.fixture(scope="module", autouse=True)
def _warm():
    tiny_run.preload()


# ----------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA GeForce GTX 1080", None), ("", None), (None, None)])
def test_peak_flops_table(name, peak):
    assert tp.peak_flops(name) == peak


def test_throughput_arithmetic():
    rate = tp.throughput(step_flops=6e15, tokens=8192, step_time_s=2.0, world_size=8, peak=989e12)
    assert rate.tokens_per_s == 4096
    assert rate.tflops_per_gpu == pytest.approx(6e15 / 2 / 8 / 1e12)
    assert rate.mfu == pytest.approx(6e15 / 2 / 8 / 989e12)
    assert tp.throughput(6e15, 8192, 2.0, 8, None).mfu is None


def test_mfu_and_loss_scale_appear_when_known(monkeypatch):
    from mbridge_train.reporting import console_line

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    peak = tp.current_device_peak_flops()
    assert peak == 989e12
    rate = tp.throughput(step_flops=8 * 0.305 * peak * 0.5, tokens=65536, step_time_s=0.5,
                         world_size=8, peak=peak)
    line = console_line(step=20, train_iters=100, consumed_samples=640, step_time_s=0.5,
                        lr=2.4e-4, losses={"lm loss": 5.1234}, grad_norm=1.82,
                        loss_scale=65536.0, skipped=1, rate=rate)
    assert line == (" iteration       20/     100 | consumed samples: 640 | ms/step: 500.0 | "
                    "lr: 2.400e-04 | lm loss: 5.1234 | grad norm: 1.82 | loss scale: 65536 | "
                    "skipped: 1 | tokens/s: 131072 | TFLOP/s/GPU: 301.6 | MFU: 30.5%")


# ----------------------------------------------------------------------------- one logged run


def _logged_run(rank, world, tmp):
    from mbridge_models.counting import flops_per_token
    from mbridge_train import training

    saves = tiny_run.SaveRecorder()
    training.save = saves
    cfg = tiny_run.config(
        train=dict(train_iters=4, eval_interval=2),
        logger=dict(log_interval=2, tensorboard_dir=f"{tmp}/tb", tensorboard_log_interval=1,
                    log_timers_to_tensorboard=True, timing_log_level=1,
                    log_throughput_to_tensorboard=True, log_validation_ppl_to_tensorboard=True),
        checkpoint=dict(save=f"{tmp}/ckpt", save_interval=2))
    run, text = tiny_run.pretrain_captured(cfg)
    return dict(text=text, history=run.history, saves=saves.steps,
                flops_so_far=run.state.train_state.floating_point_operations_so_far,
                per_token=flops_per_token(cfg.model, tiny_run.SEQ),
                loggers=(run.state.tensorboard_logger, run.state.wandb_logger))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logged")
    (result,) = run_ranks(_logged_run, 1, str(tmp))
    return tmp, result


def _fields(line: str) -> dict[str, str]:
    parts = [p.strip() for p in line.split("|")]
    return dict(p.split(": ", 1) for p in parts[1:])


@pytest.mark.multiproc
def test_console_line_holds_every_field_with_its_value(logged):
    _, result = logged
    lines = [l for l in result["text"].splitlines() if l.startswith(" iteration")]
    records = [h for h in result["history"] if "split" not in h]
    assert [re.match(r" iteration\s+(\d+)/\s+4", l).group(1) for l in lines] == ["2", "4"]
    tokens = tiny_run.GLOBAL_BATCH * tiny_run.SEQ
    for line, record, consumed in zip(lines, records, (8, 16)):
        f = _fields(line)
        assert int(f["consumed samples"]) == consumed
        assert float(f["lr"]) == pytest.approx(record["lr"], rel=1e-3)
        assert float(f["lm loss"]) == pytest.approx(record["lm loss"], rel=1e-5)
        assert float(f["grad norm"]) == pytest.approx(record["grad_norm"], rel=1e-3)
        assert int(f["skipped"]) == 0
        ms = float(f["ms/step"])
        assert ms == pytest.approx(record["step_time_s"] * 1e3, abs=0.051)
        tokens_per_s = float(f["tokens/s"])
        assert tokens_per_s == pytest.approx(tokens / (ms / 1e3), rel=5e-3)
        assert float(f["TFLOP/s/GPU"]) == pytest.approx(
            result["per_token"] * tokens_per_s / 1e12, rel=5e-3)
        assert "MFU" not in f and "loss scale" not in f  # CPU: no peak rate; fp32: no scaler
    valid = [l for l in result["text"].splitlines() if l.startswith(" validation at")]
    assert len(valid) == 2
    for line in valid:
        f = _fields(line)
        assert float(f["lm loss ppl"]) == pytest.approx(math.exp(float(f["lm loss"])), rel=1e-4)
    assert any(l.startswith(" test at iteration 4") for l in result["text"].splitlines())


@pytest.mark.multiproc
def test_flops_so_far_accumulate_the_analytic_count(logged):
    _, result = logged
    expected = 4 * result["per_token"] * tiny_run.GLOBAL_BATCH * tiny_run.SEQ
    assert result["flops_so_far"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.multiproc
def test_saves_on_the_interval_and_not_twice_at_the_end(logged):
    assert logged[1]["saves"] == [2, 4]


@pytest.mark.multiproc
def test_tensorboard_event_files_hold_the_scalars(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, result = logged
    events = EventAccumulator(str(tmp / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in tags}
    for tag in ("lm loss", "learning-rate", "grad-norm", "batch-size", "iteration-time",
                "throughput/tokens-per-s", "throughput/tflops-per-gpu",
                "forward-backward-time", "optimizer-time"):
        assert steps.get(tag) == [1, 2, 3, 4], tag
    assert steps["lm loss validation"] == [2, 4]
    assert steps["lm loss validation ppl"] == [2, 4]
    assert steps["lm loss test"] == [4]
    logged_loss = {e.step: e.value for e in events.Scalars("lm loss")}
    for record in (h for h in result["history"] if "split" not in h):
        assert logged_loss[record["step"]] == pytest.approx(record["lm loss"], rel=1e-6)
    assert "loss-scale" not in tags and "throughput/mfu" not in tags
    assert result["loggers"] == (None, None)  # closed at the end


@pytest.mark.multiproc
def test_loss_curve_png_is_written_beside_the_checkpoints(logged):
    import matplotlib.image

    tmp, _ = logged
    png = tmp / "ckpt" / "loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape[:2] == (450, 800)
    # no temporary left; the per-step record the curve of a resumed run is drawn from
    assert sorted(os.listdir(tmp / "ckpt")) == ["loss_curve.jsonl", "loss_curve.png"]
    assert not (tmp / "tb" / "loss_curve.png").exists()


def test_loss_curve_never_appears_half_written(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from mbridge_train import loss_curve

    final = tmp_path / "loss_curve.png"
    final.write_bytes(b"previous")
    real_savefig = Figure.savefig
    seen = {}

    def savefig(self, handle, **kwargs):
        seen["listing"] = sorted(os.listdir(tmp_path))
        seen["final_during_write"] = final.read_bytes()
        real_savefig(self, handle, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    curve = [(1, {"lm loss": 3.0}), (2, {"lm loss": 2.5})]
    loss_curve.write_loss_curve(str(final), curve, [{"step": 2, "split": "validation",
                                                     "lm loss": 2.7}])
    assert seen["final_during_write"] == b"previous"
    temporary = [n for n in seen["listing"] if n != "loss_curve.png"]
    assert len(temporary) == 1 and temporary[0].startswith(".loss_curve.png.")
    assert sorted(os.listdir(tmp_path)) == ["loss_curve.png"]
    assert final.read_bytes()[:4] == b"\x89PNG"

    def broken(self, handle, **kwargs):
        handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        loss_curve.write_loss_curve(str(tmp_path / "other.png"), curve, [])
    assert sorted(os.listdir(tmp_path)) == ["loss_curve.png"]


def test_loss_curve_destination():
    from mbridge_train.loss_curve import destination

    cfg = tiny_run.config(checkpoint=dict(save="/ck"), logger=dict(tensorboard_dir="/tb"))
    assert destination(cfg) == "/ck/loss_curve.png"
    cfg.checkpoint.save = None
    assert destination(cfg) == "/tb/loss_curve.png"
    cfg.logger.tensorboard_dir = None
    assert destination(cfg) is None


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _terminal_run(rank, world):
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    out = _Terminal()
    with contextlib.redirect_stdout(out):
        pretrain(tiny_run.config(train=dict(train_iters=3)), forward_step)
    return out.getvalue()


@pytest.mark.multiproc
def test_progress_bar_only_on_a_terminal(logged):
    (text,) = run_ranks(_terminal_run, 1)
    bar = re.compile(r"\d(step/s|s/step)")  # tqdm's rate, e.g. "12.3step/s"
    assert "3/3" in text and bar.search(text)
    assert sum(l.lstrip("\r").startswith(" iteration") for l in text.splitlines()) == 3
    plain = logged[1]["text"]
    assert "\r" not in plain and not bar.search(plain)


# ----------------------------------------------------------------------------- W&B offline


def _wandb_run(rank, world, tmp):
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true",
                      WANDB_BASE_URL="http://127.0.0.1:9")  # nothing listens there
    cfg = tiny_run.config(train=dict(train_iters=2),
                          logger=dict(wandb_project="mbridge-test", wandb_exp_name="tiny",
                                      wandb_save_dir=tmp))
    run, _ = tiny_run.pretrain_captured(cfg)
    return run.state.wandb_logger


@pytest.mark.multiproc
def test_wandb_offline_run_writes_its_files(tmp_path):
    (logger_after,) = run_ranks(_wandb_run, 1, str(tmp_path))
    assert logger_after is None  # finished and dropped at the end
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("run-*.wandb")
    data = log.read_bytes()
    assert b"lm loss" in data and b"learning-rate" in data and b"mbridge-test" in data


# ----------------------------------------------------------------------------- missing packages


def test_missing_logger_packages_give_one_line_each(monkeypatch):
    from mbridge_config import LoggerConfig
    from mbridge_config.errors import ConfigError
    from mbridge_train.loggers import require_packages

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    require_packages(LoggerConfig())  # nothing configured, nothing needed
    with pytest.raises(ConfigError) as info:
        require_packages(LoggerConfig(tensorboard_dir="/tmp/tb", wandb_project="p"))
    lines = str(info.value).splitlines()
    assert lines == [
        "logger.tensorboard_dir: is set but the tensorboard package is not installed: "
        "pip install 'mbridge-train[tensorboard]'",
        "logger.wandb_project: is set but the wandb package is not installed: "
        "pip install 'mbridge-train[wandb]'"]


def _setup_without_tensorboard(rank, world, tmp):
    sys.modules["tensorboard"] = None
    cfg = tiny_run.config(logger=dict(tensorboard_dir=tmp))
    tiny_run.pretrain_captured(cfg)


@pytest.mark.multiproc
def test_setup_stops_before_building_when_tensorboard_is_missing(tmp_path):
    with pytest.raises(RankFailure, match=r"logger.tensorboard_dir: is set but the tensorboard "
                                          r"package is not installed: pip install"):
        run_ranks(_setup_without_tensorboard, 1, str(tmp_path))
    assert not any(tmp_path.iterdir())


def _killed_then_resumed(rank, world, tmp):
    """4 steps, saves at 2 and 3; then as if killed inside the save at 3 (tracker at 2, step 3
    already in the record); the resumed run does steps 3 and 4 again."""
    import json
    import shutil

    from mbridge_train import checkpointing as ck

    def cfg(**train):
        return tiny_run.config(train=dict(train_iters=4, eval_interval=2, **train),
                               checkpoint=dict(save=f"{tmp}/ckpt", load=f"{tmp}/ckpt",
                                               save_interval=2))

    tiny_run.pretrain_captured(cfg(exit_interval=3))
    ck.write_tracker(f"{tmp}/ckpt", 2)
    shutil.rmtree(ck.iteration_dir(f"{tmp}/ckpt", 3))
    first = [json.loads(line) for line in open(f"{tmp}/ckpt/loss_curve.jsonl")]
    run, _ = tiny_run.pretrain_captured(cfg())
    records = [json.loads(line) for line in open(f"{tmp}/ckpt/loss_curve.jsonl")]
    return first, records, [h["lm loss"] for h in run.history if "split" not in h]


@pytest.mark.multiproc
def test_the_loss_record_covers_the_whole_run_across_a_resume(tmp_path):
    ((first, records, resumed),) = run_ranks(_killed_then_resumed, 1, str(tmp_path))
    steps = lambda rs, split: [r["step"] for r in rs if r.get("split") == split]  # noqa: E731
    assert steps(first, None) == [1, 2, 3] and steps(first, "validation") == [2]
    assert steps(records, None) == [1, 2, 3, 4]  # step 3 once: the killed run's is cut
    assert steps(records, "validation") == [2, 4]
    assert records[:3] == first[:3]  # steps 1, 2 and validation at 2 kept from the first run
    train = [r for r in records if "split" not in r]
    assert [r["losses"]["lm loss"] for r in train[2:]] == resumed
    assert train[2] == [r for r in first if r["step"] == 3 and "split" not in r][0]  # exact
