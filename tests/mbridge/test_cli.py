"""The `mbridge` CLI: listings and usage errors answer without importing torch or megatron-core;
pretrain / finetune build recipes, take overrides, dry-run to YAML and train."""

import subprocess
import sys

import pytest

from mbridge.recipe_index import find_recipes

NO_HEAVY_IMPORTS = (
    "import sys\n"
    "from mbridge.cli import main\n"
    "try:\n    code = main({argv!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
    "heavy = [m for m in ('torch', 'megatron', 'mbridge_config') if m in sys.modules]\n"
    "assert not heavy, heavy\n"
    "sys.exit(code or 0)\n"
)


@pytest.mark.parametrize("argv, expected", [(["--help"], "usage: mbridge"),
                                             (["recipes"], "llama.llama3_8b.pretrain_config"),
                                             (["data", "--help"], "preprocess")])
def test_listings_import_nothing_heavy(argv, expected):
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS.format(argv=argv)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_recipes_are_found_by_reading_sources(tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "__init__.py").write_text("")
    (tmp_path / "llama" / "llama3_8b.py").write_text(
        "import torch  # never imported by the scan\n"
        "def pretrain_config(**overrides):\n    '''Llama 3 8B pretraining.\n\n    More.'''\n"
        "def finetune_config():\n    pass\n"
        "def _private_config():\n    pass\n"
        "def helper():\n    pass\n"
        "class NotARecipe_config:\n    pass\n")
    (tmp_path / "tiny.py").write_text("def smoke_config():\n    '''Seconds on a CPU.'''\n")
    (tmp_path / "_internal.py").write_text("def hidden_config():\n    pass\n")
    recipes = {r.name: r.summary for r in find_recipes(tmp_path)}
    assert recipes == {"llama.llama3_8b.pretrain_config": "Llama 3 8B pretraining.",
                       "llama.llama3_8b.finetune_config": "",
                       "tiny.smoke_config": "Seconds on a CPU."}


# ------------------------------------------------------------------ pretrain / finetune commands
# Errors a user makes in the recipe name or the flags are answered before torch loads; the rest
# needs mbridge_config (megatron-core), imported inside the tests that use it.

def _light(argv):
    return subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS.format(argv=argv)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("argv, closest", [
    (["pretrain", "llama.llama3_8bb"], "llama.llama3_8b"),
    (["finetune", "qwen3_30b"], "qwen.qwen3_30b_a3b"),
    (["pretrain", "tiny.gpt_tiny.evaluate_config"], "tiny.gpt_tiny.pretrain_config"),
])
def test_unknown_recipe_is_one_line_with_the_closest_names_and_exit_2(argv, closest):
    done = _light(argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mbridge {argv[0]}: error: unknown recipe")
    assert closest in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["pretrain"], "give a RECIPE or --config-file"),
    (["pretrain", "tiny.gpt_tiny", "--config-file", "run.yaml"], "give a RECIPE or --config-file"),
    (["finetune", "--config-file", "run.yaml", "-a", "peft=dora"], "-a/--arg sets recipe"),
    (["pretrain", "tiny.gpt_tiny", "-a", "no value"], "expected NAME=VALUE"),
    (["pretrain", "--dry-rn"], "unrecognized arguments"),
])
def test_usage_errors_exit_2_before_importing_torch(argv, message):
    done = _light(argv)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_help_of_the_training_commands_imports_nothing_heavy():
    done = _light(["pretrain", "--help"])
    assert done.returncode == 0 and "--config-file" in done.stdout and "--dry-run" in done.stdout


def _cli(argv, capsys):
    from mbridge.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, field, hint", [
    (["pretrain", "tiny.gpt_tiny", "train.train_itrs=5"], "train.train_itrs", "train_iters"),
    (["pretrain", "tiny.gpt_tiny", "model.num_layers=two"], "model.num_layers", "integer"),
    (["finetune", "tiny.gpt_tiny", "-a", "seq_length=long"], "-a seq_length", "integer"),
    (["finetune", "tiny.gpt_tiny", "-a", "dataset_rot=x"], "dataset_rot", "dataset_root"),
])
def test_bad_override_or_recipe_argument_names_the_key_and_exits_2(argv, field, hint, capsys):
    code, out, err = _cli([*argv, "--dry-run"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    message = err.strip().splitlines()[-1]  # (torch may log a line of its own before it)
    assert message.startswith(f"mbridge {argv[0]}: error: ") and field in message and hint in message


def test_dry_run_prints_yaml_that_round_trips_to_the_same_config(capsys, tmp_path):
    import yaml

    from mbridge_config import ConfigContainer
    from mbridge_train.recipes.llama.llama3_70b import pretrain_config

    overrides = ["train.train_iters=100", "model.tensor_model_parallel_size=8",
                 "optimizer.lr=1e-4", "~logger.tensorboard_dir"]
    code, out, err = _cli(["pretrain", "llama.llama3_70b", *overrides, "-a", f"dir={tmp_path}",
                           "-a", "seq_length=4096", "--dry-run"], capsys)
    assert code == 0, err
    printed = ConfigContainer.from_dict(yaml.safe_load(out))
    expected = pretrain_config(dir=str(tmp_path), seq_length=4096).apply_overrides(overrides)
    assert printed == expected
    assert printed.model.tensor_model_parallel_size == 8 and printed.train.train_iters == 100
    assert "would be rejected" in err  # 32 model-parallel ranks, WORLD_SIZE 1: said, not fatal
    saved = tmp_path / "run.yaml"
    saved.write_text(out)
    code, again, _ = _cli(["pretrain", "--config-file", str(saved), "train.train_iters=7",
                           "--dry-run"], capsys)
    assert code == 0
    expected.train.train_iters = 7
    assert ConfigContainer.from_dict(yaml.safe_load(again)) == expected


def test_finetune_dry_run_takes_recipe_arguments_typed_by_the_signature(capsys):
    import yaml

    code, out, err = _cli(["finetune", "llama.llama3_8b", "-a", "peft=dora", "-a",
                           "pretrained_checkpoint=/ckpt", "-a", "packed_sequence=true", "-a",
                           "pipeline_dtype=bf16", "--dry-run"], capsys)
    assert code == 0, err
    data = yaml.safe_load(out)
    assert data["peft"]["_target_"].endswith(".DoRA")
    assert data["checkpoint"]["pretrained_checkpoint"] == "/ckpt"
    assert data["dataset"]["packed_sequence_specs"]["packed_sequence_size"] == 4096
    assert data["model"]["pipeline_dtype"] == "torch.bfloat16"


def test_tiny_pretrain_through_the_cli_trains_and_loss_decreases(tmp_path):
    """The real thing in a fresh process, as a user runs it: megatron-core model, DDP,
    distributed optimizer, the stock forward step, on CPU."""
    done = subprocess.run(
        [sys.executable, "-m", "mbridge.cli", "pretrain", "tiny.gpt_tiny", "train.train_iters=12",
         "train.eval_interval=null", "train.eval_iters=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("lm loss") >= 12  # the loop's per-step lines (format not pinned)
    summary = done.stdout.strip().splitlines()[-1]
    assert "12 logged steps over 1 rank(s)" in summary and "(decreasing)" in summary, summary
    first, last = (float(x) for x in summary.split("lm loss ")[1].split(" (")[0].split(" -> "))
    assert last < first - 0.5
    assert not any(tmp_path.iterdir())  # the tiny recipe writes nothing without dir=


@pytest.mark.slow
@pytest.mark.multiproc
def test_tiny_pretrain_under_torchrun_on_two_ranks(tmp_path):
    import socket

    with socket.socket() as s:  # torchrun's --master_port=0 does not pick a port: it hangs
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                f"--master_port={port}"]
    done = subprocess.run(
        [*torchrun, "-m", "mbridge.cli", "pretrain", "tiny.gpt_tiny", "train.train_iters=8",
         "train.eval_interval=null", "train.eval_iters=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "8 logged steps over 2 rank(s)" in done.stdout and "(decreasing)" in done.stdout


@pytest.mark.slow
def test_tiny_full_finetune_through_the_cli_on_the_instruction_set(tmp_path):
    subprocess.run([sys.executable, "-m", "mbridge.cli", "data", "instructions",
                    str(tmp_path / "sft")], check=True, capture_output=True)
    done = subprocess.run(
        [sys.executable, "-m", "mbridge.cli", "finetune", "tiny.gpt_tiny", "-a", "peft=null",
         "-a", f"dataset_root={tmp_path / 'sft'}", "train.train_iters=10"],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "10 logged steps" in done.stdout and "(decreasing)" in done.stdout


@pytest.mark.slow
def test_tiny_lora_finetune_from_a_tiny_pretraining_checkpoint(tmp_path):
    """Pretrain with dir= (saves a checkpoint), then LoRA on the instruction set from it."""
    pytest.importorskip("mbridge_train.checkpointing", reason="checkpointing not merged yet")
    cli = [sys.executable, "-m", "mbridge.cli"]
    subprocess.run([*cli, "data", "instructions", str(tmp_path / "sft")], check=True,
                   capture_output=True)
    pretrained = subprocess.run([*cli, "pretrain", "tiny.gpt_tiny", "-a", f"dir={tmp_path}",
                                 "-a", "name=base"], capture_output=True, text=True, timeout=900)
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    done = subprocess.run(
        [*cli, "finetune", "tiny.gpt_tiny", "-a", f"dataset_root={tmp_path / 'sft'}",
         "-a", f"pretrained_checkpoint={tmp_path / 'base' / 'checkpoints'}",
         "-a", f"dir={tmp_path}", "-a", "name=lora"],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(decreasing)" in done.stdout


def _smoke_main(rank, world_size, argv):
    import contextlib
    import io

    from mbridge.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.mark.multiproc
def test_smoke_is_pretrain_on_the_tiny_recipe_at_any_layout():
    """`mbridge smoke` runs the tiny.gpt_tiny recipe through pretrain() (there is no second
    training loop); exit 0 only when the loss went down, the summary from the logging rank."""
    from multirank import run_ranks

    for layout in (["--tensor-parallel", "2"], ["--pipeline-parallel", "2"]):
        results = run_ranks(_smoke_main, 2, ["smoke", "--steps", "8", *layout])
        assert [code for code, _ in results] == [0, 0], results
        summaries = [out for _, out in results if "logged steps over 2 rank(s)" in out]
        assert len(summaries) == 1 and "(decreasing)" in summaries[0], results
