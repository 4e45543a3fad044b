"""The `mbridge` command. Help and listings import nothing heavy; each command imports its own."""

from __future__ import annotations

import argparse
import os
import sys


def _smoke(args: argparse.Namespace) -> int:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    model_parallel = args.tensor_parallel * args.pipeline_parallel
    if world_size % model_parallel:
        print(
            f"mbridge smoke: --tensor-parallel {args.tensor_parallel} x --pipeline-parallel "
            f"{args.pipeline_parallel} needs a multiple of {model_parallel} processes, got "
            f"WORLD_SIZE={world_size}; launch with torchrun --nproc_per_node={model_parallel}",
            file=sys.stderr,
        )
        return 2
    print("mbridge smoke: importing torch and megatron-core ...", flush=True)
    _quiet_megatron_import_warnings()
    from mbridge_models.smoke import train_tiny_gpt

    rank = int(os.environ.get("RANK", "0"))
    reporter = world_size - 1  # the last rank is on the last pipeline stage

    def report(step: int, loss: float | None, grad_norm: float) -> None:
        if rank == reporter and loss is not None:
            print(f"step {step:3d}/{args.steps}  loss {loss:.4f}  grad norm {grad_norm:.3f}",
                  flush=True)

    result = train_tiny_gpt(
        steps=args.steps,
        tensor_parallel=args.tensor_parallel,
        pipeline_parallel=args.pipeline_parallel,
        bf16=args.bf16,
        on_step=report,
    )
    if rank == reporter:
        first, last = result.losses[0], result.losses[-1]
        verdict = "decreasing" if last < first else "NOT decreasing"
        print(
            f"tiny GPT ({result.parameters:,} parameters on this rank) trained {args.steps} steps "
            f"on {result.device} over {world_size} rank(s) in {result.seconds:.1f} s: "
            f"loss {first:.4f} -> {last:.4f} ({verdict})"
        )
        return 0 if last < first else 1
    return 0


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
    print("mbridge quickstart: importing torch and megatron-core ...", flush=True)
    _quiet_megatron_import_warnings()
    from mbridge_train.quickstart import run_quickstart

    result = run_quickstart(args.work_dir, pretrain_iters=args.pretrain_iters,
                            finetune_iters=args.finetune_iters)
    return 0 if result.accuracy_after["all"] > result.accuracy_before["all"] else 1


def _quiet_megatron_import_warnings() -> None:
    """megatron-core warns at import about optional extras (Apex, TE, absl) it falls back from;
    the fallbacks are what mbridge expects, so the CLI keeps its output to the run itself."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"megatron\.")
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=r"megatron\.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbridge",
        description="Train and fine-tune transformer models on megatron-core "
        "(Megatron Bridge API).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    smoke = commands.add_parser(
        "smoke",
        help="train a tiny megatron-core GPT for a few steps (CPU or GPU) to check the install",
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
                           "embedded instruction set, and show accuracy before/after (CPU: ~5 min)")
    quickstart.add_argument("--work-dir", default="quickstart", metavar="DIR",
                            help="data, checkpoints and plots go here (default: ./quickstart)")
    quickstart.add_argument("--pretrain-iters", type=int, default=None, metavar="N",
                            help="default: the tiny.gpt_small recipe's")
    quickstart.add_argument("--finetune-iters", type=int, default=None, metavar="N")
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
