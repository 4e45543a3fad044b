"""`mbridge convert import|export|list|verify`: Hugging Face <-> Megatron checkpoints (AutoBridge).

``--verify`` converts into a temp folder, runs the HF and the Megatron model on fixed prompts
(mbridge_train.verification) and renames the result into place only when they agree.

Stdlib-only at import; each command imports what it converts with.
"""

from __future__ import annotations

import argparse
import sys


def add_commands(commands) -> None:
    convert = commands.add_parser("convert", help="Hugging Face <-> Megatron checkpoints")
    actions = convert.add_subparsers(dest="convert_command", metavar="ACTION")
    imp = actions.add_parser("import", help="a local Hugging Face folder -> a Megatron checkpoint "
                                            "(keeps its config and tokenizer files)")
    imp.add_argument("hf_dir", metavar="HF_DIR")
    imp.add_argument("checkpoint", metavar="CKPT")
    imp.add_argument("--dtype", default=None, help="parameter dtype (default float32)")
    _gate_options(imp)
    imp.set_defaults(handler=_import)
    exp = actions.add_parser("export", help="a Megatron checkpoint -> a Hugging Face folder "
                                            "(from the checkpoint alone)")
    exp.add_argument("checkpoint", metavar="CKPT")
    exp.add_argument("hf_dir", metavar="HF_DIR")
    exp.add_argument("--hf-config", default=None, metavar="DIR",
                     help="a Hugging Face folder to take the config / tokenizer from (only for "
                          "checkpoints saved without hf_assets)")
    exp.add_argument("--no-merge-adapters", action="store_true",
                     help="export the base weights of a PEFT checkpoint, not base + adapters")
    exp.add_argument("--max-shard-size", default="2GB")
    _gate_options(exp)
    exp.set_defaults(handler=_export)
    ver = actions.add_parser("verify", help="compare a Hugging Face folder and a Megatron "
                                            "checkpoint on fixed prompts (logits and per-layer "
                                            "hidden states, fp32)")
    ver.add_argument("hf_dir", metavar="HF_DIR")
    ver.add_argument("checkpoint", metavar="CKPT")
    ver.add_argument("--atol", type=float, default=1e-3,
                     help="tolerance, relative to max(1, max |HF value|) (default 1e-3)")
    ver.set_defaults(handler=_verify)
    listing = actions.add_parser("list", help="the Hugging Face model types mbridge converts")
    listing.set_defaults(handler=_list)
    convert.set_defaults(handler=lambda args: _usage(convert))


def _gate_options(parser) -> None:
    parser.add_argument("--verify", action="store_true",
                        help="write the result only if the HF and Megatron models agree on fixed "
                             "prompts (prints max |logit diff| and the first divergent layer)")
    parser.add_argument("--atol", type=float, default=1e-3, help="--verify tolerance")
    parser.add_argument("--progress", action="store_true",
                        help="progress bars even when stderr is not a terminal")


def _show_progress(args) -> bool:
    return bool(args.progress or sys.stderr.isatty())


def _usage(parser) -> int:
    parser.print_help()
    return 0


def _import(args: argparse.Namespace) -> int:
    def run():
        from mbridge_train.auto_bridge import AutoBridge
        from mbridge_train.verification import import_verified

        if args.verify:
            folder = import_verified(args.hf_dir, args.checkpoint, atol=args.atol,
                                     torch_dtype=args.dtype, show_progress=_show_progress(args),
                                     report=_report)
        else:
            folder = AutoBridge.import_ckpt(args.hf_dir, args.checkpoint, torch_dtype=args.dtype,
                                            show_progress=_show_progress(args))
        print(f"mbridge convert: wrote {folder}")

    return _guarded(run)


def _export(args: argparse.Namespace) -> int:
    def run():
        from mbridge_train.auto_bridge import AutoBridge

        from mbridge_train.verification import export_verified

        bridge = AutoBridge.from_hf_pretrained(args.hf_config) if args.hf_config else AutoBridge
        options = dict(merge_adapter_weights=not args.no_merge_adapters,
                       max_shard_size=args.max_shard_size, show_progress=_show_progress(args))
        if args.verify:
            folder = export_verified(args.checkpoint, args.hf_dir, bridge=bridge, atol=args.atol,
                                     report=_report, **options)
        else:
            folder = bridge.export_ckpt(args.checkpoint, args.hf_dir, **options)
        print(f"mbridge convert: wrote {folder}")

    return _guarded(run)


def _verify(args: argparse.Namespace) -> int:
    def run():
        from mbridge_train.verification import verify_conversion

        result = verify_conversion(args.hf_dir, args.checkpoint, atol=args.atol)
        _report(str(result))
        result.check(f"verify {args.hf_dir} vs {args.checkpoint}")

    return _guarded(run)


def _report(line: str) -> None:
    print(f"mbridge convert: {line}", flush=True)


def _list(args: argparse.Namespace) -> int:
    from mbridge_models.conversion import get_architecture, list_supported_models

    for model_type in list_supported_models():
        print(f"{model_type:<12} {get_architecture(model_type).hf_architecture}")
    return 0


def _guarded(run) -> int:
    """Bad input is one line on stderr and exit status 2, never a traceback."""
    from mbridge.train_cli import quiet_dependency_warnings

    quiet_dependency_warnings()
    from mbridge_config.errors import ConfigError
    from mbridge_models.conversion.errors import ConversionError
    from mbridge_train.checkpointing import CheckpointError

    try:
        run()
    except (ConversionError, CheckpointError, ConfigError) as error:
        print(f"mbridge convert: error: {error}", file=sys.stderr)
        return 2
    return 0
