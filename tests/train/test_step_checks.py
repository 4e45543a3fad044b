"""rerun_state_machine's checks on every training step: a NaN/Inf loss or gradient, or a loss
spike, stops the run before the optimizer applies the step (one line naming the iteration,
value and rank), or is skipped with ``train.skip_nonfinite_steps``; the checkpoints saved hold
no NaN and the weights stay those of the last good step."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from multirank import run_ranks

import tiny_run
from mbridge_train.step_checks import (SPIKE_WINDOW, StepCheckError, StepChecks,
                                       ddp_grad_check_error)
from mbridge_train.user_errors import USER_ERRORS, one_line


def _cfg(nan=True, spike=False, factor=10.0, skip=0):
    rerun = types.SimpleNamespace(check_for_nan_in_loss=nan, check_for_spiky_loss=spike,
                                  spiky_loss_factor=factor)
    return types.SimpleNamespace(rerun_state_machine=rerun,
                                 train=types.SimpleNamespace(skip_nonfinite_steps=skip))


def _row(loss=2.0, bad=False, grad=1.0, reduced=2.0, has_loss=True, grad_checked=True):
    return [float(has_loss), loss, float(bad), float(grad_checked), grad, reduced]


# ----------------------------------------------------------------------------- the rules


def test_a_nan_share_names_the_rank_that_had_it_not_every_rank_of_the_reduction():
    checks = StepChecks(_cfg(), loss_scaled=False)
    table = torch.tensor([_row(reduced=math.nan), _row(math.nan, True, reduced=math.nan),
                          _row(reduced=math.nan), _row(math.inf, True, reduced=math.nan)],
                         dtype=torch.float64)
    fault = checks.judge(7, table, "lm loss")
    assert fault.message.startswith("iteration 7: lm loss is nan on rank 1 and 1 more rank ")


def test_pipeline_stages_without_the_loss_are_not_read():
    checks = StepChecks(_cfg(), loss_scaled=False)
    table = torch.tensor([_row(math.nan, True, reduced=math.nan, has_loss=False), _row()],
                         dtype=torch.float64)
    assert checks.judge(1, table, "lm loss") is None


def test_non_finite_gradients_name_the_rank_unless_a_loss_scaler_owns_them():
    table = torch.tensor([_row(), _row(grad=math.inf)], dtype=torch.float64)
    fault = StepChecks(_cfg(), loss_scaled=False).judge(4, table, "lm loss")
    assert fault.message.startswith("iteration 4: the gradients are not finite (local grad "
                                    "norm inf) on rank 1 ")
    # fp16 / optimizer.loss_scale: megatron's optimizer skips such a step and lowers the scale.
    assert StepChecks(_cfg(), loss_scaled=True).judge(4, table, "lm loss") is None
    assert StepChecks(_cfg(nan=False), loss_scaled=False).judge(4, table, "lm loss") is None


@given(st.lists(st.floats(0.5, 20.0), min_size=1, max_size=2 * SPIKE_WINDOW),
       st.floats(0.1, 400.0), st.floats(1.5, 20.0))
def test_a_spike_is_a_loss_above_the_factor_times_the_median_of_the_recent_steps(
        history, loss, factor):
    checks = StepChecks(_cfg(nan=False, spike=True, factor=factor), loss_scaled=False)
    checks.recent.extend(history)
    table = torch.tensor([_row(loss, reduced=loss)], dtype=torch.float64)
    fault = checks.judge(len(history) + 1, table, "lm loss")
    reference = statistics.median(history[-SPIKE_WINDOW:])
    assert (fault is not None) == (loss > factor * reference)
    if fault is not None:
        assert f"iteration {len(history) + 1}: lm loss " in fault.message
        assert "spiky_loss_factor" in fault.message and "rank 0" in fault.message


def test_the_skip_budget_is_spent_then_the_run_stops_and_says_so(monkeypatch):
    import mbridge_train.step_checks as step_checks

    checks = StepChecks(_cfg(skip=2), loss_scaled=False)
    rows = iter([_row(), _row(math.nan, True, reduced=math.nan), _row(),
                 _row(grad=math.nan), _row(math.inf, True, reduced=math.inf)])
    monkeypatch.setattr(step_checks, "_local_row", lambda *a: torch.tensor(next(rows),
                                                                            dtype=torch.float64))
    assert checks.inspect(1, [], {}, []) is None
    assert "lm loss is nan" in checks.inspect(2, [], {}, []).message
    assert checks.inspect(3, [], {}, []) is None
    assert "gradients are not finite" in checks.inspect(4, [], {}, []).message
    with pytest.raises(StepCheckError) as info:
        checks.inspect(5, [], {}, [])
    assert str(info.value).startswith("iteration 5: lm loss is inf on rank 0 ")
    assert str(info.value).endswith("; all 2 skips of train.skip_nonfinite_steps=2 are spent")
    assert list(checks.recent) == [2.0, 2.0]  # skipped steps never enter the spike reference


def test_the_local_grad_norm_is_the_norm_of_every_gradient_and_sees_one_bad_element():
    from mbridge_train.step_checks import local_grad_norm

    plain = torch.nn.Linear(3, 2)
    plain(torch.arange(3.0).reshape(1, 3)).sum().backward()
    wrapped = torch.nn.Linear(2, 2)  # stands in for megatron's DDP: flat gradient buffers
    wrapped.buffers = [types.SimpleNamespace(grad_data=torch.tensor([3.0, 4.0]))]
    wrapped.expert_parallel_buffers = [types.SimpleNamespace(grad_data=torch.tensor([12.0]))]
    grads = torch.cat([p.grad.reshape(-1) for p in plain.parameters()] + [torch.tensor([13.0])])
    assert local_grad_norm([plain, wrapped]) == pytest.approx(float(grads.norm()))
    wrapped.expert_parallel_buffers[0].grad_data[0] = math.nan
    assert math.isnan(local_grad_norm([plain, wrapped]))


def test_megatrons_ddp_grad_check_is_reworded_with_the_right_iteration():
    megatron = RuntimeError("Rank 3, node n1, device 0, iteration 0: Unexpected result nan "
                            "(message='found NaN in local grad norm for bucket #0 in backward "
                            "pass before data-parallel communication collective')")
    ours = ddp_grad_check_error(megatron, 12)
    assert str(ours) == ("iteration 12: the gradients are not finite on rank 3: found NaN in "
                         "local grad norm for bucket #0 in backward pass before data-parallel "
                         "communication collective (value nan; ddp.check_for_nan_in_grad)")
    assert ddp_grad_check_error(RuntimeError("CUDA out of memory"), 12) is None


def test_the_error_is_one_the_entry_points_print_as_one_line(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert issubclass(StepCheckError, USER_ERRORS)
    assert one_line(StepCheckError("iteration 3: lm loss is nan on rank 0")) == \
        "mbridge: StepCheckError: iteration 3: lm loss is nan on rank 0"


def test_config_fields_round_trip_through_yaml_and_are_validated(tmp_path):
    from mbridge.training.config import (ConfigContainer, FaultToleranceConfig,
                                         RerunStateMachineConfig)
    from mbridge_config import ConfigError

    cfg = tiny_run.config(train=dict(skip_nonfinite_steps=3))
    assert cfg.rerun_state_machine.check_for_nan_in_loss and cfg.ft is None
    cfg.rerun_state_machine = RerunStateMachineConfig(check_for_spiky_loss=True,
                                                      spiky_loss_factor=4.0)
    cfg.ft = FaultToleranceConfig(enable_ft_package=True, calc_ft_timeouts=True,
                                  hang_timeout_s=90.0)
    cfg.to_yaml(tmp_path / "run.yaml")
    back = ConfigContainer.from_yaml(tmp_path / "run.yaml", ["ft.step_time_factor=5"])
    assert back.rerun_state_machine == cfg.rerun_state_machine
    assert back.ft == FaultToleranceConfig(enable_ft_package=True, calc_ft_timeouts=True,
                                           hang_timeout_s=90.0, step_time_factor=5.0)
    assert back.train.skip_nonfinite_steps == 3
    back.apply_overrides(["train.skip_nonfinite_steps=-1", "rerun_state_machine.rerun_mode="
                          "report_stats", "rerun_state_machine.spiky_loss_factor=0.5",
                          "ft.hang_timeout_s=0", "ft.simulate_fault=true"])
    with pytest.raises(ConfigError) as info:
        back.validate(1)
    assert set(info.value.fields) == {
        "train.skip_nonfinite_steps", "rerun_state_machine.rerun_mode",
        "rerun_state_machine.spiky_loss_factor", "ft.hang_timeout_s", "ft.simulate_fault"}


# ----------------------------------------------------------------------------- in the loop


@pytest.fixture(scope="module", autouse=True)
def _warm():
    tiny_run.preload()


def _poisoned(faults, rank):
    """The GPT step with ``faults[step] = (kind, ranks)`` applied during that (1-based) step:
    "nan" and "spike" (x1000) on the logits, "grad" NaN on the logits' gradient only."""
    from mbridge.training.gpt_step import forward_step

    def step(state, data_iterator, model, return_schedule_plan=False):
        output, loss_func = forward_step(state, data_iterator, model)
        kind, ranks = faults.get(state.train_state.step + 1, (None, ()))
        if rank in ranks:
            if kind == "nan":
                output = output * float("nan")
            elif kind == "spike":
                output = output * 1000.0
            elif kind == "grad":
                output.register_hook(lambda grad: grad * float("nan"))
        return output, loss_func

    return step


def _params(run) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in run.model[0].named_parameters()}


def _stopped_run(rank, world, tmp, faults, train=None, rerun=None, ddp=None):
    """Train to 6 steps saving each one; returns the error, the weights when it stopped, the
    weights of every saved checkpoint and the console text."""
    import contextlib
    import io

    from mbridge_train import checkpointing
    from mbridge_train.training import setup, teardown, train as run_loop

    cfg = tiny_run.config(train=dict(train_iters=6, **(train or {})),
                          checkpoint=dict(save=tmp, save_interval=1))
    for name, value in (rerun or {}).items():
        setattr(cfg.rerun_state_machine, name, value)
    for name, value in (ddp or {}).items():
        setattr(cfg.ddp, name, value)
    run = setup(cfg)
    out = io.StringIO()
    try:
        error = None
        try:
            with contextlib.redirect_stdout(out):
                run_loop(run, _poisoned(faults, rank))
        except StepCheckError as caught:
            error = str(caught)
        stopped = _params(run)
        saved = {}
        for name in sorted(os.listdir(tmp)):
            if name.startswith("iter_"):
                checkpointing.load_pretrained_weights(os.path.join(tmp, name), run.model)
                saved[name] = _params(run)
        return dict(error=error, stopped=stopped, saved=saved, text=out.getvalue(),
                    step=run.state.train_state.step, history=run.history)
    finally:
        teardown()


def _finite(params: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params.values())


@pytest.mark.multiproc
def test_a_nan_loss_at_iteration_3_on_one_rank_stops_before_the_step_is_applied(tmp_path):
    results = run_ranks(_stopped_run, 2, str(tmp_path), {3: ("nan", (1,))})
    for result in results:  # every rank stops at the same step with the same line
        assert result["error"] == (
            "iteration 3: lm loss is nan on rank 1 (rerun_state_machine.check_for_nan_in_loss): "
            "the run stops before applying the step; train.skip_nonfinite_steps=N would skip "
            "up to N such steps")
        assert result["step"] == 2 and sorted(result["saved"]) == ["iter_0000001",
                                                                   "iter_0000002"]
        assert all(_finite(params) for params in result["saved"].values())
        for name, value in result["stopped"].items():  # the weights are step 2's
            assert torch.equal(value, result["saved"]["iter_0000002"][name]), name
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text().strip() == "2"


@pytest.mark.multiproc
def test_skipped_faults_leave_finite_weights_and_the_run_ends_at_train_iters(tmp_path):
    faults = {3: ("nan", (0,)), 5: ("spike", (0,))}
    (result,) = run_ranks(_stopped_run, 1, str(tmp_path), faults,
                          train=dict(skip_nonfinite_steps=2),
                          rerun=dict(check_for_spiky_loss=True))
    assert result["error"] is None and result["step"] == 6
    lines = result["text"].splitlines()
    skipped = [line for line in lines if "step skipped" in line]
    assert len(skipped) == 2
    assert skipped[0].startswith(" iteration 3: lm loss is nan on rank 0 ")
    assert skipped[0].endswith("step skipped (1 of train.skip_nonfinite_steps=2)")
    assert skipped[1].startswith(" iteration 5: lm loss ") and " is a spike, above " in skipped[1]
    steps = {int(line.split()[1].split("/")[0]): line for line in lines
             if line.startswith(" iteration ") and "consumed samples" in line}
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert [s for s, line in steps.items() if "skipped: 1" in line] == [3, 5]
    assert _finite(result["stopped"]) and all(_finite(p) for p in result["saved"].values())
    # A skipped step changes no weight: iter 3 holds step 2's, iter 5 step 4's.
    for before, after in (("iter_0000002", "iter_0000003"), ("iter_0000004", "iter_0000005")):
        saved = result["saved"]
        assert all(torch.equal(saved[before][n], saved[after][n]) for n in saved[before])
    assert not all(torch.equal(result["saved"]["iter_0000003"][n], v)
                   for n, v in result["saved"]["iter_0000004"].items())


@pytest.mark.multiproc
def test_a_spike_stops_the_run_and_nan_gradients_spend_the_skip_budget(tmp_path):
    spike, grads = tmp_path / "spike", tmp_path / "grads"
    spike.mkdir()
    grads.mkdir()
    (result,) = run_ranks(_stopped_run, 1, str(spike), {4: ("spike", (0,))},
                          rerun=dict(check_for_spiky_loss=True))
    assert result["error"].startswith("iteration 4: lm loss ") and result["step"] == 3
    assert " is a spike, above rerun_state_machine.spiky_loss_factor 10 x " in result["error"]
    assert all(torch.equal(v, result["saved"]["iter_0000003"][n])
               for n, v in result["stopped"].items())

    (result,) = run_ranks(_stopped_run, 1, str(grads), {2: ("grad", (0,)), 3: ("nan", (0,))},
                          train=dict(skip_nonfinite_steps=1))
    assert result["step"] == 2 and _finite(result["stopped"])
    assert " iteration 2: the gradients are not finite (local grad norm nan) on rank 0 " \
        in result["text"]
    assert result["error"].startswith("iteration 3: lm loss is nan on rank 0 ")
    assert result["error"].endswith("; all 1 skips of train.skip_nonfinite_steps=1 are spent")


@pytest.mark.multiproc
def test_megatrons_own_ddp_nan_check_ends_in_our_line_with_the_iteration(tmp_path):
    (result,) = run_ranks(_stopped_run, 1, str(tmp_path), {2: ("nan", (0,))},
                          ddp=dict(check_for_nan_in_grad=True))
    assert result["error"] == (
        "iteration 2: the gradients are not finite on rank 0: found NaN in local grad norm for "
        "bucket #0 in backward pass before data-parallel communication collective (value nan; "
        "ddp.check_for_nan_in_grad)")
    assert result["step"] == 1 and _finite(result["stopped"])


SCRIPT = textwrap.dedent("""
    import sys
    from mbridge.recipes.tiny.gpt_tiny import pretrain_config
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    def poisoned(state, data_iterator, model):
        output, loss_func = forward_step(state, data_iterator, model)
        if state.train_state.step == 2:
            output = output * float("nan")
        return output, loss_func

    cfg = pretrain_config(train_iters=5)
    cfg.checkpoint.save = sys.argv[1]
    pretrain(cfg, poisoned)
""")


@pytest.mark.slow
@pytest.mark.multiproc
def test_a_script_ends_in_one_line_and_a_non_zero_status(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MBRIDGE_TRACEBACK", None)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "ckpt")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 1
    ours = [line for line in done.stderr.splitlines() if "StepCheckError" in line]
    assert len(ours) == 1 and "Traceback" not in done.stderr
    assert ours[0].removeprefix("[rank0]: ").startswith(
        "mbridge: StepCheckError: iteration 3: lm loss is nan on rank 0 ")
    assert not (tmp_path / "ckpt").exists() or not any(
        name.startswith("iter_") for name in os.listdir(tmp_path / "ckpt"))
