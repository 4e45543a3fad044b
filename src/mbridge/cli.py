"""The `mbridge` command. Help and listings import nothing heavy; each command imports its own."""

from __future__ import annotations

import argparse
import sys


def _smoke(args: argparse.Namespace) -> int:
    from mbridge.train_cli import smoke

    return smoke(args.steps, args.tensor_parallel, args.pipeline_parallel, args.bf16)


def _recipes(args: argparse.Namespace) -> int:
    from mbridge.recipe_index import find_recipes

    recipes = find_recipes()
    if not recipes:
        print("no recipes found (is mbridge-train installed?)")
        return 0
    width = max(len(r.name) for r in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.summary}".rstrip())
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from mbridge.train_cli import quiet_dependency_warnings

    print("mbridge quickstart: importing torch and megatron-core ...", flush=True)
    quiet_dependency_warnings()
    from mbridge_train.quickstart import SCALES, default_scale, run_quickstart

    result = run_quickstart(args.work_dir, pretrain_iters=args.pretrain_iters,
                            finetune_iters=args.finetune_iters, seed=args.seed,
                            scale=SCALES[args.scale] if args.scale != "auto" else default_scale())
    return 0 if result.accuracy_after["all"] > result.accuracy_before["all"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbridge",
        description="Train and fine-tune transformer models on megatron-core "
        "(Megatron Bridge API).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    smoke = commands.add_parser(
        "smoke",
        help="pretrain the tiny.gpt_tiny recipe for a few steps (CPU or GPU, any TP/PP layout) to "
             "check the install",
    )
    smoke.add_argument("--steps", type=int, default=20)
    smoke.add_argument("--tensor-parallel", type=int, default=1, metavar="N")
    smoke.add_argument("--pipeline-parallel", type=int, default=1, metavar="N")
    smoke.add_argument("--bf16", action="store_true", help="bf16 parameters and activations")
    smoke.set_defaults(handler=_smoke)
    recipes = commands.add_parser("recipes", help="list the recipes (functions returning a "
                                                  "ConfigContainer) in mbridge.recipes")
    recipes.set_defaults(handler=_recipes)
    quickstart = commands.add_parser(
        "quickstart", help="pretrain a small GPT on the embedded corpus, LoRA-fine-tune it on the "
                           "embedded instruction set, and show accuracy before/after (CPU: ~10 "
                           "min, GPU: ~2)")
    quickstart.add_argument("--work-dir", default="quickstart", metavar="DIR",
                            help="data, checkpoints and plots go here (default: ./quickstart)")
    quickstart.add_argument("--pretrain-iters", type=int, default=None, metavar="N",
                            help="default: the tiny.gpt_small recipe's")
    quickstart.add_argument("--finetune-iters", type=int, default=None, metavar="N")
    quickstart.add_argument("--scale", choices=("auto", "cpu", "gpu"), default="auto",
                            help="model and schedule size (default: gpu when CUDA is available)")
    quickstart.add_argument("--seed", type=int, default=None,
                            help="initialisation and data order of both stages")
    quickstart.set_defaults(handler=_quickstart)
    from mbridge.convert_cli import add_commands as add_convert_commands  # stdlib-only too
    from mbridge.train_cli import add_commands as add_train_commands  # stdlib-only at import
    from mbridge_data.cli import add_commands as add_data_commands  # stdlib-only at import

    add_train_commands(commands)
    add_convert_commands(commands)

    add_data_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may follow options (RECIPE -a x=1 train.train_iters=5): argparse leaves such
    # late positionals unparsed, so the training commands collect them here.
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    for name in ("steps", "tensor_parallel", "pipeline_parallel"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
