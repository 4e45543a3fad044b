"""``mbridge pretrain`` / ``mbridge finetune``: a recipe (or a saved YAML) + overrides -> a run.

    mbridge pretrain llama.llama3_8b train.train_iters=100 model.tensor_model_parallel_size=2
    mbridge finetune tiny.gpt_tiny -a dataset_root=sft/ -a peft=null --dry-run
    torchrun --nproc_per_node=8 -m mbridge.cli pretrain llama.llama3_8b
    srun --ntasks-per-node=8 python -m mbridge.cli pretrain llama.llama3_8b   # no torchrun

Everything the argument parser and the recipe lookup need is the standard library: a misspelt
recipe or flag is answered before torch and megatron-core load.
Usage errors (unknown recipe, bad override, bad recipe argument, invalid config) exit with 2
and one message naming the recipe, key or field; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

USAGE_ERROR = 2


class UsageError(Exception):
    """Printed as ``mbridge <command>: error: <message>``, exit status 2."""


def add_commands(commands) -> None:
    for kind, verb in (("pretrain", "pretrain a model"), ("finetune", "fine-tune a model")):
        parser = commands.add_parser(
            kind, help=f"{verb} from a recipe (or a saved config) plus key=value overrides",
            description=f"{verb.capitalize()} with mbridge_train.{kind} and the stock GPT "
            "forward step. RECIPE is a name from `mbridge recipes`, with or without its "
            f"function (llama.llama3_8b or llama.llama3_8b.{kind}_config). Overrides are "
            "Hydra-style config paths: train.train_iters=100 optimizer.lr=3e-4 ~profiling. "
            f"Multi-GPU: torchrun --nproc_per_node=N -m mbridge.cli {kind} RECIPE ...")
        parser.add_argument("recipe", nargs="?", metavar="RECIPE")
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                            help="config overrides applied after the recipe (or file)")
        parser.add_argument("--config-file", metavar="YAML",
                            help="start from a config saved with cfg.to_yaml() or --dry-run "
                                 "instead of a recipe")
        parser.add_argument("-a", "--arg", action="append", default=[], metavar="NAME=VALUE",
                            dest="recipe_args",
                            help="a keyword argument of the recipe function, value read as "
                                 "YAML (-a dir=/runs -a peft=dora -a seq_length=4096)")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the final config as YAML and exit without training")
        parser.set_defaults(handler=lambda args, kind=kind: run_command(args, kind))


def run_command(args: argparse.Namespace, kind: str) -> int:
    try:
        return _run(args, kind)
    except UsageError as error:
        _error(kind, str(error))
        return USAGE_ERROR


def _run(args: argparse.Namespace, kind: str) -> int:
    recipe_name, overrides = args.recipe, list(args.overrides)
    if recipe_name is not None and ("=" in recipe_name or recipe_name.startswith("~")):
        recipe_name, overrides = None, [recipe_name, *overrides]  # only --config-file + overrides
    if (recipe_name is None) == (args.config_file is None):
        raise UsageError("give a RECIPE or --config-file (one of them)")
    if args.config_file and args.recipe_args:
        raise UsageError("-a/--arg sets recipe arguments; with --config-file use overrides")
    recipe = _lookup(recipe_name, kind) if recipe_name else None
    recipe_args = _parse_recipe_args(args.recipe_args)

    source = f"mbridge.recipes.{recipe.name}" if recipe else args.config_file
    if os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0" and not args.dry_run:
        print(f"mbridge {kind}: {source} (importing torch and megatron-core ...)",
              file=sys.stderr, flush=True)
    quiet_dependency_warnings()
    from mbridge_config.errors import ConfigError
    from mbridge_config.launch import detect

    try:
        launch = detect()  # torchrun's or srun's variables; a bad one is a usage error
        rank, world_size = launch.rank, launch.world_size
        cfg = _build(recipe, recipe_args, args.config_file)
        cfg.apply_overrides(overrides)
    except ConfigError as error:
        raise UsageError(_one_line(error)) from None
    if args.dry_run:
        return _dry_run(cfg, world_size, rank)
    return _train(cfg, kind)


def _lookup(name: str, kind: str):
    from mbridge.recipe_index import UnknownRecipe, resolve

    try:
        return resolve(name, kind)
    except UnknownRecipe as error:
        raise UsageError(str(error)) from None


def _parse_recipe_args(items: list[str]) -> dict:
    """{name: raw text}; the values are read (as YAML) once mbridge-config is loaded."""
    parsed = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-a {item!r}: expected NAME=VALUE with NAME a recipe argument")
        parsed[key] = raw
    return parsed


def _build(recipe, recipe_args: dict, config_file: str | None):
    """The ConfigContainer from the recipe function or the file. ``-a`` values are read as YAML;
    the recipe's own argument binding maps older names and coerces them to its argument types."""
    import importlib

    from mbridge_config import ConfigContainer
    from mbridge_config.overrides import parse_override
    from mbridge_train.recipes.spec import RecipeArgumentError

    if config_file:
        return ConfigContainer.from_yaml(config_file)
    module = importlib.import_module(f"mbridge_train.recipes.{recipe.module}")
    values = {key: parse_override(f"{key}={raw}")[1] for key, raw in recipe_args.items()}
    try:
        return getattr(module, recipe.function)(**values)
    except RecipeArgumentError as error:
        raise UsageError("; ".join(f"recipe argument -a {field}: {message}" if field else message
                                   for field, message in error.problems)) from None


def _dry_run(cfg, world_size: int, rank: int) -> int:
    """YAML on stdout (rank 0); whether it would pass validation at this world size on stderr."""
    from mbridge_config.errors import ConfigError

    if rank != 0:
        return 0
    sys.stdout.write(cfg.to_yaml())
    sys.stdout.flush()
    try:
        cfg.validate(world_size)
    except ConfigError as error:
        print(f"note: with WORLD_SIZE={world_size} this config would be rejected:\n{error}",
              file=sys.stderr)
    return 0


def _train(cfg, kind: str, require_progress: bool = False) -> int:
    """Run the entry point; the logging rank sums the run up in one line. With
    ``require_progress`` the exit status says whether the loss went down (``mbridge smoke``)."""
    from mbridge_config.errors import ConfigError
    from mbridge_train import finetune, pretrain
    from mbridge_train.distributed import destroy_process_group
    from mbridge_train.gpt_step import forward_step
    from mbridge_train.loss_contract import LM_LOSS
    from mbridge_train.user_errors import USER_ERRORS, one_line

    entry = pretrain if kind == "pretrain" else finetune
    try:
        run = entry(cfg, forward_step)
    except ConfigError as error:
        raise UsageError(_one_line(error)) from None
    except USER_ERRORS as error:  # a data file, a checkpoint, ...: one line, status 1
        print(one_line(error), file=sys.stderr)
        return 1
    finally:
        destroy_process_group()
    losses = [h[LM_LOSS] for h in run.history if "split" not in h and LM_LOSS in h]
    decreasing = len(losses) > 1 and losses[-1] < losses[0]
    if run.logging_rank and losses:
        print(f"mbridge {kind}: {len(losses)} logged steps over {run.world_size} rank(s), "
              f"lm loss {losses[0]:.4f} -> {losses[-1]:.4f} "
              f"({'decreasing' if decreasing else 'not decreasing'})", flush=True)
    return 1 if require_progress and run.logging_rank and not decreasing else 0


def smoke(steps: int, tensor_parallel: int, pipeline_parallel: int, bf16: bool) -> int:
    """``mbridge smoke``: the tiny.gpt_tiny recipe through pretrain() at the given layout, mock
    data, nothing written; exits 1 when the loss does not go down."""
    if os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0":
        print(f"mbridge smoke: tiny.gpt_tiny, {steps} steps, TP={tensor_parallel} "
              f"PP={pipeline_parallel} (importing torch and megatron-core ...)",
              file=sys.stderr, flush=True)
    quiet_dependency_warnings()
    from mbridge_config.errors import ConfigError
    from mbridge_config.launch import detect
    from mbridge_train.recipes.tiny.gpt_tiny import pretrain_config

    try:
        detect()  # a malformed launcher variable is a usage error, before any work
        cfg = pretrain_config().apply_overrides([
            f"train.train_iters={steps}", "train.eval_interval=null",
            f"model.tensor_model_parallel_size={tensor_parallel}",
            f"model.pipeline_model_parallel_size={pipeline_parallel}",
            f"mixed_precision={'bf16_mixed' if bf16 else 'null'}"])
        return _train(cfg, "pretrain", require_progress=True)
    except (ConfigError, UsageError) as error:
        _error("smoke", _one_line(error))
        return USAGE_ERROR


def _one_line(error: Exception) -> str:
    return str(error).replace("\n", "; ")


def _error(kind: str, message: str) -> None:
    print(f"mbridge {kind}: error: {message}", file=sys.stderr)


def quiet_dependency_warnings() -> None:
    """mbridge_config.quiet, before the command imports the rest of torch and megatron-core."""
    from mbridge_config import quiet

    quiet.install()
